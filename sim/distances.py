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

Devices and processes: ``devices=`` (default: every device JAX sees) gives a 1-D mesh
(``sim.devices``); device k streams the aligned power-of-two block of chunks [k B, (k+1) B) and the
device roots are combined in the same fixed tree (``sim.devices.ordered_reduce``), so the matrices
are bit-identical for 1, 2, 3, 8 ... devices and for any number of ``jax.distributed`` processes.

Rademacher vectors take a bit-packed path (``packed=None`` -> automatic): the sign bits of a tile are
``sim.vectors.sign_words`` (the same words ``Rademacher.draw`` unpacks), and the number of differing
signs h_ij = sum popcount(x_i xor x_j) is counted in integers, 32 coordinates per word, exactly. Every
accumulator follows from h (Gram d - 2h, sum |x - y|^p = 2^p h, max = 2 [h > 0]), so the results equal
the float-tile path bit for bit (x64, d < 2**53) while generating 1 bit instead of 32 per coordinate:
d = 1.75e11 (two random GPT-3-sized sign vectors) takes about 40 s of CPU time (no vector is held).

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

from jax.sharding import PartitionSpec

from sim._util import acc_dtype, as_key, float_dtype
from sim.devices import block_size, make_mesh, ordered_reduce, replicated
from sim.vectors import TILE, Distribution, Rademacher, sample_tiles, sign_blocks, sign_words, tile_width

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
    "uses_packed",
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


def _chunk_generic(dist, point_keys, accs, tiles, d, dtype, width):
    """Per accumulator: the tree sum over this chunk's tiles of the (n, n) tile contributions."""
    adt = acc_dtype()
    x = sample_tiles(point_keys, dist, tiles, d, dtype, width)  # (k, n, width)
    return tuple(_tree_reduce(acc, jax.vmap(functools.partial(_tile_contribution, acc))(x).astype(adt))
                 for acc in accs)


def _chunk_packed(point_keys, tiles, d, width, impl):
    """(n, n) numbers of differing signs over this chunk's tiles (Rademacher), exact int32.

    Each tile is ``width / 32`` uint32 words per point (``sign_words``); coordinates >= d are masked
    off, and popcount(x_i xor x_j) counts the coordinates where points i and j differ. Threefry
    blocks are used as (low, high) word pairs without interleaving them: popcounts do not care.
    """
    n = point_keys.shape[0]
    if impl == "threefry2x32":
        m = max(1, width // 64)

        def gen(k):
            return jnp.stack(sign_blocks(k, m))  # (2, m): low words, high words

        base = 64 * jnp.arange(m, dtype=jnp.int32)
        starts = jnp.stack([base, base + 32])  # (2, m): first coordinate of each word
    else:
        m = max(1, width // 32)

        def gen(k):
            return sign_words(k, m)[None]

        starts = 32 * jnp.arange(m, dtype=jnp.int32)[None]
    words = jax.vmap(lambda t: jax.vmap(lambda k: gen(jax.random.fold_in(k, t)))(point_keys))(tiles)
    d_full, d_rem = d // TILE, d % TILE
    valid = jnp.where(tiles < d_full, TILE, jnp.where(tiles == d_full, d_rem, 0)).astype(jnp.int32)  # (k,)
    vb = jnp.clip(valid[:, None, None] - starts[None], 0, 32)  # (k, 2, m) valid bits per word
    mask = jnp.where(vb >= 32, jnp.uint32(0xFFFFFFFF),
                     (jnp.uint32(1) << jnp.minimum(vb, 31).astype(jnp.uint32)) - jnp.uint32(1))
    words = words & mask[:, None]  # (k, n, 2, m)
    if n * (n - 1) // 2 * words[:, 0].size * 4 <= 64 << 20:  # few points: the pairs i < j at once
        iu, ju = np.triu_indices(n, 1)
        h = jnp.sum(jax.lax.population_count(words[:, iu] ^ words[:, ju]).astype(jnp.int32), axis=(0, 2, 3), dtype=jnp.int32)
        out = jnp.zeros((n, n), jnp.int32).at[iu, ju].set(h)
        return out + out.T

    def row(wi):  # wi: (k, 2, m) words of one point
        diff = jax.lax.population_count(wi[:, None] ^ words).astype(jnp.int32)
        return jnp.sum(diff, axis=(0, 2, 3))

    return jax.lax.map(row, jnp.moveaxis(words, 1, 0))


def _count_dtype():
    return jax.dtypes.canonicalize_dtype(np.int64)


@functools.lru_cache(maxsize=64)
def _runner(mesh, impl, dist, n, accs, chunk_tiles, levels, dtype, width, packed):
    """Jitted ``(key_data, d, n_chunks, block) -> sums`` for one static configuration over ``mesh``.

    Device k streams the aligned block of chunks [k*block, (k+1)*block) (``sim.devices.block_size``)
    into its own binary-counter tree; the device roots are then combined in a fixed tree
    (``ordered_reduce``). Chunk c always covers tiles [c*chunk_tiles, (c+1)*chunk_tiles), so the
    whole is the same zero-padded pairwise tree over chunks whatever the number of devices.
    """
    axis = mesh.axis_names[0]

    def local(key_data, d, n_chunks, block):
        key = jax.random.wrap_key_data(key_data, impl=impl)
        point_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))
        c0 = jax.lax.axis_index(axis).astype(n_chunks.dtype) * block
        count = jnp.clip(n_chunks - c0, 0, block).astype(jnp.int32)
        c0 = c0.astype(jnp.int32)

        def tiles_of(j):
            return (c0 + j) * chunk_tiles + jnp.arange(chunk_tiles, dtype=jnp.int32)

        if packed:
            def body(j, total):
                return total + _chunk_packed(point_keys, tiles_of(j), d, width, impl).astype(total.dtype)

            h = jax.lax.fori_loop(0, count, body, jnp.zeros((n, n), _count_dtype()))
            h = ordered_reduce(h, axis)
            return tuple(_from_counts(acc, h, d) for acc in accs)

        def body(j, stacks):
            vals = _chunk_generic(dist, point_keys, accs, tiles_of(j), d, dtype, width)
            return tuple(_push(acc, s, j, v) for acc, s, v in zip(accs, stacks, vals))

        stacks = tuple(jnp.zeros((levels, n, n), acc_dtype()) for _ in accs)
        stacks = jax.lax.fori_loop(0, count, body, stacks)
        roots = tuple(_finish(acc, s, count) for acc, s in zip(accs, stacks))
        return tuple(ordered_reduce(r, axis, functools.partial(_combine, acc)) for acc, r in zip(accs, roots))

    rep = replicated(mesh)
    f = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(),) * 4, out_specs=PartitionSpec(),
                      check_vma=False)
    return jax.jit(f, in_shardings=(rep,) * 4, out_shardings=rep)


def _from_counts(acc: tuple, h: jax.Array, d) -> jax.Array:
    """The accumulator of +-1 vectors from their numbers of differing signs h (exact in float64)."""
    adt = acc_dtype()
    hf = h.astype(adt)
    if acc[0] == "gram":  # x_i . x_j = d - 2 h_ij
        return d.astype(adt) - 2 * hf
    if acc[0] == "max":  # max |x_ik - x_jk| is 2 as soon as one sign differs
        return jnp.where(h > 0, jnp.asarray(2, adt), jnp.asarray(0, adt))
    return hf * jnp.asarray(2.0 ** acc[1], adt)  # sum |x - y|^p = 2^p h


def default_chunk(n: int, *, itemsize: int = 4, budget: int = 32 << 20, packed: bool = False) -> int:
    """Coordinates per chunk: the largest power-of-two multiple of TILE (at most 1024 tiles; 8192
    packed) whose samples (n x chunk x itemsize bytes; n x chunk / 8 packed) fit in ``budget``."""
    if packed:
        k = max(1, budget * 8 // (n * TILE))
        return TILE * min(8192, 1 << (k.bit_length() - 1))
    k = max(1, budget // (n * TILE * itemsize))
    return TILE * min(1024, 1 << (k.bit_length() - 1))


def _levels(d: int, chunk_tiles: int) -> int:
    n_chunks = -(-(-(-d // TILE)) // chunk_tiles)
    if n_chunks == 1:
        return 1  # one chunk: the stack holds it alone (a deeper stack only costs (levels, n, n) work)
    return 8 * (-(-max(1, n_chunks.bit_length()) // 8))  # bucketed: one compile serves many d


def memory_estimate(n: int, d: int, metrics, *, chunk: int | None = None, dtype=np.float32,
                    packed: bool = False) -> int:
    """Bytes that ``pairwise_matrices`` will hold at its peak (samples, contributions, accumulators),
    per device. ``packed``: the Rademacher bit-packed path (1 bit per coordinate)."""
    itemsize = np.dtype(dtype).itemsize
    chunk = chunk or default_chunk(n, itemsize=itemsize, packed=packed)
    k = chunk // TILE
    accs = {make_metric(m.name, m.p).accumulator if isinstance(m, Metric) else m for m in metrics}
    if packed:  # words, their xor with one row, counts, and the (n, n) results
        return int(3 * n * chunk // 8 + (4 + len(accs)) * n * n * 8)
    samples = 2 * k * n * TILE * itemsize
    per_acc = (k + _levels(d, k) + 4) * n * n * 8
    row_work = 2 * n * TILE * itemsize * k
    return int(samples + len(accs) * per_acc + row_work)


def _check(fn, dist, n, d, chunk, dtype, packed=False):
    if not isinstance(dist, Distribution):
        raise ValueError(f"{fn}: dist must be a sim.vectors.Distribution, got {dist!r}")
    if int(n) != n or n < 2:
        raise ValueError(f"{fn}: n (number of points) must be an integer >= 2, got {n!r}")
    if int(d) != d or d < 1:
        raise ValueError(f"{fn}: d (dimension) must be an integer >= 1, got {d!r}")
    dist.check_dim(int(d))
    dtype = float_dtype(dtype, fn=fn)
    chunk = default_chunk(int(n), itemsize=dtype.itemsize, packed=packed) if chunk is None else int(chunk)
    k = chunk // TILE
    if chunk % TILE or k & (k - 1):
        raise ValueError(f"{fn}: chunk must be TILE={TILE} times a power of two, got {chunk}")
    if d >= 2**31 and not jax.config.jax_enable_x64:
        raise ValueError(f"{fn}: d={d} >= 2**31 needs jax.config.update('jax_enable_x64', True)")
    if d >= 2**53:
        raise ValueError(f"{fn}: d={d} >= 2**53 is beyond exact float64 counting")
    return int(n), int(d), k, dtype


def uses_packed(dist: Distribution, packed: bool | None = None) -> bool:
    """Whether ``pairwise_matrices`` takes the bit-packed popcount path for ``dist`` (auto: Rademacher)."""
    return isinstance(dist, Rademacher) if packed is None else bool(packed)


def pairwise_matrices(key, dist: Distribution, n: int, d: int, metrics, *, chunk=None, dtype=jnp.float32,
                      devices=None, packed: bool | None = None):
    """Distance matrices of ``n`` random vectors in dimension ``d`` for several metrics in one pass.

    Args:
        key: PRNG key (typed or raw).
        dist: coordinate law, e.g. ``sim.vectors.Gaussian()``.
        n: number of points, >= 2.
        d: dimension, >= 1 (up to 2**31 - 1 without x64, below 2**53 with it).
        metrics: sequence of ``Metric`` (or metric names).
        chunk: coordinates generated at once: TILE times a power of two (default from n, ~32 MB).
            The result is bit-identical for every chunk.
        dtype: float32 (default) or float64 for the samples; accumulation is float64 under x64.
        devices: where the tiles are generated (see ``sim.devices.make_mesh``): None (every device
            JAX sees, across processes after ``jax.distributed.initialize``), a count N (the first N),
            a device list or a 1-D Mesh. Each device streams an aligned block of chunks; the result
            is bit-identical for every number of devices.
        packed: Rademacher only: count differing signs with popcount(xor) on the packed words
            (32 coordinates per uint32, integer-exact) instead of float tiles. None: automatic
            (on for Rademacher); both paths see the same vectors and agree exactly (d < 2**53, x64).

    Returns:
        Tuple of ``(n, n)`` float arrays (float64 under x64), one per metric; zero diagonal;
        replicated over the mesh.

    References:
        Threefry: Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3".
    """
    packed = uses_packed(dist, packed)
    if packed and not isinstance(dist, Rademacher):
        raise ValueError(f"pairwise_matrices: packed=True needs Rademacher vectors, got {dist.label()}")
    n, d, k, dtype = _check("pairwise_matrices", dist, n, d, chunk, dtype, packed)
    metrics = [m if isinstance(m, Metric) else make_metric(m) for m in metrics]
    accs = tuple(dict.fromkeys(m.accumulator for m in metrics))
    mesh = make_mesh(devices)
    if d < TILE:
        k = 1  # one short tile: chunking cannot matter
    n_chunks = -(-(-(-d // TILE)) // k)
    block = block_size(n_chunks, mesh.size)
    key = as_key(key)
    impl = str(jax.random.key_impl(key))
    key_data = jax.random.key_data(key)
    idt = jax.dtypes.canonicalize_dtype(np.int64)
    args = [key_data, np.asarray(d, idt), np.asarray(n_chunks, idt), np.asarray(block, idt)]
    if not isinstance(key_data, jax.core.Tracer):
        args[0] = np.asarray(key_data)  # host value: valid input for a mesh spanning several processes
    run = _runner(mesh, impl, dist, n, accs, k, _levels(d, k), dtype, tile_width(d), packed)
    by_acc = dict(zip(accs, run(*args)))
    return tuple(_finalise(m, by_acc[m.accumulator]) for m in metrics)


def pairwise_distances(key, dist: Distribution, n: int, d: int, *, metric="euclidean", p=None,
                       chunk=None, dtype=jnp.float32, devices=None, packed: bool | None = None) -> jax.Array:
    """``(n, n)`` matrix of ``metric`` distances between n random vectors of dimension d.

    See ``pairwise_matrices`` for the arguments. ``cosine`` gives the cosine distance 1 - cos(angle).
    """
    return pairwise_matrices(key, dist, n, d, [make_metric(metric, p)], chunk=chunk, dtype=dtype,
                             devices=devices, packed=packed)[0]


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
