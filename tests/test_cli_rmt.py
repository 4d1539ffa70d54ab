"""`hdsim rmt` end to end (typer's CliRunner): outputs, values against exact numbers, bad input, gallery."""

import csv
import json
import math

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from sim.experiments import rmt as exp_rmt
from sim.theory import rmt as th
from tests.processes import stderr_of
from tests.stats_helpers import Z

REQUIRED = (
    "ensemble",
    "dim",
    "samples",
    "shift",
    "mean_index_fraction",
    "std_index_fraction",
    "p_min",
    "p_min_stderr",
    "log_p_min",
    "log_p_min_stderr",
    "method",
    "theory_index_fraction",
    "theory_log_p_min",
)
SAMPLES = 16384  # = the chunk size for N <= 8: one compilation per N, shared with the gallery quick run
RMT_NAMES = ("rmt_minima", "rmt_shift", "rmt_index_distribution", "rmt_spectra")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rmt")
    args = [
        "rmt",
        "--dims",
        "2,3,5",
        "--samples",
        str(SAMPLES),
        "--shift",
        "0,0.5",
        "--rare",
        "exact",
        "--index-method",
        "eigh",
        "--spectrum-dims",
        "2",
        "--spectrum-samples",
        "256",
        "--seed",
        "1",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with open(out / "rmt.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, res, rows


def test_writes_csv_json_and_figures(small_run):
    out, res, rows = small_run
    names = {p.name for p in out.iterdir()}
    for stem in RMT_NAMES:
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert {"rmt.csv", "rmt.json", "rmt_index_hist.csv", "rmt_spectrum.csv", "rmt_rare.csv"} <= names
    assert not [n for n in names if n.startswith(".")]  # nothing staged left behind
    # the header is the experiment's declared column order (a reader may index columns), and it holds every
    # column this test reads
    assert tuple(rows[0]) == exp_rmt.COLUMNS
    assert set(REQUIRED) <= set(exp_rmt.COLUMNS)
    assert [(int(r["dim"]), float(r["shift"])) for r in rows] == [(d, s) for d in (2, 3, 5) for s in (0.0, 0.5)]
    meta = json.loads((out / "rmt.json").read_text())
    assert meta["command"] == "hdsim rmt" and meta["seed"] == 1 and meta["parameters"]["samples"] == SAMPLES
    assert meta["versions"]["jax"] == jax.__version__ and meta["wall_seconds"] > 0
    assert "ln P(min)" in res.output and "wrote 13 files" in res.output  # the summary table


def _missing(cell):
    """A CSV cell for a value with no meaning here (no closed form): empty, the one convention of sim.io
    (older writers wrote 'nan')."""
    return cell in ("", "nan")


def _reference_index_fraction(n, shift, samples=200_000, seed=0):
    """Mean index fraction of GOE/sqrt(n) + shift I by an independent method: numpy's generator and
    LAPACK eigvalsh in float64 (not hdsim's sampler or counter). Returns (mean, standard error)."""
    rng = np.random.default_rng([seed, n])
    a = rng.standard_normal((samples, n, n))
    h = (a + np.swapaxes(a, 1, 2)) / math.sqrt(2 * n) + shift * np.eye(n)
    frac = np.mean(np.linalg.eigvalsh(h) < 0, axis=1)
    return frac.mean(), frac.std(ddof=1) / math.sqrt(samples)


def test_values_agree_with_exact_and_theory(small_run):
    _, _, rows = small_run
    for r in rows:
        n, s = int(r["dim"]), float(r["shift"])
        assert int(r["samples"]) == SAMPLES and r["ensemble"] == "goe"
        if s == 0.0:
            exact = math.log(th.EXACT_P_POSITIVE_DEFINITE[n])
            # mean index is exactly n/2 at s = 0 (symmetry of the GOE)
            assert abs(float(r["mean_index_fraction"]) - 0.5) <= Z * float(r["mean_index_fraction_stderr"])
            assert float(r["theory_log_p_min"]) == pytest.approx(-th.THETA * n * n)
            assert float(r["exact_log_p_min"]) == pytest.approx(exact, rel=1e-12)
            if n <= 3:  # Monte Carlo sees >= 100 minima: plain Monte Carlo against the exact value
                assert r["method"] == "monte-carlo"
                assert abs(float(r["log_p_min"]) - exact) <= Z * float(r["log_p_min_stderr"])
                p = th.EXACT_P_POSITIVE_DEFINITE[n]
                assert abs(float(r["p_min"]) - p) <= Z * math.sqrt(p * (1 - p) / SAMPLES)
            else:  # N = 5: ~2 minima in 16384, so --rare exact takes over
                assert r["method"] == "exact-debruijn-pfaffian"
                assert float(r["log_p_min"]) == pytest.approx(exact, rel=1e-12)
                assert int(r["mc_minima"]) < 100
        else:
            assert float(r["theory_index_fraction"]) == pytest.approx(float(th.semicircle_cdf(-s)))
            assert _missing(r["theory_log_p_min"])  # the -theta N^2 law is for s = 0 only
            # no slack: the 1/N expansion is rough at N <= 5, so the reference is an independent simulation
            # (its own generator and eigensolver) with its standard error added in quadrature
            ref, ref_se = _reference_index_fraction(n, s)
            got, se = float(r["mean_index_fraction"]), float(r["mean_index_fraction_stderr"])
            assert abs(got - ref) <= Z * math.hypot(se, ref_se), (n, s, got, ref, (got - ref) / math.hypot(se, ref_se))


BAD = [
    (["--ensemble", "gue"], "'gue'", "goe, wigner-rademacher"),
    (["--ensemble", "goe,wishart"], "goe,wishart", "valid"),
    (["--dims", "0"], "'0'", ">= 1"),
    (["--dims", "2:x"], "'2:x'", "A:B"),
    (["--samples", "0"], "got 0", ">= 1"),
    (["--samples", "-5"], "got -5", ">= 1"),
    (["--shift", "abc"], "'abc'", "not a number"),
    (["--shift", "0,1x"], "'1x'", "not a number"),
    (["--shift", "inf"], "'inf'", "finite"),
    (["--rare", "magic"], "'magic'", "ti, exact, none"),
    (["--aspect", "0"], "got 0", "> 0"),
    (["--dtype", "float16"], "'float16'", "float32, float64"),
    (["--index-method", "qr"], "'qr'", "eigh, ldl"),
    (["--ensemble", "wigner-rademacher", "--index-method", "ldl"], "ldl", "use eigh"),
    (["--ti-chains", "1"], "got 1", ">= 2"),
    (["--spectrum-dims", "7", "--dims", "2:5"], "7", "not among --dims"),
    (["--dims", "5000"], "5000", "2048"),
]


@pytest.mark.parametrize("extra,value,allowed", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, extra, value, allowed):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["rmt", "--out", str(out), *extra])
    assert res.exit_code == 2, res.output
    err = stderr_of(res).strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    assert value in err and allowed in err, err
    assert not out.exists() or not any(out.iterdir())


def test_gallery_quick_is_byte_identical_on_rerun(tmp_path):
    """The four rmt gallery entries (quick sizes) twice, experiments recomputed: same PNG, SVG and CSV bytes."""
    from sim.gallery import make_figures
    from sim.gallery import rmt as gal

    files = {}
    for run in ("a", "b"):
        gal._run.cache_clear()
        done = make_figures(tmp_path / run, list(RMT_NAMES), quick=True)
        assert [d["name"] for d in done] == list(RMT_NAMES)
        for d in done:
            assert d["caption"].endswith(".") and len(d["caption"]) > 80
        files[run] = {
            p.name: p.read_bytes() for p in (tmp_path / run).iterdir() if p.suffix in (".png", ".svg", ".csv")
        }
    assert set(files["a"]) == {f"{n}.{e}" for n in RMT_NAMES for e in ("png", "svg", "csv")}
    for name, data in files["a"].items():
        assert files["b"][name] == data, name
