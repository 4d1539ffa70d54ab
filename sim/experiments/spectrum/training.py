"""The negative fraction (and the eigenvalue counts) of MLP Hessians along gradient descent, 10^3..10^6
parameters: the data of the ``spectrum_training`` figure."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import float_dtype
from sim.experiments.base import Progress, Result, no_progress
from sim.experiments.spectrum.config import SpectrumTrainingConfig
from sim.experiments.spectrum.operators import (
    _dense_hessian,
    _gd_chunk,
    _lambda_max,
    _loss,
    _make_counts,
    _make_slq,
    _mesh,
    _mesh_info,
)
from sim.experiments.spectrum.summary import _bracket, _peak_rss_mb, count_rows, counts_info
from sim.models import mlp_init, mlp_num_params, mlp_widths, teacher_task, width_for_params

__all__ = ["run_training"]

#: the exact fractions ``count_rows`` adds when it is given the eigenvalues
EXACT_COUNT_COLUMNS = ("exact_negative_fraction", "exact_zero_fraction", "exact_positive_fraction")


def run_training(config: SpectrumTrainingConfig, *, progress: Progress | None = None) -> Result:
    """Negative fraction of MLP Hessians along gradient descent, for several model sizes.

    Rows (one per model size and checkpoint): num_params, width, step, loss, negative_fraction,
    negative_fraction_stderr, negative_fraction_lower, negative_fraction_upper, min_eigenvalue,
    max_eigenvalue, learning_rate, seconds (SLQ run time at that checkpoint, compile excluded).
    Info: per-size compile times and peak resident memory. With ``eps``: table ``counts`` (num_params,
    width, step, then ``COUNT_COLUMNS`` and exact fractions where n <= exact_max) at the first and last
    checkpoints, and ``counts_info`` (deflation, bulk interval, seconds) per size and checkpoint.
    """
    progress = progress or no_progress
    dt = float_dtype(config.dtype, fn="spectrum-training")
    key = jax.random.key(config.seed)
    mesh = _mesh(config)
    count_table: list[dict] = []
    rows, info = (
        [],
        {
            "compile_seconds": {},
            "dtype": config.dtype,
            "probes": config.probes,
            "steps": config.steps,
            **_mesh_info(mesh),
        },
    )
    every = config.train_steps // (config.checkpoints - 1) if config.checkpoints > 1 else 0
    for target in config.param_counts:
        w = width_for_params(int(target), depth=config.depth, input_dim=config.input_dim, output_dim=config.output_dim)
        widths = mlp_widths(config.input_dim, w, config.depth, config.output_dim)
        n = mlp_num_params(widths)
        steps = min(config.steps, n)
        params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=dt)
        task = teacher_task(jax.random.fold_in(key, 1), widths, config.num_samples, noise=config.noise, dtype=dt)
        lr = config.learning_rate if config.learning_rate is not None else 1.0 / _lambda_max(params, task, dt, mesh)
        f = _make_slq(steps, config.probes, config.probe, config.reortho, config.batch_size, dt, 0.0, mesh)
        t = time.perf_counter()
        f_c = f.lower(params, task, jax.random.fold_in(key, 2)).compile()
        info["compile_seconds"][str(n)] = time.perf_counter() - t
        step = 0
        for c in range(config.checkpoints):
            if c > 0:
                params, _ = _gd_chunk(params, task, jnp.asarray(lr, dt), every)
                step += every
            t = time.perf_counter()
            _, fr, _, ext = jax.block_until_ready(f_c(params, task, jax.random.fold_in(key, 2)))
            secs = time.perf_counter() - t
            rows.append(
                {
                    "num_params": n,
                    "width": w,
                    "step": step,
                    "loss": float(_loss(params, task)),
                    "negative_fraction": float(fr.fraction),
                    "negative_fraction_stderr": float(fr.stderr),
                    "negative_fraction_lower": _bracket(fr)[0],
                    "negative_fraction_upper": _bracket(fr)[1],
                    "min_eigenvalue": float(ext.min_value),
                    "max_eigenvalue": float(ext.max_value),
                    "learning_rate": float(lr),
                    "seconds": secs,
                }
            )
            if config.eps and (c == 0 or c == config.checkpoints - 1):
                count_table += _training_counts(config, params, task, n, w, step, dt, mesh, key, info)
            progress(1)
    info["peak_rss_mb"] = _peak_rss_mb()
    return Result(rows=rows, tables={"counts": count_table} if config.eps else {}, info=info)


def _training_counts(config, params, task, n, w, step, dt, mesh, key, info) -> list[dict]:
    """Counts N-(eps), N0(eps), N+(eps) (eps relative to ||H||) at one checkpoint, with the exact ones
    from a dense Hessian when n <= exact_max."""
    t = time.perf_counter()
    mom = jax.block_until_ready(_make_counts(config, n, dt, mesh)(params, task, jax.random.fold_in(key, 6)))
    secs = time.perf_counter() - t  # compile included (one program per size and degree)
    evals = None
    if n <= config.exact_max:
        evals = np.linalg.eigvalsh(_dense_hessian(params, task))
    info.setdefault("counts_info", []).append({"num_params": n, "step": step, "seconds": secs, **counts_info(mom)})
    # one schema for every size: the exact fractions are missing (empty cells) where n > exact_max
    missing = dict.fromkeys(EXACT_COUNT_COLUMNS) if evals is None else {}
    return [
        {"num_params": n, "width": w, "step": step, **r, **missing}
        for r in count_rows(mom, config.eps, relative=True, exact_evals=evals)
    ]
