"""Scale-out of the distance kernels (issue 6): the bit-packed Rademacher stream, bit-identical results
for 1, 2, 3 and 8 devices, a two-process run equal to the single-process one, large-d distances
against theory, and the backend / device / process options of `hdsim distances`.

Multi-device runs use a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8 (the
device count is fixed when JAX starts); the two-process run launches two `hdsim distances` processes
on 127.0.0.1 that meet through jax.distributed (gloo CPU collectives).
"""

import math
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sim.devices import (
    AXIS,
    block_size,
    cyclic_blocks,
    make_mesh,
    ordered_reduce,
    ordered_reduce_blocks,
    parse_coordinator,
)
from sim.distances import default_chunk, pairwise_distances, pairwise_matrices
from sim.vectors import TILE, Gaussian, Rademacher, sample, sign_words
from tests.processes import ROOT, TIMEOUT, fresh_env, run_on_devices, run_two_processes_and_one

KEY = jax.random.key(20261124)
ALL = ("euclidean", "sqeuclidean", "cityblock", "cosine", "chebyshev")


# ---------------------------------------------------------------------------------------------
# the Rademacher stream: one definition, packed or not


def test_rademacher_coordinates_are_the_bits_of_sign_words():
    """sample() gives coordinate c of tile t of point i as bit c of sign_words(fold_in(fold_in(key, i), t))."""
    d = 2 * TILE + 100
    x = np.asarray(sample(KEY, Rademacher(), 2, d))
    for i in range(2):
        for t in range(3):
            words = np.asarray(sign_words(jax.random.fold_in(jax.random.fold_in(KEY, i), t), TILE // 32))
            bits = np.unpackbits(words.view(np.uint8), bitorder="little")
            want = (1 - 2 * bits.astype(np.int64))[: min(TILE, d - t * TILE)]
            assert np.array_equal(x[i, t * TILE : t * TILE + want.size], want), (i, t)


def test_sign_words_are_the_uint64_threefry_bits():
    """The words are the little-endian halves of jax.random.bits(key, (m,), uint64) (x64 is on in tests)."""
    k = jax.random.fold_in(KEY, 7)
    b = np.asarray(jax.random.bits(k, (64,), jnp.uint64))
    assert np.array_equal(np.asarray(sign_words(k, 128)), b.view(np.uint32))
    assert abs(np.unpackbits(b.view(np.uint8)).mean() - 0.5) < 4.5 * 0.5 / math.sqrt(64 * 64)


@pytest.mark.parametrize("d", [1, 31, 33, 100, TILE - 1])
def test_short_rademacher_tiles_are_prefixes_of_full_tiles(d):
    """tile_width(d) < TILE draws only a prefix of the tile: the same coordinates as at d = TILE."""
    full = np.asarray(sample(KEY, Rademacher(), 3, TILE))
    assert np.array_equal(np.asarray(sample(KEY, Rademacher(), 3, d)), full[:, :d])


@pytest.mark.parametrize("d,metrics", [(10, ("sqeuclidean", "chebyshev")), (3 * TILE + 77, ALL[:4])])
def test_packed_path_equals_float_tiles_bit_for_bit(d, metrics):
    """popcount(xor) on the packed words gives exactly the float-tile Gram/abs/max results."""
    packed = pairwise_matrices(KEY, Rademacher(), 7, d, metrics, packed=True)
    floats = pairwise_matrices(KEY, Rademacher(), 7, d, metrics, packed=False, chunk=TILE)
    for name, a, b in zip(metrics, packed, floats):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
    x = np.asarray(sample(KEY, Rademacher(), 7, d), dtype=np.int64)
    h = (x[:, None, :] != x[None, :, :]).sum(-1)
    assert np.array_equal(np.asarray(packed[metrics.index("sqeuclidean")]), 4.0 * h)  # 4 x (differing signs)


def test_packed_path_is_chunk_invariant():
    d = 9 * TILE + 5
    a = pairwise_distances(KEY, Rademacher(), 5, d, metric="cityblock", chunk=TILE)
    b = pairwise_distances(KEY, Rademacher(), 5, d, metric="cityblock", chunk=8 * TILE)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_packed_needs_rademacher():
    with pytest.raises(ValueError, match="packed=True needs Rademacher"):
        pairwise_distances(KEY, Gaussian(), 3, 10, packed=True)


# ---------------------------------------------------------------------------------------------
# large d against theory (docs/theory.md#distances-moments: Rademacher S = |x - y|^2 has mean 2d, variance 4d)


def test_rademacher_beyond_int32_dimension():
    """d = 2**31 + 12345 (tile indices and masks past int32 coordinates): S is 4 x an integer count
    and lies within 4.5 standard deviations (2 sqrt(d)) of 2d."""
    d = 2**31 + 12345
    s = float(pairwise_distances(KEY, Rademacher(), 2, d, metric="sqeuclidean")[0, 1])
    assert s % 4 == 0
    assert abs(s - 2 * d) <= 4.5 * 2 * math.sqrt(d), (s - 2 * d) / (2 * math.sqrt(d))


def test_rademacher_large_d_mean_and_spread():
    """32 points at d = 2**24 + 12345: the 16 disjoint pairs are independent draws of S. Their mean is
    within 4.5 SE (SE = 2 sqrt(d) / 4) of 2d, and the sample variance of z = (S - 2d) / (2 sqrt(d))
    (chi^2_15 / 15 for normal z) is in [0.1, 3.5]: P(outside) < 1e-5."""
    d = 2**24 + 12345
    s = np.asarray(pairwise_distances(KEY, Rademacher(), 32, d, metric="sqeuclidean"))
    pairs = s[np.arange(0, 32, 2), np.arange(1, 32, 2)]
    z = (pairs - 2 * d) / (2 * math.sqrt(d))
    assert abs(z.mean()) <= 4.5 / math.sqrt(z.size), z.mean()
    assert 0.1 <= z.var(ddof=1) <= 3.5, z.var(ddof=1)
    cos = 1 - s / (2 * d)  # for +-1 vectors cos = 1 - S / (2d); Var cos = 1/d (docs/theory.md#angles)
    assert np.all(np.abs(cos[np.triu_indices(32, 1)]) <= 5.5 / math.sqrt(d))


# ---------------------------------------------------------------------------------------------
# devices: 1, 2, 3 and 8 forced host devices in a subprocess, against this process's single device

DEVICE_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    jax.config.update("jax_enable_x64", True)
    from sim.distances import pairwise_distances, pairwise_matrices
    from sim.vectors import TILE, Gaussian, Rademacher
    assert len(jax.devices()) == 8, jax.devices()
    key = jax.random.key(20261124)
    out = {}
    for D in (1, 2, 3, 8):  # Gaussian: float tiles in a tree over 12 chunks; 3: a non-power-of-two mesh
        g = pairwise_matrices(key, Gaussian(), 6, 11 * TILE + 5, ("euclidean", "cityblock"), chunk=TILE, devices=D)
        for name, m in zip(("g_euc", "g_city"), g):
            assert len(m.sharding.device_set) == D
            out[f"{name}_{D}"] = np.asarray(m)
    for D in (1, 2, 3):  # 12 points: the Gram path, tile by tile, blocks dealt out in rounds
        out[f"gram_{D}"] = np.asarray(pairwise_distances(key, Gaussian(), 12, 11 * TILE + 5, devices=D))
    for D in (1, 8):  # Rademacher: the packed integer path
        r = pairwise_matrices(key, Rademacher(), 6, 11 * TILE + 5, ("euclidean", "cosine"), chunk=TILE, devices=D)
        for name, m in zip(("r_euc", "r_cos"), r):
            out[f"{name}_{D}"] = np.asarray(m)
    np.savez(sys.argv[1], **out)
""")


def test_bit_identical_for_1_2_3_8_devices(tmp_path):
    path = tmp_path / "dev.npz"
    run_on_devices(DEVICE_SCRIPT, str(path))
    got = np.load(path)
    g = pairwise_matrices(KEY, Gaussian(), 6, 11 * TILE + 5, ("euclidean", "cityblock"), chunk=TILE)
    rad = pairwise_matrices(KEY, Rademacher(), 6, 11 * TILE + 5, ("euclidean", "cosine"), chunk=TILE)
    single = dict(zip(("g_euc", "g_city", "r_euc", "r_cos"), (np.asarray(m) for m in g + rad)))
    single["gram"] = np.asarray(pairwise_distances(KEY, Gaussian(), 12, 11 * TILE + 5))
    assert len(jax.devices()) == 1
    for name, ref in single.items():
        for n_dev in (1, 2, 3, 8) if name.startswith("g_") else (1, 2, 3) if name == "gram" else (1, 8):
            assert np.array_equal(got[f"{name}_{n_dev}"], ref), (name, n_dev)


# ---------------------------------------------------------------------------------------------
# processes: two `hdsim distances` processes on 127.0.0.1 against one


CLI_ARGS = [
    "distances",
    "--dist",
    "gaussian,rademacher",
    "--metric",
    "euclidean",
    "--dims",
    "20000",
    "--points",
    "5",
    "--chunk",
    "4096",
    "--seed",
    "11",
    "--no-plots",
]


@pytest.mark.slow  # ~25 s: two fresh JAX processes that compile the sweep, then the single-process run
def test_two_processes_equal_one(tmp_path):
    p0, single = run_two_processes_and_one(CLI_ARGS, tmp_path, silent="coordinates/s")
    for name in ("distances.csv", "distances_angles.csv"):
        assert (p0 / name).read_bytes() == (single / name).read_bytes(), name


# ---------------------------------------------------------------------------------------------
# options


def test_missing_gpu_backend_is_one_line_exit_2(tmp_path):
    """In a fresh process (--platform is applied before JAX initialises its backends)."""
    out = tmp_path / "out"
    r = subprocess.run(
        [
            sys.executable,
            "cli.py",
            "distances",
            "--platform",
            "gpu",
            "--dims",
            "10",
            "--points",
            "4",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=fresh_env(),
    )
    if any(d.platform == "gpu" for d in jax.devices()):  # pragma: no cover - a machine with a GPU
        pytest.skip("this machine has a GPU")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --platform gpu: no gpu backend available"), r.stderr
    assert not out.exists()


def _shares(n_items, n_parts, rounds):
    """Items of each part when part k takes blocks k, k + n_parts, ... of cyclic_blocks' size."""
    b = cyclic_blocks(n_items, n_parts, rounds)
    return [sum(min(b, max(0, n_items - (r * n_parts + k) * b)) for r in range(rounds)) for k in range(n_parts)]


def test_cyclic_blocks_balance_the_devices():
    """Two Gaussian vectors of d = 10^10 are 76,294 chunks: one aligned block each split them 86% / 14%
    (65,536 and 10,758); eight rounds of blocks give 54% / 46%, and every item is taken exactly once."""
    k = default_chunk(2) // TILE  # tiles a chunk for two points (1 MB of float32 samples)
    n = math.ceil(math.ceil(10**10 / TILE) / k)
    assert (k, n) == (32, 76294)
    assert _shares(n, 2, 1) == [65536, 10758]
    for parts in (2, 3, 8):
        for items in (n, 12, 1000, 1025, 2**20 + 1):
            got = _shares(items, parts, 8)
            assert sum(got) == items
            assert max(got) - min(got) <= cyclic_blocks(items, parts, 8), (items, parts, got)
    assert _shares(n, 2, 8) == [40960, 35334]


def test_block_size_and_coordinator_parsing():
    assert [block_size(n, 8) for n in (0, 1, 8, 9, 17, 100)] == [1, 1, 1, 2, 4, 16]
    assert block_size(12, 3) == 4 and block_size(12, 1) == 16
    assert parse_coordinator("10.0.0.1:1234") == ("10.0.0.1", 1234)
    for bad in ("host", ":80", "h:0", "h:70000", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_coordinator(bad)


def test_ordered_reduce_on_one_device_is_the_value_without_an_all_gather():
    """One device: the tree of one value is the value itself, so no all-gather is compiled (the training
    loop reduces every step); the blocked form sums the rounds in the same tree as ever."""
    mesh = make_mesh(1)
    x = jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4) / 7

    def run(fn):
        f = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=jax.P(), out_specs=jax.P()))
        return f(x), f.lower(x).as_text()

    y, text = run(lambda a: ordered_reduce(a, AXIS))
    assert np.array_equal(np.asarray(y), np.asarray(x)) and "all_gather" not in text and "all-gather" not in text
    y, text = run(lambda a: ordered_reduce_blocks(a, AXIS))
    # rounds 0, 1, 2 padded to 4 with zeros: (x0 + x1) + (x2 + 0)
    assert np.array_equal(np.asarray(y), np.asarray((x[0] + x[1]) + x[2])) and "all_gather" not in text
