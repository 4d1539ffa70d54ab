"""Data-parallel SGD over a device mesh (``jax.shard_map``), bit-identical on 1, 2, 4 or 8 devices.

K workers each take a slice of the batch, compute the gradient of their slice, and average with the
others (a mean all-reduce): that is SGD with batch B = K b. Here:

* A ``Problem`` says what is trained on what: ``stream`` (Gaussian features ``x = sqrt(lambda) g`` with a
  linear target ``y = x . w + sigma eps``, a fresh sample for every index: infinite data, so the loss is
  the *population* loss ``0.5 (delta^T H delta + sigma^2)``, ``delta = theta - w``, ``H = diag(lambda)``),
  or ``pool`` (a fixed training set; batches are drawn from it with replacement, so its full-pool loss
  is the loss that a batch gradient estimates without bias). Models: ``linear`` (``theta`` of shape
  (d, k), started at 0) or an MLP (``sim.learning.train.Model``).
* Step t of seed s draws from ``k_t = fold_in(k_s, t)`` (``k_s`` the seed's batch key), sample j of it
  from (``k_t``, j) alone: a stream's Gaussians are Threefry blocks with counter (j, c)
  (``stream_normals``: no key derived per sample), a pool's row index comes from ``fold_in(k_t, j)``; a
  sample's value never depends on which device draws it.
* Sample j of a batch goes to slot ``j mod 8`` of ``MAX_LEAVES`` (8) slots, split evenly over the devices
  (1, 2, 4 or 8; ``check_batch``); a slot adds its samples in a fixed order, the slots of a device are added
  in a pairwise tree, and the devices' sums are combined in a fixed pairwise tree
  (``sim.devices.ordered_reduce``), so the gradient, hence the whole trajectory, is bit for bit the same
  on 1, 2, 4 or 8 devices and in one or several processes (``jax.distributed``), for any batch size.
* Updates are ``optax.sgd`` (the rate injected per step with ``optax.inject_hyperparams``). With
  ``lr="optimal"`` (linear model on a stream only) the rate of every step is the one that minimises the
  expected loss after the step, ``eta = |G|^2 / (G^T H G + tr(H Sigma)/B)`` from the exact G, H and
  Sigma of the current iterate (docs/theory.md#gradient-noise-scale): ``B / (B + d + 1)`` on isotropic
  noiseless data.

``run_to_target`` compiles ONE program for every batch size: B is a run-time value (behind
``lax.optimization_barrier``) and the steps run in a ``lax.while_loop`` until the seed-averaged loss ratio
reaches the target or the step cap. ``train_chunk`` (``steps`` steps from step ``t0``, with the optimiser
state in and out) is the same program with a target never reached: cutting a run into chunks changes no
value.

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
from sim.vectors import CPU_COMPILER_OPTIONS

__all__ = [
    "MAX_LEAVES",
    "MAX_POOL",
    "Problem",
    "Arrays",
    "check_batch",
    "stream_arrays",
    "pool_arrays",
    "init_params",
    "sample",
    "batch_loss",
    "true_loss",
    "optimal_lr",
    "train_chunk",
    "run_to_target",
    "RunResult",
    "fold_in_raw",
    "fold_in_words",
    "stream_normals",
    "stream_halves",
    "seed_keys",
]

#: most rows of a pool (rows are picked with 32-bit integer arithmetic)
MAX_POOL = 1 << 16
#: slots a batch is cut into (sample j to slot j mod 8): trajectories are bit-identical on 1, 2, 4 and 8 devices
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


def check_batch(batch_size: int, devices: int) -> None:
    """Raise ValueError unless ``batch_size`` >= 1 and ``devices`` is 1, 2, 4 or 8: a batch's samples go to
    ``MAX_LEAVES`` (8) slots (sample j to slot ``j mod 8``) split evenly over the devices, so any batch size
    runs on any of these device counts."""
    b, k = int(batch_size), int(devices)
    if k < 1 or k & (k - 1) or k > MAX_LEAVES:
        raise ValueError(f"devices must be 1, 2, 4 or 8 (they split the {MAX_LEAVES} slots of a batch), got {k}")
    if b < 1:
        raise ValueError(f"batch size must be an integer >= 1, got {b}")


def seed_keys(key, seeds: int) -> jax.Array:
    """Raw uint32 keys ``(seeds, 2)`` of every seed's batches: ``fold_in(fold_in(key, s), 1)``."""
    key = key if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.wrap_key_data(key)
    return _seed_keys(key, int(seeds))


@functools.partial(jax.jit, static_argnums=1)
def _seed_keys(key, seeds: int):
    # jitted: eager, the vmap is traced again at every call (~2.7 ms, as much as 50 training steps)
    ks = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(key, s), 1))(jnp.arange(seeds))
    return jax.random.key_data(ks)


def init_params(problem: Problem, key, seeds: int):
    """Initial parameters of ``seeds`` seeds (leading axis S): the linear model starts at 0; MLP seed s
    from ``fold_in(fold_in(key, s), 0)``."""
    if problem.model is None:
        return _linear_zeros(problem, int(seeds))
    # one compiled single-seed init, called per seed: the same bits as vmapping ``model.init`` over the seeds,
    # but the vmapped form (eager or jitted) spent ~5-6 CPU-s compiling its batched Threefry/erf_inv draws,
    # most of the batch MLP's first call beyond the training program's ~2.5 CPU-s of tracing and compiling
    one = _model_init(problem)
    return jax.tree.map(lambda *a: jnp.stack(a), *[one(key, s) for s in range(int(seeds))])


@functools.lru_cache(maxsize=16)
def _linear_zeros(problem: Problem, seeds: int):
    # made once per (problem, seeds) and shared (arrays are immutable): an eager jnp.zeros costs ~80 us a call,
    # a quarter of a whole small-batch run_to_target call
    return jnp.zeros((seeds, problem.d_in, problem.d_out), jnp.dtype(problem.dtype))


@functools.cache
def _model_init(problem: Problem):
    dt = jnp.dtype(problem.dtype)
    return jax.jit(lambda key, s: problem.model.init(jax.random.fold_in(jax.random.fold_in(key, s), 0), dt))


def sample(problem: Problem, arrays: Arrays, key, start, count: int):
    """Samples ``start .. start + count - 1`` of the stream or pool keyed by ``key``: ``(x, y)`` of shapes
    (count, d) and (count, k). Sample j depends on ``key`` and j alone: a stream takes the d + 1 float32
    Gaussians ``stream_normals(key, j, d + 1)`` (the features, then the label noise; cast to the problem's
    dtype); a pool takes row ``floor(u n)`` with u the first 32-bit word of ``fold_in(key, j)`` over 2^32
    (every row has probability 1/n to within n/2^32). ``key`` is a typed key or its raw uint32 data (2,)."""
    raw = key if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else jax.random.key_data(key)
    return _sample_raw(problem, arrays, raw, jnp.asarray(start, jnp.uint32) + jnp.arange(count, dtype=jnp.uint32))


def fold_in_words(raw, data):
    """``fold_in_raw`` with the two key words apart: a pair of uint32 arrays of ``data``'s shape (no stacking
    kernel, no copies of the pair where the words are consumed at once)."""
    from sim.vectors import threefry2x32

    data = jnp.asarray(data, jnp.uint32)
    return threefry2x32(raw[0], raw[1], jnp.zeros_like(data), data)


def fold_in_raw(raw, data):
    """``jax.random.key_data(jax.random.fold_in(wrap_key_data(raw), data))`` for threefry keys, in the
    unrolled, fusible ``sim.vectors.threefry2x32``; ``data`` uint32 of any shape: result ``data.shape + (2,)``."""
    return jnp.stack(fold_in_words(raw, data), axis=-1)


def stream_normals(raw, idx, n: int):
    """float32 standard normals of shape ``idx.shape + (n,)``: Gaussian c of sample ``idx[...]`` under the raw
    key ``raw`` (2,) uint32 is made from half ``c mod 2`` of the Threefry-2x32 block with counter
    ``(idx, c // 2)`` (low half first), mapped as ``sim.vectors.standard_normal`` maps its words
    (``sqrt(2) erfinv32(u)``). Counter-based: no key is derived per sample, every value depends on (key,
    sample, coordinate) only, and the whole (samples, coordinates) block is one elementwise loop."""
    from sim.vectors import normals_from_words, threefry2x32

    idx = jnp.asarray(idx, jnp.uint32)
    nb = -(-n // 2)
    c = jnp.arange(nb, dtype=jnp.uint32).reshape((1,) * idx.ndim + (nb,))
    hi, lo = threefry2x32(raw[0], raw[1], idx[..., None], c)
    words = jnp.stack([lo, hi], axis=-1).reshape(idx.shape + (2 * nb,))[..., :n]
    return normals_from_words(words)


def _sample_raw(problem: Problem, arrays: Arrays, raw, idx):
    """``sample`` for the raw key ``raw`` (2,) uint32 and sample indices ``idx`` (n,) uint32."""
    dt = jnp.dtype(problem.dtype)
    if problem.kind == "stream":
        lam, w, noise = arrays
        z = stream_normals(raw, idx, problem.d_in + 1).astype(dt)
        x = z[:, :-1] * jnp.sqrt(lam)[None, :]
        y = x @ w + jnp.sqrt(noise) * z[:, -1]
        return x, y[:, None]
    keys = fold_in_raw(raw, idx)  # (n, 2)
    n = arrays.a.shape[0]
    i = _mulhi(keys[:, 0], n)
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


@jax.jit
def opt_init(params):
    """The optimiser state of stacked ``params`` (leading axis S). Jitted: eager, the vmap is traced again
    at every call (~1.6 ms)."""
    dt = jax.tree.leaves(params)[0].dtype
    st = jax.vmap(_optimizer().init)(params)
    return st._replace(hyperparams={k: jnp.asarray(v, dt) for k, v in st.hyperparams.items()})


#: a pool slot's samples are added in groups of this many (``run_to_target``)
POOL_GROUP = 32


class RunResult(NamedTuple):
    """What ``run_to_target`` returns (replicated arrays).

    Attributes:
        params, opt_state: after the last step.
        losses: (S, capacity) the true loss after step t + 1 in column t (NaN after the last step).
        steps: steps taken (int32 scalar).
        reached: whether the seed-averaged loss ratio reached the target (bool scalar).
        loss0: (S,) the true loss at the start (the denominators of the ratio).
        checkpoints: parameters after steps 0, every, 2 every, ... (leading axis capacity // every + 2;
            rows past the last step and the final row are scratch).
    """

    params: Any
    opt_state: Any
    losses: jax.Array
    steps: jax.Array
    reached: jax.Array
    loss0: jax.Array
    checkpoints: Any


def _pairwise_last(a):
    """Sum over the last axis in a fixed pairwise tree (zero-padded to a power of two): elementwise adds
    only, so the value does not depend on the shape of the other axes (or the device count)."""
    n = a.shape[-1]
    p2 = 1 << (n - 1).bit_length()
    if p2 != n:
        a = jnp.concatenate([a, jnp.zeros(a.shape[:-1] + (p2 - n,), a.dtype)], axis=-1)
    while a.shape[-1] > 1:
        a = a[..., 0::2] + a[..., 1::2]
    return a[..., 0]


#: rows of 8 samples a stream slot loop draws at once (``_stream_slot_sums``)
STREAM_BLOCK = 8


def _stream_flat(raw, base, rows: int, m: int, n: int, live=None):
    """``stream_halves`` packed and flat: complex64 of length ``rows * m * ceil(n / 2)`` rounded up to a multiple of
    16, block ``(r * m + i) * nb + c`` (nb = ceil(n / 2)) the Gaussians 2c (real) and 2c + 1 (imaginary) of sample
    ``base + 8 r + i``; the padding's values are not part of the stream.

    Made as the standalone generator (``sim.vectors.standard_normal``) makes them: one elementwise loop over
    the flattened blocks, padded to a multiple of 16 (the 512-bit vector width in float32), hashing every
    block once for both its Gaussians and computed apart (``_stored``). ``stream_normals`` on a (rows, m)
    index array inside a training step runs at half that rate: XLA fuses the generator into each of its
    consumers, so it hashes every block twice or more, runs (..., 101)-shaped loops with scalar remainders,
    and splits erfinv32 over several loops that recompute its polynomials. The sample offsets of the blocks
    do not depend on ``base`` (XLA computes them once, outside the loops); ``base`` is added inside the
    generator's loop, so a draw is one kernel. ``live``: the conditional's predicate, true at run time
    (default ``base >= 0``; the training loops pass one computed once, outside the loops)."""
    from sim.vectors import normals_from_words, threefry2x32

    nb = -(-n // 2)
    size = rows * m * nb
    f = jnp.arange(-(-size // 16) * 16, dtype=jnp.uint32)
    blk = f // jnp.uint32(nb)
    c = f - blk * jnp.uint32(nb)
    off = jnp.uint32(MAX_LEAVES) * (blk // jnp.uint32(m)) + blk % jnp.uint32(m)

    def draw():
        x0, x1 = threefry2x32(raw[0], raw[1], base.astype(jnp.uint32) + off, c)
        return jax.lax.complex(normals_from_words(x1), normals_from_words(x0))

    return _stored(base >= 0 if live is None else live, draw)


def _unflat(z, rows: int, m: int, n: int):
    """``_stream_flat``'s blocks as (rows, m, ceil(n / 2))."""
    nb = -(-n // 2)
    return z[: rows * m * nb].reshape(rows, m, nb)


def _stream_packed(raw, base, rows: int, m: int, n: int):
    """``stream_halves`` packed: complex64 (rows, m, ceil(n / 2)), real the even Gaussians, imaginary the odd
    (``_stream_flat``)."""
    return _unflat(_stream_flat(raw, base, rows, m, n), rows, m, n)


def stream_halves(raw, base, rows: int, m: int, n: int):
    """``stream_normals(raw, idx, n)`` for the samples ``idx = base + 8 r + i`` (r < ``rows``, i < ``m``; ``base``
    an int32 scalar >= 0) as its even and odd coordinates: float32 ``(ze, zo)`` of shape (rows, m, ceil(n / 2)),
    ``ze[..., c]`` Gaussian 2c (the low half of Threefry block c), ``zo[..., c]`` Gaussian 2c + 1 (the high half;
    for odd n its last column is one Gaussian past the draw), bit for bit the values of ``stream_normals``,
    at the rate of ``sim.vectors.standard_normal`` inside a training loop (``_stream_flat``)."""
    z = _stream_packed(raw, base, rows, m, n)
    return jnp.real(z), jnp.imag(z)


def _stream_draw(raw, base, rows: int, m: int, d: int, sl, dw, live=None):
    """The Gaussians of samples ``base + 8 r + i`` (``_stream_flat``, n = d + 1, flat and padded) and the
    products that ``_stream_slot_sums``'s dot products start from: ``(zf, pr)``, ``pr`` (2, rows, m, half) the
    even (``pr[0]``) and odd (``pr[1]``) coordinates of ``x * dw`` (``x = z[:d] sl`` in the dtype of ``sl``), each
    zero-padded to half of ``_pairwise_last``'s power of two, and stored (``_stored``), as XLA stores them in
    the straightforward program wherever it pads: fused into the first adds of the dot product, the CPU
    compiler would contract a multiply and an add into one fused multiply-add (other roundings, other bits).
    The products of both halves are one stacked array (one kernel), made from the flat draw (its slicing
    fused into that kernel, not a copy of its own)."""
    ne, no = (d + 1) // 2, d // 2
    half = (1 << (d - 1).bit_length()) // 2
    live = base >= 0 if live is None else live
    zf = _stream_flat(raw, base, rows, m, d + 1, live)
    dt = sl.dtype

    def pad(a):
        return jnp.concatenate([a, jnp.zeros(a.shape[:-1] + (half - a.shape[-1],), a.dtype)], axis=-1)

    def products():
        z = _unflat(zf, rows, m, d + 1)
        pe = jnp.real(z)[..., :ne].astype(dt) * sl[None, None, 0::2] * dw[None, None, 0::2]
        po = jnp.imag(z)[..., :no].astype(dt) * sl[None, None, 1::2] * dw[None, None, 1::2]
        return jnp.stack([pad(pe), pad(po)]) if d > 1 else jnp.stack([pe, jnp.zeros_like(pe)])

    return zf, _stored(live, products)


def _stored(pred, fn):
    """``fn()``, computed inside ``lax.cond(pred, fn, zeros)`` for a ``pred`` that is true at run time: XLA
    fuses nothing across a conditional, so ``fn``'s loops are compiled on their own and their results stored."""

    def skip():
        return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(fn))

    return jax.lax.cond(pred, fn, skip)


def _stream_invariants(arrays: Arrays):
    """What ``_stream_slot_sums`` takes from the data alone: ``sqrt(lambda)``, its even and odd coordinates
    stacked (2, ceil(d / 2)) (the odd row zero-padded) and ``sqrt(noise)``. Computed once before the step loop
    (``_run_fn``): inside it XLA recomputed the two strided slices at every step, two kernels a step."""
    lam, _, noise = arrays
    sl = jnp.sqrt(lam)
    ne, no = (lam.shape[0] + 1) // 2, lam.shape[0] // 2
    odd = jnp.concatenate([sl[1::2], jnp.zeros((ne - no,), sl.dtype)])
    return sl, jnp.stack([sl[0::2], odd]), jnp.sqrt(noise)


def _stream_schedule(bint, own):
    """The loop bounds of ``_stream_slot_sums`` for batch size ``bint`` and this device's slots ``own``: the first
    slot, whole blocks, whole rows, the first sample of the partial row and how many of its samples are this
    device's; then the draws' predicate (true) and the slot numbers 0 .. m - 1. They depend on B alone:
    computed once before the step loop (``_run_fn``), not in every step."""
    m = own.shape[0]
    base0 = own[0]  # the slots of a device are consecutive: own = own[0] + arange(m)
    n_rows = bint // MAX_LEAVES
    start = n_rows * MAX_LEAVES
    n_last = jnp.clip(bint - start - base0, 0, m)
    return base0, bint // (MAX_LEAVES * STREAM_BLOCK), n_rows, start, n_last, bint > 0, jnp.arange(m, dtype=jnp.int32)


def _stream_slot_sums(problem: Problem, arrays: Arrays, p, kt, bint, own, inv=None, sched=None):
    """Summed gradients of one seed's slots ``own`` (m,) for a stream (linear model): slot s adds its samples
    j = s, s + 8, s + 16, ... < B one after the other, in sample order. The samples are drawn a block of
    ``STREAM_BLOCK`` rows (8 samples a row) at a time while whole blocks remain, then a row at a time, then
    the samples of the last, partial row one at a time. Everything is elementwise (the dot products are
    ``_pairwise_last``'s tree, the adds of a block's rows an unrolled chain), so a slot's sum is the same bits
    whichever device and however many slots a device holds (tests/test_batch.py checks 1, 2 and 8 devices).
    ``STREAM_BLOCK`` itself is part of the program: 4 and 8 give the same bits, 16 does not (XLA fuses the
    longer chain differently), so changing it changes the numbers.

    The Gaussians come as even and odd coordinates (``_stream_draw``: the two halves of a Threefry block),
    and the arithmetic is done on the halves: the first level of ``_pairwise_last``'s tree adds exactly the
    pairs (2k, 2k + 1), so ``even + odd`` is that level, and the sums are interleaved once at the end: the
    same operations on the same values as ``x = stream_normals(...)``, ``r = _pairwise_last(x * dw) - ...``,
    ``acc + x * r``. Bits also depend on where XLA:CPU fuses a multiply with an add (it emits one fused
    multiply-add there: why ``STREAM_BLOCK`` matters): the products ``x * dw`` are stored, the residual and the
    accumulation fused, as the straightforward program has it for every d but powers of two, which keep that
    program (``_stream_slot_sums_unpadded``); the trajectories of every d are those of that program."""
    d = problem.d_in
    if d & (d - 1) == 0:
        return _stream_slot_sums_unpadded(problem, arrays, p, kt, bint, own)
    _, w, _ = arrays
    m = own.shape[0]
    dt = jnp.dtype(problem.dtype)
    ne, no = (d + 1) // 2, d // 2  # even and odd coordinates of x
    sl, sl2, sn = _stream_invariants(arrays) if inv is None else inv
    dw = p[:, 0] - w

    def grads(base, rows: int, mm: int):  # samples base + 8 r + i -> per-sample gradients (rows, mm, 2, ne)
        zf, pr = _stream_draw(kt, base, rows, mm, d, sl, dw, live)
        return gsum(zf, pr, rows, mm, 1.0)

    def gsum(zf, pr, rows: int, mm: int, weight):  # the gradients x sl (r weight) of a draw
        z = _unflat(zf, rows, mm, d + 1)
        a = pr[0]
        if d > 1:  # _pairwise_last's tree; its first level adds the even and odd coordinates
            a = a + pr[1]
            while a.shape[-1] > 1:
                a = a[..., 0::2] + a[..., 1::2]
        r = a[..., 0] - sn * (jnp.imag(z)[..., no] if d % 2 else jnp.real(z)[..., ne]).astype(dt)
        # even coordinates in row 0, odd in row 1 (for odd d its last entry is the label noise, times 0)
        # (a select, not a stack: XLA fuses it into the accumulation instead of storing the stacked block)
        row = jax.lax.broadcasted_iota(jnp.int32, (1, 1, 2, ne), 2)
        x = jnp.where(row == 0, jnp.real(z)[..., None, :ne], jnp.imag(z)[..., None, :ne]).astype(dt)
        return x * sl2[None, None] * (r[..., None, None] * weight)

    base0, n_blocks, n_rows, start, n_last, live, slots = _stream_schedule(bint, own) if sched is None else sched

    def block(q, acc):
        g = grads(MAX_LEAVES * q * STREAM_BLOCK + base0, STREAM_BLOCK, m)
        for i in range(STREAM_BLOCK):
            acc = acc + g[i]
        return acc

    # one accumulator for both halves (even coordinates in row 0, odd in row 1): one kernel per update
    acc = jax.lax.fori_loop(0, n_blocks, block, jnp.zeros((m, 2, ne), dt))
    acc = jax.lax.fori_loop(
        n_blocks * STREAM_BLOCK, n_rows, lambda q, a: a + grads(MAX_LEAVES * q + base0, 1, m)[0], acc
    )
    # the last, partial row: its samples one at a time (drawing the whole row would waste up to 7 of 8
    # samples a step at small B: 24% of the draws of a sweep over B = 1 .. 4096)

    def one(c):  # the sample of slot i
        i, a = c
        # its gradient x sl r added to slot i alone, with r times 1 there and times 0 elsewhere: the same
        # fused multiply-add of the same values in slot i, a + 0 elsewhere (a is never -0), and no scatter
        zf, pr = _stream_draw(kt, start + base0 + i, 1, 1, d, sl, dw, live)
        return i + 1, a + gsum(zf, pr, 1, 1, (slots == i).astype(dt)[None, :, None, None])[0]

    _, acc = jax.lax.while_loop(lambda c: c[0] < n_last, one, (jnp.int32(0), acc))
    # interleave the halves back: coordinate 2k from the even half, 2k + 1 from the odd one
    return jnp.swapaxes(acc, 1, 2).reshape(m, 2 * ne)[:, :d]


def _stream_slot_sums_unpadded(problem: Problem, arrays: Arrays, p, kt, bint, own):
    """``_stream_slot_sums`` for power-of-two d: the straightforward program (``stream_normals`` on the (rows,
    slots) sample indices, ``_pairwise_last`` on ``x * dw``), kept because its numbers differ from the fast
    path's in the last bits there. Where ``_pairwise_last`` needs no zero padding, XLA fuses ``x * dw`` into
    the first adds of the dot product in some of the three loops (which ones depends on d), and the CPU
    compiler contracts such a multiply and add into one fused multiply-add; the fast path rounds the
    products always, as this program does for every other d. Its Gaussians come at half the rate."""
    lam, w, noise = arrays
    d, m = problem.d_in, own.shape[0]
    dt = jnp.dtype(problem.dtype)
    sl, dw, sn = jnp.sqrt(lam), p[:, 0] - w, jnp.sqrt(noise)

    def grads(idx):  # sample indices (..., m) int32, all < B -> per-sample gradients (..., m, d)
        z = stream_normals(kt, idx.astype(jnp.uint32), d + 1).astype(dt)
        lead = (1,) * idx.ndim
        x = z[..., :d] * sl.reshape(lead + (d,))
        r = _pairwise_last(x * dw.reshape(lead + (d,))) - sn * z[..., d]
        return x * r[..., None]

    rows = jnp.arange(STREAM_BLOCK, dtype=jnp.int32)[:, None]

    def block(q, acc):
        g = grads(MAX_LEAVES * (q * STREAM_BLOCK + rows) + own[None, :])
        for i in range(STREAM_BLOCK):
            acc = acc + g[i]
        return acc

    n_blocks = bint // (MAX_LEAVES * STREAM_BLOCK)
    acc = jax.lax.fori_loop(0, n_blocks, block, jnp.zeros((m, d), dt))
    n_rows = bint // MAX_LEAVES
    acc = jax.lax.fori_loop(n_blocks * STREAM_BLOCK, n_rows, lambda q, a: a + grads(MAX_LEAVES * q + own), acc)
    # the last, partial row: its samples one at a time (drawing the whole row would waste up to 7 of 8
    # samples a step at small B: 24% of the draws of a sweep over B = 1 .. 4096)
    start = n_rows * MAX_LEAVES

    def one(c):
        i, a = c
        return i + 1, a.at[i].add(grads(jnp.reshape(start + own[0] + i, (1,)))[0])

    _, acc = jax.lax.while_loop(lambda c: (c[0] < m) & (start + own[0] + c[0] < bint), one, (jnp.int32(0), acc))
    return acc


def _pool_slot_sum(problem: Problem, arrays: Arrays, p, kt, bint, s, group: int):
    """Summed gradient of slot ``s`` for a pool: its samples j = s, s + 8, ... < B in consecutive groups of
    ``group``, the last one padded with samples of weight 0; each group's gradient is that of its weighted
    summed loss, computed by the same program (same shapes) on every device. One gradient site: the
    padding costs little beside the full-pool loss computed after every step."""
    count = jnp.maximum(bint - s + MAX_LEAVES - 1, 0) // MAX_LEAVES

    def body(i, a):
        n = i * group + jnp.arange(group, dtype=jnp.int32)
        x, y = _sample_raw(problem, arrays, kt, (s + MAX_LEAVES * n).astype(jnp.uint32))
        wt = (n < count).astype(x.dtype)

        def loss(q):
            r = _predict(problem, q, x) - y
            return 0.5 * jnp.sum(wt[:, None] * r * r)

        return jax.tree.map(jnp.add, a, jax.grad(loss)(p))

    return jax.lax.fori_loop(0, (count + group - 1) // group, body, jax.tree.map(jnp.zeros_like, p))


@functools.cache
def _run_fn(problem: Problem, capacity: int, every: int, group: int, optimal: bool, mesh):
    k = mesh.devices.size
    m = MAX_LEAVES // k  # slots per device
    n_ck = capacity // every + 1  # checkpoints 0, every, ..., plus one scratch row at index n_ck
    opt = _optimizer()
    dt = jnp.dtype(problem.dtype)

    def local(params, opt_state, keys, t0, arrays, lr, bsize, bint, target, max_steps):
        l0 = jax.vmap(lambda q: true_loss(problem, arrays, q))(params)
        dev = jax.lax.axis_index(AXIS).astype(jnp.int32)
        # B arrives at run time, behind a barrier: XLA sees the same opaque divisor on every device count
        bsize, bint = jax.lax.optimization_barrier((bsize, bint))
        own = dev * m + jnp.arange(m, dtype=jnp.int32)  # this device's slots
        if problem.kind == "stream":  # what the slot sums take from the data and from B: once, not every step
            inv, sched = _stream_invariants(arrays), _stream_schedule(bint, own)

        def seed_grad(p, kb, t):
            if problem.kind == "stream":  # the two key words apart: no stacking kernel, no copies of the pair
                kt = fold_in_words(kb, t)
                sums = _stream_slot_sums(problem, arrays, p, kt, bint, own, inv, sched)[..., None]
            else:
                kt = fold_in_raw(kb, t)
                sums = jax.lax.map(lambda s: _pool_slot_sum(problem, arrays, p, kt, bint, s, group), own)
            return _tree_pairwise_sum(sums)

        def update(q, s, gg, e):
            s = s._replace(hyperparams={**s.hyperparams, "learning_rate": e})
            u, s = opt.update(gg, s, q)
            return optax.apply_updates(q, u), s

        def body(c):
            i, p, st, buf, ck, _ = c
            g = jax.vmap(seed_grad, in_axes=(0, 0, None))(p, keys, t0 + i.astype(jnp.uint32))
            g = jax.tree.map(lambda a: ordered_reduce(a, AXIS) / bsize, g)
            if optimal:
                eta = jax.vmap(lambda q: optimal_lr(arrays, q, bsize))(p)
            else:
                eta = jnp.full((keys.shape[0],), lr, dt)
            p, st = jax.vmap(update)(p, st, g, eta)
            loss = jax.vmap(lambda q: true_loss(problem, arrays, q))(p)
            buf = jax.lax.dynamic_update_slice(buf, loss[:, None].astype(buf.dtype), (jnp.int32(0), i))
            i = i + 1
            row = jnp.where(i % every == 0, i // every, n_ck)  # in range: a plain update, no .at[] bounds check
            ck = jax.tree.map(lambda a, q: jax.lax.dynamic_update_index_in_dim(a, q, row, 0), ck, p)
            return i, p, st, buf, ck, jnp.mean(loss / l0) <= target

        def cond(c):
            return (c[0] < max_steps) & ~c[5]

        buf = jnp.full((keys.shape[0], capacity), jnp.nan, dt)
        ck = jax.tree.map(lambda q: jnp.zeros((n_ck + 1,) + q.shape, q.dtype).at[0].set(q), params)
        init = (jnp.int32(0), params, opt_state, buf, ck, jnp.bool_(False))
        i, p, st, buf, ck, done = jax.lax.while_loop(cond, body, init)
        return RunResult(p, st, buf, i, done, l0, ck)

    rep = replicated(mesh)
    spec = PartitionSpec()
    f = jax.shard_map(local, mesh=mesh, in_specs=(spec,) * 10, out_specs=spec, check_vma=False)
    # compiled as hdsim's kernels are on CPU (sim.vectors.CPU_COMPILER_OPTIONS: 512-bit vectors), ~1.4x the
    # Gaussians per CPU second of the default; the same options on every device count and process
    opts = CPU_COMPILER_OPTIONS if mesh.devices.flat[0].platform == "cpu" else None
    return jax.jit(f, in_shardings=(rep,) * 10, out_shardings=rep, compiler_options=opts)


def _run(
    problem, arrays, params, opt_state, keys, t0, batch_size, max_steps, target, capacity, every, lr, devices, name
):
    """The one implementation behind ``run_to_target`` and ``train_chunk``: checks, then the compiled program."""
    mesh = make_mesh(devices)
    check_batch(batch_size, mesh.devices.size)
    if not 1 <= int(max_steps) <= capacity:
        raise ValueError(f"{name}: need 1 <= max_steps <= capacity, got {max_steps}, {capacity}")
    if int(every) != every or every < 1:
        raise ValueError(f"{name}: every must be an integer >= 1, got {every!r}")
    if not 0 <= int(t0) < 2**31:
        raise ValueError(f"{name}: the first step t0 must be an integer in [0, 2^31), got {t0!r}")
    if lr == "optimal":
        if problem.kind != "stream":
            raise ValueError(f"{name}: lr 'optimal' needs a stream (the linear model on Gaussian data)")
    elif not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise ValueError(f"{name}: lr must be 'optimal' or a finite number > 0, got {lr!r}")
    fn = _run_fn(problem, int(capacity), int(every), POOL_GROUP, lr == "optimal", mesh)
    dt = problem.dtype
    # host copies in, replicated arrays out: every call sees the same kind of input (one compile), and in a
    # multi-process run every process passes the same values
    host = functools.partial(jax.tree.map, np.asarray)
    return fn(
        host(params),
        host(opt_state),
        np.asarray(keys),
        np.uint32(t0),
        host(arrays),
        np.asarray(0.0 if lr == "optimal" else lr, dt),
        np.asarray(batch_size, dt),
        np.int32(batch_size),
        np.asarray(target, dt),
        np.int32(max_steps),
    )


def run_to_target(
    problem: Problem,
    arrays: Arrays,
    params,
    keys,
    *,
    batch_size: int,
    max_steps: int,
    target: float = 0.0,
    capacity: int | None = None,
    every: int = 32,
    lr="optimal",
    devices=None,
) -> RunResult:
    """Data-parallel SGD of S seeds at once from step 0 until the seed-averaged loss ratio
    ``mean_s L_t / L_0`` first falls to ``target`` or ``max_steps`` steps are done, in ONE compiled program
    for every batch size (a ``lax.while_loop``; B and the step cap are run-time values).

    Sample j of a batch goes to slot ``j mod 8`` of ``MAX_LEAVES`` (8) slots, split evenly over the
    devices; a slot adds its samples in a fixed order (a stream: one after the other, ``_stream_slot_sums``;
    a pool: the gradients of groups of 32, ``_pool_slot_sum``), the slots are summed
    in a pairwise tree and the devices in ``ordered_reduce``'s fixed tree: the trajectory is bit for bit the
    same on 1, 2, 4 and 8 devices and in one or several processes, and for a given B it does not depend
    on ``max_steps``, ``capacity`` or ``every``, nor on how the steps are cut into ``train_chunk`` calls.

    Args:
        problem, arrays: what is trained; params: stacked initial parameters (leading axis S).
        keys: raw uint32 batch keys (S, 2) (``seed_keys``).
        batch_size: B >= 1 (see ``check_batch``); max_steps: step cap (<= capacity).
        target: stop once ``mean_s L_t / L_0 <= target`` (0: run ``max_steps`` steps unless the loss is 0).
        capacity: static length of the loss buffer (default ``max_steps``; keep it fixed across calls to
            reuse the compiled program); every: checkpoint interval (static).
        lr: a fixed rate > 0, or ``"optimal"`` (stream only; see the module docstring).
        devices: None (every device), a count, a device list or a 1-D mesh.
    """
    capacity = int(max_steps if capacity is None else capacity)
    params = jax.tree.map(np.asarray, params)
    st = opt_init(params)
    return _run(
        problem,
        arrays,
        params,
        st,
        keys,
        0,
        batch_size,
        max_steps,
        target,
        capacity,
        every,
        lr,
        devices,
        "run_to_target",
    )


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
    """Run ``steps`` data-parallel SGD steps ``t0 .. t0 + steps - 1`` of S seeds at once: the program of
    ``run_to_target`` with a target never reached (the batches of step t depend on t only, so cutting a run
    into chunks changes no value, bit for bit).

    Args:
        problem, arrays: what is trained (``Problem``, ``Arrays``).
        params: stacked parameters (leading axis S); ``opt_state`` from ``opt_init(params)``.
        keys: raw uint32 batch keys (S, 2) (``seed_keys``).
        t0: index of the first step.
        batch_size: B; steps: steps in this call (the loss buffer's length: one compile per value).
        lr, devices: as in ``run_to_target``.

    Returns:
        ``(params, opt_state, losses)``, losses (S, steps): the true loss after each step.
    """
    r = _run(
        problem, arrays, params, opt_state, keys, t0, batch_size, steps, -np.inf, int(steps), int(steps), lr, devices,
        "train_chunk",
    )  # fmt: skip
    return r.params, r.opt_state, r.losses
