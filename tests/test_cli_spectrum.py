"""`hdsim spectrum` end to end (files, columns, JSON keys, the estimate against eigvalsh, every bad input)
and the quick gallery entries of issue 5 (files written, byte-identical on re-run)."""

import csv
import json
import math
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from sim.theory.rmt import semicircle_cdf
from tests.stats_helpers import Z

runner = CliRunner()

TOP_KEYS = {
    "negative_fraction",
    "negative_fraction_stderr",
    "negative_fraction_lower",
    "negative_fraction_upper",
    "min_eigenvalue",
    "min_eigenvalue_residual",
    "max_eigenvalue",
    "max_eigenvalue_residual",
    "num_params",
    "timings",
    "parameters",
    "seed",
    "versions",
    "wall_seconds",
    "info",
}


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_estimate(meta):
    """The SLQ estimate is within Z standard errors (over probes) of the exact eigvalsh fraction, and the
    exact fraction lies inside the reported bracket (Chebyshev-Markov-Stieltjes bounds widened by the
    probe noise)."""
    est, se, exact = meta["negative_fraction"], meta["negative_fraction_stderr"], meta["exact_negative_fraction"]
    assert se > 0
    assert abs(est - exact) <= Z * se, f"{est:.4f} +- {se:.4f} vs exact {exact:.4f}"
    assert meta["negative_fraction_lower"] <= exact <= meta["negative_fraction_upper"]
    # extremes: Ritz values lie inside the spectrum, and an eigenvalue lies within each residual bound
    assert meta["exact_min_eigenvalue"] - 1e-6 <= meta["min_eigenvalue"] <= meta["exact_min_eigenvalue"] + 0.05
    assert meta["exact_max_eigenvalue"] - 0.05 <= meta["max_eigenvalue"] <= meta["exact_max_eigenvalue"] + 1e-6


@pytest.fixture(scope="module")
def goe_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spectrum") / "goe"
    args = [
        "spectrum",
        "--model",
        "goe",
        "--dim",
        "300",
        "--shift",
        "0.4",
        "--probes",
        "8",
        "--lanczos-steps",
        "40",
        "--seed",
        "1",
        "--dtype",
        "float64",
        "--out",
        str(out),
    ]
    return runner.invoke(app, args), out, args


def test_goe_run_files_columns_and_estimate(goe_run):
    res, out, _ = goe_run
    assert res.exit_code == 0, res.output
    names = set(os.listdir(out))
    assert {
        "density.csv",
        "ritz.csv",
        "exact_histogram.csv",
        "exact_eigenvalues.csv",
        "spectrum.json",
        "spectrum.png",
        "spectrum.svg",
    } <= names
    assert not [n for n in names if n.endswith(".part")]
    dens = _read(out / "density.csv")
    assert list(dens[0]) == ["eigenvalue", "density"]
    x = np.array([float(r["eigenvalue"]) for r in dens])
    rho = np.array([float(r["density"]) for r in dens])
    assert np.all(np.diff(x) > 0) and np.all(rho >= 0)
    assert np.trapezoid(rho, x) == pytest.approx(1.0, abs=1e-3)
    meta = json.loads((out / "spectrum.json").read_text())
    assert TOP_KEYS <= set(meta)
    assert meta["num_params"] == 300 and meta["parameters"]["model"] == "goe" and meta["parameters"]["dim"] == 300
    assert {"slq_compile", "slq_run", "exact_eigvalsh"} <= set(meta["timings"])
    ev = np.array([float(r["eigenvalue"]) for r in _read(out / "exact_eigenvalues.csv")])
    assert ev.size == 300 and meta["exact_negative_fraction"] == np.mean(ev < 0)
    _check_estimate(meta)
    assert "negative fraction" in res.output and f"wrote {len(names)} files" in res.output


def test_goe_rerun_is_byte_identical(goe_run, tmp_path):
    _, out, args = goe_run
    args = args[:-1] + [str(tmp_path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in ("density.csv", "ritz.csv", "exact_histogram.csv", "spectrum.png", "spectrum.svg"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_counts_columns_json_and_exact(tmp_path):
    # --eps: counts.csv with the columns, the same rows in spectrum.json, and the exact eigvalsh
    # counts inside every bracket (GOE + 0.4 I, N = 300, degree 400, 16 probes).
    from sim.experiments.spectrum import COUNT_COLUMNS

    out = tmp_path / "counts"
    res = runner.invoke(
        app,
        [
            "spectrum",
            "--model",
            "goe",
            "--dim",
            "300",
            "--shift",
            "0.4",
            "--probes",
            "16",
            "--lanczos-steps",
            "30",
            "--eps",
            "0,0.01,0.1,0.3",
            "--eps-rel",
            "--degree",
            "400",
            "--dtype",
            "float64",
            "--no-plots",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = _read(out / "counts.csv")
    assert tuple(rows[0])[:7] == (
        "eps",
        "negative_fraction",
        "negative_fraction_stderr",
        "negative_fraction_lower",
        "negative_fraction_upper",
        "zero_fraction",
        "positive_fraction",
    )
    assert tuple(rows[0])[: len(COUNT_COLUMNS)] == COUNT_COLUMNS
    meta = json.loads((out / "spectrum.json").read_text())
    assert [r["eps"] for r in meta["counts"]] == [0.0, 0.01, 0.1, 0.3]
    ev = np.array([float(r["eigenvalue"]) for r in _read(out / "exact_eigenvalues.csv")])
    norm = meta["counts_info"]["spectral_norm"]
    assert norm == pytest.approx(np.max(np.abs(ev)), rel=1e-6)
    for r in meta["counts"]:
        e = r["eps"] * norm
        assert r["eps_abs"] == pytest.approx(e)
        for key, exact in (
            ("negative", np.mean(ev < -e)),
            ("zero", np.mean(np.abs(ev) <= e)),
            ("positive", np.mean(ev > e)),
        ):
            assert r[f"{key}_fraction_lower"] <= exact <= r[f"{key}_fraction_upper"], (key, r)
            assert r[f"exact_{key}_fraction"] == exact
        assert abs(r["negative_fraction"] - r["exact_negative_fraction"]) <= Z * r["negative_fraction_stderr"]
    assert "N- " in res.output


def test_mlp_run_without_plots(tmp_path):
    out = tmp_path / "mlp"
    res = runner.invoke(
        app,
        [
            "spectrum",
            "--model",
            "mlp",
            "--width",
            "8",
            "--depth",
            "2",
            "--input-dim",
            "16",
            "--num-samples",
            "64",
            "--probes",
            "8",
            "--lanczos-steps",
            "30",
            "--dtype",
            "float64",
            "--no-plots",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    names = set(os.listdir(out))
    assert "spectrum.png" not in names and {"density.csv", "spectrum.json"} <= names
    meta = json.loads((out / "spectrum.json").read_text())
    assert meta["num_params"] == 16 * 8 + 8 + 8 * 8 + 8 + 9
    assert {"slq_run", "per_hvp", "exact_hessian"} <= set(meta["timings"])
    _check_estimate(meta)


def test_pspin_at_a_random_point_full_depth(tmp_path):
    # n = 24 on the sphere: the tangent Hessian is 23 x 23; 23 Lanczos steps are full depth, so the Ritz
    # values are its eigenvalues (the HVP on the tangent space reproduces landscape.tangent_hessian).
    out = tmp_path / "pspin"
    res = runner.invoke(
        app,
        [
            "spectrum",
            "--model",
            "pspin",
            "--dim",
            "24",
            "--point",
            "random",
            "--probes",
            "4",
            "--lanczos-steps",
            "23",
            "--dtype",
            "float64",
            "--no-plots",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "spectrum.json").read_text())
    assert meta["num_params"] == 23 and meta["info"]["point"] == "random"
    assert meta["min_eigenvalue"] == pytest.approx(meta["exact_min_eigenvalue"], abs=1e-8)
    assert meta["max_eigenvalue"] == pytest.approx(meta["exact_max_eigenvalue"], abs=1e-8)
    # Bray-Dean at the point's energy per spin u (p = 3): F(u sqrt(p/(p-1))), F the semicircle CDF on [-2, 2]
    u = meta["info"]["energy_density"]
    assert meta["theory_negative_fraction"] == pytest.approx(float(semicircle_cdf(u * math.sqrt(1.5))), rel=1e-12)


@pytest.mark.slow  # the Newton search compiles for ~15 s here
def test_pspin_at_a_critical_point_full_depth(tmp_path):
    # As above at a critical point: the exact index from sim.critical is the eigvalsh count.
    out = tmp_path / "pspin"
    res = runner.invoke(
        app,
        [
            "spectrum",
            "--model",
            "pspin",
            "--dim",
            "24",
            "--starts",
            "4",
            "--probes",
            "4",
            "--lanczos-steps",
            "23",
            "--dtype",
            "float64",
            "--no-plots",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "spectrum.json").read_text())
    info = meta["info"]
    assert meta["num_params"] == 23 and info["converged_starts"] >= 1
    assert info["critical_index"] == round(meta["exact_negative_fraction"] * 23)
    assert meta["min_eigenvalue"] == pytest.approx(meta["exact_min_eigenvalue"], abs=1e-8)
    assert meta["max_eigenvalue"] == pytest.approx(meta["exact_max_eigenvalue"], abs=1e-8)
    # Bray-Dean at the point's energy per spin u (p = 3): F(u sqrt(p/(p-1))), F the semicircle CDF on [-2, 2]
    u = meta["info"]["energy_density"]
    assert meta["theory_negative_fraction"] == pytest.approx(float(semicircle_cdf(u * math.sqrt(1.5))), rel=1e-12)


BAD = [
    (["--model", "hessian"], "'hessian'"),
    (["--model", "goe,mlp"], "'goe,mlp'"),
    (["--point", "saddle", "--model", "grf"], "'saddle'"),
    (["--reortho", "partial"], "'partial'"),
    (["--probe", "uniform"], "'uniform'"),
    (["--exact", "maybe"], "'maybe'"),
    (["--dtype", "float16"], "'float16'"),
    (["--probes", "1"], "--probes 1"),
    (["--lanczos-steps", "0"], "--lanczos-steps 0"),
    (["--model", "goe", "--dim", "50", "--lanczos-steps", "60"], "--lanczos-steps 60"),
    (["--width", "0"], "'0'"),
    (["--seed", "-1"], "'-1'"),
    (["--probe-batch", "0"], "--probe-batch 0"),
    (["--sigma", "-1"], "-1"),
    (["--lr", "0"], "--lr"),
    (["--shift", "nan", "--model", "goe"], "--shift"),
    (["--model", "pspin", "--dim", "1"], "--dim 1"),
    (["--model", "pspin", "--dim", "300", "--point", "random"], "300"),
    (["--model", "grf", "--dim", "300"], "300"),
    (["--model", "goe", "--dim", "300000"], "GiB"),
    (["--model", "mlp", "--width", "4096", "--depth", "4", "--lanczos-steps", "4000"], "GiB"),
    (["--width", "abc"], "'abc'"),
    (["--eps", "abc"], "'abc'"),
    (["--eps", "0.1,-1"], "'-1'"),
    (["--eps", "0.1,,0.2"], "--eps"),
    (["--eps-rel"], "--eps-rel needs --eps"),
    (["--degree", "7", "--eps", "0.1"], "--degree 7"),
    (["--count-probes", "1", "--eps", "0.1"], "--count-probes 1"),
    (["--data", "cifar"], "--data: unknown value 'cifar'; valid: teacher, digits, mnist1d"),
    (["--data", "digits", "--input-dim", "16"], "--input-dim must be 64 (or None) with data digits, got 16"),
    (["--data", "digits", "--num-samples", "1301"], "--num-samples must be <= 1300"),
    (["--num-processes", "2"], "give all three or none"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"], "--process-id must be in 0..1"),
]


@pytest.mark.parametrize("extra,needle", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_exit_2_one_line_nothing_written(tmp_path, extra, needle):
    out = tmp_path / "never"
    res = runner.invoke(app, ["spectrum", *extra, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert needle in lines[0], lines[0]
    assert not out.exists()


def _gallery(out, quick=True):
    from sim.gallery import make_figures

    return make_figures(out, ["spectrum_density", "spectrum_training"], quick=quick)


@pytest.mark.slow  # two quick gallery runs: ~ 2 x 15 s of compilation on this machine
def test_quick_gallery_is_byte_identical(tmp_path):
    done = _gallery(tmp_path / "a")
    again = _gallery(tmp_path / "b")
    for f in done:
        name = f["name"]
        for ext in ("png", "svg", "csv", "json"):
            assert (tmp_path / "a" / f"{name}.{ext}").exists()
        for ext in ("png", "svg", "csv"):
            assert (tmp_path / "a" / f"{name}.{ext}").read_bytes() == (tmp_path / "b" / f"{name}.{ext}").read_bytes()
        assert any(c.isdigit() for c in f["caption"]) and f["caption"].endswith(".")
    assert [f["caption"] for f in done] == [f["caption"] for f in again]
