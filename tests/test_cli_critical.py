"""`hdsim critical` end to end (files, columns, non-converged starts reported, bad input) and the
quick gallery entries of issue 4 (files written, byte-identical on re-run)."""

import csv
import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import CRITICAL_POINT_COLUMNS, CRITICAL_SUMMARY_COLUMNS, app

runner = CliRunner()


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grf_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("critical") / "out"
    res = runner.invoke(
        app,
        [
            "critical",
            "--landscape",
            "grf",
            "--dims",
            "2,4",
            "--starts",
            "24",
            "--seed",
            "1",
            "--no-descent",
            "--spectra",
            "2",
            "--out",
            str(out),
        ],
    )
    return res, out


def test_critical_run_writes_files_and_reports_nonconverged(grf_run):
    res, out = grf_run
    assert res.exit_code == 0, res.output
    names = set(os.listdir(out))
    assert {
        "critical_points.csv",
        "critical_summary.csv",
        "critical.json",
        "critical_theory.csv",
        "critical_spectrum.csv",
    } <= names
    for stem in ("critical_index_energy", "critical_minima_fraction", "critical_spectra"):
        assert {stem + ".png", stem + ".svg"} <= names
    assert "critical_descent.csv" not in names  # --no-descent
    assert not [n for n in names if n.endswith(".part")]

    points = _read(out / "critical_points.csv")
    assert list(points[0])[: len(CRITICAL_POINT_COLUMNS)] == list(CRITICAL_POINT_COLUMNS)
    assert len(points) == 2 * 24  # one row per start, converged or not
    conv = np.array([r["converged"] == "True" for r in points])
    grad = np.array([float(r["grad_norm"]) for r in points])
    # non-converged starts are rows too, flagged, with no index
    assert (~conv).sum() > 0
    assert all(r["index"] == "" for r, c in zip(points, conv) if not c)  # missing: empty
    assert {r["method"] for r in points} == {"lm"}  # the default finder, named as run
    # converged rows are critical points: |grad| <= 1e-8 sqrt(N) (the default rtol times grad_scale)
    dims = np.array([int(r["dim"]) for r in points])
    assert np.all(grad[conv] <= 1e-8 * np.sqrt(dims[conv]))
    for r in points:
        if r["converged"] == "True":
            k, n = int(r["index"]), int(r["dim"])
            assert float(r["index_fraction"]) == k / n
            assert (float(r["min_eig"]) < 0) == (k > 0) and (float(r["max_eig"]) < 0) == (k == n)

    summary = _read(out / "critical_summary.csv")
    assert list(summary[0])[: len(CRITICAL_SUMMARY_COLUMNS)] == list(CRITICAL_SUMMARY_COLUMNS)
    assert [int(s["dim"]) for s in summary] == [2, 4]
    for s in summary:
        d = int(s["dim"])
        c = conv[dims == d]
        assert int(s["found"]) == 24 and int(s["converged"]) == c.sum() and int(s["not_converged"]) == (~c).sum()
        uniq = [r for r in points if int(r["dim"]) == d and r["unique"] == "True"]
        assert int(s["unique"]) == len(uniq) and all(r["converged"] == "True" for r in uniq)
        minima = sum(int(r["index"]) == 0 for r in uniq)
        assert float(s["minima_fraction"]) == minima / len(uniq)  # among converged unique points only

    # the printed summary: one line per dim with found / converged / not converged, and the total
    lines = res.output.strip().splitlines()
    assert "not conv." in lines[0]
    for s, line in zip(summary, lines[1:3]):
        assert line.split()[:6] == ["grf", s["dim"], s["found"], s["converged"], s["not_converged"], s["unique"]]
    assert f"{(~conv).sum()} of 48 starts did not converge" in res.output

    meta = json.loads((out / "critical.json").read_text())
    assert meta["command"] == "hdsim critical" and meta["seed"] == 1
    assert meta["parameters"]["dims"] == [2, 4] and meta["parameters"]["starts"] == 24


def test_critical_help_one_line_per_option():
    res = runner.invoke(app, ["critical", "--help"])
    assert res.exit_code == 0
    opts = [ln for ln in res.output.splitlines() if ln.strip().startswith("--")]
    assert len(opts) >= 20
    for ln in res.output.splitlines():  # no continuation lines: every non-blank option line starts with "-"
        if ln.startswith("      ") and ln.strip():
            pytest.fail(f"help wraps: {ln!r}")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--landscape", "bowl"], "'bowl'"),
        (["--landscape", "pspin", "--p", "1"], "--p must be an integer >= 2, got 1"),
        (["--dims", "0"], "0"),
        (["--dims", "4,-3"], "-3"),
        (["--starts", "0"], "--starts must be an integer >= 1, got 0"),
        (["--instances", "0"], "--instances must be an integer >= 1, got 0"),
        (["--length-scale", "-1"], "--length-scale must be a finite number > 0, got -1.0"),
        (["--features", "0"], "--features must be an integer >= 1, got 0"),
        (["--landscape", "pspin", "--dims", "1"], "got 1"),
        (["--landscape", "pspin", "--p", "4", "--dims", "100"], "100**4"),
        (["--starts", "many"], "'many'"),
        (["--method", "bfgs"], "--method: unknown value 'bfgs'; valid: lm, newton, subnet"),
        (["--starts", "100000000"], "--starts 100000000 at dimension 32 needs about"),
        (["--landscape", "mlp", "--data", "cifar"], "--data: unknown value 'cifar'; valid: teacher, digits, mnist1d"),
        (["--data", "digits"], "--data 'digits' applies to landscape mlp only, got landscape 'grf'"),
        (["--landscape", "mlp", "--data", "digits", "--d-in", "3"], "--d-in is 64 for data 'digits'"),
        (["--landscape", "mlp", "--data", "digits", "--num-samples", "2000"], "at most 1300"),
        (["--landscape", "mlp", "--start-scales", "1,x"], "--start-scales '1,x': give a comma list of numbers"),
        (
            ["--landscape", "mlp", "--start-scales", "0"],
            "--start-scales must be a non-empty list of finite numbers > 0",
        ),
        (["--landscape", "mlp", "--start-steps", "0,-5"], "--start-steps must be a non-empty list of integers >= 0"),
        (["--landscape", "mlp", "--start-lr", "-1"], "--start-lr must be a finite number > 0"),
    ],
)
def test_critical_bad_input(tmp_path, args, needle):
    out = tmp_path / "never"
    res = runner.invoke(app, ["critical", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    text = res.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("Error:"), text
    assert needle in text, text
    assert not out.exists()


def test_critical_mlp_on_digits(tmp_path):
    """`--landscape mlp --data digits`: a (64, 2, 10) network (P = 160) on 32 images; every start is a row,
    converged or not, and the JSON records the data."""
    out = tmp_path / "digits"
    args = ["critical", "--landscape", "mlp", "--data", "digits", "--dims", "2", "--num-samples", "32"]
    args += ["--starts", "4", "--start-steps", "0,100", "--start-lr", "0.5", "--no-descent"]
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = _read(out / "critical_points.csv")
    assert len(rows) == 4 and {r["dim"] for r in rows} == {"160"}
    summary = _read(out / "critical_summary.csv")[0]
    assert int(summary["converged"]) + int(summary["not_converged"]) == 4
    meta = json.loads((out / "critical.json").read_text())
    assert meta["parameters"]["data"] == "digits" and meta["parameters"]["start_steps"] == [0, 100]
    assert "data=digits" in meta["info"]["landscape"] and "d_in=64" in meta["info"]["landscape"]
    assert (out / "critical_dauphin.png").stat().st_size > 10_000  # Dauphin et al.'s index against loss


NAMES = ("critical_index_energy", "critical_minima_fraction", "critical_spectra", "pspin_threshold")


def test_quick_gallery_is_byte_identical(tmp_path):
    from sim.gallery import REGISTRY
    from sim.gallery import critical as gallery

    assert set(NAMES) <= set(REGISTRY)
    digests = []
    for run in ("a", "b"):
        gallery._run.cache_clear()  # recompute the experiments, not just re-plot them
        res = runner.invoke(app, ["figures", "--quick", "--only", ",".join(NAMES), "--out", str(tmp_path / run)])
        assert res.exit_code == 0, res.output
        files = {}
        for name in NAMES:
            for ext in ("png", "svg", "csv", "json"):
                assert (tmp_path / run / f"{name}.{ext}").is_file(), (name, ext)
            for ext in ("png", "svg", "csv"):
                files[f"{name}.{ext}"] = (tmp_path / run / f"{name}.{ext}").read_bytes()
            caption = json.loads((tmp_path / run / f"{name}.json").read_text())["info"]["caption"]
            assert caption.endswith(".") and caption.count(". ") == 0, caption  # one sentence
        digests.append(files)
    assert digests[0].keys() == digests[1].keys()
    for k in digests[0]:
        assert digests[0][k] == digests[1][k], f"{k} differs between re-runs"
