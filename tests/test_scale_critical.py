"""Scale-out of `hdsim critical` (issue 6): the instances spread over 1, 2 and 8 devices, or over two
processes (jax.distributed on 127.0.0.1), give bit-identical tables, and --devices / --platform fail with
one line and exit 2.

Multi-device runs use a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (the device
count is fixed when JAX starts) and NPROC=9 (XLA's intra-op pool one thread larger than the devices, so all
8 run at once: see ``sim.experiments.critical._in_flight``); they are compared with this process's single
device.
"""

import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from tests.processes import ROOT, assert_missing_backend_fails, fresh_env, run_two_processes_and_one, stderr_of

TIMEOUT = 300  # seconds: a deadlocked pool fails the test instead of hanging the suite

# the workload, shared by the subprocess (8 devices) and this process (1 device): 8 items (2 sizes x 4
# instances), so 8 devices take one item each and 2 devices four. The 8-device run skips gradient descent
# (its compile time): its summary is compared without the descent columns.
COMMON = textwrap.dedent("""
    import numpy as np
    from sim.experiments import critical as exp


    def table(devices, descent=True):
        config = exp.CriticalConfig(landscape="grf", dims=(4, 8), instances=4, starts=16, seed=3, descent=descent,
                                    descent_steps=500, spectra=2, devices=devices)
        r = exp.run(config)
        out = {}
        for name, rows in [("points", r.rows)] + [(k, v) for k, v in r.tables.items() if v and k != "theory"]:
            keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float, bool)) or rows[0][k] is None]
            out[name] = np.array([[np.nan if row[k] is None else float(row[k]) for k in keys] for row in rows])
            if name == "summary":  # the finder's columns alone
                out["summary_finder"] = out[name][:, [not k.startswith("descent") for k in keys]]
        out["devices"] = np.array([r.info["devices"]])
        return out
""")

DEVICE_SCRIPT = COMMON + textwrap.dedent("""
    import sys
    import jax
    assert len(jax.devices()) == 8, jax.devices()
    res = {}
    for d in (8, 2, 1):
        # every device compiles its own programs: 8 devices run the finder only (8 compiles, not 16)
        for name, a in table(d, descent=d != 8).items():
            res[f"{name}_{d}"] = a
    np.savez(sys.argv[1], **res)
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(8-device subprocess tables, this process's 1-device tables), computed side by side."""
    assert len(jax.devices()) == 1
    path = tmp_path_factory.mktemp("dev") / "dev.npz"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import jax; jax.config.update('jax_enable_x64', True)\n" + DEVICE_SCRIPT, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=fresh_env(XLA_FLAGS="--xla_force_host_platform_device_count=8", NPROC="9"),
    )
    try:
        ns = {}
        exec(compile(COMMON, "common", "exec"), ns)  # noqa: S102 - the same workload source as the subprocess
        one = ns["table"](None)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    return dict(np.load(path)), one


# slow (~65 s idle: a fresh 8-device process compiles the finder for 8, 2 and 1 devices); run by .ci/run as a
# claim test (README: bit-identical for 1, 2 and 8 devices). The default suite keeps the distances, rmt
# and batch multi-device checks (tests/test_scale.py, tests/test_rmt.py, tests/test_batch.py).
@pytest.mark.slow
@pytest.mark.parametrize("name", ["points", "descent", "summary", "spectrum"])
def test_tables_bit_identical_for_1_2_8_devices(runs, name):
    eight_devices, one_device = runs
    ref = one_device[name]
    assert ref.size and one_device["devices"][0] == 1
    if name == "points":
        assert ref.shape[0] == 2 * 4 * 16
    for d in (1, 2, 8):
        assert eight_devices[f"devices_{d}"][0] == d  # the run reports its device count
        if d == 8 and name == "descent":
            continue
        key = "summary_finder" if d == 8 and name == "summary" else name
        got, want = eight_devices[f"{key}_{d}"], one_device[key]
        assert got.shape == want.shape and got.tobytes() == want.tobytes(), (name, d)  # nan-safe, bit for bit


# ---------------------------------------------------------------------------------------------
# CLI: --devices and --platform

ARGS = ["critical", "--dims", "4", "--starts", "8", "--no-descent", "--no-plots"]


@pytest.mark.parametrize(
    "devices,message",
    [("0", "--devices must be an integer >= 1, got 0"), ("64", "--devices 64: 64 devices requested but only")],
)
def test_bad_device_count_is_one_line_exit_2(tmp_path, devices, message):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [*ARGS, "--devices", devices, "--out", str(out)])
    lines = stderr_of(res).strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"Error: {message}"), stderr_of(res)
    assert not out.exists()


def test_unknown_platform_is_one_line_exit_2(tmp_path):
    res = CliRunner().invoke(app, [*ARGS, "--platform", "metal", "--out", str(tmp_path / "out")])
    lines = stderr_of(res).strip().splitlines()
    assert res.exit_code == 2 and lines == ["Error: --platform: unknown value 'metal'; valid: cpu, gpu, tpu"]
    assert not (tmp_path / "out").exists()


def test_missing_tpu_backend_is_one_line_exit_2(tmp_path):
    """In a fresh process (--platform is applied before JAX initialises its backends)."""
    if any(d.platform == "tpu" for d in jax.devices()):  # pragma: no cover - a machine with a TPU
        pytest.skip("this machine has a TPU")
    assert_missing_backend_fails(ARGS, tmp_path / "out")


def test_config_rejects_bad_devices_and_platform():
    from sim.experiments.critical import CriticalConfig

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="critical: devices must be None or an integer >= 1"):
            CriticalConfig(devices=bad)
    with pytest.raises(ValueError, match="critical: platform must be None or one of cpu, gpu, tpu"):
        CriticalConfig(platform="metal")


@pytest.mark.slow  # ~20 s: a fresh process splits the CPU into 2 devices and compiles the runs
def test_cli_two_cpu_devices_write_the_same_csv(tmp_path):
    """`--devices 2` in a fresh process (the CPU split into 2 devices) against this process's 1 device."""
    import csv

    args = [
        "critical",
        "--dims",
        "4,8",
        "--starts",
        "16",
        "--instances",
        "2",
        "--descent-steps",
        "500",
        "--seed",
        "5",
        "--no-plots",
    ]
    r = subprocess.run(
        [sys.executable, "cli.py", *args, "--devices", "2", "--out", str(tmp_path / "two")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=fresh_env(),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "on 2 cpu device(s)" in r.stdout
    one = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, stderr_of(one)
    for name in ("critical_points.csv", "critical_summary.csv", "critical_descent.csv", "critical_spectrum.csv"):
        with open(tmp_path / "two" / name, newline="") as f2, open(tmp_path / "one" / name, newline="") as f1:
            assert list(csv.DictReader(f2)) == list(csv.DictReader(f1)), name


@pytest.mark.slow  # ~60 s under load: two fresh JAX processes meet through jax.distributed, then a single-process run
def test_two_processes_equal_one(tmp_path):
    """Three instances over two processes (process 0 searches instances 0 and 2, process 1 instance 1;
    the results are then shared): the same CSVs as one process, written by process 0 only."""
    import csv

    args = [
        "critical",
        "--dims",
        "3",
        "--starts",
        "12",
        "--instances",
        "3",
        "--descent-steps",
        "300",
        "--spectra",
        "2",
        "--seed",
        "4",
        "--no-plots",
    ]
    p0, single = run_two_processes_and_one(args, tmp_path, silent="starts did not converge")
    for name in ("critical_points.csv", "critical_summary.csv", "critical_descent.csv", "critical_spectrum.csv"):
        with open(p0 / name, newline="") as f2, open(single / name, newline="") as f1:
            rows = list(csv.DictReader(f1))
            assert rows and list(csv.DictReader(f2)) == rows, name
