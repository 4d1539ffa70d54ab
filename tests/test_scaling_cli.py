"""`hdsim scaling` end to end (typer's CliRunner): the promised CSV columns and JSON fit, bad input refused
with one line, exit code 2 and nothing written."""

import csv
import json
import math

import pytest
from typer.testing import CliRunner

from cli import app
from sim.experiments.scaling import COLUMNS
from sim.learning.data import mnist1d_unavailable


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling")
    res = CliRunner().invoke(
        app, ["scaling", "--n", "16:128:4", "--params", "512", "--seeds", "4", "--seed", "2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    with open(out / "scaling.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, res, rows


def test_csv_columns_json_fit_and_figure(small_run):
    out, res, rows = small_run
    assert tuple(rows[0]) == COLUMNS
    assert [int(r["n"]) for r in rows] == [16, 32, 64, 128] and {r["params"] for r in rows} == {"512"}
    meta = json.loads((out / "scaling.json").read_text())
    fit = meta["exponent_n"]["512"]
    assert fit["ci_low"] <= fit["exponent"] <= fit["ci_high"] and meta["theory_exponent_n"] == 1.0
    assert meta["parameters"]["seed"] == 2 and "versions" in meta and "wall_seconds" in meta
    assert "params" not in " ".join(meta["info"]["ignored"])  # P is used by linear on synthetic data
    assert {"scaling_learning_curve.png", "scaling_learning_curve.svg"} <= {p.name for p in out.iterdir()}
    for r in rows:  # ridgeless noiseless interpolation below P: the train loss is rounding noise
        assert float(r["train_loss"]) < 1e-20 and float(r["excess_risk"]) == pytest.approx(float(r["test_loss"]))
        assert math.isfinite(float(r["theory_excess_risk"]))
    assert "b = " in res.output


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--alpha", "0"], "--alpha must be > 0 with --data powerlaw"),
        (["--beta", "1"], "--beta must be > 1"),
        (["--noise", "-0.5"], "--noise must be a variance >= 0, got -0.5"),
        (["--ridge", "-1"], "--ridge must be >= 0, got -1.0"),
        (["--n", "1,10"], "--n: every sample size must be >= 2, got 1"),
        (["--n", "10:abc"], "--n: '10:abc' is not a positive integer"),
        (
            ["--data", "digits", "--learner", "kernel", "--n", "10,2000"],
            "--n: digits has 1300 training samples, asked for 2000",
        ),
        (["--data", "cifar"], "--data: unknown value 'cifar'"),
        (["--learner", "mlp"], "--learner: unknown value 'mlp'"),
    ],
)
def test_bad_values_one_line_exit_2_nothing_written(tmp_path, args, msg):
    out = tmp_path / "o"
    res = CliRunner().invoke(app, ["scaling", *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and msg in lines[0], res.output
    assert not out.exists()


@pytest.mark.skipif(mnist1d_unavailable() is None, reason="mnist1d is installed")
def test_mnist1d_without_the_package_is_refused(tmp_path):
    res = CliRunner().invoke(app, ["scaling", "--data", "mnist1d", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "the mnist1d package is not installed" in res.output
