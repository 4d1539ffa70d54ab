"""The CLI shell: version and help, `hdsim distances` end to end, and every bad input.

Bad input must give one line on stderr naming the value, exit code 2, no traceback and no files.
"""

import csv
import json
import math

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_version_and_help():
    from sim import __version__

    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"hdsim {__version__}"
    r = invoke("--help")
    assert r.exit_code == 0 and "distances" in r.stdout and "figures" in r.stdout


def test_every_command_has_help_with_one_line_per_option():
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        r = invoke(name, "--help")
        assert r.exit_code == 0, name
        for param in cmd.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{name} {param.opts} has no help"
                assert "\n" not in param.help


# one distances run, made twice (the same seed must give the same numbers)
DIST_ARGS = (
    *("distances", "--dist", "gaussian,cauchy", "--metric", "euclidean,cityblock"),
    *("--dims", "10,1e2,1000", "--points", 32, "--seed", 3),
)


@pytest.fixture(scope="module")
def distances_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    r = invoke(
        *DIST_ARGS,
        "--out",
        out,
    )
    return r, out


def test_distances_writes_csv_json_and_plots(distances_run):
    r, out = distances_run
    assert r.exit_code == 0, r.stdout + r.stderr
    rows = read_csv(out / "distances.csv")
    assert len(rows) == 2 * 2 * 3
    for col in (
        "dist",
        "metric",
        "p",
        "dim",
        "points",
        "pairs",
        "mean",
        "std",
        "rel_std",
        "min",
        "max",
        "rel_contrast",
        "theory_mean",
        "theory_rel_std",
    ):
        assert col in rows[0], col
    meta = json.loads((out / "distances.json").read_text())
    assert meta["seed"] == 3 and meta["parameters"]["dims"] == [10, 100, 1000]
    assert {"hdsim", "jax", "numpy"} <= set(meta["versions"]) and meta["device"]["platform"] == "cpu"
    assert meta["wall_seconds"] > 0
    for stem in (
        "distances_rel_std_euclidean",
        "distances_rel_contrast_euclidean",
        "distances_hist_euclidean",
        "distances_angles",
    ):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.svg").exists()
    assert not list(out.glob(".*part")) and not list(out.glob(".hdsim-stage-*"))  # nothing staged is left
    assert set(meta["files"]) == {p.name for p in out.iterdir()} and meta["figures"] == "written"


def test_distances_numbers_agree_with_theory(distances_run):
    """Gaussian rows: the mean pair distance is within a few standard errors of the chi-law mean.
    The 496 pairs of 32 points are correlated; the SE of their mean is at most std/sqrt(16)
    (16 disjoint pairs), a conservative bound."""
    _, out = distances_run
    for r in read_csv(out / "distances.csv"):
        if r["dist"] == "gaussian" and r["metric"] == "euclidean":
            mean, std, theory = float(r["mean"]), float(r["std"]), float(r["theory_mean"])
            assert abs(mean - theory) <= 4.5 * std / math.sqrt(16)
        if r["dist"] == "cauchy":
            assert r["theory_mean"] == ""  # no closed form: an empty cell, never a made-up number


def test_distances_same_seed_same_numbers(distances_run, tmp_path):
    _, out = distances_run
    r = invoke(
        *DIST_ARGS,
        "--out",
        tmp_path,
        "--no-plots",
        "--chunk",
        4096,
    )
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "distances.csv").read_bytes() == (out / "distances.csv").read_bytes()


BAD = [
    (("--dims", "0"), "'0'"),
    (("--dims", "1.5"), "'1.5'"),
    (("--dims", "10,abc"), "'abc'"),
    (("--dims", "50:10"), "'50:10'"),
    (("--points", "1"), "1"),
    (("--dist", "gaussian,levy"), "'levy'; valid: gaussian, uniform"),
    (("--metric", "hamming"), "'hamming'; valid: euclidean"),
    (("--metric", "minkowski", "--minkowski-p", "0"), "--minkowski-p must be a finite number > 0, got 0.0"),
    (("--metric", "minkowski", "--minkowski-p", "-1"), "got -1"),
    (("--metric", "minkowski"), "needs --minkowski-p"),
    (("--lognormal-sigma", "0"), "--lognormal-sigma must be a finite number > 0, got 0.0"),
    (("--init-io", "784"), "--init-io '784'"),
    (("--init-io", "0,10"), "two positive integers"),
    (("--df", "0"), "--df must be"),
    (("--dist", "powerlaw", "--a", "-1"), "--a must be"),
    (("--chunk", "5000"), "--chunk must be 4096 times a power of two"),
    (("--dtype", "float16"), "'float16'"),
    (("--points", "abc"), "'abc'"),
    (("--points", "1000000"), "GiB"),
    (("--devices", "0"), "--devices must be an integer >= 1, got 0"),
    (("--devices", "64"), "64 devices requested but only"),
    (("--platform", "cuda"), "'cuda'; valid: cpu, gpu, tpu"),
    (("--platform", "gpu"), "--platform gpu: no gpu backend available"),
    (("--coordinator", "127.0.0.1:1234"), "give all three or none"),
    (("--process-id", "1"), "give all three or none"),
    (("--coordinator", "host", "--num-processes", "2", "--process-id", "0"), "HOST:PORT"),
    (("--coordinator", "h:1234", "--num-processes", "0", "--process-id", "0"), "--num-processes must be"),
    (("--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"), "--process-id must be in 0..1"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, needle):
    out = tmp_path / "out"
    r = invoke("distances", "--dims", "10", "--points", "4", *args, "--out", out)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = invoke("distances", "--dims", "10", "--points", "4", "--out", blocker / "sub")
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "--out" in r.stderr and "not a writable directory" in r.stderr


def test_figures_list_and_bad_name(tmp_path):
    r = invoke("figures", "--list")
    assert r.exit_code == 0 and "concentration" in r.stdout
    r = invoke("figures", "--only", "nosuchfigure", "--out", tmp_path)
    assert r.exit_code == 2 and "'nosuchfigure'" in r.stderr and not any(tmp_path.iterdir())


# ---- outputs: tables before figures, no stale files, nothing staged left ----


def _figures(d):
    return sorted(p.name for p in d.iterdir() if p.suffix in (".png", ".svg"))


def test_a_plotting_failure_keeps_the_tables(tmp_path, monkeypatch):
    """The second figure raises: the tables and the JSON are written (the JSON says what failed), no
    figure of the failed attempt is left, exit code 1 with one line."""
    import sim.plots

    real, calls = sim.plots.save, []

    def save_then_fail(fig, out, stem):
        calls.append(stem)
        if len(calls) == 2:
            raise RuntimeError("no space left for figures")
        return real(fig, out, stem)

    monkeypatch.setattr(sim.plots, "save", save_then_fail)
    r = invoke("distances", "--dims", "10,100", "--points", 8, "--out", tmp_path)
    assert r.exit_code == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "figures failed (RuntimeError: no space left for figures)" in err[0], err
    assert len(read_csv(tmp_path / "distances.csv")) == 3 * 2  # three laws (default) x two dims
    meta = json.loads((tmp_path / "distances.json").read_text())
    assert meta["figures"].startswith("failed: RuntimeError") and "distances.csv" in meta["files"]
    assert _figures(tmp_path) == [] and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_a_new_run_removes_the_previous_runs_figures(tmp_path):
    """Figures are written after the tables; the first commit removes the figures the previous run's
    JSON listed, so tables and figures in the directory always come from the same run."""
    r = invoke("distances", "--dims", "10,100", "--points", 8, "--out", tmp_path)
    assert r.exit_code == 0 and "distances_rel_std_euclidean.png" in _figures(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")  # not hdsim's: never touched
    r = invoke("distances", "--dims", "10,100", "--points", 8, "--no-plots", "--out", tmp_path)
    assert r.exit_code == 0, r.stderr
    assert _figures(tmp_path) == [] and (tmp_path / "notes.txt").read_text() == "mine"
    meta = json.loads((tmp_path / "distances.json").read_text())
    assert meta["figures"] == "not requested"
    assert set(meta["files"]) == {p.name for p in tmp_path.iterdir()} - {"notes.txt"}


# ---- option names ----

#: options that several commands share, each with one meaning everywhere
SHARED = {
    "--dims": "sizes swept",
    "--seed": "seed",
    "--out": "output directory",
    "--plots": "write the figures",
    "--devices": "devices to split the work over",
    "--platform": "backend",
    "--coordinator": "multi-process coordinator",
    "--num-processes": "multi-process count",
    "--process-id": "multi-process rank",
    "--dtype": "working float dtype",
    "--starts": "Newton starts",
    "--p": "p-spin order",
    "--num-samples": "MLP training samples",
    "--shift": "shift s of H/sqrt(N) + s I",
    "--data": "data set",
    "--depth": "MLP hidden layers",
    "--lr": "learning rate",
    "--n-test": "test samples",
    "--seeds": "independent seeds averaged",
    "--alpha": "power-law covariance exponent",
    "--beta": "power-law target exponent",
    "--noise": "label-noise variance",
    "--n-train": "training samples",
    "--width": "MLP hidden units",
    "--max-steps": "iteration cap (training steps or Newton iterations)",
    "--dim": "dimension of the object studied (data features, matrix or landscape size)",
    "--model": "model studied (learner or Hessian operator)",
}


def test_one_meaning_per_option_name():
    """An option name used by two commands must be in SHARED (one meaning); --samples (Monte Carlo
    matrices), --minkowski-p and --lognormal-sigma belong to one command each."""
    import typer.main

    group = typer.main.get_command(app)
    where = {}
    for name, cmd in group.commands.items():
        for param in cmd.params:
            for opt in param.opts + getattr(param, "secondary_opts", []):
                if not opt.startswith("--no-") and opt != "--help":
                    where.setdefault(opt, set()).add(name)
    shared = {opt for opt, cmds in where.items() if len(cmds) > 1}
    assert shared <= set(SHARED), sorted(shared - set(SHARED))
    assert where["--samples"] == {"rmt"}
    assert where["--p"] == {"critical", "spectrum"}
    assert where["--minkowski-p"] == {"distances"} and where["--lognormal-sigma"] == {"distances"}
    assert where["--num-samples"] == {"critical", "spectrum"}
    assert where["--noise-std"] == {"critical"}  # scaling's --noise is a variance
    # training steps and mini-batches (train) are not Lanczos steps and probe batches (spectrum)
    assert where["--steps"] == {"train"} and where["--batch-size"] == {"train"}
    assert where["--lanczos-steps"] == {"spectrum"} and where["--probe-batch"] == {"spectrum"}


# ---- JAX's persistent compilation cache (set by the CLI only) ----


def _run_cli(args, env, cwd):
    import os
    import subprocess
    import sys

    code = "import sys; from cli import main; sys.argv = ['hdsim'] + sys.argv[1:]; main()"
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env)
    full.pop("HDSIM_NO_COMPILE_CACHE", None)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code, *args], env=full, cwd=cwd, capture_output=True, text=True)


def test_compile_cache_is_written_by_the_cli_and_can_be_turned_off(tmp_path):
    args = ["rmt", "--dims", "3", "--samples", "64", "--rare", "none", "--spectrum-dims", "none", "--no-plots"]
    cache = tmp_path / "cache"
    r = _run_cli([*args, "--out", str(tmp_path / "a")], {"HDSIM_CACHE_DIR": str(cache)}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert cache.is_dir() and any(cache.iterdir())  # small programs are cached too (thresholds lowered)
    off = tmp_path / "off"
    r = _run_cli(["--no-compile-cache", *args, "--out", str(tmp_path / "b")], {"HDSIM_CACHE_DIR": str(off)}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert not off.exists()
    r = _run_cli(
        [*args, "--out", str(tmp_path / "c")], {"HDSIM_CACHE_DIR": str(off), "HDSIM_NO_COMPILE_CACHE": "1"}, tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert not off.exists()
