"""Benchmark: streaming the squared distance between two huge random vectors, hdsim against numpy.

Workload (issue 6, "GPT-3-sized vectors"): S = |x - y|^2 for two random vectors of dimension d,
never holding a vector: coordinates are generated a chunk at a time and the squared differences
accumulated.

  * hdsim: ``sim.pairwise_distances(key, law, 2, d, metric="sqeuclidean")``: counter-based Threefry
    tiles, float32 draws and a float64 pairwise tree (gaussian); bit-packed words and popcount(xor),
    32 coordinates per uint32, integer-exact (rademacher).
  * numpy: what a user writes with ``np.random.default_rng``: a loop over chunks of 2^22 coordinates.
    gaussian: ``standard_normal(float32)`` for x and y, ``acc += float64 sum of (x - y)^2``.
    rademacher: the same with +-1 int8 (``integers(0, 2) * 2 - 1``), and, as the strong baseline,
    packed random uint64 words with ``np.bitwise_count(x ^ y)`` (numpy >= 2).

Throughput is coordinates generated per second (2 d per run), after one warm-up call (hdsim's compile
time is printed apart). Agreement: different generators give different numbers, so each S is
checked against theory (mean 2d; std sqrt(8d) gaussian, 2 sqrt(d) rademacher: docs/theory.md#distances-moments),
and hdsim is checked exactly against numpy on hdsim's own ``sim.sample`` vectors at d = 10^5.

Usage:  python benchmarks/bench_stream.py [--quick] [--gaussian-dim 1e8] [--rademacher-dim 1e10] [--devices N]
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from sim import Gaussian, Rademacher, pairwise_distances, sample  # noqa: E402

CHUNK = 1 << 22


def numpy_gaussian(rng, d):
    acc = 0.0
    for start in range(0, d, CHUNK):
        c = min(CHUNK, d - start)
        diff = rng.standard_normal(c, dtype=np.float32) - rng.standard_normal(c, dtype=np.float32)
        acc += float(np.sum(np.square(diff, dtype=np.float64)))
    return acc


def numpy_rademacher_int8(rng, d):
    acc = 0
    for start in range(0, d, CHUNK):
        c = min(CHUNK, d - start)
        x = rng.integers(0, 2, c, dtype=np.int8) * 2 - 1
        y = rng.integers(0, 2, c, dtype=np.int8) * 2 - 1
        acc += int(np.count_nonzero(x != y))
    return 4.0 * acc


def numpy_rademacher_packed(rng, d):
    acc = 0
    for start in range(0, d, CHUNK):
        c = min(CHUNK, d - start)
        w = -(-c // 64)
        x = rng.integers(0, 2**64 - 1, w, dtype=np.uint64, endpoint=True)
        y = rng.integers(0, 2**64 - 1, w, dtype=np.uint64, endpoint=True)
        z = x ^ y
        if c % 64:
            z[-1] &= np.uint64((1 << (c % 64)) - 1)
        acc += int(np.bitwise_count(z).sum(dtype=np.int64))
    return 4.0 * acc


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def hdsim_s(key, law, d, devices):
    return float(pairwise_distances(key, law, 2, d, metric="sqeuclidean", devices=devices)[0, 1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gaussian-dim", type=float, default=1e8)
    ap.add_argument("--rademacher-dim", type=float, default=1e10)
    ap.add_argument("--devices", type=int, default=None, help="hdsim devices (default: all)")
    ap.add_argument("--quick", action="store_true", help="d = 10^7 gaussian, 10^9 rademacher")
    a = ap.parse_args()
    dg, dr = (10**7, 10**9) if a.quick else (int(a.gaussian_dim), int(a.rademacher_dim))
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s)), "
        f"numpy {np.__version__}; 2 points, squared Euclidean distance, numpy chunk {CHUNK}"
    )

    # exact agreement on the same vectors (hdsim's own samples)
    key = jax.random.key(0)
    for law in (Gaussian(), Rademacher()):
        x = np.asarray(sample(key, law, 2, 100_000), dtype=np.float64)
        ref = float(np.sum((x[0] - x[1]) ** 2))
        got = hdsim_s(key, law, 100_000, a.devices)
        rel = abs(got - ref) / ref
        print(f"same vectors, d=1e5, {law.name}: hdsim {got:.10g} numpy {ref:.10g} rel diff {rel:.1e}")
        assert rel <= (1e-6 if law.name == "gaussian" else 0.0), rel

    have_popcount = hasattr(np, "bitwise_count")
    print(f"{'law':<11} {'d':>9} {'impl':<22} {'seconds':>8} {'coords/s':>10} {'S/(2d)-1':>10} {'z':>6}")
    for law, d, sd, baselines in (
        (Gaussian(), dg, math.sqrt(8 * dg), [("numpy standard_normal", numpy_gaussian)]),
        (
            Rademacher(),
            dr,
            2 * math.sqrt(dr),
            [("numpy int8 +-1", numpy_rademacher_int8)]
            + ([("numpy uint64 popcount", numpy_rademacher_packed)] if have_popcount else []),
        ),
    ):
        t0 = time.perf_counter()
        hdsim_s(jax.random.key(1), law, d, a.devices)  # compile (same shapes as the timed call)
        compile_s = time.perf_counter() - t0
        s, t = timed(hdsim_s, jax.random.key(2), law, d, a.devices)
        rows = [("hdsim", s, t)]
        for name, fn in baselines:
            if name.startswith("numpy int8") and d > 2 * 10**9:
                continue  # too slow to be worth waiting for
            rng = np.random.default_rng(2)
            fn(rng, CHUNK)  # warm-up
            v, tb = timed(fn, rng, d)
            rows.append((name, v, tb))
        for name, v, tt in rows:
            z = (v - 2 * d) / sd
            print(
                f"{law.name:<11} {d:>9.3g} {name:<22} {tt:>8.2f} {2 * d / tt:>10.3g} {v / (2 * d) - 1:>+10.2e} {z:>+6.2f}"
            )
            assert abs(z) < 5, f"{name}: S is {z:.1f} standard deviations from 2d"
        for name, _, tb in rows[1:]:
            print(f"  speed ratio hdsim / {name}: {tb / t:.2f}x   (hdsim compile {compile_s:.1f} s, not timed)")


if __name__ == "__main__":
    main()
