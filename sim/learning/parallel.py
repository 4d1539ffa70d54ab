"""Data-parallel SGD over a device mesh (``jax.shard_map``), bit-identical for any power-of-two device count.

K workers each take a slice of the batch, compute the gradient of their slice, and average with the
others (a mean all-reduce): that is SGD with batch B = K b. Here:

* A ``Problem`` says what is trained on what: ``stream`` (Gaussian features ``x = sqrt(lambda) g`` with a
  linear target ``y = x . w + sigma eps``, a fresh sample for every index: infinite data, so the loss is
  the *population* loss ``0.5 (delta^T H delta + sigma^2)``, ``delta = theta - w``, ``H = diag(lambda)``),
  or ``pool`` (a fixed training set; batches are drawn from it with replacement, so its full-pool loss
  is the loss that a batch gradient estimates without bias). Models: ``linear`` (``theta`` of shape
  (d, k), started at 0) or an MLP (``sim.learning.train.Model``).
* Sample j of step t of seed s is drawn from ``fold_in(fold_in(k_s, t), j)`` (``k_s`` the seed's batch
  key): its value never depends on which device draws it.
* The batch of B samples is cut into ``leaves(B)`` equal leaves (a power of two, at most ``MAX_LEAVES``);
  every leaf's summed gradient is computed by the same program on whichever device holds it, the
  leaves of a device are added in a pairwise tree, and the devices' sums are combined in a fixed
  pairwise tree (``sim.devices.ordered_reduce``), so the gradient, hence the whole trajectory, is bit
  for bit the same on 1, 2, 4 or 8 devices and in one or several processes (``jax.distributed``).
* Updates are ``optax.sgd`` (the rate injected per step with ``optax.inject_hyperparams``). With
  ``lr="optimal"`` (linear model on a stream only) the rate of every step is the one that minimises the
  expected loss after the step, ``eta = |G|^2 / (G^T H G + tr(H Sigma)/B)`` from the exact G, H and
  Sigma of the current iterate (docs/theory.md#gradient-noise-scale): ``B / (B + d + 1)`` on isotropic
  noiseless data.

``train_chunk`` runs ``steps`` steps from step ``t0`` for S seeds at once (vmap over seeds) and returns
the loss after every step; the caller decides after each chunk whether to go on (the random numbers of
a step depend only on its index, so the chunking changes no value).

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An empirical model of large-batch training", arXiv 1812.06162.
    docs/theory.md#gradient-noise-scale.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec

from sim.devices import AXIS, make_mesh, ordered_reduce, replicated

__all__ = [
    "MAX_LEAVES",
    "MAX_POOL",
    "Problem",
    "Arrays",
    "leaves",
    "check_batch",
    "stream_arrays",
    "pool_arrays",
    "init_params",
    "sample",
    "batch_loss",
    "true_loss",
    "optimal_lr",
    "train_chunk",
    "seed_keys",
]

#: most rows of a pool (rows are picked with 32-bit integer arithmetic)
MAX_POOL = 1 << 16
#: most leaves a batch is cut into: trajectories are bit-identical for power-of-two device counts up to this
MAX_LEAVES = 8


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is trained on what (hashable: a static argument of the compiled programs).

    Attributes:
        kind: ``stream`` (fresh Gaussian samples, linear model only) or ``pool`` (a fixed training set).
        model: ``None`` for the linear model, else a ``sim.learning.train.Model`` (an MLP).
        d_in, d_out: input and output dimensions.
        dtype: parameter and data dtype (``"float32"`` or ``"float64"``).
    """

    kind: str
    model: Any
    d_in: int
    d_out: int
    dtype: str = "float64"

    def __post_init__(self):
        if self.kind not in ("stream", "pool"):
            raise ValueError(f"Problem: kind must be stream or pool, got {self.kind!r}")
        if self.kind == "stream" and (self.model is not None or self.d_out != 1):
            raise ValueError("Problem: a stream trains the linear model with one output")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"Problem: dtype must be float32 or float64, got {self.dtype!r}")


class Arrays(NamedTuple):
    """The data of a problem. stream: ``a`` = eigenvalues lambda (d,), ``b`` = teacher w (d,), ``noise``
    the label-noise variance; pool: ``a`` = inputs (n, d), ``b`` = targets (n, k), ``noise`` unused (0)."""

    a: jax.Array
    b: jax.Array
    noise: jax.Array


def stream_arrays(eigenvalues, teacher, noise: float = 0.0, *, dtype=jnp.float64) -> Arrays:
    """``Arrays`` of a stream: covariance ``diag(eigenvalues)``, ``y = x . teacher + sqrt(noise) eps``."""
    return Arrays(jnp.asarray(eigenvalues, dtype), jnp.asarray(teacher, dtype), jnp.asarray(noise, dtype))


def pool_arrays(x, y, *, dtype=jnp.float64) -> Arrays:
    """``Arrays`` of a pool: inputs (n, d) and targets (n, k), n <= 65536 (``MAX_POOL``)."""
    if not 1 <= np.shape(x)[0] <= MAX_POOL or np.shape(y)[0] != np.shape(x)[0]:
        raise ValueError(f"pool_arrays: need 1..{MAX_POOL} rows of x and y alike, got {np.shape(x)}, {np.shape(y)}")
    return Arrays(jnp.asarray(x, dtype), jnp.asarray(y, dtype), jnp.asarray(0.0, dtype))


def leaves(batch_size: int) -> int:
    """Number of leaves a batch of ``batch_size`` is cut into: the largest power of two <= MAX_LEAVES
    that divides it."""
    b = int(batch_size)
    return min(MAX_LEAVES, b & -b)


def check_batch(batch_size: int, devices: int) -> None:
    """Raise ValueError unless a batch of ``batch_size`` splits into equal micro-batches on ``devices``
    devices with the same leaves as on one device (devices a power of two dividing ``leaves``)."""
    b, k = int(batch_size), int(devices)
    if k < 1 or k & (k - 1):
        raise ValueError(f"devices must be a power of two (1, 2, 4, 8, ...), got {k}")
    if b < 1:
        raise ValueError(f"batch size must be an integer >= 1, got {b}")
    if b % k:
        raise ValueError(f"batch size {b} is not divisible by the device count {k}")
    if k > MAX_LEAVES:
        raise ValueError(f"devices: at most {MAX_LEAVES} devices split one batch, got {k}")
    if leaves(b) % k:  # b % k == 0 and k a power of two <= MAX_LEAVES already imply k | leaves(b)
        raise ValueError(f"batch size {b} does not split into {k} equal power-of-two parts")


def seed_keys(key, seeds: int) -> jax.Array:
    """Raw uint32 keys ``(seeds, 2)`` of every seed's batches: ``fold_in(fold_in(key, s), 1)``."""
    key = key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)
    ks = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(key, s), 1))(jnp.arange(seeds))
    return jax.random.key_data(ks)


def init_params(problem: Problem, key, seeds: int):
    """Initial parameters of ``seeds`` seeds (leading axis S): the linear model starts at 0; MLP seed s
    from ``fold_in(fold_in(key, s), 0)``."""
    dt = jnp.dtype(problem.dtype)
    if problem.model is None:
        return jnp.zeros((seeds, problem.d_in, problem.d_out), dt)
    return jax.vmap(lambda s: problem.model.init(jax.random.fold_in(jax.random.fold_in(key, s), 0), dt))(
        jnp.arange(seeds)
    )


def sample(problem: Problem, arrays: Arrays, key, start, count: int):
    """Samples ``start .. start + count - 1`` of the stream or pool keyed by ``key``: ``(x, y)`` of shapes
    (count, d) and (count, k). Sample j comes from ``k_j = fold_in(key, j)`` alone: a stream draws
    ``normal(k_j, (d + 1,))`` (the features, then the label noise); a pool takes row ``floor(u n)`` with u
    the first 32-bit word of ``k_j`` over 2^32 (every row has probability 1/n to within n/2^32)."""
    idx = start + jnp.arange(count)
    dt = jnp.dtype(problem.dtype)
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(idx)
    if problem.kind == "stream":
        lam, w, noise = arrays
        z = jax.vmap(lambda k: jax.random.normal(k, (problem.d_in + 1,), dt))(keys)
        x = z[:, :-1] * jnp.sqrt(lam)[None, :]
        y = x @ w + jnp.sqrt(noise) * z[:, -1]
        return x, y[:, None]
    n = arrays.a.shape[0]
    i = _mulhi(jax.random.key_data(keys)[:, 0], n)
    return arrays.a[i], arrays.b[i]


def _mulhi(u, n: int):
    """floor(u n / 2^32) for uint32 u and n <= 2^16, exactly, in 32-bit integers."""
    lo, hi = u & 0xFFFF, u >> 16
    a = hi * jnp.uint32(n)
    b = (lo * jnp.uint32(n)) >> 16
    return ((a + b) >> 16).astype(jnp.int32)


def _predict(problem: Problem, params, x):
    return x @ params if problem.model is None else problem.model.apply(params, x)


def batch_loss(problem: Problem, params, x, y, *, total: bool = False):
    """``0.5 * mean_n |f(x_n) - y_n|^2`` (``total``: the sum over the batch instead of the mean)."""
    r = _predict(problem, params, x) - y
    s = 0.5 * jnp.sum(r * r)
    return s if total else s / x.shape[0]


def true_loss(problem: Problem, arrays: Arrays, params):
    """The loss that batch gradients estimate: the population loss ``0.5 (delta^T H delta + sigma^2)`` of a
    stream, the full-pool loss of a pool."""
    if problem.kind == "stream":
        lam, w, noise = arrays
        delta = params[:, 0] - w
        return 0.5 * (jnp.sum(lam * delta * delta) + noise)
    return batch_loss(problem, params, arrays.a, arrays.b)


def optimal_lr(arrays: Arrays, params, batch_size: int):
    """Per-step optimal rate of SGD with batch B on a stream's population loss,
    ``|G|^2 / (G^T H G + tr(H Sigma)/B)`` with ``G = H delta``, ``Sigma = H delta delta^T H + (delta^T H delta +
    sigma^2) H`` (docs/theory.md#gradient-noise-scale). 0 at the optimum of noiseless data."""
    lam, w, noise = arrays
    delta = params[:, 0] - w
    g2 = jnp.sum((lam * delta) ** 2)
    ghg = jnp.sum(lam**3 * delta**2)
    trhs = ghg + (jnp.sum(lam * delta**2) + noise) * jnp.sum(lam**2)
    den = ghg + trhs / batch_size
    return jnp.where(den > 0, g2 / jnp.where(den > 0, den, 1.0), 0.0)


def _tree_pairwise_sum(tree):
    """Sum over the leading (power-of-two) axis of every leaf in a pairwise tree."""

    def one(a):
        while a.shape[0] > 1:
            a = a.reshape((a.shape[0] // 2, 2) + a.shape[1:])
            a = a[:, 0] + a[:, 1]
        return a[0]

    return jax.tree.map(one, tree)


def _optimizer():
    return optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)


def opt_init(params):
    """The optimiser state of stacked ``params`` (leading axis S)."""
    dt = jax.tree.leaves(params)[0].dtype
    st = jax.vmap(_optimizer().init)(params)
    return st._replace(hyperparams={k: jnp.asarray(v, dt) for k, v in st.hyperparams.items()})


@functools.cache
def _chunk_fn(problem: Problem, batch_size: int, steps: int, optimal: bool, mesh):
    k = mesh.devices.size
    n_leaves = leaves(batch_size)
    c = batch_size // n_leaves  # samples per leaf
    m = n_leaves // k  # leaves per device
    opt = _optimizer()
    dt = jnp.dtype(problem.dtype)

    def local(params, opt_state, keys, t0, arrays, lr):
        dev = jax.lax.axis_index(AXIS)
        keys = jax.random.wrap_key_data(keys)

        def seed_grad(p, kb, t):
            ks = jax.random.fold_in(kb, t)

            def leaf(l):
                x, y = sample(problem, arrays, ks, l * c, c)
                return jax.grad(lambda q: batch_loss(problem, q, x, y, total=True))(p)

            if m == 1:
                return leaf(dev)
            return _tree_pairwise_sum(jax.lax.map(leaf, dev * m + jnp.arange(m)))

        def step(carry, t):
            p, st = carry
            g = jax.vmap(seed_grad, in_axes=(0, 0, None))(p, keys, t)
            g = jax.tree.map(lambda a: ordered_reduce(a, AXIS) / jnp.asarray(batch_size, dt), g)
            if optimal:
                eta = jax.vmap(lambda q: optimal_lr(arrays, q, batch_size))(p)
            else:
                eta = jnp.full((keys.shape[0],), lr, dt)

            def update(q, s, gg, e):
                s = s._replace(hyperparams={**s.hyperparams, "learning_rate": e})
                u, s = opt.update(gg, s, q)
                return optax.apply_updates(q, u), s

            p, st = jax.vmap(update)(p, st, g, eta)
            return (p, st), jax.vmap(lambda q: true_loss(problem, arrays, q))(p)

        (p, st), losses = jax.lax.scan(step, (params, opt_state), t0 + jnp.arange(steps, dtype=jnp.uint32))
        return p, st, losses.T

    rep = replicated(mesh)
    spec = PartitionSpec()
    f = jax.shard_map(local, mesh=mesh, in_specs=(spec,) * 6, out_specs=(spec,) * 3, check_vma=False)
    return jax.jit(f, in_shardings=(rep,) * 6, out_shardings=(rep,) * 3)


def train_chunk(
    problem: Problem,
    arrays: Arrays,
    params,
    opt_state,
    keys,
    t0: int,
    *,
    batch_size: int,
    steps: int,
    lr="optimal",
    devices=None,
):
    """Run ``steps`` data-parallel SGD steps ``t0 .. t0 + steps - 1`` of S seeds at once.

    Args:
        problem, arrays: what is trained (``Problem``, ``Arrays``).
        params: stacked parameters (leading axis S); ``opt_state`` from ``opt_init(params)``.
        keys: raw uint32 batch keys (S, 2) (``seed_keys``).
        t0: index of the first step (the batches of step t depend on t only).
        batch_size: B (split over the devices; see ``check_batch``).
        steps: steps in this call (static: one compile per value).
        lr: a fixed rate > 0, or ``"optimal"`` (stream only; see the module docstring).
        devices: None (every device), a count, a device list or a 1-D mesh.

    Returns:
        ``(params, opt_state, losses)``, losses (S, steps): the true loss after each step.
    """
    mesh = make_mesh(devices)
    check_batch(batch_size, mesh.devices.size)
    if lr == "optimal":
        if problem.kind != "stream":
            raise ValueError("train_chunk: lr 'optimal' needs a stream (the linear model on Gaussian data)")
    elif not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"train_chunk: lr must be 'optimal' or a finite number > 0, got {lr!r}")
    fn = _chunk_fn(problem, int(batch_size), int(steps), lr == "optimal", mesh)
    rate = np.asarray(0.0 if lr == "optimal" else lr, problem.dtype)
    # host copies in, replicated arrays out: every call sees the same kind of input (one compile), and
    # in a multi-process run every process passes the same values
    host = functools.partial(jax.tree.map, np.asarray)
    return fn(host(params), host(opt_state), np.asarray(keys), np.uint32(t0), host(arrays), rate)
