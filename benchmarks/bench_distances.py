"""Benchmark: Euclidean distances of Gaussian points, hdsim against the numpy Gram a BLAS user writes.

Workload (issue 16): n Gaussian points in dimension d (n = 1024 by default, also 256 and 4096 with
``--points``; d = 10^2 .. 10^5), Euclidean distance matrix, then the pair statistics mean, std, min
and max over the n(n-1)/2 pairs.

  * hdsim: ``sim.pairwise_distances`` (vectors streamed in tiles keyed by (point, tile), one Gram
    product per tile accumulated in float64 in a fixed tree) then ``sim.pair_stats``.
  * baseline: ``np.random.default_rng(seed).standard_normal((n, d), np.float32)``, one ``x @ x.T``
    (BLAS; numpy calls syrk for a product with its own transpose), squared norms from its diagonal,
    float64 post-processing (squared distances, sqrt, statistics).

Both sides run in the same fresh worker process (``benchmarks/_report.py``: CPU affinity and every
thread pool set before numpy or JAX load; ``--threads 1,all`` by default), hdsim's first call (tracing
and XLA compilation included, as a CLI user pays it) is printed beside its warm time, and the BLAS
configuration is printed. Ratios are baseline time / hdsim time (> 1: hdsim faster).

The "limit" line: this machine's measured random-number rate (numpy PCG64 float32 Gaussians on one
core, times the worker's cores, the rate a perfectly parallel generator as cheap as numpy's would
reach) and float32 GEMM rate (numpy ``a @ b``, 2 m n k flops), the time they imply for the workload
(n d Gaussians plus the n^2 d flops of a symmetric rank-d update, overlapped: the larger of the two),
and hdsim's fraction of that limit.

Agreement: the baseline draws other random numbers, so the two are also compared on the *same*
vectors (hdsim's ``sim.sample`` through the numpy Gram, float64): max relative difference of the
distances, goal below 1e-5 (not timed; skipped above 4e8 coordinates).

Usage:  python benchmarks/bench_distances.py [--quick] [--points 256,1024,4096] [--dims 100,1000,10000,100000]
        [--threads 1,all] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402


def _numpy_stats(m):
    import numpy as np

    v = m[np.triu_indices(m.shape[0], 1)]
    return np.array([v.mean(), v.std(), v.min(), v.max()])


def numpy_gram(rng, n, d):
    """The baseline: float32 samples, one GEMM (syrk), float64 post-processing."""
    import numpy as np

    x = rng.standard_normal((n, d), dtype=np.float32)
    return _numpy_stats(_distances_from_gram(x @ x.T))


def _distances_from_gram(g32):
    import numpy as np

    g = g32.astype(np.float64)
    sq = np.diagonal(g)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0))


def machine_limits(threads: int) -> dict:
    """Measured rates: numpy float32 Gaussians per second on one core, float32 GEMM flop/s (all threads)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rng.standard_normal(1 << 20, dtype=np.float32)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        rng.standard_normal(1 << 24, dtype=np.float32)
        best = min(best, time.perf_counter() - t)
    gauss_per_s = (1 << 24) / best
    a = rng.standard_normal((1024, 8192), dtype=np.float32)
    b = rng.standard_normal((8192, 1024), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return {
        "gauss_per_s_one_core": gauss_per_s,
        "gauss_per_s": gauss_per_s * threads,
        "gemm_flops": 2 * 1024 * 8192 * 1024 / best,
    }


def limit_seconds(limits: dict, n: int, d: int) -> float:
    """The time the measured rates imply: n d Gaussians and n^2 d flops (syrk), perfectly overlapped."""
    return max(n * d / limits["gauss_per_s"], n * n * d / limits["gemm_flops"])


def worker(args) -> None:
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from sim import Gaussian, pair_stats, pairwise_distances, sample

    threads = args.worker_threads or len(_report.available_cpus())
    key = jax.random.key(0)
    limits = machine_limits(threads)
    rows = []
    for n in args.points:
        for d in args.dims:
            k = jax.random.fold_in(key, d)

            def hdsim_run():
                s = pair_stats(pairwise_distances(k, Gaussian(), n, d))
                return np.array(jax.device_get([s.mean, s.std, s.min, s.max]))

            t_h, st_h = _report.timed(hdsim_run, args.repeat)
            rng = np.random.default_rng(d)
            t_b, st_b = _report.timed(lambda: numpy_gram(rng, n, d), args.repeat)
            agree = float("nan")
            if n * d <= 4 * 10**8:  # the same vectors through the numpy Gram (float64), not timed
                x = np.asarray(sample(k, Gaussian(), n, d), dtype=np.float64)
                ref = _distances_from_gram(x @ x.T)
                got = np.asarray(pairwise_distances(k, Gaussian(), n, d))
                iu = np.triu_indices(n, 1)
                agree = float(np.max(np.abs(got[iu] - ref[iu]) / ref[iu]))
                del x, ref, got
            rows.append(
                {
                    "n": n,
                    "d": d,
                    "hdsim": t_h,
                    "numpy": t_b,
                    "limit": limit_seconds(limits, n, d),
                    "agree": agree,
                    "rel_std": [float(st_h[1] / st_h[0]), float(st_b[1] / st_b[0])],
                }
            )
            r = rows[-1]
            print(
                f"n={n:>5} d={d:>7}: hdsim first {t_h['first']:.3f} s warm {t_h['warm']:.3f} s, numpy "
                f"{t_b['warm']:.3f} s, limit {r['limit']:.3f} s, same-vector rel diff {agree:.1e}",
                flush=True,
            )
    _report.emit({"env": _report.environment(), "limits": limits, "rows": rows})


def report(run: dict) -> None:
    lim = run["limits"]
    print(
        f"\n{run['threads']} thread(s), CPUs {run['cpus']}: limit rates {lim['gauss_per_s'] / 1e6:.0f} M Gaussians/s "
        f"({lim['gauss_per_s_one_core'] / 1e6:.0f} M/s numpy PCG64 on one core x {run['threads']}), "
        f"float32 GEMM {lim['gemm_flops'] / 1e9:.1f} GFLOP/s"
    )
    print(
        f"{'n':>5} {'d':>7} {'hdsim first':>12} {'hdsim warm':>11} {'numpy':>8} {'limit':>8} {'warm ratio':>11} "
        f"{'first ratio':>12} {'of limit':>9} {'agree':>8}"
    )
    for n in sorted({r["n"] for r in run["rows"]}):
        rows = [r for r in run["rows"] if r["n"] == n]
        for r in rows:
            h, b = r["hdsim"], r["numpy"]
            print(
                f"{n:>5} {r['d']:>7} {h['first']:>12.3f} {h['warm']:>11.3f} {b['warm']:>8.3f} {r['limit']:>8.3f} "
                f"{b['warm'] / h['warm']:>10.2f}x {b['first'] / h['first']:>11.2f}x "
                f"{r['limit'] / h['warm']:>8.0%} {r['agree']:>8.1e}"
            )
        first = sum(r["hdsim"]["first"] for r in rows)
        warm = sum(r["hdsim"]["warm"] for r in rows)
        base = sum(r["numpy"]["warm"] for r in rows)
        base_first = sum(r["numpy"]["first"] for r in rows)
        limit = sum(r["limit"] for r in rows)
        worst = max(r["agree"] for r in rows)
        print(
            f"n={n} sweep total: hdsim first {first:.2f} s, warm {warm:.2f} s; numpy warm {base:.2f} s "
            f"(first {base_first:.2f} s); limit {limit:.2f} s"
        )
        print(
            f"  speed-up warm {_report.format_speedup(base / warm)} (goal >= 1.5x), compile-inclusive "
            f"{_report.format_speedup(base_first / first)} (goal >= 1x); hdsim at {limit / warm:.0%} of the "
            f"limit; same-vector agreement {worst:.1e} ({'OK' if worst < 1e-5 else 'FAIL'}: goal < 1e-5)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", default="1024", help="comma list of point counts (default 1024)")
    ap.add_argument("--dims", default="100,1000,10000,100000")
    ap.add_argument("--quick", action="store_true", help="256 points, d up to 10^4, one warm run")
    _report.add_arguments(ap)
    a = ap.parse_args()
    a.points = [int(v) for v in a.points.split(",")]
    a.dims = [int(float(v)) for v in a.dims.split(",")]
    if a.quick:
        a.points, a.dims, a.repeat = [256], [d for d in a.dims if d <= 10_000], 1
    if a.worker:
        return worker(a)
    runs = {t: _report.run_worker(_report.worker_argv(__file__), t) for t in _report.thread_counts(a.threads)}
    print(_report.format_environment(next(iter(runs.values()))["env"]))
    print(_report.format_load())
    for run in runs.values():
        report(run)


if __name__ == "__main__":
    main()
