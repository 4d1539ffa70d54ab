"""Hessian spectra: hdsim (JAX, forward-over-reverse HVP + SLQ in lax loops) against PyHessian (PyTorch).

Same MLP (tanh, weights copied from JAX to torch), same data, same loss, same number of probes and
Lanczos steps, float32, on this CPU. Printed: time per Hessian-vector product and total time for the
density (hdsim compile time separately), their ratios, and the accuracy of each density and negative
fraction against the exact spectrum (dense Hessian in float64 + eigvalsh).

    python benchmarks/bench_spectrum.py            # N ~ 5,000 parameters, 16 probes x 80 steps
    python benchmarks/bench_spectrum.py --quick    # N ~ 1,000, 8 probes x 40 steps
    python benchmarks/bench_spectrum.py --big      # hdsim alone: MLP with >= 10^6 parameters,
                                                   # negative fraction with error bar, time, peak RSS
    python benchmarks/bench_spectrum.py --counts   # N ~ 8,000: counts N-(eps) (sim.counts) against
                                                   # scipy eigvalsh and PyHessian's density below -eps

PyHessian 0.1 (PyPI) calls ``torch.eig``, removed in torch 2.x: this script installs a shim that
maps it onto ``torch.linalg.eig`` (PyHessian's own choice of a *general* eigensolver on the symmetric
tridiagonal is kept, so its weights are what its users get). Needs ``pip install torch==2.13.0
pyhessian``.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax

jax.config.update("jax_enable_x64", True)  # for the exact float64 reference only; timed runs are float32

import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sim.experiments.spectrum import mlp_widths, width_for_params
from sim.hvp import hessian_matvec, num_params
from sim.lanczos import Quadrature, extreme_eigenvalues, fraction_below, slq, spectral_density
from sim.models import mlp_init, mse_loss, teacher_task


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build(widths, samples, seed, dtype):
    key = jax.random.key(seed)
    params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=dtype)
    task = teacher_task(jax.random.fold_in(key, 1), widths, samples, noise=0.1, dtype=dtype)
    return params, task


def hdsim_slq(params, task, probes, steps, seed, batch_size=None):
    n = num_params(params)

    def f(params, task, key):
        mv = hessian_matvec(lambda p: mse_loss(p, task), params)
        quad = slq(key, mv, n, num_steps=steps, num_probes=probes, batch_size=batch_size, dtype=jnp.float32)
        return quad, fraction_below(quad, 0.0), extreme_eigenvalues(quad)

    key = jax.random.key(seed + 1)
    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(params, task, key).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(params, task, key))
    t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1


def hdsim_hvp_time(params, task, reps):
    """Seconds per HVP: ``reps`` chained products of the linearised gradient in one fori_loop."""
    n = num_params(params)

    def g(params, task, v):
        mv = hessian_matvec(lambda p: mse_loss(p, task), params)

        def body(_, x):
            y = mv(x)
            return y / jnp.linalg.norm(y)

        return jax.lax.fori_loop(0, reps, body, v)

    v = jnp.ones((n,), jnp.float32) / math.sqrt(n)
    c = jax.jit(g).lower(params, task, v).compile()
    jax.block_until_ready(c(params, task, v))
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(c(params, task, v))
        best = min(best, time.perf_counter() - t)
    return best / reps


def exact_eigenvalues(params, task):
    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    t64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), task)
    flat, unravel = ravel_pytree(p64)
    h = jax.jit(jax.hessian(lambda x: mse_loss(unravel(x), t64)))(flat)
    return np.linalg.eigvalsh(np.asarray(h))


def smoothed(evals, grid, sigma):
    z = (grid[:, None] - evals[None, :]) / sigma
    return np.exp(-0.5 * z * z).mean(1) / (sigma * math.sqrt(2 * math.pi))


# ---------------------------------------------------------------------------------------- PyHessian


def torch_setup(params, task, threads):
    import torch

    torch.set_num_threads(threads)
    try:  # removed in torch 2 (a stub that raises); PyHessian 0.1 still calls it
        torch.eig(torch.eye(1), eigenvectors=True)
    except (AttributeError, RuntimeError):

        def eig(a, eigenvectors=False):
            w, v = torch.linalg.eig(a)
            return torch.stack([w.real, w.imag], dim=1), (v.real if eigenvectors else None)

        torch.eig = eig
    layers = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.asarray(w).T.copy()))
            lin.bias.copy_(torch.from_numpy(np.asarray(b).copy()))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)
    x = torch.from_numpy(np.asarray(task.x).copy())
    y = torch.from_numpy(np.asarray(task.y).copy())

    def criterion(out, target):  # = sim.models.mse_loss: 1/(2m) sum |f(x) - y|^2
        return 0.5 * ((out - target) ** 2).sum(-1).mean()

    return torch, model, criterion, x, y


def pyhessian_run(params, task, probes, steps, reps, threads):
    torch, model, criterion, x, y = torch_setup(params, task, threads)
    from pyhessian import hessian as PyHessian  # the class (pyhessian/__init__ re-exports it)
    from pyhessian.utils import hessian_vector_product

    warnings.filterwarnings("ignore", message="Using backward.. with create_graph=True")
    t0 = time.perf_counter()
    hc = PyHessian(model, criterion, data=(x, y), cuda=False)
    t_setup = time.perf_counter() - t0

    # time per HVP (PyHessian's own product: double backward through the retained gradient graph)
    v = [torch.ones_like(p) for p in hc.params]
    hessian_vector_product(hc.gradsH, hc.params, v)  # warm-up
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            hv = hessian_vector_product(hc.gradsH, hc.params, v)
            s = math.sqrt(sum(float((h * h).sum()) for h in hv))
            v = [h / s for h in hv]
        best = min(best, time.perf_counter() - t)
    t_hvp = best / reps

    torch.manual_seed(0)
    t = time.perf_counter()
    eigs, weights = hc.density(iter=steps, n_v=probes)
    t_density = time.perf_counter() - t
    return np.asarray(eigs, np.float64), np.asarray(weights, np.float64), t_hvp, t_density, t_setup, hc


def check_hvp_agreement(params, task, hc, torch):
    """hdsim's HVP and PyHessian's on the same vector (flattened in the same layer order)."""
    from pyhessian.utils import hessian_vector_product

    n = num_params(params)
    v = np.asarray(jax.random.normal(jax.random.key(99), (n,), jnp.float32))
    _, unravel = ravel_pytree(params)
    tree = unravel(jnp.asarray(v))
    vt = []
    for w, b in tree:
        vt += [torch.from_numpy(np.asarray(w).T.copy()), torch.from_numpy(np.asarray(b).copy())]
    hv_t = hessian_vector_product(hc.gradsH, hc.params, vt)
    ours = jax.jit(lambda p, t, x: hessian_matvec(lambda q: mse_loss(q, t), p)(x))(params, task, jnp.asarray(v))
    ours_tree = unravel(ours)
    flat_t, flat_o = [], []
    for (w, b), (hw, hb) in zip(ours_tree, zip(hv_t[0::2], hv_t[1::2])):
        flat_o += [np.asarray(w).T.ravel(), np.asarray(b).ravel()]
        flat_t += [hw.detach().numpy().ravel(), hb.detach().numpy().ravel()]
    a, b = np.concatenate(flat_o), np.concatenate(flat_t)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# --------------------------------------------------------------------------------------------- main


def compare(args):
    widths = mlp_widths(args.input_dim, args.width, args.depth)
    params, task = build(widths, args.samples, args.seed, jnp.float32)
    n = num_params(params)
    print(f"MLP widths {widths}: N = {n} parameters, {args.samples} samples, {args.probes} probes x {args.steps} steps")
    print(f"jax {jax.__version__}", end="")
    import torch

    print(
        f", torch {torch.__version__}, torch threads {args.torch_threads}, cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    t = time.perf_counter()
    evals = exact_eigenvalues(params, task)
    t_exact = time.perf_counter() - t
    exact_neg = float(np.mean(evals < 0))
    print(
        f"exact: dense float64 Hessian + eigvalsh in {t_exact:.1f} s; negative fraction {exact_neg:.4f}; "
        f"range [{evals[0]:.4f}, {evals[-1]:.4f}]"
    )

    reps = args.hvp_reps
    t_hvp_ours = hdsim_hvp_time(params, task, reps)
    (quad, frac, _), t_compile, t_run = hdsim_slq(params, task, args.probes, args.steps, args.seed)
    eigs_t, w_t, t_hvp_theirs, t_density_theirs, t_setup_theirs, hc = pyhessian_run(
        params, task, args.probes, args.steps, reps, args.torch_threads
    )
    rel = check_hvp_agreement(params, task, hc, torch)
    print(f"HVP agreement hdsim vs PyHessian: relative difference {rel:.2e} (float32)")
    assert rel < 1e-3, "the two Hessian-vector products disagree"

    print("\n--- time ---")
    print(
        f"per HVP (chained, {reps} reps):  hdsim {t_hvp_ours * 1e3:8.3f} ms   PyHessian {t_hvp_theirs * 1e3:8.3f} ms"
        f"   ratio PyHessian/hdsim = {t_hvp_theirs / t_hvp_ours:.2f}"
    )
    print(
        f"density ({args.probes} x {args.steps}):     hdsim {t_run:8.3f} s    PyHessian {t_density_theirs:8.3f} s"
        f"    ratio PyHessian/hdsim = {t_density_theirs / t_run:.2f}"
    )
    print(
        f"  hdsim compile {t_compile:.2f} s (once per shape); with compile: ratio = "
        f"{t_density_theirs / (t_run + t_compile):.2f}; PyHessian setup (graph of the gradient) {t_setup_theirs:.3f} s"
    )
    print(
        f"  hdsim per HVP inside SLQ (incl. full reorthogonalisation): {t_run / (args.probes * args.steps) * 1e3:.3f} ms"
    )

    # accuracy: both quadratures through the same estimators and the same kernel
    theirs = Quadrature(
        nodes=jnp.asarray(np.sort(eigs_t, axis=1)),
        weights=jnp.asarray(np.take_along_axis(w_t, np.argsort(eigs_t, axis=1), axis=1)),
        residuals=jnp.full(eigs_t.shape, jnp.inf),
        breakdowns=jnp.zeros((eigs_t.shape[0],), jnp.int32),
    )
    ours = quad._replace(nodes=quad.nodes.astype(jnp.float64), weights=quad.weights.astype(jnp.float64))
    lo, hi = float(evals[0]), float(evals[-1])
    sigma = (hi - lo) / args.steps
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, 1001)
    ref = smoothed(evals, grid, sigma)
    print("\n--- accuracy against the exact spectrum ---")
    print(f"sigma = (max - min) / steps = {sigma:.4g}; exact negative fraction {exact_neg:.4f}")
    for name, q in (("hdsim", ours), ("PyHessian", theirs)):
        rho = np.asarray(spectral_density(q, jnp.asarray(grid), sigma=sigma))
        l1 = float(np.trapezoid(np.abs(rho - ref), grid))
        wsum = np.asarray(q.weights).sum(1)
        fi = fraction_below(q, 0.0)
        fs = fraction_below(q, 0.0, method="step")
        print(
            f"{name:10s} density L1 {l1:.4f}; weights sum to [{wsum.min():.4f}, {wsum.max():.4f}]; "
            f"neg. fraction interp {float(fi.fraction):.4f} +- {float(fi.stderr):.4f} "
            f"(err {float(fi.fraction) - exact_neg:+.4f}), step {float(fs.fraction):.4f} "
            f"(err {float(fs.fraction) - exact_neg:+.4f}); extremes [{float(jnp.min(q.nodes)):.4f}, "
            f"{float(jnp.max(q.nodes)):.4f}]"
        )
    print(f"hdsim CMS bracket of the negative fraction: [{float(frac.lower):.4f}, {float(frac.upper):.4f}]")


def big(args):
    w = args.big_width or width_for_params(args.big_params, depth=args.big_depth, input_dim=args.input_dim)
    widths = mlp_widths(args.input_dim, w, args.big_depth)
    params, task = build(widths, args.samples, args.seed, jnp.float32)
    n = num_params(params)
    rss0 = peak_rss_mb()
    print(
        f"MLP widths {widths}: N = {n:,} parameters, {args.samples} samples; {args.probes} probes x "
        f"{args.steps} steps, batch {args.batch_size}, float32, full reorthogonalisation"
    )
    t = time.perf_counter()
    (_, frac, ext), t_compile, t_run = hdsim_slq(params, task, args.probes, args.steps, args.seed, args.batch_size)
    total = time.perf_counter() - t
    basis_mb = args.batch_size * args.steps * n * 4 / 2**20
    print(
        f"negative fraction {float(frac.fraction):.4f} +- {float(frac.stderr):.4f} (CMS bracket "
        f"[{float(frac.lower):.4f}, {float(frac.upper):.4f}])"
    )
    print(
        f"extremes: min {float(ext.min_value):.5g} (residual {float(ext.min_residual):.2g}), "
        f"max {float(ext.max_value):.5g} (residual {float(ext.max_residual):.2g})"
    )
    print(
        f"time: compile {t_compile:.1f} s + run {t_run:.1f} s = {total:.1f} s; "
        f"{t_run / (args.probes * args.steps) * 1e3:.1f} ms per HVP incl. reorthogonalisation"
    )
    print(
        f"peak RSS {peak_rss_mb():.0f} MB (before SLQ {rss0:.0f} MB); Lanczos bases in flight "
        f"{basis_mb:.0f} MB = batch x steps x N x 4 bytes"
    )


# ------------------------------------------------------------------------------------ counts (issue 13)


def blas_report() -> str:
    """BLAS/LAPACK libraries in this process and the thread variables in force."""
    env = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS") or k.startswith("OPENBLAS")}
    try:
        from threadpoolctl import threadpool_info

        libs = "; ".join(
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, "
            f"{i.get('threading_layer', '')})"
            for i in threadpool_info()
        )
    except ImportError:
        libs = "threadpoolctl not installed"
    return f"BLAS: {libs or 'none loaded yet'}; env {env or '{}'}"


def counts_bench(args):
    """N ~ 8,000: hdsim counts (deflation + KPM) against scipy eigvalsh of the dense Hessian and against
    PyHessian's SLQ density integrated below -eps, same network, same process, all cores for each."""
    import scipy.linalg

    from sim.counts import counts, moments

    widths = mlp_widths(args.input_dim, args.counts_width, args.depth)
    params, task = build(widths, args.samples, args.seed, jnp.float32)
    n = num_params(params)
    rel = np.array([1e-1, 1e-2, 1e-3])
    print(
        f"MLP widths {widths}: N = {n:,}; {args.samples} samples; cpus {os.cpu_count()}, load average "
        f"{os.getloadavg()[0]:.1f}; jax {jax.__version__}"
    )

    # exact: dense float64 Hessian (HVPs of the identity), then scipy.linalg.eigvalsh
    t = time.perf_counter()
    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    t64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), task)
    flat, unravel = ravel_pytree(p64)
    h = np.asarray(jax.jit(jax.hessian(lambda x: mse_loss(unravel(x), t64)))(flat))
    t_dense = time.perf_counter() - t
    t = time.perf_counter()
    evals = scipy.linalg.eigvalsh(h)
    t_eig = time.perf_counter() - t
    del h
    norm = float(np.max(np.abs(evals)))
    exact = {e: float(np.mean(evals < -e * norm)) for e in rel}
    print(blas_report())
    print(
        f"exact: dense float64 Hessian {t_dense:.1f} s + scipy.linalg.eigvalsh {t_eig:.1f} s = {t_dense + t_eig:.1f} s; "
        f"||H|| = {norm:.4g}"
    )

    def f(params, task, key):
        mv = hessian_matvec(lambda p: mse_loss(p, task), params)
        return moments(
            key,
            mv,
            n,
            degree=args.degree,
            num_probes=args.count_probes,
            lanczos_steps=80,
            bounds_steps=40,
            dtype=jnp.float32,
        )

    key = jax.random.key(args.seed + 2)
    t = time.perf_counter()
    comp = jax.jit(f).lower(params, task, key).compile()
    t_compile = time.perf_counter() - t
    t = time.perf_counter()
    mom = jax.block_until_ready(comp(params, task, key))
    t_run = time.perf_counter() - t
    c = counts(mom, -rel * float(mom.norm))
    print(
        f"hdsim counts: degree {args.degree}, {args.count_probes} probes, {int(mom.num_deflated)} outliers deflated; "
        f"compile {t_compile:.1f} s, run {t_run:.1f} s ({120 + args.count_probes * args.degree // 2} HVPs)"
    )
    for e, fr, se, lo, hi in zip(rel, c.fraction, c.stderr, c.lower, c.upper):
        print(
            f"  N-({e:g} ||H||): {fr:.4f} +- {se:.4f} bracket [{lo:.4f}, {hi:.4f}]  exact {exact[e]:.4f}  "
            f"err {fr - exact[e]:+.4f}  {'inside' if lo <= exact[e] <= hi else 'OUTSIDE'}"
        )
    print(
        f"  time ratio exact (dense + eigvalsh) / hdsim run = {(t_dense + t_eig) / t_run:.2f}; "
        f"with compile {(t_dense + t_eig) / (t_run + t_compile):.2f}; eigvalsh alone / hdsim run = {t_eig / t_run:.2f}"
    )
    try:
        import pyhessian  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        print("PyHessian: not installed (pip install torch==2.13.0; pip install --no-deps pyhessian)")
        return
    eigs, weights, _, t_density, t_setup, _ = pyhessian_run(
        params, task, args.probes, args.steps, 5, args.torch_threads
    )
    print(
        f"PyHessian density: {args.probes} probes x {args.steps} Lanczos steps in {t_density:.1f} s (setup "
        f"{t_setup:.2f} s), torch threads {args.torch_threads}; {blas_report()}"
    )
    for e in rel:
        below = np.sum(np.where(eigs < -e * norm, weights, 0.0), axis=1)  # per probe: quadrature mass below -eps
        m, s = below.mean(), below.std(ddof=1) / math.sqrt(below.size)
        print(f"  N-({e:g} ||H||): {m:.4f} +- {s:.4f} (probe s.e. only)  exact {exact[e]:.4f}  err {m - exact[e]:+.4f}")
    print(f"  time ratio PyHessian / hdsim run = {t_density / t_run:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--counts", action="store_true", help="eigenvalue counts at N ~ 8,000 against eigvalsh and PyHessian"
    )
    ap.add_argument("--counts-width", type=int, default=80, help="hidden width of --counts (80: N = 7,921)")
    ap.add_argument("--degree", type=int, default=2000, help="--counts: Chebyshev degree")
    ap.add_argument("--count-probes", type=int, default=16, help="--counts: probes")
    ap.add_argument("--quick", action="store_true", help="small run (N ~ 1,000, 8 probes x 40 steps)")
    ap.add_argument("--big", action="store_true", help="hdsim alone on a >= 10^6-parameter MLP")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--input-dim", type=int, default=16)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--probes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--hvp-reps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=2,
        help="torch intra-op threads (use 1 on a loaded machine: 2 OpenMP threads on busy cores stall)",
    )
    ap.add_argument("--big-params", type=int, default=1_000_000)
    ap.add_argument("--big-depth", type=int, default=2)
    ap.add_argument("--big-width", type=int, default=0, help="0: the width closest to --big-params")
    ap.add_argument("--batch-size", type=int, default=2, help="probes per vmap batch in --big")
    args = ap.parse_args()
    if args.counts:
        counts_bench(args)
        return
    if args.big:
        if args.big_width == 0:
            w = width_for_params(args.big_params, depth=args.big_depth, input_dim=args.input_dim)
            while num_params_of(args.input_dim, w, args.big_depth) < args.big_params:
                w += 1
            args.big_width = w
        big(args)
        return
    if args.quick:
        args.width, args.probes, args.steps, args.hvp_reps = 24, 8, 40, 20
    compare(args)


def num_params_of(input_dim, width, depth):
    from sim.models import mlp_num_params

    return mlp_num_params(mlp_widths(input_dim, width, depth))


if __name__ == "__main__":
    main()
