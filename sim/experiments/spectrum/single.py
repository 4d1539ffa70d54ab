"""One spectrum: SLQ density, negative fraction, extremes, exact comparison, eigenvalue counts."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import float_dtype
from sim.counts import moments
from sim.experiments.base import Progress, Result, no_progress
from sim.experiments.spectrum.config import SpectrumConfig
from sim.experiments.spectrum.operators import (
    _count_kwargs,
    _dense_hessian,
    _gd_chunk,
    _goe_matrix,
    _lambda_max,
    _landscape_point,
    _loss,
    _make_counts,
    _make_slq,
    _mesh,
    _mesh_info,
    _task,
)
from sim.experiments.spectrum.summary import _summarise, _timed, count_rows, counts_info
from sim.hvp import landscape_hessian_matvec
from sim.lanczos import extreme_eigenvalues, fraction_below, slq
from sim.models import mlp_init

__all__ = ["run", "spectrum_of_matvec"]


def spectrum_of_matvec(key, matvec: Callable, dim: int, config: SpectrumConfig, *, exact_matrix=None) -> Result:
    """SLQ spectrum of any symmetric operator given as a matvec (closure over concrete arrays).

    ``exact_matrix`` (optional, (dim, dim)): the dense matrix, for the exact comparison. The SLQ
    options (probes, steps, probe, reortho, batch_size, threshold, sigma, grid_points, dtype) come from
    ``config``; ``config.model`` is only reported. The probe batches run on ``config.devices``.
    """
    dt = float_dtype(config.dtype, fn="spectrum_of_matvec")
    mesh = _mesh(config)

    def f(key):
        quad = slq(
            key,
            matvec,
            dim,
            num_steps=config.steps,
            num_probes=config.probes,
            probe=config.probe,
            reortho=config.reortho,
            batch_size=config.batch_size,
            dtype=dt,
            devices=mesh,
        )
        return quad, fraction_below(quad, 0.0), fraction_below(quad, config.threshold), extreme_eigenvalues(quad)

    (quad, f0, ft, ext), t_compile, t_run = _timed(jax.jit(f), key)
    timings = {"slq_compile": t_compile, "slq_run": t_run}
    mom = None
    if config.eps:
        kw = _count_kwargs(config, int(dim))
        g = jax.jit(lambda key: moments(key, matvec, dim, dtype=dt, devices=mesh, **kw))
        mom, timings["counts_compile"], timings["counts_run"] = _timed(g, jax.random.fold_in(key, 1))
    evals = None
    if exact_matrix is not None:
        t = time.perf_counter()
        evals = np.linalg.eigvalsh(np.asarray(exact_matrix, np.float64))
        timings["exact_eigvalsh"] = time.perf_counter() - t
    res = _summarise(quad, f0, ft, ext, config, int(dim), timings, evals, _mesh_info(mesh))
    return _with_counts(res, mom, config, evals)


def _with_counts(res: Result, mom, config: SpectrumConfig, evals) -> Result:
    """Add the ``counts`` table (``COUNT_COLUMNS``) and ``counts_info`` to a result (no-op without eps)."""
    if mom is None:
        return res
    res.tables["counts"] = count_rows(mom, config.eps, relative=config.eps_rel, exact_evals=evals)
    res.info["counts_info"] = counts_info(mom)
    return res


def run(config: SpectrumConfig, *, progress: Progress | None = None) -> Result:
    """One spectrum (see ``SpectrumConfig``). Rows: ``eigenvalue, density`` on a grid.

    Tables: ``ritz`` (probe, node, weight, residual); with the exact comparison also
    ``exact_density`` (exact eigenvalues smoothed with the same kernel), ``exact_histogram``
    (left, right, density) and ``exact_eigenvalues`` (ascending); with ``eps``, ``counts``
    (``COUNT_COLUMNS``: N-(eps), N0(eps), N+(eps) with brackets, ``sim.counts``). Info: negative
    fraction (+ stderr, CMS bracket), fraction below the
    threshold, extremes with residual bounds, exact counterparts and ``density_l1``, timings,
    ``peak_rss_mb`` (process peak resident memory).
    """
    progress = progress or no_progress
    dt = float_dtype(config.dtype, fn="spectrum")
    key = jax.random.key(config.seed)
    n = config.num_params
    do_exact = config.exact == "yes" or (config.exact == "auto" and n <= config.exact_max)
    if config.reortho == "full" and config.steps > n:
        raise ValueError(f"spectrum: steps ({config.steps}) must be <= N ({n}) with full reorthogonalisation")

    if config.model in ("grf", "pspin"):
        t = time.perf_counter()
        land, params, x, extra = _landscape_point(config, key)
        t_build = time.perf_counter() - t
        progress(1)
        mv = landscape_hessian_matvec(land, params, x, dt)
        exact_matrix = land.tangent_hessian(params, x) if do_exact else None
        res = spectrum_of_matvec(jax.random.fold_in(key, 2), mv, n, config, exact_matrix=exact_matrix)
        res.info["seconds"]["build"] = t_build
        res.info.update(extra)
        progress(1)
        return res

    if config.model == "goe":
        t = time.perf_counter()
        h = _goe_matrix(jax.random.fold_in(key, 3), n, dt) + config.shift * jnp.eye(n, dtype=dt)
        h = jax.block_until_ready(h)
        t_build = time.perf_counter() - t
        progress(1)
        res = spectrum_of_matvec(
            jax.random.fold_in(key, 2), lambda v: h @ v, n, config, exact_matrix=h if do_exact else None
        )
        res.info["seconds"]["build"] = t_build
        res.info["shift"] = config.shift
        progress(1)
        return res

    widths = config.widths
    mesh = _mesh(config)
    t = time.perf_counter()
    params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=dt)
    task = _task(config, key, dt)
    timings = {"build": time.perf_counter() - t}
    extra = {
        "widths": list(widths),
        "data": config.data,
        "num_samples": config.num_samples,
        "train_steps": config.train_steps,
        **_mesh_info(mesh),
    }
    if config.data != "teacher":
        from sim.learning.data import read_real

        extra["data_source"] = read_real(config.data).source
    loss0 = float(_loss(params, task))
    extra["loss_init"] = loss0
    if config.train_steps:
        t = time.perf_counter()
        lr = config.learning_rate if config.learning_rate is not None else 1.0 / _lambda_max(params, task, dt, mesh)
        params, _ = _gd_chunk(params, task, jnp.asarray(lr, dt), config.train_steps)
        params = jax.block_until_ready(params)
        timings["train"] = time.perf_counter() - t
        extra["learning_rate"] = lr
    extra["loss"] = float(_loss(params, task))
    progress(1)

    f = _make_slq(
        config.steps, config.probes, config.probe, config.reortho, config.batch_size, dt, config.threshold, mesh
    )
    (quad, f0, ft, ext), t_compile, t_run = _timed(f, params, task, jax.random.fold_in(key, 2))
    timings.update(slq_compile=t_compile, slq_run=t_run, per_hvp=t_run / (config.steps * config.probes))
    mom = None
    if config.eps:
        g = _make_counts(config, n, dt, mesh)
        ckey = jax.random.fold_in(jax.random.fold_in(key, 2), 1)  # as spectrum_of_matvec: fold_in(probe key, 1)
        mom, timings["counts_compile"], timings["counts_run"] = _timed(g, params, task, ckey)
    evals: np.ndarray | None = None
    if do_exact:
        t = time.perf_counter()
        dense = _dense_hessian(params, task)
        timings["exact_hessian"] = time.perf_counter() - t
        t = time.perf_counter()
        evals = np.linalg.eigvalsh(dense)
        timings["exact_eigvalsh"] = time.perf_counter() - t
    progress(1)
    return _with_counts(_summarise(quad, f0, ft, ext, config, n, timings, evals, extra), mom, config, evals)
