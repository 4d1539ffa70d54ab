"""Training an ensemble of MLPs with optax: S seeds at once under ``vmap``, steps under ``lax.scan``.

* ``make_optimizer(name, lr)``: ``gd`` (full-batch gradient descent) and ``sgd`` are ``optax.sgd``,
  ``adam`` is ``optax.adam``; hdsim writes no update rule of its own.
* ``make_step(model, optimizer)``: the pure step ``(params, opt_state, batch) -> (params, opt_state, loss)``
  (the loss before the update, on the batch).
* ``train(key, data, ...)``: S networks from seeds ``fold_in(key, s)`` (initialisation ``fold_in(., 0)``,
  mini-batches ``fold_in(fold_in(., 1), t)``), all trained on the same training set, compiled once for
  all seeds. Seed s's numbers do not depend on S (each seed is its own vmap lane, with its own keys).
  Parameters are kept at ``checkpoints + 1`` evenly spaced steps (for the Hessian index along training).

References:
    DeepMind et al. 2020, "The DeepMind JAX Ecosystem" (optax). docs/theory.md, "Training".
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sim._util import as_key
from sim.learning import mlp

__all__ = ["OPTIMIZERS", "Model", "make_optimizer", "make_step", "TrainRun", "train", "evaluate"]

OPTIMIZERS = ("gd", "sgd", "adam")


@dataclasses.dataclass(frozen=True)
class Model:
    """The architecture and parameterisation of an MLP (hashable: a static argument of jitted code)."""

    d_in: int
    width: int
    depth: int
    d_out: int
    parameterization: str = "ntk"
    activation: str = "relu"
    sigma_w: float = 1.0
    sigma_b: float = 0.0

    def __post_init__(self):
        mlp._check("Model", self.d_in, self.width, self.depth, self.d_out, self.parameterization, self.activation)

    @property
    def fwd(self) -> dict:
        return dict(
            parameterization=self.parameterization,
            activation=self.activation,
            sigma_w=self.sigma_w,
            sigma_b=self.sigma_b,
        )

    def init(self, key, dtype=jnp.float32):
        return mlp.init(
            key,
            self.d_in,
            self.width,
            self.depth,
            self.d_out,
            parameterization=self.parameterization,
            sigma_w=self.sigma_w,
            sigma_b=self.sigma_b,
            dtype=dtype,
        )

    def apply(self, params, x):
        return mlp.apply(params, x, **self.fwd)

    def loss(self, params, x, y):
        return mlp.mse(self.apply(params, x), y)

    @property
    def num_params(self) -> int:
        return mlp.num_params(self.d_in, self.width, self.depth, self.d_out)


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """``gd``/``sgd``: ``optax.sgd(lr)``; ``adam``: ``optax.adam(lr)``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"make_optimizer: optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and lr < float("inf")):
        raise ValueError(f"make_optimizer: lr must be a finite number > 0, got {lr!r}")
    return optax.adam(lr) if name == "adam" else optax.sgd(lr)


def make_step(model: Model, optimizer: optax.GradientTransformation):
    """The pure training step ``(params, opt_state, (x, y)) -> (params, opt_state, loss)``."""

    def step(params, opt_state, batch):
        x, y = batch
        value, grads = jax.value_and_grad(model.loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


class TrainRun(NamedTuple):
    """An ensemble's training. Leading axis S (seeds) on every leaf.

    ``params0``/``params``: initial and final parameters; ``losses`` (S, steps): the batch loss before each
    step; ``checkpoints``: parameters with a second axis of C + 1 (at ``checkpoint_steps``)."""

    params0: Any
    params: Any
    losses: jax.Array
    checkpoints: Any
    checkpoint_steps: tuple[int, ...]


@functools.partial(
    jax.jit, static_argnames=("model", "optimizer", "lr", "steps", "seeds", "batch_size", "checkpoints", "dtype")
)
def _train(key, x, y, *, model, optimizer, lr, steps, seeds, batch_size, checkpoints, dtype):
    opt = make_optimizer(optimizer, lr)
    step = make_step(model, opt)
    n = x.shape[0]
    seg = steps // checkpoints
    rest = steps - seg * checkpoints

    def one(s):
        k = jax.random.fold_in(key, s)
        p0 = model.init(jax.random.fold_in(k, 0), dtype)
        kb = jax.random.fold_in(k, 1)

        def body(carry, t):
            p, st = carry
            if batch_size is None or batch_size >= n:
                batch = (x, y)
            else:
                idx = jax.random.choice(jax.random.fold_in(kb, t), n, (batch_size,), replace=False)
                batch = (x[idx], y[idx])
            p, st, value = step(p, st, batch)
            return (p, st), value

        def segment(carry, j):
            carry, vals = jax.lax.scan(body, carry, j * seg + jnp.arange(seg))
            return carry, (carry[0], vals)

        carry = (p0, opt.init(p0))
        carry, (ckpt, vals) = jax.lax.scan(segment, carry, jnp.arange(checkpoints))
        vals = vals.reshape(-1)
        if rest:
            carry, tail = jax.lax.scan(body, carry, seg * checkpoints + jnp.arange(rest))
            vals = jnp.concatenate([vals, tail])
        ckpt = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), p0, ckpt)
        if rest:
            ckpt = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), ckpt, carry[0])
        return p0, carry[0], vals, ckpt

    return jax.vmap(one)(jnp.arange(seeds))


def train(
    key,
    data,
    model: Model,
    *,
    optimizer: str = "gd",
    lr: float = 0.1,
    steps: int = 1000,
    seeds: int = 1,
    batch_size: int | None = None,
    checkpoints: int = 1,
    dtype=jnp.float32,
) -> TrainRun:
    """Train ``seeds`` networks of ``model`` on ``data.x_train``/``data.y_train`` (see the module docstring).

    Args:
        key: PRNG key.
        data: anything with ``x_train`` (n, d_in) and ``y_train`` (n, d_out) (``sim.learning.data.Data``).
        model: ``Model``.
        optimizer: ``gd`` (full batch; ``batch_size`` ignored), ``sgd`` or ``adam`` (mini-batches of
            ``batch_size`` drawn without replacement each step; None: full batch).
        lr: learning rate.
        steps: optimisation steps >= 1.
        seeds: ensemble size S >= 1.
        checkpoints: C >= 1: parameters are kept at steps ``0, L, 2L, ..., C L`` with ``L = steps // C``
            (and at ``steps`` if C does not divide it).
        dtype: parameter dtype.
    """
    for name, v, least in (("steps", steps, 1), ("seeds", seeds, 1), ("checkpoints", checkpoints, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"train: {name} must be an integer >= {least}, got {v!r}")
    if checkpoints > steps:
        raise ValueError(f"train: checkpoints must be <= steps ({steps}), got {checkpoints}")
    make_optimizer(optimizer, lr)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"train: batch_size must be an integer >= 1 or None, got {batch_size!r}")
    x = jnp.asarray(data.x_train, dtype)
    y = jnp.asarray(data.y_train, dtype)
    if x.shape[1] != model.d_in or y.shape[1] != model.d_out:
        raise ValueError(
            f"train: data of shape {x.shape}, {y.shape} does not fit the model ({model.d_in} -> {model.d_out})"
        )
    bs = None if optimizer == "gd" or batch_size is None or batch_size >= x.shape[0] else int(batch_size)
    p0, p, losses, ckpt = _train(
        as_key(key),
        x,
        y,
        model=model,
        optimizer=optimizer,
        lr=float(lr),
        steps=int(steps),
        seeds=int(seeds),
        batch_size=bs,
        checkpoints=int(checkpoints),
        dtype=jnp.dtype(dtype),
    )
    seg = steps // checkpoints
    marks = tuple(j * seg for j in range(checkpoints + 1)) + ((steps,) if steps != seg * checkpoints else ())
    return TrainRun(p0, p, losses, ckpt, marks)


@functools.partial(jax.jit, static_argnames=("model",))
def evaluate(model: Model, params, x, y, labels):
    """Per seed ``(loss, error_rate)`` of stacked ``params`` (leading axis S) on one data set."""

    def one(p):
        out = model.apply(p, x)
        return mlp.mse(out, y), jnp.mean(jnp.argmax(out, axis=-1) != labels)

    return jax.vmap(one)(params)
