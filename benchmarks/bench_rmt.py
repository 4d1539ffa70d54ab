"""Benchmark: index counting of 10^5 GOE matrices at N = 8, 32, 128, hdsim (JAX) against numpy.

The same float32 matrices (hdsim's ``goe`` sampler, streamed in chunks) are counted by
  * hdsim ``rmt.index(h, method="ldl")``: signs of blocked LDL^T pivots (Sylvester inertia), jitted,
    elimination in float64 (float32 elimination lost a sign once in 3e4 matrices at N = 32);
  * hdsim ``rmt.index(h, method="eigh")``: ``jnp.linalg.eigvalsh`` (for reference);
  * numpy ``(np.linalg.eigvalsh(h) < 0).sum(-1)``, with OpenBLAS at its default thread count and with
    one thread (threadpoolctl; on a shared 2-core machine one thread is often faster). The baseline is
    the faster of the two.
Index histograms must agree exactly (mismatching matrices are counted and printed). Sampling time is
excluded from every timing; compile time is excluded (one warm-up chunk) and printed separately.

Usage:  python benchmarks/bench_rmt.py [--quick] [--samples N] [--dims 8,32,128]
Needs: threadpoolctl (pip install threadpoolctl) for the one-thread numpy baseline (skipped without it).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from sim import rmt

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None


def _numpy_index(h):
    return (np.linalg.eigvalsh(h) < 0).sum(-1)


def bench(n: int, samples: int, seed: int = 0, *, jax_eigh: bool = False, numpy_threads: str = "both") -> dict:
    chunk = min(rmt.default_chunk(n), samples)
    key = jax.random.key(seed)
    f_ldl = jax.jit(lambda h: rmt._index_of(h, "ldl"))
    f_eig = jax.jit(lambda h: rmt._index_of(h, "eigh"))
    warm = rmt.goe(key, n, batch_shape=(chunk,))
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        f_ldl(warm).block_until_ready()
    compile_ldl = time.perf_counter() - t0
    if jax_eigh:
        f_eig(warm).block_until_ready()
    times = {"ldl": 0.0, "eigh": 0.0, "numpy": 0.0, "numpy_1thread": 0.0}
    hists = {k: np.zeros(n + 1, np.int64) for k in times}
    mismatch = {"ldl": 0, "eigh": 0, "numpy_1thread": 0}
    done = 0
    while done < samples:
        m = min(chunk, samples - done)
        idx = jnp.arange(done, done + chunk, dtype=jnp.uint32)
        h = rmt._from_indices(rmt.Ensemble("goe"), key, idx, n, True, None, jnp.float32)[:m]
        h = jax.block_until_ready(h) if m == chunk else jax.block_until_ready(jnp.asarray(h))
        if m < chunk:  # keep the compiled shape: pad with identity matrices and drop their counts
            h = jnp.concatenate([h, jnp.broadcast_to(jnp.eye(n, dtype=h.dtype), (chunk - m, n, n))])
        hn = np.asarray(h)[:m]
        res = {}
        for name, fn in (("ldl", f_ldl), ("eigh", f_eig)) if jax_eigh else (("ldl", f_ldl),):
            t = time.perf_counter()
            with jax.enable_x64(name == "ldl"):  # hdsim's ldl eliminates in float64 (see rmt._index_of)
                res[name] = np.asarray(fn(h))[:m]
            times[name] += time.perf_counter() - t
        if numpy_threads in ("both", "default"):
            t = time.perf_counter()
            res["numpy"] = _numpy_index(hn)
            times["numpy"] += time.perf_counter() - t
        if numpy_threads in ("both", "1") and threadpool_limits is not None:
            with threadpool_limits(limits=1):
                t = time.perf_counter()
                res["numpy_1thread"] = _numpy_index(hn)
                times["numpy_1thread"] += time.perf_counter() - t
        ref = res.get("numpy", res.get("numpy_1thread"))
        for k in times:
            if k not in res:
                times[k] = float("nan")
                res[k] = ref
            hists[k] += np.bincount(res[k], minlength=n + 1)
        for k in mismatch:
            mismatch[k] += int(np.sum(res[k] != ref))
        done += m
    return {"n": n, "samples": samples, "chunk": chunk, "compile_ldl": compile_ldl, "times": times,
            "mismatch": mismatch, "hist_equal": all(np.array_equal(hists[k], hists["numpy"]) for k in hists)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^4 matrices instead of 10^5")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--dims", default="8,32,128")
    ap.add_argument("--jax-eigh", action="store_true", help="also time jnp.linalg.eigvalsh (very slow at N=128 here)")
    ap.add_argument("--numpy-threads", choices=("both", "default", "1"), default="both",
                    help="numpy baselines to run: OpenBLAS default threads, one thread, or both")
    args = ap.parse_args()
    samples = args.samples or (10_000 if args.quick else 100_000)
    dims = [int(d) for d in args.dims.split(",")]
    print(f"jax {jax.__version__} on {jax.devices()[0]}, numpy {np.__version__}; {samples} float32 GOE matrices per N")
    print(f"{'N':>4} {'chunk':>6} {'hdsim ldl s':>12} {'hdsim eigh s':>13} {'numpy s':>9} {'numpy 1thr s':>13}"
          f" {'ldl/numpy':>10} {'eigh/numpy':>11} {'mismatch ldl/eigh':>18} {'compile s':>10}")
    for n in dims:
        r = bench(n, samples, jax_eigh=args.jax_eigh, numpy_threads=args.numpy_threads)
        t = r["times"]
        base = np.nanmin([t["numpy"], t["numpy_1thread"]])
        print(f"{n:>4} {r['chunk']:>6} {t['ldl']:>12.3f} {t['eigh']:>13.3f} {t['numpy']:>9.3f} {t['numpy_1thread']:>13.3f}"
              f" {t['ldl'] / base:>10.3f} {t['eigh'] / base:>11.3f}"
              f" {str(r['mismatch']['ldl']) + '/' + str(r['mismatch']['eigh']):>18} {r['compile_ldl']:>10.1f}",
              flush=True)
        if not r["hist_equal"]:
            print(f"     index histograms differ at N={n} (see mismatch counts)")
    print("ratio = hdsim time / the faster numpy run (< 1: hdsim faster)")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
