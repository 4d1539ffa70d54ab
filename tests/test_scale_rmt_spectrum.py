"""Scale-out of `hdsim rmt` and `hdsim spectrum` (issue 6): the Monte Carlo index / eigenvalue counts and
the SLQ probe batches give bit-identical results on 1, 2 and 8 devices, and the --devices / --platform
options fail with one line and exit 2.

Multi-device runs use a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (the device
count is fixed when JAX starts) and are compared with this process's single device.
"""

import csv
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from sim.lanczos import lanczos, probe_vector, tridiagonal_quadrature
from tests.processes import (
    ROOT,
    TIMEOUT,
    assert_missing_backend_fails,
    fresh_env,
    run_on_devices,
    run_two_processes_and_one,
    stderr_of,
)

# the workloads, shared by the subprocess (8 devices) and this process (1 device)
COMMON = textwrap.dedent("""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from sim import rmt
    from sim.experiments import spectrum as exp_spec
    from sim.lanczos import slq

    KEY = jax.random.key(20261125)
    GOE = rmt.Ensemble("goe")
    EDGES = np.linspace(-2.5, 2.5, 26)
    N_MAT = 48
    MAT = np.asarray(rmt.goe(jax.random.key(7), N_MAT, dtype=jnp.float32))


    def index_counts(devices, method):
        # 3000 matrices in chunks of 256: 12 chunks, so 8 devices take two rounds, the second one partial
        ens = GOE if method == "ldl" else rmt.Ensemble("wigner", law="rademacher")
        return rmt.index_histogram(KEY, ens, 5, 3000, shift=0.1, method=method, chunk=256, devices=devices)


    def eig_counts(devices):
        return rmt.eigenvalue_histogram(KEY, GOE, 4, 1000, EDGES, chunk=128, devices=devices)


    def slq_goe(devices):
        # 11 probes in batches of 3: 3 whole batches split over the devices plus a partial one
        a = jnp.asarray(MAT)
        f = jax.jit(lambda a, k: slq(k, lambda v: a @ v, N_MAT, num_steps=12, num_probes=11, batch_size=3,
                                     dtype=jnp.float32, devices=devices))
        return [np.asarray(x) for x in f(a, KEY)]


    def spectrum_mlp(devices):
        config = exp_spec.SpectrumConfig(model="mlp", width=4, depth=1, input_dim=3, num_samples=16, probes=4,
                                         steps=10, batch_size=1, exact="no", grid_points=21, devices=devices)
        r = exp_spec.run(config)
        return np.array([[row["node"], row["weight"], row["residual"]] for row in r.tables["ritz"]] +
                        [[r.info["negative_fraction"], r.info["negative_fraction_stderr"], r.info["devices"]]])
""")

DEVICE_SCRIPT = COMMON + textwrap.dedent("""
    import sys
    assert len(jax.devices()) == 8, jax.devices()
    out = {}
    for D in (1, 2, 8):
        out[f"ldl_{D}"] = index_counts(D, "ldl")
        out[f"slq_{D}"] = np.concatenate([x.reshape(-1).astype(np.float64) for x in slq_goe(D)])
        out[f"mlp_{D}"] = spectrum_mlp(D)
    for D in (1, 8):
        out[f"eigh_{D}"] = index_counts(D, "eigh")
        out[f"eig_{D}"] = eig_counts(D)
    np.savez(sys.argv[1], **out)
""")


# ---------------------------------------------------------------------------------------------
# 1, 2 and 8 devices against this process's single device


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    path = tmp_path_factory.mktemp("dev") / "dev.npz"
    run_on_devices("import jax; jax.config.update('jax_enable_x64', True)\n" + DEVICE_SCRIPT, str(path))
    return dict(np.load(path))


@pytest.fixture(scope="module")
def one_device():
    assert len(jax.devices()) == 1
    ns = {}
    exec(compile(COMMON, "common", "exec"), ns)  # noqa: S102 - the same workload source as the subprocess
    return ns


# slow (~35 s idle: a fresh 8-device process compiles every program for 1, 2 and 8 devices); run by .ci/run
# as a claim test (README: bit-identical for 1, 2 and 8 devices). The default suite keeps the cheaper
# 8-device check of the streamed counts (tests/test_rmt.py::test_streamed_counts_bit_identical_on_8_devices).
@pytest.mark.slow
@pytest.mark.parametrize("name,method", [("ldl", "ldl"), ("eigh", "eigh")])
def test_index_counts_bit_identical_for_1_2_8_devices(eight_devices, one_device, name, method):
    ref = one_device["index_counts"](None, method)
    assert ref.sum() == 3000 and ref.dtype == np.int64
    for d in (1, 2, 8) if name == "ldl" else (1, 8):
        assert np.array_equal(eight_devices[f"{name}_{d}"], ref), (name, d)


@pytest.mark.slow  # shares the 8-device process above
def test_eigenvalue_counts_bit_identical_for_1_8_devices(eight_devices, one_device):
    ref = one_device["eig_counts"](None)
    # against the same matrices (matrix i from fold_in(KEY, i), rmt.goe) diagonalised by numpy in float64:
    # equal but for eigenvalues within float32 rounding of a bin edge (at most 2 of the 4000 moved)
    mats = np.asarray(one_device["rmt"].goe(one_device["KEY"], 4, batch_shape=(1000,), dtype=jnp.float32))
    exact = np.histogram(np.linalg.eigvalsh(mats.astype(np.float64)), one_device["EDGES"])[0]
    assert np.abs(ref - exact).sum() <= 2, (ref, exact)
    for d in (1, 8):
        assert np.array_equal(eight_devices[f"eig_{d}"], ref), d


@pytest.mark.slow  # its 8-device process (28 s) is shared with the slow tests above; a claim test in .ci/run
def test_slq_bit_identical_for_1_2_8_devices(eight_devices, one_device):
    ref = np.concatenate([x.reshape(-1).astype(np.float64) for x in one_device["slq_goe"](None)])
    for d in (1, 2, 8):
        assert np.array_equal(eight_devices[f"slq_{d}"], ref), d


def test_spectrum_experiment_bit_identical_for_1_2_8_devices(eight_devices, one_device):
    ref = one_device["spectrum_mlp"](None)
    for d in (1, 2, 8):
        got = eight_devices[f"mlp_{d}"]
        assert got[-1, 2] == d  # the run reports its device count
        assert np.array_equal(got[:-1], ref[:-1]) and np.array_equal(got[-1, :2], ref[-1, :2]), d


def test_slq_on_a_mesh_is_the_single_device_program(one_device):
    """On one device, slq over a mesh computes what jax.lax.map(one, probes, batch_size=3) computes (the
    program before probes were sharded), bit for bit: the single-device numbers did not change."""
    key, n = one_device["KEY"], one_device["N_MAT"]

    def one(a, i):
        k = jax.random.fold_in(key, i)
        v0 = probe_vector(jax.random.fold_in(k, 0), n, dtype=jnp.float32)
        res = lanczos(lambda v: a @ v, v0, 12, key=jax.random.fold_in(k, 1))
        return (*tridiagonal_quadrature(res.alpha, res.beta, res.residual), res.breakdowns)

    ref = jax.jit(lambda a: jax.lax.map(lambda i: one(a, i), jnp.arange(11, dtype=jnp.uint32), batch_size=3))(
        jnp.asarray(one_device["MAT"])
    )
    for x, y in zip(one_device["slq_goe"](None), ref):
        assert np.array_equal(x, np.asarray(y))


# ---------------------------------------------------------------------------------------------
# CLI: --devices and --platform


RMT_ARGS = ["rmt", "--dims", "3", "--samples", "500", "--spectrum-dims", "none", "--rare", "none", "--no-plots"]
SPEC_ARGS = ["spectrum", "--model", "goe", "--dim", "20", "--probes", "4", "--lanczos-steps", "5", "--no-plots"]


@pytest.mark.parametrize("args", [RMT_ARGS, SPEC_ARGS], ids=["rmt", "spectrum"])
@pytest.mark.parametrize(
    "devices,message",
    [("0", "--devices must be an integer >= 1, got 0"), ("64", "--devices 64: 64 devices requested but only")],
)
def test_bad_device_count_is_one_line_exit_2(tmp_path, args, devices, message):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [*args, "--devices", devices, "--out", str(out)])
    lines = stderr_of(res).strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith(f"Error: {message}"), stderr_of(res)
    assert not out.exists()


@pytest.mark.parametrize("args", [RMT_ARGS, SPEC_ARGS], ids=["rmt", "spectrum"])
def test_unknown_platform_is_one_line_exit_2(tmp_path, args):
    res = CliRunner().invoke(app, [*args, "--platform", "metal", "--out", str(tmp_path / "out")])
    lines = stderr_of(res).strip().splitlines()
    assert res.exit_code == 2 and lines == ["Error: --platform: unknown value 'metal'; valid: cpu, gpu, tpu"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [RMT_ARGS, SPEC_ARGS], ids=["rmt", "spectrum"])
def test_missing_tpu_backend_is_one_line_exit_2(tmp_path, args):
    """In a fresh process (--platform is applied before JAX initialises its backends)."""
    if any(d.platform == "tpu" for d in jax.devices()):  # pragma: no cover - a machine with a TPU
        pytest.skip("this machine has a TPU")
    assert_missing_backend_fails(args, tmp_path / "out")


def _csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("seconds", None)
    return rows


@pytest.mark.slow  # ~15 s: a fresh process splits the CPU into 2 devices and compiles the runs
def test_cli_two_cpu_devices_write_the_same_csv(tmp_path):
    """`--devices 2` in a fresh process (the CPU split into 2 devices) against this process's 1 device."""
    rmt_args = [
        "rmt",
        "--dims",
        "4",
        "--samples",
        "3000",
        "--shift",
        "0,0.5",
        "--rare",
        "none",
        "--spectrum-dims",
        "4",
        "--spectrum-samples",
        "300",
        "--seed",
        "3",
        "--no-plots",
    ]
    spec_args = [*SPEC_ARGS, "--probe-batch", "1", "--seed", "3"]
    for args, files in (
        (rmt_args, ("rmt.csv", "rmt_index_hist.csv", "rmt_spectrum.csv")),
        (spec_args, ("density.csv", "ritz.csv")),
    ):
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
        for name in files:
            assert _csv(tmp_path / "two" / name) == _csv(tmp_path / "one" / name), name


@pytest.mark.slow  # ~20 s: two fresh JAX processes meet through jax.distributed, then a single-process run
def test_rmt_two_processes_equal_one(tmp_path):
    args = [
        "rmt",
        "--dims",
        "3,5",
        "--samples",
        "2000",
        "--rare",
        "none",
        "--spectrum-dims",
        "3",
        "--spectrum-samples",
        "200",
        "--seed",
        "5",
        "--no-plots",
    ]
    p0, single = run_two_processes_and_one(args, tmp_path, silent="matrices/s")
    for name in ("rmt.csv", "rmt_index_hist.csv", "rmt_spectrum.csv"):
        assert _csv(p0 / name) == _csv(single / name), name


@pytest.mark.slow  # two fresh JAX processes meet through jax.distributed, then a single-process run (~30 s CPU)
def test_spectrum_two_processes_equal_one(tmp_path):
    """`hdsim spectrum --coordinator ...` (MLP on digits, SLQ and counts probes one per batch, split over the
    two processes' devices) writes byte-for-byte the tables of a single-process run; only process 0 writes."""
    args = [
        "spectrum",
        "--model",
        "mlp",
        "--data",
        "digits",
        "--width",
        "4",
        "--depth",
        "1",
        "--num-samples",
        "64",
        "--probes",
        "4",
        "--lanczos-steps",
        "10",
        "--probe-batch",
        "1",
        "--eps",
        "0.01,0.1",
        "--eps-rel",
        "--degree",
        "100",
        "--count-probes",
        "4",
        "--seed",
        "3",
        "--no-plots",
    ]
    p0, single = run_two_processes_and_one(args, tmp_path, silent="SLQ")
    for name in ("density.csv", "ritz.csv", "counts.csv", "exact_eigenvalues.csv"):
        assert (p0 / name).read_bytes() == (single / name).read_bytes(), name
