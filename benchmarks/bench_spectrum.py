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

``--counts`` follows ``benchmarks/_report.py``: one fresh worker per ``--threads`` count (default
``1,all``), pinned to its CPUs with the BLAS/OpenMP/XLA thread variables set before anything loads; in
it, on the same network (tanh MLP 16-80-80-1, N = 7,921, 256 teacher samples, float32):

* exact: the dense float64 Hessian (HVPs of the identity's columns, jitted: its time includes that
  compilation) and ``scipy.linalg.eigvalsh`` (one run: LAPACK compiles nothing, so first = warm);
* hdsim: ``sim.counts.moments`` (80 + 40 Lanczos steps, deflation, ``--degree`` / 2 HVPs for each of
  ``--count-probes`` probes, float32 products, float64 recurrences) then ``counts``; first call
  (tracing + XLA compilation, what a CLI user pays) beside the warm call;
* PyHessian: ``hessian.density(iter=--steps, n_v=--probes)`` (its SLQ, gradient graph included), the
  quadrature mass below -eps per probe; first and warm.

Printed: N-(eps) for eps = 10^-1, 10^-2, 10^-3 ||H|| of each against the exact count (hdsim with its
bracket; PyHessian's spread across probes is its only error bar), the BLAS pools and thread variables,
the load, and the ratios exact / hdsim, eigvalsh / hdsim and PyHessian / hdsim (warm and
compile-inclusive). The sides differ in accuracy as well as time; both are printed.

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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _report  # noqa: E402  (benchmarks/_report.py: fresh workers, threads, timing, environment, ratios)

# The --counts parent imports JAX and numpy with this module but never initialises a backend or computes:
# all work runs in its workers, which ``_report`` starts with their threads and CPU affinity fixed.
import jax

jax.config.update("jax_enable_x64", True)  # for the exact float64 reference only; timed runs are float32

import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sim.hvp import hessian_matvec, mlp_hessian_matvec, num_params
from sim.lanczos import Quadrature, extreme_eigenvalues, fraction_below, slq, spectral_density
from sim.models import mlp_init, mlp_widths, mse_loss, teacher_task, width_for_params


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


def hvp_block_times(params, task, reps, batch):
    """(wall, CPU) seconds per HVP of the autodiff product (``hessian_matvec``, linearised gradient) and of
    the hand-written ``mlp_hessian_matvec``, on one vector and on ``batch`` vectors under vmap: ``reps``
    chained products in one fori_loop, best of 3 (compile excluded)."""
    n = num_params(params)
    out = {}
    for name in ("autodiff", "mlp"):
        for b in (1, batch):

            def g(params, task, v, name=name, b=b):
                if name == "mlp":
                    mv = mlp_hessian_matvec(params, task.x, task.y)
                else:
                    mv = hessian_matvec(lambda p: mse_loss(p, task), params)
                f = mv if b == 1 else jax.vmap(mv)

                def body(_, x):
                    y = f(x)
                    return y / jnp.linalg.norm(y)

                return jax.lax.fori_loop(0, reps, body, v)

            v = jnp.ones((n,) if b == 1 else (b, n), jnp.float32) / math.sqrt(n)
            c = jax.jit(g).lower(params, task, v).compile()
            jax.block_until_ready(c(params, task, v))
            best = (math.inf, math.inf)
            for _ in range(3):
                t, p = time.perf_counter(), time.process_time()
                jax.block_until_ready(c(params, task, v))
                best = min(best, (time.perf_counter() - t, time.process_time() - p))
            out[name, b] = (best[0] / (reps * b), best[1] / (reps * b))
    return out


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
    times = hvp_block_times(params, task, 10, args.batch_size)
    print(f"load {os.getloadavg()[0]:.2f}; ms per HVP (wall / CPU), 10 chained products, best of 3:")
    for (name, b), (wall, cpu) in times.items():
        print(f"  {name:8s} {'1 vector' if b == 1 else f'vmap {b}':8s} {wall * 1e3:7.1f} / {cpu * 1e3:7.1f}")
    for b in (1, args.batch_size):
        a, m = times["autodiff", b], times["mlp", b]
        print(f"  autodiff / mlp ({b} vector{'s' if b > 1 else ''}): wall {a[0] / m[0]:.2f}x, CPU {a[1] / m[1]:.2f}x")
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

#: eps of the counts, relative to ||H|| (the issue's 10^-1, 10^-2, 10^-3)
COUNT_REL_EPS = (1e-1, 1e-2, 1e-3)


def dense_hessian64(params, task):
    """The float64 Hessian from HVPs of the identity's columns, 256 at a time (``lax.map``): memory N^2."""
    p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
    t64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), task)
    n = num_params(p64)
    cols = jax.jit(
        lambda p, t: jax.lax.map(
            hessian_matvec(lambda q: mse_loss(q, t), p), jnp.eye(n, dtype=jnp.float64), batch_size=256
        )
    )(p64, t64)
    h = np.asarray(cols)
    return 0.5 * (h + h.T)


def counts_worker(args):
    """One fresh process on ``args.worker_threads`` CPUs: the exact counts (dense float64 Hessian + scipy
    eigvalsh), hdsim's counts (first call with compilation, then warm) and PyHessian's density below -eps,
    same network, same threads; results to the parent through ``_report.emit``."""
    import scipy.linalg
    import torch

    from sim.counts import counts, moments

    threads = args.worker_threads
    widths = mlp_widths(args.input_dim, args.counts_width, args.depth)
    params, task = build(widths, args.samples, args.seed, jnp.float32)
    n = num_params(params)
    print(f"MLP widths {widths}: N = {n:,}; {args.samples} samples; {_report.format_load()}", flush=True)

    t = time.perf_counter()
    h = dense_hessian64(params, task)
    t_dense = time.perf_counter() - t
    t_eig, evals = _report.timed(lambda: scipy.linalg.eigvalsh(h), 0)  # LAPACK: no compilation, one run
    t_eig["warm"] = t_eig["first"]
    h = None  # 0.5 GB at N = 8,000
    norm = float(np.max(np.abs(evals)))
    exact = [float(np.mean(evals < -e * norm)) for e in COUNT_REL_EPS]
    exact_time = {"first": t_dense + t_eig["first"], "warm": t_dense + t_eig["first"]}
    print(f"exact: dense float64 Hessian {t_dense:.1f} s + scipy eigvalsh {t_eig['first']:.1f} s", flush=True)

    def f(params, task, key):
        mv = hessian_matvec(lambda p: mse_loss(p, task), params)
        kw = dict(degree=args.degree, num_probes=args.count_probes, lanczos_steps=80, bounds_steps=40)
        return moments(key, mv, n, dtype=jnp.float32, **kw)

    key = jax.random.key(args.seed + 2)
    jf = jax.jit(f)
    t_hd, mom = _report.timed(lambda: jax.block_until_ready(jf(params, task, key)), args.repeat)
    c = counts(mom, -np.asarray(COUNT_REL_EPS) * float(mom.norm))
    hd = {
        "fraction": c.fraction,
        "stderr": c.stderr,
        "lower": c.lower,
        "upper": c.upper,
        "deflated": int(mom.num_deflated),
        "norm": float(mom.norm),
        "hvps": 80 + 40 + int(mom.num_deflated) + args.count_probes * args.degree // 2,
    }
    print(f"hdsim counts: first {t_hd['first']:.1f} s, warm {t_hd['warm']:.1f} s", flush=True)

    out = {"n": n, "widths": widths, "exact": exact, "norm": norm, "hdsim": hd, "times": {}}
    out["times"] = {"hdsim": t_hd, "exact": exact_time, "eigvalsh": t_eig}
    try:
        import pyhessian  # noqa: F401
    except ImportError:
        print("PyHessian: not installed (pip install torch; pip install --no-deps pyhessian)")
    else:
        torch_setup(params, task, threads)

        def density():
            _, model, criterion, x, y = torch_setup(params, task, threads)
            from pyhessian import hessian as PyHessian

            warnings.filterwarnings("ignore", message="Using backward.. with create_graph=True")
            torch.manual_seed(0)
            hc = PyHessian(model, criterion, data=(x, y), cuda=False)  # the gradient graph: part of its cost
            eigs, weights = hc.density(iter=args.steps, n_v=args.probes)
            return np.asarray(eigs, np.float64), np.asarray(weights, np.float64)

        t_py, (eigs, weights) = _report.timed(density, args.repeat)
        below = [np.sum(np.where(eigs < -e * norm, weights, 0.0), axis=1) for e in COUNT_REL_EPS]  # per probe
        out["pyhessian"] = {
            "fraction": [float(b.mean()) for b in below],
            "stderr": [float(b.std(ddof=1) / math.sqrt(b.size)) for b in below],
            "hvps": args.probes * args.steps,
        }
        out["times"]["pyhessian"] = t_py
        print(f"PyHessian density: first {t_py['first']:.1f} s, warm {t_py['warm']:.1f} s", flush=True)
    out["env"] = _report.environment()
    _report.emit(out)


def counts_report(runs) -> str:
    """The parent's summary: counts against exact per thread count, then the time ratios."""
    lines = []
    for threads, r in runs.items():
        hd, ex = r["hdsim"], r["exact"]
        lines.append(
            f"--- {threads} thread(s): N = {r['n']:,}, ||H|| = {r['norm']:.4g}; hdsim {hd['deflated']} outliers "
            f"deflated, {hd['hvps']:,} HVPs; load {r['env']['load_average'][0]:.2f}"
        )
        for i, e in enumerate(COUNT_REL_EPS):
            inside = hd["lower"][i] <= ex[i] <= hd["upper"][i]
            line = (
                f"  N-({e:g} ||H||): exact {ex[i]:.4f} | hdsim {hd['fraction'][i]:.4f} +- {hd['stderr'][i]:.4f} "
                f"[{hd['lower'][i]:.4f}, {hd['upper'][i]:.4f}] err {hd['fraction'][i] - ex[i]:+.4f} "
                f"{'inside' if inside else 'OUTSIDE'}"
            )
            if "pyhessian" in r:
                py = r["pyhessian"]
                line += (
                    f" | PyHessian {py['fraction'][i]:.4f} +- {py['stderr'][i]:.4f} (probe s.e. only) "
                    f"err {py['fraction'][i] - ex[i]:+.4f}"
                )
            lines.append(line)
        if "pyhessian" in r:
            lines.append(f"  PyHessian: {r['pyhessian']['hvps']:,} HVPs (its density, {len(COUNT_REL_EPS)} eps)")
    lines.append("--- time: exact = dense float64 Hessian + scipy.linalg.eigvalsh (speed-up = exact / hdsim)")
    lines.append(_report.format_comparison(runs, "hdsim", "exact"))
    lines.append("--- time: scipy.linalg.eigvalsh alone (the dense Hessian given)")
    lines.append(_report.format_comparison(runs, "hdsim", "eigvalsh"))
    if all("pyhessian" in r for r in runs.values()):
        lines.append("--- time: PyHessian's density (speed-up = PyHessian / hdsim; different accuracy, above)")
        lines.append(_report.format_comparison(runs, "hdsim", "pyhessian"))
    return "\n".join(lines)


def counts_bench(args, argv):
    """Parent of --counts: one fresh worker per thread count (``_report``), then the report."""
    print(f"python {' '.join(sys.argv)}\n{_report.format_load()} (at the start)")
    runs = {}
    for threads in _report.thread_counts(args.threads):
        print(f"--- worker on {threads} thread(s): fresh process, hdsim's first call compiles")
        runs[threads] = _report.run_worker(_report.worker_argv(__file__, argv), threads)
    print(_report.format_environment(runs[max(runs)]["env"]))
    print(counts_report(runs))
    print(f"{_report.format_load()} (at the end)")
    _report.save_runs(args.json, "benchmarks/bench_spectrum.py", argv, runs)


def main(argv=None):
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
    _report.add_arguments(ap, repeat=1)
    args = ap.parse_args(argv)
    if args.counts:
        if args.worker:
            counts_worker(args)
        else:
            counts_bench(args, sys.argv[1:] if argv is None else argv)
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
