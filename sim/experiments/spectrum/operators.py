"""The operators whose spectra are measured: MLP loss Hessians (with gradient descent), GOE matrices,
landscape Hessians at critical or random points; and the dense Hessian for the exact comparison."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sim.counts import moments
from sim.devices import get_devices, make_mesh
from sim.experiments.spectrum.config import SpectrumConfig
from sim.hvp import hessian_matvec, mlp_hessian_matvec, num_params
from sim.lanczos import extreme_eigenvalues, fraction_below, slq
from sim.models import Task, mse_loss, teacher_task
from sim.rmt import goe
from sim.theory.rmt import semicircle_cdf


def _mesh(config):
    """The 1-D mesh the probes of ``config`` run on."""
    return make_mesh(get_devices(config.devices, platform=config.platform))


def _mesh_info(mesh) -> dict:
    return {"devices": mesh.size, "platform": mesh.devices.flat[0].platform}


def _goe_matrix(key, n: int, dtype) -> jax.Array:
    """GOE normalised to [-2, 2] (``sim.rmt.goe``)."""
    return goe(key, n, dtype=dtype)


def _loss(params, task):
    return mse_loss(params, task)


def _mlp_matvec(params, task):
    """The MSE loss Hessian of the MLP as a matvec: the hand-written R-operator (``sim.hvp.mlp_hessian_matvec``),
    the same operator as ``hessian_matvec(lambda p: _loss(p, task), params)`` to float rounding and 6-11 %
    cheaper at 10^6 parameters (benchmarks/bench_spectrum.py --big). The dense exact reference
    (``_dense_hessian``) keeps the autodiff product, so the checks compare two independent codes."""
    return mlp_hessian_matvec(params, task.x, task.y)


@jax.jit
def _gd_chunk(params, task, lr, num):
    """``num`` (traced) full-batch GD steps; returns new params and the loss before each step."""

    def body(_, carry):
        p, _loss_prev = carry
        value, g = jax.value_and_grad(_loss)(p, task)
        return jax.tree_util.tree_map(lambda a, b: a - lr.astype(a.dtype) * b, p, g), value

    return jax.lax.fori_loop(0, num, body, (params, jnp.zeros((), lr.dtype)))


@functools.lru_cache(maxsize=32)
def _make_slq(num_steps, num_probes, probe, reortho, batch_size, dtype, threshold, mesh=None):
    """A jitted ``(params, task, key) -> summary`` for the MLP Hessian (compiled once per shape);
    the probe batches are split over ``mesh`` (None: every device). Cached: every call with the same
    options shares one jitted function, so its compilations are shared too."""

    def f(params, task, key):
        n = num_params(params)
        mv = _mlp_matvec(params, task)
        quad = slq(
            key,
            mv,
            n,
            num_steps=num_steps,
            num_probes=num_probes,
            probe=probe,
            reortho=reortho,
            batch_size=batch_size,
            dtype=dtype,
            devices=mesh,
        )
        return quad, fraction_below(quad, 0.0), fraction_below(quad, threshold), extreme_eigenvalues(quad)

    return jax.jit(f)


def _task(config: SpectrumConfig, key, dtype) -> Task:
    """The MLP's training data: the teacher task, or ``num_samples`` images/signals of a real data set drawn
    from its fixed training pool by ``sim.learning.data.load`` (one-hot targets); key ``fold_in(key, 1)``."""
    k = jax.random.fold_in(key, 1)
    if config.data == "teacher":
        return teacher_task(k, config.widths, config.num_samples, noise=config.noise, dtype=dtype)
    from sim.learning.data import load

    d = load(config.data, k, config.num_samples, 1, dtype=dtype)  # one test sample: the test pool is unused
    return Task(d.x_train, d.y_train)


def _lambda_max(params, task, dtype, mesh=None) -> float:
    """Largest Hessian eigenvalue at ``params`` (Lanczos, 30 steps, one probe): for the GD step size."""
    n = num_params(params)
    steps = min(30, n)
    f = jax.jit(
        lambda p, t: (
            extreme_eigenvalues(
                slq(
                    jax.random.key(0),
                    _mlp_matvec(p, t),
                    n,
                    num_steps=steps,
                    num_probes=1,
                    dtype=dtype,
                    devices=mesh,
                )
            ).max_value
        )
    )
    return float(f(params, task))


def _landscape_point(config: SpectrumConfig, key):
    """(landscape, params, x, extra info) for a grf/pspin config (float64)."""
    from sim.critical import find_critical_points

    land = config.landscape()
    params = land.sample(jax.random.fold_in(key, 4), config.dim, dtype=jnp.float64)
    extra = {"landscape": land.label(), "dim": config.dim, "point": config.point}
    if config.point == "random":
        x = land.start(jax.random.fold_in(key, 5), params)
    else:
        cp = find_critical_points(jax.random.fold_in(key, 5), land, params, config.starts)
        conv = np.asarray(cp.converged)
        extra.update(
            starts=config.starts, converged_starts=int(conv.sum()), stalled_starts=int(np.asarray(cp.stalled).sum())
        )
        if not conv.any():
            raise RuntimeError(
                f"spectrum: none of the {config.starts} Newton starts converged to a critical point of "
                f"{land.label()} at n = {config.dim}; use more starts or point=random"
            )
        i = int(np.argmax(conv))
        x = cp.x[i]
        extra.update(
            start=i,
            grad_norm=float(cp.grad_norm[i]),
            gtol=float(cp.gtol),
            critical_index=int(cp.index[i]),
            critical_zero_modes=int(cp.n_zero[i]),
        )
    u = float(land.energy_density(params, x))
    extra["energy_density"] = u
    # Semicircle theory at this energy (valid at any point: docs/theory.md#grf-bray-dean and #pspin)
    if config.model == "pspin":
        extra["theory_negative_fraction"] = float(semicircle_cdf(u * math.sqrt(config.p / (config.p - 1))))
    elif land.confine == 0:
        extra["theory_negative_fraction"] = float(semicircle_cdf(u))
    return land, params, x, extra


def _dense_hessian(params, task) -> np.ndarray:
    flat, _ = ravel_pytree(params)
    h = np.asarray(_dense_hessian_columns(params, task, jnp.eye(flat.size, dtype=flat.dtype)), np.float64)
    return 0.5 * (h + h.T)


@jax.jit
def _dense_hessian_columns(params, task, vs):
    """H v for every row v of ``vs`` (one jitted function: compiled once per shape, not per call)."""
    return jax.lax.map(hessian_matvec(lambda q: _loss(q, task), params), vs, batch_size=256)


def _count_kwargs(config, n: int) -> dict:
    """``sim.counts.moments`` options of a config at dimension n."""
    return dict(
        degree=config.degree,
        num_probes=config.count_probes or config.probes,
        lanczos_steps=min(COUNT_LANCZOS_STEPS, n),
        bounds_steps=min(COUNT_BOUNDS_STEPS, n),
        max_deflate=min(COUNT_MAX_DEFLATE, min(COUNT_LANCZOS_STEPS, n) // 2),
        batch_size=config.batch_size,
    )


#: Krylov depth of the deflation run, of the bulk-bounds run, and Ritz pairs deflated per end (counts)
COUNT_LANCZOS_STEPS = 80
COUNT_BOUNDS_STEPS = 40
COUNT_MAX_DEFLATE = 16


def _make_counts(config, n: int, dtype, mesh=None):
    """A jitted ``(params, task, key) -> sim.counts.Moments`` for the MLP Hessian (one per options: the
    checkpoints of a run share its compilation)."""
    return _counts_fn(tuple(sorted(_count_kwargs(config, n).items())), n, dtype, mesh)


@functools.lru_cache(maxsize=32)
def _counts_fn(kw: tuple, n: int, dtype, mesh):
    def f(params, task, key):
        mv = _mlp_matvec(params, task)
        return moments(key, mv, n, dtype=dtype, devices=mesh, **dict(kw))

    return jax.jit(f)
