"""Benchmark: a learning-curve sweep, hdsim (JAX) against the numpy/scipy loop a user would write.

Workload (issue 11): 13 training-set sizes log-spaced from 10 to 10^4 (nested: size n uses the first n
samples), P = 2,000 Gaussian features (power-law covariance i^-1.5, target power i^-2, label noise 0.1),
20 seeds, 1,000 test samples, ridgeless (minimum-norm) least squares, float64. Both sides get the same
arrays (drawn by ``sim.learning.data``, outside every timing) and return, per seed and size, the test
loss, the excess risk and the train loss.

* hdsim: ``sim.learning.ridge.ridge_curve`` jitted, ``lax.map`` over ``--batch`` seeds per call (sizes below
  P share one dual Cholesky factor, sizes above P accumulate the Gram matrix).
* baseline: for every seed and size, ``numpy.linalg.lstsq`` (LAPACK gelsd) and ``scipy.linalg.lstsq`` with
  ``lapack_driver="gelsy"`` (QR with pivoting, usually the faster); the faster of the two is the baseline.

The answers must agree to 1e-8 (largest relative difference of every loss, printed). hdsim's compile time
is the first call's time minus a warm call's, printed separately; the ratio uses warm times. Both sides run
in this one process with the same BLAS and XLA thread pools (their configuration is printed).

Usage:  python benchmarks/bench_scaling.py [--seeds 20] [--sizes 10:10000:13] [--params 2000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)  # a script, not the library: float64 for an exact comparison

from sim.dims import parse_dims  # noqa: E402
from sim.learning import data as dm  # noqa: E402
from sim.learning.ridge import ridge_curve  # noqa: E402


def _blas_report() -> str:
    try:
        sys.path.insert(0, os.path.dirname(__file__))
        import _report  # the benchmarks' shared helper, where present

        return _report.format_environment(_report.environment())
    except Exception:  # noqa: BLE001 - fall back to the raw threadpoolctl report
        try:
            from threadpoolctl import threadpool_info

            lines = [
                f"{i.get('internal_api')} {i.get('version')} threads={i.get('num_threads')} ({i.get('filepath')})"
                for i in threadpool_info()
            ]
        except ImportError:
            lines = ["threadpoolctl not installed: BLAS configuration unknown"]
        env = {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "OPENBLAS_", "MKL_", "XLA_"))}
        return "\n".join(
            lines
            + [
                f"thread variables: {env or 'none set'}",
                f"cpus: {os.cpu_count()}, load {os.getloadavg()[0]:.1f}",
                f"jax {jax.__version__}, numpy {np.__version__}",
            ]
        )


def _numpy_curve(x, y, xt, yt, ft, ns, driver):
    import scipy.linalg

    out = np.empty((3, len(ns)))
    for j, n in enumerate(ns):
        if driver == "numpy":
            w = np.linalg.lstsq(x[:n], y[:n], rcond=None)[0]
        else:
            w = scipy.linalg.lstsq(x[:n], y[:n], lapack_driver="gelsy", check_finite=False)[0]
        pt = xt @ w
        out[:, j] = (
            np.mean(np.sum((pt - yt) ** 2, 1)),
            np.mean(np.sum((pt - ft) ** 2, 1)),
            np.mean(np.sum((x[:n] @ w - y[:n]) ** 2, 1)),
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--sizes", default="10:10000:13")
    ap.add_argument("--params", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=2, help="seeds per hdsim call (their data are drawn together)")
    ap.add_argument("--quick", action="store_true", help="4 seeds, sizes 10:3000:9, P = 600")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.sizes, args.params = 4, "10:3000:9", 600
    ns = parse_dims(args.sizes)
    p, n_max = args.params, max(ns)
    lam, v2 = dm.powerlaw_spectrum(p, 1.5, 2.0)
    print(_blas_report())
    print(
        f"\nworkload: {len(ns)} sizes {ns[0]}..{ns[-1]}, P = {p}, {args.seeds} seeds, {args.n_test} test samples, "
        f"float64, minimum-norm least squares"
    )

    # lax.map: seeds one after another in one program (vmapped, i.e. batched, Cholesky factorisations
    # deadlocked XLA:CPU's thread pool on the loaded 2-core machine; see sim/experiments/scaling.py)
    curve = jax.jit(
        lambda d: jax.lax.map(lambda e: ridge_curve(e.x_train, e.y_train, e.x_test, e.y_test, e.f_test, ns, 0.0), d)
    )
    draw = jax.jit(jax.vmap(lambda k: dm.gaussian(k, n_max, args.n_test, lam, v2, noise=0.1)))
    root = jax.random.key(0)
    t_hd = t_np = t_sp = 0.0
    first = None
    worst = 0.0
    b = args.batch
    for start in range(0, args.seeds, b):
        keys = jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(start, start + b))
        d = jax.block_until_ready(draw(keys))
        if first is None:
            t0 = time.perf_counter()
            jax.block_until_ready(curve(d))
            first = time.perf_counter() - t0
        t0 = time.perf_counter()
        hd = np.stack([np.asarray(v) for v in jax.block_until_ready(curve(d))], axis=1)  # (b, 3, sizes)
        t_hd += time.perf_counter() - t0
        arrs = [np.asarray(v) for v in (d.x_train, d.y_train, d.x_test, d.y_test, d.f_test)]
        for i in range(min(b, args.seeds - start)):
            one = [a[i] for a in arrs]
            t0 = time.perf_counter()
            ref = _numpy_curve(*one, ns, "numpy")
            t_np += time.perf_counter() - t0
            t0 = time.perf_counter()
            ref_sp = _numpy_curve(*one, ns, "gelsy")
            t_sp += time.perf_counter() - t0
            for r in (ref, ref_sp):
                rel = np.abs(hd[i] - r) / np.abs(r)
                # below P both fits interpolate: train losses are rounding noise (~1e-25), compared absolutely
                interp = np.array(ns) < p
                rel[2, interp] = np.abs(hd[i][2, interp] - r[2, interp]) / r[0, interp]
                worst = max(worst, float(np.max(rel)))
        print(
            f"  seeds {start}..{min(start + b, args.seeds) - 1}: hdsim {t_hd:.1f} s, numpy {t_np:.1f} s, "
            f"scipy gelsy {t_sp:.1f} s (cumulative)",
            flush=True,
        )
    # seeds beyond args.seeds in the last batch were computed by hdsim too: charge it only its share
    share = args.seeds / (-(-args.seeds // b) * b)
    t_hd *= share
    base, name = (t_np, "numpy lstsq (gelsd)") if t_np <= t_sp else (t_sp, "scipy lstsq (gelsy)")
    warm_call = t_hd / (-(-args.seeds // b))
    print(
        f"\nhdsim: {t_hd:.2f} s warm for {args.seeds} seeds; compile + first call {first:.2f} s "
        f"(compile about {max(first - warm_call, 0):.2f} s, not in the ratio)"
    )
    print(f"numpy lstsq (gelsd): {t_np:.2f} s; scipy lstsq (gelsy): {t_sp:.2f} s; baseline = {name}")
    print(
        f"ratio baseline/hdsim = {base / t_hd:.2f}x ({'hdsim faster' if base > t_hd else 'hdsim SLOWER'}); "
        f"with compile: {base / (t_hd + max(first - warm_call, 0)):.2f}x"
    )
    print(
        f"largest relative difference of any loss, hdsim vs both baselines: {worst:.2e} "
        f"({'within' if worst <= 1e-8 else 'OUTSIDE'} 1e-8)"
    )


if __name__ == "__main__":
    main()
