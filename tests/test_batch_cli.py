"""`hdsim batch`: the table has the issue's columns, the JSON the fitted trade-off; bad input is one line,
exit 2, nothing written; two processes on 127.0.0.1 write the same table as one."""

import csv
import json

import pytest
from typer.testing import CliRunner

from cli import app
from sim.experiments.batch import COLUMNS
from tests.processes import run_two_processes_and_one, stderr_of

runner = CliRunner()
SMALL = ["batch", "--dim", "10", "--batch-sizes", "1,4,16", "--target-loss", "0.05", "--seeds", "6"]


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("batch")
    r = _invoke(*SMALL, "--max-steps", "64", "--out", out)
    assert r.exit_code == 0, stderr_of(r)
    return out, r.output


def test_table_json_and_figures(small_run):
    out, text = small_run
    rows = _rows(out / "batch.csv")
    assert tuple(rows[0]) == COLUMNS and COLUMNS[:10] == (
        "data",
        "model",
        "batch_size",
        "seeds",
        "steps",
        "steps_stderr",
        "examples",
        "b_simple",
        "b_noise",
        "theory_steps",
    )
    assert [int(r["batch_size"]) for r in rows] == [1, 4, 16]
    for r in rows:
        assert int(r["examples"]) == int(r["steps"]) * int(r["batch_size"])
    meta = json.loads((out / "batch.json").read_text())
    fit = meta["fit"]
    assert fit["e_min"] == pytest.approx(fit["s_min"] * fit["b_crit"])
    assert meta["parameters"]["learning_rate"] == "optimal" and meta["figures"] == "written"
    for name in ("batch_steps.png", "batch_noise.svg", "batch_noise.csv"):
        assert (out / name).exists()
    assert "B_crit =" in text


def test_unreached_target_is_a_row_with_empty_steps(tmp_path):
    out = tmp_path / "o"
    r = _invoke(
        *SMALL[:4], "1,4", "--target-loss", "1e-6", "--seeds", "6", "--max-steps", "16", "--no-plots", "--out", out
    )
    assert r.exit_code == 0, stderr_of(r)
    rows = _rows(out / "batch.csv")
    assert [r_["steps"] for r_ in rows] == ["", ""] and [r_["reached_seeds"] for r_ in rows] == ["0", "0"]
    assert "did not reach" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--data", "digits", "--model", "mlp", "--batch-sizes", "8,4096"],
            "--batch-sizes: 4096 is larger than the data set",
        ),
        (
            ["--batch-sizes", "3,4", "--devices", "3"],
            "--devices must be 1, 2, 4 or 8 (they split the 8 slots of a batch), got 3",
        ),
        (["--data", "digits", "--lr", "optimal"], "give a number"),
        (["--lr", "fast"], "--lr 'fast'"),
        (["--target-loss", "2"], "--target-loss must be < 1"),
        (["--data", "cifar"], "--data: unknown value 'cifar'"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "o"
    r = _invoke("batch", *args, "--out", out)
    err = stderr_of(r).strip().splitlines()
    assert r.exit_code == 2 and len(err) == 1, stderr_of(r)
    assert message in err[0], err[0]
    assert not out.exists()


ARGS = ["batch", "--dim", "10", "--batch-sizes", "2,8", "--target-loss", "0.05", "--seeds", "2", "--no-plots"]


@pytest.mark.slow  # ~1 CPU-minute: two fresh JAX processes compile the sweep, then the single-process run
def test_two_processes_equal_one(tmp_path):
    p0, single = run_two_processes_and_one(ARGS, tmp_path)
    for name in ("batch.csv", "batch_noise.csv"):
        assert (p0 / name).read_bytes() == (single / name).read_bytes(), name
