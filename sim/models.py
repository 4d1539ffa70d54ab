"""A small multilayer perceptron in plain JAX, and a teacher-student regression task.

Shared by the random-loss work (``sim.landscapes``: the MLP training loss as a random function of its
parameters) and the spectrum work (Hessian-vector products of the same loss at 10^3..10^6 parameters).

Parameters are a pytree: a list of ``(W, b)`` with ``W`` of shape ``(fan_in, fan_out)``. Activation is
``tanh`` (smooth: Hessians are well defined everywhere, unlike ReLU's). Use
``jax.flatten_util.ravel_pytree`` to get the flat parameter vector that the landscape kernels take.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "Task",
    "mlp_init",
    "mlp_apply",
    "mlp_num_params",
    "mlp_widths",
    "width_for_params",
    "teacher_task",
    "mse_loss",
]

Params = list  # list[tuple[jax.Array, jax.Array]]


def mlp_num_params(widths) -> int:
    """Number of parameters (weights and biases) of an MLP with layer ``widths`` (input first)."""
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def mlp_widths(input_dim: int, width: int, depth: int, output_dim: int = 1) -> tuple[int, ...]:
    """Layer widths (input first) of an MLP with ``depth`` hidden layers of ``width``."""
    return (input_dim,) + (width,) * depth + (output_dim,)


def width_for_params(target: int, *, depth: int, input_dim: int, output_dim: int = 1) -> int:
    """The hidden width whose MLP parameter count is closest to ``target``."""
    best, best_err = 1, math.inf
    w = 1
    while True:
        n = mlp_num_params(mlp_widths(input_dim, w, depth, output_dim))
        if abs(n - target) < best_err:
            best, best_err = w, abs(n - target)
        if n > target:
            return best
        w += 1


def mlp_init(key, widths, *, scheme: str = "lecun", dtype=jnp.float32) -> Params:
    """Random MLP parameters: W ~ N(0, gain / fan_in) (lecun gain 1, he gain 2), b = 0.

    Args:
        key: PRNG key; layer l uses ``fold_in(key, l)``.
        widths: layer widths, input first, e.g. ``(16, 32, 1)``.
        scheme: ``"lecun"`` (default, right for tanh) or ``"he"``.
        dtype: parameter dtype.

    Returns:
        List of ``(W, b)``, ``W`` of shape ``(fan_in, fan_out)``, ``b`` of shape ``(fan_out,)``.
    """
    gains = {"lecun": 1.0, "he": 2.0}
    if scheme not in gains:
        raise ValueError(f"mlp_init: unknown scheme {scheme!r}; valid: {', '.join(gains)}")
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"mlp_init: widths must be >= 2 positive integers, got {widths!r}")
    params = []
    for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        k = jax.random.fold_in(key, layer)
        w = jax.random.normal(k, (fan_in, fan_out), dtype) * jnp.sqrt(gains[scheme] / fan_in).astype(dtype)
        params.append((w, jnp.zeros((fan_out,), dtype)))
    return params


def mlp_apply(params: Params, x: jax.Array) -> jax.Array:
    """Forward pass: tanh hidden layers, linear output. ``x``: (..., d_in) -> (..., d_out).

    Biases are broadcast explicitly (rank-matched), so the kernel runs under
    ``jax_numpy_rank_promotion="raise"``, as hdsim's tests do.
    """

    def affine(h, w, b):
        return h @ w + jnp.reshape(b, (1,) * (h.ndim - 1) + b.shape)

    for w, b in params[:-1]:
        x = jnp.tanh(affine(x, w, b))
    w, b = params[-1]
    return affine(x, w, b)


class Task(NamedTuple):
    """Regression data: inputs (m, d_in) and targets (m, d_out)."""

    x: jax.Array
    y: jax.Array


def teacher_task(key, widths, num_samples: int, *, noise: float = 0.0, dtype=jnp.float32) -> Task:
    """Gaussian inputs labelled by a random teacher MLP of the same ``widths`` (plus optional noise).

    Keys: inputs ``fold_in(key, 0)``, teacher ``fold_in(key, 1)``, noise ``fold_in(key, 2)``.
    """
    x = jax.random.normal(jax.random.fold_in(key, 0), (num_samples, widths[0]), dtype)
    teacher = mlp_init(jax.random.fold_in(key, 1), widths, dtype=dtype)
    y = mlp_apply(teacher, x)
    if noise:
        y = y + noise * jax.random.normal(jax.random.fold_in(key, 2), y.shape, dtype)
    return Task(x, y)


def mse_loss(params: Params, task: Task) -> jax.Array:
    """Mean squared error, 1/(2m) sum |f(x) - y|^2."""
    r = mlp_apply(params, task.x) - task.y
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=-1))
