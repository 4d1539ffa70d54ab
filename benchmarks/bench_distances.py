"""Benchmark: the distance-concentration sweep, hdsim against numpy + scipy written by hand.

Workload (issue 2): Gaussian coordinates, Euclidean distance, d = 10, 100, 1000, 10^4, 10^5 and
1024 points; per d, the pair statistics mean, std, rel_std, min, max and rel_contrast.

  * hdsim: ``sim.pairwise_distances`` (vectors streamed in tiles, Gram products accumulated in float64)
    then ``sim.pair_stats``.
  * baseline: what a user writes: ``np.random.default_rng(seed).standard_normal((n, d))``, then
    ``scipy.spatial.distance.pdist`` and numpy statistics.

Both are timed end to end (sampling included), in one process, after one warm-up call each (hdsim's
compile time is printed separately). Agreement: the baseline draws other random numbers, so the
numbers are also checked on the *same* vectors: pdist on hdsim's own ``sim.sample`` vectors against
hdsim's streamed matrix, max relative difference (goal: below 1e-5).

Usage:  python benchmarks/bench_distances.py [--quick] [--points 1024] [--dims 10,100,1000,10000,100000]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from scipy.spatial.distance import pdist

jax.config.update("jax_enable_x64", True)

from sim import Gaussian, pair_stats, pairwise_distances, sample  # noqa: E402


def hdsim_stats(key, n, d):
    m = pairwise_distances(key, Gaussian(), n, d)
    s = jax.device_get(pair_stats(m))
    return m, s


def numpy_stats(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)  # float32 as hdsim; pdist computes in float64
    v = pdist(x, "euclidean")
    mean, std = v.mean(), v.std()
    return mean, std, std / mean, v.min(), v.max(), (v.max() - v.min()) / v.min()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--dims", default="10,100,1000,10000,100000")
    ap.add_argument("--quick", action="store_true", help="256 points, d up to 10^4")
    a = ap.parse_args()
    n = 256 if a.quick else a.points
    dims = [int(float(v)) for v in a.dims.split(",")]
    if a.quick:
        dims = [d for d in dims if d <= 10_000]
    key = jax.random.key(0)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {n} points, gaussian, euclidean")

    t0 = time.perf_counter()
    for d in dims:  # warm-up: one compile per distinct tile width / level bucket
        jax.block_until_ready(hdsim_stats(key, n, d)[0])
    compile_s = time.perf_counter() - t0
    numpy_stats(np.random.default_rng(0), n, 10)

    print(f"{'d':>8} {'hdsim s':>9} {'numpy+scipy s':>14} {'ratio':>7} {'rel_std hdsim':>14} {'rel_std numpy':>14} "
          f"{'same-vector max rel diff':>25}")
    tot_h = tot_b = 0.0
    worst = 0.0
    for d in dims:
        t = time.perf_counter()
        m, s = hdsim_stats(jax.random.fold_in(key, d), n, d)
        th = time.perf_counter() - t
        rng = np.random.default_rng(d)
        t = time.perf_counter()
        base = numpy_stats(rng, n, d)
        tb = time.perf_counter() - t
        tot_h += th
        tot_b += tb
        # agreement on the same vectors (not timed): hdsim's vectors through scipy
        x = np.asarray(sample(jax.random.fold_in(key, d), Gaussian(), n, d), dtype=np.float64)
        ref = pdist(x, "euclidean")
        iu = np.triu_indices(n, 1)
        rel = float(np.max(np.abs(np.asarray(m)[iu] - ref) / ref))
        worst = max(worst, rel)
        print(f"{d:>8} {th:>9.3f} {tb:>14.3f} {tb / th:>7.1f} {float(s.rel_std):>14.6g} {base[2]:>14.6g} {rel:>25.2e}")
    print(f"total: hdsim {tot_h:.2f} s, numpy+scipy {tot_b:.2f} s, ratio {tot_b / tot_h:.1f}x "
          f"(hdsim compile {compile_s:.1f} s, excluded); same-vector agreement {worst:.1e} "
          f"({'OK' if worst < 1e-5 else 'FAIL'}: goal < 1e-5)")


if __name__ == "__main__":
    main()
