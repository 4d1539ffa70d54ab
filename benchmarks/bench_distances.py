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

The "limit" line: this machine's measured random-number rate (float32 Gaussians per CPU second of
numpy's PCG64 and of hdsim's own stream, the faster times the worker's cores: a perfectly parallel
generator as cheap as the best here) and float32 GEMM rate (numpy ``a @ b``, 2 m n k flops per CPU
second times the cores), the time they imply for the workload on idle cores (n d Gaussians plus the
n^2 d flops of a symmetric rank-d update, overlapped: the larger of the two), and hdsim's fraction of
that limit (against hdsim's warm CPU time / cores, so that other jobs on the cores do not count).

Times: wall (first call and shortest warm call) and CPU seconds of all the worker's threads, printed
as ratios too; under load quote the CPU ratios. hdsim's first call is **cold-cache**: the worker
starts with JAX's persistent compilation cache off, so it compiles every program, as a CLI user's
first run on a fresh machine does (the CLI caches programs in ~/.cache/hdsim/jax; ``--compile-cache
DIR`` turns the cache on in DIR, and a second run then shows what a returning CLI user pays).

Agreement: the baseline draws other random numbers, so the two are also compared on the *same*
vectors (hdsim's ``sim.sample`` through the numpy Gram, float64): max relative difference of the
distances, goal below 1e-5 (not timed; skipped above 4e8 coordinates).

Usage:  python benchmarks/bench_distances.py [--quick] [--points 256,1024,4096] [--dims 100,1000,10000,100000]
        [--threads 1,all] [--repeat 3] [--compile-cache DIR]
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
    """Measured rates per CPU second (so that other jobs on the cores matter less): float32 Gaussians of
    numpy's PCG64 and of hdsim's stream (``sim.vectors.standard_normal``, in blocks that stay in cache,
    compiled with the kernels' CPU options),
    and float32 GEMM flops (numpy ``a @ b`` on the worker's threads). The limit takes the faster
    generator on every core."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sim.vectors import kernel_jit, standard_normal

    def cpu_best(fn):
        fn()
        best = float("inf")
        for _ in range(3):
            c = time.process_time()
            fn()
            best = min(best, time.process_time() - c)
        return best

    rng = np.random.default_rng(0)
    numpy_rate = (1 << 24) / cpu_best(lambda: [rng.standard_normal(1 << 18, dtype=np.float32) for _ in range(64)])
    block = 1 << 18

    @kernel_jit  # compiled as the distance kernels are (sim.vectors.CPU_COMPILER_OPTIONS)
    def gen(key):
        def body(i, acc):
            return acc + standard_normal(jax.random.fold_in(key, i), (block,), jnp.float32)

        return jax.lax.fori_loop(0, 64, body, jnp.zeros((block,), jnp.float32))

    key = jax.random.key(0)
    hdsim_rate = (64 * block) / cpu_best(lambda: gen(key).block_until_ready())
    a = rng.standard_normal((1024, 8192), dtype=np.float32)
    b = rng.standard_normal((8192, 1024), dtype=np.float32)
    gemm = 2 * 1024 * 8192 * 1024 / cpu_best(lambda: a @ b)  # flops per CPU second
    return {
        "gauss_per_cpu_s_numpy": numpy_rate,
        "gauss_per_cpu_s_hdsim": hdsim_rate,
        "gauss_per_s": max(numpy_rate, hdsim_rate) * threads,
        "gemm_flops_per_cpu_s": gemm,
        "gemm_flops": gemm * threads,
    }


def limit_seconds(limits: dict, n: int, d: int) -> float:
    """The time the measured rates imply: n d Gaussians and n^2 d flops (syrk), perfectly overlapped."""
    return max(n * d / limits["gauss_per_s"], n * n * d / limits["gemm_flops"])


def timed(fn, repeat: int):
    """``_report.timed`` with CPU times beside the wall times: ``first_cpu`` and ``warm_cpu`` (shortest
    of the warm calls), CPU seconds of all this process's threads, which other jobs sharing the cores
    disturb far less than wall time."""
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    res = {"first": time.perf_counter() - t, "first_cpu": time.process_time() - c, "runs": [], "cpu_runs": []}
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        res["runs"].append(time.perf_counter() - t)
        res["cpu_runs"].append(time.process_time() - c)
    res["warm"], res["warm_cpu"] = min(res["runs"]), min(res["cpu_runs"])
    return res, out


def worker(args) -> None:
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    if args.compile_cache:  # as the CLI does: every program cached, however quick to compile
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
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

            t_h, st_h = timed(hdsim_run, args.repeat)
            rng = np.random.default_rng(d)
            t_b, st_b = timed(lambda: numpy_gram(rng, n, d), args.repeat)
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
        f"(per CPU second: numpy PCG64 {lim['gauss_per_cpu_s_numpy'] / 1e6:.0f} M, hdsim "
        f"{lim['gauss_per_cpu_s_hdsim'] / 1e6:.0f} M; the faster x {run['threads']} cores), float32 GEMM "
        f"{lim['gemm_flops'] / 1e9:.1f} GFLOP/s ({lim['gemm_flops_per_cpu_s'] / 1e9:.1f} per CPU second x "
        f"{run['threads']}); limit times are for idle cores, compared with hdsim's warm CPU time / cores"
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
                f"{r['limit'] / (h['warm_cpu'] / run['threads']):>8.0%} {r['agree']:>8.1e}"
            )
        cpu = {
            k: (sum(r["numpy"][k] for r in rows), sum(r["hdsim"][k] for r in rows)) for k in ("warm_cpu", "first_cpu")
        }
        print(
            "  CPU seconds (all threads; steadier than wall under load): warm "
            + ", ".join(f"d={r['d']:g} {r['numpy']['warm_cpu'] / r['hdsim']['warm_cpu']:.2f}x" for r in rows)
            + f"; sweep warm {_report.format_speedup(cpu['warm_cpu'][0] / cpu['warm_cpu'][1])}, compile-inclusive "
            f"{_report.format_speedup(cpu['first_cpu'][0] / cpu['first_cpu'][1])} "
            f"(hdsim first calls {cpu['first_cpu'][1]:.1f} CPU s, warm {cpu['warm_cpu'][1]:.2f})"
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
            f"{_report.format_speedup(base_first / first)} (goal >= 1x); hdsim at {limit / (cpu['warm_cpu'][1] / run['threads']):.0%} of the "
            f"limit; same-vector agreement {worst:.1e} ({'OK' if worst < 1e-5 else 'FAIL'}: goal < 1e-5)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", default="1024", help="comma list of point counts (default 1024)")
    ap.add_argument("--dims", default="100,1000,10000,100000")
    ap.add_argument("--quick", action="store_true", help="256 points, d up to 10^4, one warm run")
    ap.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR",
        help="JAX's persistent compilation cache in DIR, as the CLI keeps it (default: off, so hdsim's first "
        "calls compile from scratch; run twice with the same DIR to see a CLI user's second run)",
    )
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
