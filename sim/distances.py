"""Pairwise distances between random vectors, streamed over the dimension.

``pairwise_distances(key, dist, n, d, metric=...)`` returns the ``(n, n)`` matrix of distances between
``n`` random vectors of dimension ``d`` without ever holding the ``n x d`` vectors: coordinates are
generated a chunk of tiles at a time (see ``sim.vectors``), each tile contributes an ``(n, n)`` partial
sum, and the partial sums are added in a fixed binary tree over tile indices.

Why a tree: float32 partial sums added one after another in float32 lose ~log2(d) bits; a pairwise
(tree) sum loses O(log d) ulps at most, and the accumulator is float64 whenever ``jax_enable_x64`` is
on. Because the tree is fixed by the tile indices (chunks are aligned power-of-two groups of tiles,
merged with a binary counter), the result is **bit-identical for every chunk size** and can be split
across devices along aligned tile ranges.

Accumulators (what each tile contributes):

* ``gram``: X X^T (euclidean, sqeuclidean, cosine; one pass gives all three);
* ``pow p``: sum_k |x_ik - x_jk|^p (cityblock p = 1, minkowski p);
* ``max``: max_k |x_ik - x_jk| (chebyshev).

The Gram route costs one matrix product per tile (BLAS speed). Squared distances are recovered as
G_ii + G_jj - 2 G_ij: exact enough for the laws here (relative error ~1e-7 times E|x|^2 / E|x-y|^2,
at most 2 for these laws), not for vectors whose mean is far larger than their spread.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import acc_dtype, as_key, float_dtype
from sim.vectors import TILE, Distribution, sample_tiles, tile_width

__all__ = [
    "METRICS",
    "Metric",
    "make_metric",
    "pairwise_distances",
    "pairwise_matrices",
    "PairStats",
    "pair_stats",
    "cosines_from_gram",
    "default_chunk",
    "memory_estimate",
]

METRICS = ("euclidean", "sqeuclidean", "cityblock", "minkowski", "chebyshev", "cosine")


@dataclasses.dataclass(frozen=True)
class Metric:
    """A distance: ``name`` in METRICS; ``p`` only for minkowski (any p > 0, fractional p < 1 too)."""

    name: str
    p: float | None = None

    def __post_init__(self):
        if self.name not in METRICS:
            raise ValueError(f"unknown metric {self.name!r}; valid: {', '.join(METRICS)}")
        if self.name == "minkowski":
            if self.p is None or not math.isfinite(self.p) or self.p <= 0:
                raise ValueError(f"minkowski: p must be a finite number > 0, got {self.p!r}")
            object.__setattr__(self, "p", float(self.p))
        elif self.p is not None:
            object.__setattr__(self, "p", None)

    @property
    def exponent(self) -> float | None:
        """The q of sum |x - y|^q behind this metric (euclidean 2, cityblock 1, minkowski p)."""
        return {"euclidean": 2.0, "sqeuclidean": 2.0, "cityblock": 1.0}.get(self.name, self.p)

    @property
    def accumulator(self) -> tuple:
        if self.name in ("euclidean", "sqeuclidean", "cosine"):
            return ("gram",)
        if self.name == "chebyshev":
            return ("max",)
        return ("pow", self.exponent)

    def label(self) -> str:
        return f"minkowski(p={self.p:g})" if self.name == "minkowski" else self.name


def make_metric(name: str, p: float | None = None) -> Metric:
    return Metric(name, p)


# ----------------------------------------------------------------------------------------------
# tile contributions


def _tile_contribution(acc: tuple, x: jax.Array) -> jax.Array:
    """(n, n) contribution of one tile x of shape (n, TILE), in x's dtype."""
    if acc[0] == "gram":
        return jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
    if acc[0] == "max":
        return jax.lax.map(lambda row: jnp.max(jnp.abs(row[None, :] - x), axis=-1), x)
    p = acc[1]

    def row_pow(row):
        a = jnp.abs(row[None, :] - x)
        return jnp.sum(a if p == 1 else (a * a if p == 2 else a**p), axis=-1)

    return jax.lax.map(row_pow, x)


def _combine(acc: tuple, a, b):
    return jnp.maximum(a, b) if acc[0] == "max" else a + b


def _tree_reduce(acc: tuple, c: jax.Array) -> jax.Array:
    """Pairwise reduction over the leading axis (a power of two): ((c0+c1)+(c2+c3))+..."""
    while c.shape[0] > 1:
        c = c.reshape((c.shape[0] // 2, 2) + c.shape[1:])
        c = _combine(acc, c[:, 0], c[:, 1])
    return c[0]


def _push(acc: tuple, stack: jax.Array, count, val: jax.Array) -> jax.Array:
    """Add the subtree ``val`` (chunk number ``count``) into the binary-counter ``stack``.

    ``stack[l]`` holds the sum of an aligned block of 2^l chunks when bit l of ``count`` is set.
    """
    done = jnp.bool_(False)
    for level in range(stack.shape[0]):
        bit = (count >> level) & 1
        merge = ~done & (bit == 1)
        place = ~done & (bit == 0)
        old = stack[level]
        new_val = jnp.where(merge, _combine(acc, old, val), val)
        stack = stack.at[level].set(jnp.where(place, val, jnp.where(merge, jnp.zeros_like(old), old)))
        val, done = new_val, done | place
    return stack


def _finish(acc: tuple, stack: jax.Array, count) -> jax.Array:
    """Sum of the stack as the full zero-padded tree would give it: stack[hi] + (... + stack[lo])."""
    val = jnp.zeros_like(stack[0])
    for level in range(stack.shape[0]):
        val = jnp.where((count >> level) & 1, _combine(acc, stack[level], val), val)
    return val


@functools.partial(jax.jit, static_argnums=(1, 2, 4, 5, 6, 7, 8))
def _accumulate(key, dist, n, d, accs, chunk_tiles, levels, dtype, width):
    point_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))
    adt = acc_dtype()
    n_tiles = (d + TILE - 1) // TILE
    n_chunks = ((n_tiles + chunk_tiles - 1) // chunk_tiles).astype(jnp.int32)

    def body(c, stacks):
        tiles = c * chunk_tiles + jnp.arange(chunk_tiles, dtype=jnp.int32)
        x = sample_tiles(point_keys, dist, tiles, d, dtype, width)  # (k, n, width)
        out = []
        for acc, stack in zip(accs, stacks):
            contrib = jax.vmap(functools.partial(_tile_contribution, acc))(x).astype(adt)
            out.append(_push(acc, stack, c, _tree_reduce(acc, contrib)))
        return tuple(out)

    stacks = tuple(jnp.zeros((levels, n, n), adt) for _ in accs)
    stacks = jax.lax.fori_loop(0, n_chunks, body, stacks)
    return tuple(_finish(acc, s, n_chunks) for acc, s in zip(accs, stacks))


def default_chunk(n: int, *, itemsize: int = 4, budget: int = 32 << 20) -> int:
    """Coordinates per chunk: the largest power-of-two multiple of TILE (at most 1024 tiles) whose
    samples (n x chunk x itemsize bytes) fit in ``budget``."""
    k = max(1, budget // (n * TILE * itemsize))
    return TILE * min(1024, 1 << (k.bit_length() - 1))


def _levels(d: int, chunk_tiles: int) -> int:
    n_chunks = -(-(-(-d // TILE)) // chunk_tiles)
    return 8 * (-(-max(1, n_chunks.bit_length()) // 8))  # bucketed: one compile serves many d


def memory_estimate(n: int, d: int, metrics, *, chunk: int | None = None, dtype=np.float32) -> int:
    """Bytes that ``pairwise_matrices`` will hold at its peak (samples, contributions, accumulators)."""
    itemsize = np.dtype(dtype).itemsize
    chunk = chunk or default_chunk(n, itemsize=itemsize)
    k = chunk // TILE
    accs = {make_metric(m.name, m.p).accumulator if isinstance(m, Metric) else m for m in metrics}
    samples = 2 * k * n * TILE * itemsize
    per_acc = (k + _levels(d, k) + 4) * n * n * 8
    row_work = 2 * n * TILE * itemsize * k
    return int(samples + len(accs) * per_acc + row_work)


def _check(fn, dist, n, d, chunk, dtype):
    if not isinstance(dist, Distribution):
        raise ValueError(f"{fn}: dist must be a sim.vectors.Distribution, got {dist!r}")
    if int(n) != n or n < 2:
        raise ValueError(f"{fn}: n (number of points) must be an integer >= 2, got {n!r}")
    if int(d) != d or d < 1:
        raise ValueError(f"{fn}: d (dimension) must be an integer >= 1, got {d!r}")
    dist.check_dim(int(d))
    dtype = float_dtype(dtype, fn=fn)
    chunk = default_chunk(int(n), itemsize=dtype.itemsize) if chunk is None else int(chunk)
    k = chunk // TILE
    if chunk % TILE or k & (k - 1):
        raise ValueError(f"{fn}: chunk must be TILE={TILE} times a power of two, got {chunk}")
    if d >= 2**31 and not jax.config.jax_enable_x64:
        raise ValueError(f"{fn}: d={d} >= 2**31 needs jax.config.update('jax_enable_x64', True)")
    return int(n), int(d), k, dtype


def pairwise_matrices(key, dist: Distribution, n: int, d: int, metrics, *, chunk=None, dtype=jnp.float32):
    """Distance matrices of ``n`` random vectors in dimension ``d`` for several metrics in one pass.

    Args:
        key: PRNG key (typed or raw).
        dist: coordinate law, e.g. ``sim.vectors.Gaussian()``.
        n: number of points, >= 2.
        d: dimension, >= 1 (up to 2**31 - 1 without x64).
        metrics: sequence of ``Metric`` (or metric names).
        chunk: coordinates generated at once: TILE times a power of two (default from n, ~32 MB).
            The result is bit-identical for every chunk.
        dtype: float32 (default) or float64 for the samples; accumulation is float64 under x64.

    Returns:
        Tuple of ``(n, n)`` float arrays (float64 under x64), one per metric; zero diagonal.
    """
    n, d, k, dtype = _check("pairwise_matrices", dist, n, d, chunk, dtype)
    metrics = [m if isinstance(m, Metric) else make_metric(m) for m in metrics]
    accs = tuple(dict.fromkeys(m.accumulator for m in metrics))
    didx = jnp.asarray(d, dtype=jax.dtypes.canonicalize_dtype(np.int64))
    if d < TILE:
        k = 1  # one short tile: chunking cannot matter
    sums = _accumulate(as_key(key), dist, n, didx, accs, k, _levels(d, k), dtype, tile_width(d))
    by_acc = dict(zip(accs, sums))
    return tuple(_finalise(m, by_acc[m.accumulator]) for m in metrics)


def pairwise_distances(key, dist: Distribution, n: int, d: int, *, metric="euclidean", p=None,
                       chunk=None, dtype=jnp.float32) -> jax.Array:
    """``(n, n)`` matrix of ``metric`` distances between n random vectors of dimension d.

    See ``pairwise_matrices`` for the arguments. ``cosine`` gives the cosine distance 1 - cos(angle).
    """
    return pairwise_matrices(key, dist, n, d, [make_metric(metric, p)], chunk=chunk, dtype=dtype)[0]


def _finalise(metric: Metric, s: jax.Array) -> jax.Array:
    eye = jnp.eye(s.shape[0], dtype=bool)
    if metric.name in ("euclidean", "sqeuclidean"):
        g = jnp.diagonal(s)
        sq = jnp.maximum(g[:, None] + g[None, :] - 2 * s, 0)
        out = sq if metric.name == "sqeuclidean" else jnp.sqrt(sq)
    elif metric.name == "cosine":
        out = 1 - cosines_from_gram(s)
    elif metric.name == "chebyshev":
        out = s
    else:
        out = s if metric.exponent == 1 else s ** (1 / metric.exponent)
    return jnp.where(eye, jnp.zeros((), out.dtype), out)


def cosines_from_gram(g: jax.Array) -> jax.Array:
    """Cosines of the angles between vectors from their Gram matrix (n, n); clipped to [-1, 1]."""
    norms = jnp.sqrt(jnp.diagonal(g))
    return jnp.clip(g / (norms[:, None] * norms[None, :]), -1, 1)


# ----------------------------------------------------------------------------------------------
# statistics over pairs


class PairStats(NamedTuple):
    """Statistics of the n(n-1)/2 values above the diagonal of a pair matrix."""

    mean: jax.Array
    std: jax.Array  # population std over pairs
    rel_std: jax.Array  # std / mean
    min: jax.Array
    max: jax.Array
    rel_contrast: jax.Array  # (max - min) / min
    hist: jax.Array  # counts of value/mean in the bins of `edges` (int32)


@functools.partial(jax.jit, static_argnames=("edges",))
def _pair_stats(m, edges):
    n = m.shape[0]
    iu = jnp.triu_indices(n, 1)
    v = m[iu]
    mean = jnp.mean(v)
    std = jnp.sqrt(jnp.mean((v - mean) ** 2))
    lo, hi = jnp.min(v), jnp.max(v)
    hist, _ = jnp.histogram(v / mean, bins=jnp.asarray(edges, v.dtype))
    return PairStats(mean, std, std / mean, lo, hi, (hi - lo) / lo, hist.astype(jnp.int32))


def pair_stats(m: jax.Array, *, edges=tuple(np.linspace(0.0, 2.5, 101).tolist())) -> PairStats:
    """Mean, std, rel_std, min, max, rel_contrast and histogram of value/mean over pairs i < j.

    Args:
        m: (n, n) symmetric pair matrix, n >= 2.
        edges: histogram bin edges for value/mean (a tuple, static).
    """
    return _pair_stats(m, tuple(float(e) for e in edges))
