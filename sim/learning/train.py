"""Training an ensemble of MLPs with optax: each seed's whole training one compiled ``lax.scan``.

* ``make_optimizer(name, lr)``: ``gd`` (full-batch gradient descent) and ``sgd`` are ``optax.sgd``,
  ``adam`` is ``optax.adam``; hdsim writes no update rule of its own.
* ``make_step(model, optimizer)``: the pure step ``(params, opt_state, batch) -> (params, opt_state, loss)``
  (the loss before the update, on the batch).
* ``train(key, data, ...)``: S networks from seeds ``fold_in(key, s)`` (initialisation ``fold_in(., 0)``,
  mini-batches ``fold_in(fold_in(., 1), t)``), all trained on the same training set by one program
  compiled once per architecture (widths, activation), optimizer and schedule (the seed index, the
  parameterisation's multipliers and the learning rate are arguments, so any S, parameterisation and rate
  reuse it) and run for one seed after another. Seed s's numbers do not depend on S (the same program on the same keys).
  Parameters are kept at ``checkpoints + 1`` evenly spaced steps (for the Hessian index along training).

Performance (CPU; benchmarks/bench_train.py): the seeds run one after another rather than as one
vmapped batch. A seed's activations (n x width) then stay in cache; the vmapped ensemble turned the
first layer into one (n, d) x (d, S width) product whose output streamed through memory and had to be
transposed to (S, n, width) twice per step, and it ran about 2x slower per seed on one core. Weights are
trained in the layout that makes XLA's weight-gradient product fastest (``_transposed``), and the
parameterisation's multipliers scale the weights, not the activations (``sim.learning.mlp``).

References:
    DeepMind et al. 2020, "The DeepMind JAX Ecosystem" (optax). docs/theory.md, "Training".
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sim._util import as_key
from sim.learning import mlp

__all__ = [
    "OPTIMIZERS",
    "Model",
    "make_optimizer",
    "make_step",
    "TrainRun",
    "train",
    "compile_train",
    "evaluate",
    "hyper_loss",
]

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


def _transposed(widths: tuple[int, ...]) -> tuple[bool, ...]:
    """Per layer: train the weight stored as (fan_out, fan_in)? Yes where fan_in > fan_out.

    The weight gradient ``h^T g`` (contracting the n samples) then comes out as (min, max) of the two
    widths: XLA's CPU backend (jaxlib 0.10) computes the (256, 10) output of a width-256 network's last
    layer through a generic kernel about 5x slower than the (10, 256) one (benchmarks/bench_train.py,
    "profile"); the layout changes no number but the rounding of that product."""
    return tuple(fi > fo for fi, fo in zip(widths[:-1], widths[1:]))


def _relayout(params, transposed):
    return [{"w": p["w"].T if t else p["w"], "b": p["b"]} for p, t in zip(params, transposed)]


def _hyper(model: Model, lr: float, dtype):
    """The run-time numbers of a training program: per layer ``(m_w, std_w, m_b, std_b)`` (L, 4) and lr."""
    ws = mlp.widths_of(model.d_in, model.width, model.depth, model.d_out)
    mult = mlp.multipliers(ws, model.parameterization, sigma_w=model.sigma_w, sigma_b=model.sigma_b)
    return jnp.asarray(mult, dtype), jnp.asarray(lr, dtype)


def _layers(mult) -> tuple:
    """The (L, 4) multiplier array as ``mlp._forward``'s per-layer ``(m_w, std_w, m_b, std_b)``."""
    return tuple(tuple(mult[l, j] for j in range(4)) for l in range(mult.shape[0]))


@functools.partial(
    jax.jit, static_argnames=("widths", "activation", "optimizer", "steps", "batch_size", "checkpoints", "dtype")
)
def _train_one(key, s, x, y, mult, lr, *, widths, activation, optimizer, steps, batch_size, checkpoints, dtype):
    """One seed's whole training in one program: ``lax.scan`` over steps (segments between checkpoints).

    Compiled once per architecture (widths, activation), optimizer and schedule, whatever the number of
    seeds (``s`` is traced), the parameterisation (its multipliers ``mult`` are data) and the learning rate
    (data too): the gallery's sweeps over parameterisations and rates reuse one program."""
    opt = optax.adam(lr) if optimizer == "adam" else optax.sgd(lr)
    n = x.shape[0]
    seg = steps // checkpoints
    rest = steps - seg * checkpoints
    tr = _transposed(widths)
    fwd = _layers(mult)
    phi = mlp.ACTIVATIONS[activation]

    def loss(q, xb, yb):  # model.loss on the parameters in the training layout
        return mlp.mse(mlp._forward(q, xb, fwd, phi, tr), yb)

    def init(k0):  # model.init with the standard deviations as data: the same keys, the same products
        shapes = [((fi, fo), (fo,)) for fi, fo in zip(widths[:-1], widths[1:])]
        keys = [[jax.random.fold_in(jax.random.fold_in(k0, l), j) for j in (0, 1)] for l in range(len(shapes))]
        if jax.config.jax_threefry_partitionable:
            # element i of normal(key, shape) depends only on (key, i): every array is the prefix of one
            # vectorised draw per key, one generator in the program instead of one per array (each costs
            # about 0.6 CPU-s of XLA compilation; bits unchanged, tests/test_learning.py)
            m = max(math.prod(sh) for pair in shapes for sh in pair)
            z = jax.vmap(lambda kk: jax.random.normal(kk, (m,), dtype))(jnp.stack([k for ks in keys for k in ks]))
            draws = [z[i, : math.prod(sh)].reshape(sh) for i, sh in enumerate(sh for pair in shapes for sh in pair)]
        else:
            draws = [jax.random.normal(k, sh, dtype) for ks, pair in zip(keys, shapes) for k, sh in zip(ks, pair)]
        return [{"w": mult[l, 1] * draws[2 * l], "b": mult[l, 3] * draws[2 * l + 1]} for l in range(len(shapes))]

    k = jax.random.fold_in(key, s)
    p0 = init(jax.random.fold_in(k, 0))
    kb = jax.random.fold_in(k, 1)

    def body(carry, t):
        q, st = carry
        if batch_size is None or batch_size >= n:
            xb, yb = x, y
        else:
            idx = jax.random.choice(jax.random.fold_in(kb, t), n, (batch_size,), replace=False)
            xb, yb = x[idx], y[idx]
        value, grads = jax.value_and_grad(loss)(q, xb, yb)
        updates, st = opt.update(grads, st, q)
        return (optax.apply_updates(q, updates), st), value

    def segment(carry, j):
        carry, vals = jax.lax.scan(body, carry, j * seg + jnp.arange(seg))
        return carry, (carry[0], vals)

    q0 = _relayout(p0, tr)
    carry = (q0, opt.init(q0))
    carry, (ckpt, vals) = jax.lax.scan(segment, carry, jnp.arange(checkpoints))
    vals = vals.reshape(-1)
    if rest:
        carry, tail = jax.lax.scan(body, carry, seg * checkpoints + jnp.arange(rest))
        vals = jnp.concatenate([vals, tail])
    p = _relayout(carry[0], tr)
    ckpt = [{"w": jnp.swapaxes(c["w"], 1, 2) if t else c["w"], "b": c["b"]} for c, t in zip(ckpt, tr)]
    ckpt = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), p0, ckpt)
    if rest:
        ckpt = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), ckpt, p)
    return p0, p, vals, ckpt


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
    fn, x, y, mult, lr_ = _program(
        data,
        model,
        optimizer=optimizer,
        lr=lr,
        steps=steps,
        seeds=seeds,
        batch_size=batch_size,
        checkpoints=checkpoints,
        dtype=dtype,
    )
    key = as_key(key)
    # one seed at a time (dispatched asynchronously, no host synchronisation between seeds): each
    # seed's activations stay in cache, where the vmapped ensemble streamed S times as much memory per
    # step and ran at a third of the speed on CPU (benchmarks/bench_train.py, "profile")
    p0, p, losses, ckpt = _stack_trees([fn(key, s, x, y, mult, lr_) for s in range(seeds)])
    seg = steps // checkpoints
    marks = tuple(j * seg for j in range(checkpoints + 1)) + ((steps,) if steps != seg * checkpoints else ())
    return TrainRun(p0, p, losses, ckpt, marks)


def _program(data, model: Model, *, optimizer, lr, steps, seeds, batch_size, checkpoints, dtype):
    """``train``'s arguments checked: (its program with the static options bound, x, y, multipliers, rate)."""
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
    fn = functools.partial(
        _train_one,
        widths=mlp.widths_of(model.d_in, model.width, model.depth, model.d_out),
        activation=model.activation,
        optimizer=optimizer,
        steps=int(steps),
        batch_size=bs,
        checkpoints=int(checkpoints),
        dtype=jnp.dtype(dtype),
    )
    mult, lr_ = _hyper(model, lr, dtype)
    return fn, x, y, mult, lr_


def compile_train(
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
) -> None:
    """Compile, without running, the program that ``train`` runs with these arguments (one per
    architecture and schedule, see ``train``): a later ``train`` call with the same arguments reuses it,
    so a caller can compile several architectures side by side in threads (XLA compiles with the GIL
    released). The program and its results are those of ``train`` itself."""
    fn, x, y, mult, lr_ = _program(
        data,
        model,
        optimizer=optimizer,
        lr=lr,
        steps=steps,
        seeds=seeds,
        batch_size=batch_size,
        checkpoints=checkpoints,
        dtype=dtype,
    )
    fn.func.lower(as_key(key), 0, x, y, mult, lr_, **fn.keywords).compile()


@jax.jit
def _stack_trees(trees):
    """The seeds' results stacked leaf by leaf: one compiled program per architecture, not one per leaf shape."""
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def hyper_loss(model: Model, dtype=jnp.float32):
    """``(loss, mult)``: the architecture's loss ``loss(mult, params, x, y)`` with the parameterisation's
    multipliers ``mult`` (L, 4) as data, and this model's ``mult`` in ``dtype``. ``loss`` depends only on the widths and
    the activation, so one jitted function of it serves every parameterisation (same value as
    ``model.loss(params, x, y)``)."""
    widths = mlp.widths_of(model.d_in, model.width, model.depth, model.d_out)
    return _arch_loss(widths, model.activation), _hyper(model, 1.0, dtype)[0]


@functools.cache
def _arch_loss(widths, activation):
    phi = mlp.ACTIVATIONS[activation]

    def loss(mult, params, x, y):
        fwd = _layers(mult)
        return mlp.mse(mlp._forward(params, x, fwd, phi), y)

    return loss


def evaluate(model: Model, params, x, y, labels):
    """Per seed ``(loss, error_rate)`` of stacked ``params`` (leading axis S) on one data set.

    One program per architecture: the parameterisation's multipliers are data, as in ``train``."""
    x = jnp.asarray(x)
    mult, _ = _hyper(model, 1.0, x.dtype)
    ws = mlp.widths_of(model.d_in, model.width, model.depth, model.d_out)
    return _evaluate(params, x, y, labels, mult, widths=ws, activation=model.activation)


@functools.partial(jax.jit, static_argnames=("widths", "activation"))
def _evaluate(params, x, y, labels, mult, *, widths, activation):
    fwd = _layers(mult)
    phi = mlp.ACTIVATIONS[activation]

    def one(p):
        out = mlp._forward(p, x, fwd, phi)
        return mlp.mse(out, y), jnp.mean(jnp.argmax(out, axis=-1) != labels)

    return jax.vmap(one)(params)
