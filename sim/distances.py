"""Pairwise distances between random vectors, streamed over the dimension.

``pairwise_distances(key, dist, n, d, metric=...)`` returns the ``(n, n)`` matrix of distances between
``n`` random vectors of dimension ``d`` without ever holding the ``n x d`` vectors: coordinates are
generated a tile at a time in the loop that consumes them (Gram path) or a chunk of tiles at a time
(elementwise accumulators, few points; see ``sim.vectors``), each tile contributes an ``(n, n)``
partial sum, and the partial sums are added in a fixed binary tree over tile indices. The loop's trip
count is a run-time value: up to ONE_PROGRAM_MAX_POINTS points one compiled program per point count
and law serves every d up to 2**8 tiles; the laws' scale parameters are run-time arguments too (one
program for every power-law exponent, one for every MLP of one depth: ``Distribution.runtime_form``),
and up to PACKED_ONE_PROGRAM_MAX_POINTS points one Rademacher program serves every d up to 64 tiles.

Why a tree: float32 partial sums added one after another in float32 lose ~log2(d) bits; a pairwise
(tree) sum loses O(log d) ulps at most, and the accumulator is float64 whenever ``jax_enable_x64`` is
on. The tree is fixed by the tile indices (tiles are added one at a time, in order, into a binary
counter), and no tile's contribution depends on the chunk: the Gram product of a tile is one dot of
fixed shape (n, w) x (w, n), run once per tile in a loop (a batched dot over a chunk's tiles would
change shape, and on some CPUs summation order, with the chunk: XLA's CPU GEMM blocks the contraction
by the detected ISA and cache sizes); the elementwise sums reduce one pair over one tile at a time.

Reproducibility, and its scope: for a given key, the matrices are **bit-identical for every chunk
size, every number of devices and every number of jax.distributed processes, on one machine with one
jax/jaxlib version** (tests: chunks of 1 to 16 tiles, 1, 2, 3 and 8 devices, 2 processes, and the
compiled program checked to hold one dot shape for every chunk). Across machines, backends (CPU, GPU,
TPU) or library versions the random bits are identical (integer Threefry, see ``sim.vectors``), but the
float32 transforms (erfinv, log, ...) and the float32 dot products may be evaluated in another order:
distances then agree to about 1e-7 relative, not bit for bit. The packed Rademacher path counts in
integers and is exact everywhere.

Accumulators (what each tile contributes):

* ``gram``: X X^T (euclidean, sqeuclidean, cosine; one pass gives all three);
* ``pow p``: sum_k |x_ik - x_jk|^p (cityblock p = 1, minkowski p);
* ``max``: max_k |x_ik - x_jk| (chebyshev).

Devices and processes: ``devices=`` (default: every device JAX sees) gives a 1-D mesh
(``sim.devices``); device k streams the aligned power-of-two blocks of chunks [b B, (b+1) B) for
b = k, k + n_dev, ... (up to MAX_ROUNDS of them, so the devices' shares stay balanced) and the block
roots are combined in block order in the same fixed tree (``sim.devices.ordered_reduce_blocks``), so the matrices
are bit-identical (on one machine, as above) for 1, 2, 3, 8 ... devices and for any number of
``jax.distributed`` processes.

Rademacher vectors take a bit-packed path (``packed=None`` -> automatic): the sign bits of a tile are
``sim.vectors.sign_words`` (the same words ``Rademacher.draw`` unpacks), and the number of differing
signs h_ij = sum popcount(x_i xor x_j) is counted in integers, 32 coordinates per word, exactly. Every
accumulator follows from h (Gram d - 2h, sum |x - y|^p = 2^p h, max = 2 [h > 0]), so the results equal
the float-tile path bit for bit (x64, d < 2**53) while generating 1 bit instead of 32 per coordinate:
d = 1.75e11 (two random GPT-3-sized sign vectors) takes about 40 s of CPU time (no vector is held).

Few points (at most ELEMENTWISE_GRAM_MAX_POINTS = 8, e.g. two huge vectors): every contribution, the
Gram one too, is an elementwise product reduced pair by pair over one tile, computed for a whole chunk
of tiles at once; the chunk's tiles are summed in their own pairwise tree and enter the counter as one
aligned block (``_push_block``), which is exactly the tree of tile-by-tile pushes, so results stay
bit-identical for every chunk while the loop over tiles (7 us per tile) disappears. The default chunk
is then ~1 MB of samples, which stays in the core's cache between generation and reduction.

The Gram route costs one matrix product per tile (GEMM speed; from SYMMETRIC_MIN_POINTS = 512
points on, the upper fixed-shape block products of a 2 x 2 (above 1024 points 4 x 4) block form, 3/4
(5/8) of the flops, like BLAS syrk). Squared distances are recovered as
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
from sim.devices import cyclic_blocks, make_mesh, ordered_reduce, ordered_reduce_blocks, replicated
from sim.vectors import (
    TILE,
    Distribution,
    Rademacher,
    fold_in,
    kernel_jit,
    sample_tiles,
    sign_blocks,
    sign_words,
    tile_width,
)

#: bin edges of ``pair_stats``'s histogram of value/mean (100 bins on [0, 2.5])
HIST_EDGES = tuple(np.linspace(0.0, 2.5, 101).tolist())

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

#: Largest dimension: 2**31 tiles (tile indices, folded into the point keys, are int32).
MAX_DIM = 2**31 * TILE

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
        return _gram_rows(x) if x.shape[0] <= ELEMENTWISE_GRAM_MAX_POINTS else _gram_tile(x)
    if acc[0] == "max":
        return jax.lax.map(lambda row: jnp.max(jnp.abs(row[None, :] - x), axis=-1), x)
    p = acc[1]

    def row_pow(row):
        a = jnp.abs(row[None, :] - x)
        return jnp.sum(a if p == 1 else (a * a if p == 2 else a**p), axis=-1)

    return jax.lax.map(row_pow, x)


#: Up to this many points, a tile's Gram contribution is an elementwise product summed over the tile's
#: coordinates (one reduction per pair, like the ``pow`` accumulators) rather than a dot: for a handful
#: of points a dot per tile costs more in loop and call overhead than in arithmetic, and the sums of a
#: whole chunk, reduced pair by pair over one tile at a time, do not depend on the chunk.
ELEMENTWISE_GRAM_MAX_POINTS = 8


def _chunked(acc: tuple, n: int) -> bool:
    """Whether the contributions of ``acc`` are computed for a chunk's tiles at once (elementwise
    accumulators, and the Gram of at most ELEMENTWISE_GRAM_MAX_POINTS points) rather than tile by tile."""
    return acc[0] != "gram" or n <= ELEMENTWISE_GRAM_MAX_POINTS


def _gram_rows(x: jax.Array) -> jax.Array:
    """(n, n) Gram contribution of one tile x (n, w) as sums over the coordinates of elementwise
    products (few points: see ELEMENTWISE_GRAM_MAX_POINTS), one per pair i <= j, mirrored.

    The pairs are static row slices, one product and reduction each: ``sum(x[:, None] * x[None, :],
    -1)`` is the same sum, but jaxlib 0.10.2's CPU backend miscompiles it when vmapped over a single
    tile (a (1, n, n, w) product reduced over w returned G[i, j] = G[0, i]); gathering the pairs
    (``x[iu] * x[ju]``) is correct but materialises them, 25% slower than slices that fuse.
    """
    iu, ju = np.triu_indices(x.shape[0])
    s = jnp.stack([jnp.sum(x[i] * x[j], axis=-1) for i, j in zip(iu.tolist(), ju.tolist())])
    return jnp.zeros((x.shape[0],) * 2, x.dtype).at[iu, ju].set(s).at[ju, iu].set(s)


def _combine(acc: tuple, a, b):
    return jnp.maximum(a, b) if acc[0] == "max" else a + b


def _gram_tile(x: jax.Array, blocks: int | None = None) -> jax.Array:
    """(n, n) Gram product of one tile x of shape (n, w): a single dot of fixed shape.

    Written as ``dot_general(x, x)`` contracting the coordinate axis of both operands (no transpose
    for the compiler to fold or not), and always called on one tile at a time inside a loop whose
    trip count is a run-time value (see ``_runner``): the compiled dot is then the same instruction,
    with the same operand shapes and layouts, for every chunk size and device count, so the backend's
    GEMM (whose blocking of the contraction depends on the CPU's ISA and cache sizes) sums the
    products of a tile in the same order whatever the chunk. A batched dot over the tiles of a chunk
    would not do: its shape, and on some CPUs its summation order, change with the chunk.
    """
    n = x.shape[0]
    if n < SYMMETRIC_MIN_POINTS:
        return _dot_rows(x, x)
    # symmetry: the upper blocks of a q x q block matrix, (q + 1) / 2q of the flops, all of one shape
    # (h, w) x (w, h); the lower blocks are their transposes
    q = symmetric_blocks(n) if blocks is None else blocks
    h = -(-n // q)
    if q * h != n:
        x = jnp.concatenate([x, jnp.zeros((q * h - n, x.shape[1]), x.dtype)])
    b = [x[i * h : (i + 1) * h] for i in range(q)]
    upper = {(i, j): _dot_rows(b[i], b[j]) for i in range(q) for j in range(i, q)}
    rows = [jnp.concatenate([upper[i, j] if j >= i else upper[j, i].T for j in range(q)], 1) for i in range(q)]
    return jnp.concatenate(rows)[:n, :n]


#: Up to this many points, the Gram path draws full tiles of TILE coordinates even when d < TILE and
#: keeps a stack of at least 8 levels, so that one compiled program serves every d up to 2**8 tiles
#: (d = 1, 100, 10^5 alike): a first call at a new d costs no compile, and a short tile costs at most
#: one (n, TILE) generation and dot (at 1024 points about 0.06 s). More points: the tile width and
#: the stack follow d (a full tile's dot at 4096 points is ~100 GFLOP).
ONE_PROGRAM_MAX_POINTS = 1024


#: Narrower widths than TILE that the one-program Gram path (ONE_PROGRAM_MAX_POINTS) draws and multiplies
#: when a device has a single tile with few valid coordinates (d < TILE): a run-time switch inside the
#: one program picks the narrowest width >= the tile's valid coordinates, so d = 100 draws and multiplies
#: 128 coordinates per point instead of 4096 (at 1024 points: 0.17 s -> 0.03 s with the other single-tile
#: savings). The product of the short tile equals the full tile's (the coordinates are a prefix, the rest
#: are zeros; checked bit for bit in tests/test_distances.py). Each width adds its generator and dot to
#: the one program's compile time (about 0.3 s each at 1024 points), hence only two.
GRAM_PREFIX_WIDTHS = (128, 1024)


#: From this many points on, the Gram program draws a single short tile at GRAM_PREFIX_WIDTHS. Fewer
#: points: a full tile costs little (at 64 points 0.3 M Gaussians and a 34 MFLOP product, about 1 ms),
#: and the three branches cost more to compile than they can save (the Gaussian Gram program at 64 points
#: compiles in 1.5-1.7 CPU-s without them, 2.6-2.8 with them; load 4). Either way the same sums, bit for bit
#: (tests/test_distances.py).
GRAM_PREFIX_MIN_POINTS = 256

#: Up to this many points the packed (Rademacher) path draws full tiles (width TILE) and, when d has at
#: most PACKED_ONE_PROGRAM_TILES tiles and no chunk is given, one tile per step: one compiled program serves
#: every such d (its counts are integers, exact whatever the width and chunk). Above, the pair counts
#: (n^2 words per tile) would make full tiles at small d costly.
PACKED_ONE_PROGRAM_MAX_POINTS = 256
PACKED_ONE_PROGRAM_TILES = 64


#: From this many points on, a tile's Gram product is computed from the upper blocks of its q x q block
#: form (the lower ones are their transposes), like BLAS syrk: q = 2 (3 products, 3/4 of the GEMM flops)
#: up to 1024 points, q = 4 above (10 products of (n/4, TILE) x (TILE, n/4), 5/8 of the flops). Idle,
#: 2 threads (bench_distances, sweep d = 10^2..10^5): at 4096 points q = 4 took the warm sweep from
#: 20.2 to 16.4 s; at 1024 points it gained 7% warm but cost 0.5-0.9 CPU-s more compilation, so that
#: the compile-inclusive sweep fell below numpy's (1.19x -> 0.92x): 1024 keeps q = 2. q = 8 (9/16 of the
#: flops) was no faster and compiles 1.8 s longer. The block size does not change a single sum
#: (tests/test_distances.py checks q = 4 against q = 2 bit for bit).
SYMMETRIC_MIN_POINTS = 512


def symmetric_blocks(n: int) -> int:
    """Blocks per side q of a tile's symmetric Gram product at n >= SYMMETRIC_MIN_POINTS points."""
    return 2 if n <= 2 * SYMMETRIC_MIN_POINTS else 4


def _dot_rows(a: jax.Array, b: jax.Array) -> jax.Array:
    """a b^T for a (m, w) and b (p, w): one dot contracting the coordinate axis of both, float32 exact."""
    return jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=jax.lax.Precision.HIGHEST)


def _trailing_ones(count):
    """Number of trailing 1 bits of a non-negative int32 ``count``."""
    return jax.lax.population_count(count ^ (count + 1)) - 1


def _push(acc: tuple, stack: jax.Array, count, val: jax.Array) -> jax.Array:
    """Add the contribution ``val`` of tile number ``count`` (0-based) into the binary-counter ``stack``.

    ``stack[l]`` holds the sum of the aligned block of 2^l tiles [count - 2^l, count) (and its
    lower ones) when bit l of ``count`` is set. Adding tile ``count`` merges the t full blocks below
    it, t = trailing ones of count: ``stack[t] = stack[t-1] + (... + (stack[0] + val))``, the pairwise
    tree ((c0 + c1) + (c2 + c3)) + ... built one leaf at a time (amortised one combine per tile).
    """

    def merge(level, v):
        return _combine(acc, jax.lax.dynamic_index_in_dim(stack, level, keepdims=False), v)

    t = _trailing_ones(count)
    val = jax.lax.fori_loop(0, t, merge, val)
    return jax.lax.dynamic_update_index_in_dim(stack, val, t, 0)


def _push_block(acc: tuple, stack: jax.Array, count, val: jax.Array, level: int) -> jax.Array:
    """``_push`` for the sum ``val`` of an aligned block of 2^level tiles, the ``count``-th such block.

    The block's sum must be its pairwise tree ((c0 + c1) + (c2 + c3)) + ... (``_tree_sum``): the stack
    is then exactly what pushing its tiles one by one would leave, so the result does not depend on
    whether (or in which block sizes) tiles were pushed together. Levels below ``level`` stay empty.
    """

    def merge(i, v):
        return _combine(acc, jax.lax.dynamic_index_in_dim(stack, level + i, keepdims=False), v)

    t = _trailing_ones(count)
    val = jax.lax.fori_loop(0, t, merge, val)
    return jax.lax.dynamic_update_index_in_dim(stack, val, level + t, 0)


def _tree_sum(acc: tuple, c: jax.Array) -> jax.Array:
    """Pairwise tree over the leading axis (a power of two): ((c0 + c1) + (c2 + c3)) + ..."""
    while c.shape[0] > 1:
        c = _combine(acc, c[0::2], c[1::2])
    return c[0]


def _finish(acc: tuple, stack: jax.Array, count) -> jax.Array:
    """Sum of the stack as the full zero-padded tree would give it: stack[hi] + (... + stack[lo])."""
    val = jnp.zeros_like(stack[0])
    for level in range(stack.shape[0]):
        val = jnp.where((count >> level) & 1, _combine(acc, stack[level], val), val)
    return val


def _elementwise_contributions(acc: tuple, x: jax.Array) -> jax.Array:
    """(k, n, n) contributions of the k tiles x (k, n, w) for an elementwise accumulator (pow, max).

    Every entry is a reduction over one tile's coordinates of one pair: its order is fixed by the
    tile width, not by k, so these may be computed for a whole chunk at once.
    """
    return jax.vmap(functools.partial(_tile_contribution, acc))(x).astype(acc_dtype())


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
    words = jax.vmap(lambda t: jax.vmap(lambda k: gen(fold_in(k, t)))(point_keys))(tiles)
    d_full, d_rem = d // TILE, d % TILE
    valid = jnp.where(tiles < d_full, TILE, jnp.where(tiles == d_full, d_rem, 0)).astype(jnp.int32)  # (k,)
    vb = jnp.clip(valid[:, None, None] - starts[None], 0, 32)  # (k, 2, m) valid bits per word
    mask = jnp.where(
        vb >= 32, jnp.uint32(0xFFFFFFFF), (jnp.uint32(1) << jnp.minimum(vb, 31).astype(jnp.uint32)) - jnp.uint32(1)
    )
    words = words & mask[:, None]  # (k, n, 2, m)
    if n * (n - 1) // 2 * words[:, 0].size * 4 <= 64 << 20:  # few points: the pairs i < j at once
        iu, ju = np.triu_indices(n, 1)
        h = jnp.sum(
            jax.lax.population_count(words[:, iu] ^ words[:, ju]).astype(jnp.int32), axis=(0, 2, 3), dtype=jnp.int32
        )
        out = jnp.zeros((n, n), jnp.int32).at[iu, ju].set(h)
        return out + out.T

    def row(wi):  # wi: (k, 2, m) words of one point
        diff = jax.lax.population_count(wi[:, None] ^ words).astype(jnp.int32)
        return jnp.sum(diff, axis=(0, 2, 3))

    return jax.lax.map(row, jnp.moveaxis(words, 1, 0))


def _count_dtype():
    return jax.dtypes.canonicalize_dtype(np.int64)


@functools.lru_cache(maxsize=64)
def _runner(mesh, impl, dist, n, accs, chunk_tiles, levels, dtype, width, packed, rounds=1, short_tiles=False):
    """Jitted ``(key_data, d, n_chunks, block, law_args) -> sums`` for one static configuration over
    ``mesh``; ``dist`` is a template (``Distribution.runtime_form``) completed by ``law_args``.

    Device k streams the aligned blocks of chunks [b*block, (b+1)*block) for b = r*n_dev + k,
    r = 0 .. rounds - 1 (``sim.devices.cyclic_blocks``: several blocks a device, so that its share of
    the chunks stays balanced); chunk c covers tiles [c*chunk_tiles, (c+1)*chunk_tiles). Two forms:

    * every accumulator elementwise (pow, max; the Gram of at most ELEMENTWISE_GRAM_MAX_POINTS
      points): a chunk's samples are drawn at once, reduced pair by pair over each tile (batched over
      the chunk's tiles: a reduction whose order does not depend on the batch), summed in their
      pairwise tree and pushed as one aligned block (``_push_block``);
    * a Gram accumulator (more points): one tile at a time (``_program`` passes chunk_tiles = 1 and
      counts the device blocks in tiles, the same partition), each tile generated in the loop body
      where its dot and reductions consume it, then pushed into the binary-counter tree (``_push``).
      The Gram product of a tile is one fixed-shape dot in a loop with a run-time trip count (the same
      compiled instruction for every chunk, which XLA cannot unroll, batch or merge), and the trip
      count makes one program serve every d of one tile width and stack depth.

    The block roots are combined in block order in a fixed tree (``ordered_reduce_blocks``). The tree
    depends only on tile indices: the whole is the zero-padded pairwise tree over tiles for every chunk
    size, number of devices and number of rounds.
    """
    axis = mesh.axis_names[0]

    n_dev = mesh.size

    template = dist

    def local(key_data, d, n_chunks, block, law_args):
        dist = template.bind(law_args)
        key = jax.random.wrap_key_data(key_data, impl=impl)
        point_keys = jax.vmap(lambda i: fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))
        dev = jax.lax.axis_index(axis).astype(n_chunks.dtype)

        def block_of(r):
            """(first chunk, chunks) of this device's block in round r: block r * n_dev + dev."""
            c0 = (r.astype(n_chunks.dtype) * n_dev + dev) * block
            return c0.astype(jnp.int32), jnp.clip(n_chunks - c0, 0, block).astype(jnp.int32)

        def tiles_of(c0, j):
            return (c0 + j) * chunk_tiles + jnp.arange(chunk_tiles, dtype=jnp.int32)

        if packed:  # integer counts: exact in any order, one running total over this device's blocks

            def body_of(c0):
                def body(j, total):
                    return total + _chunk_packed(point_keys, tiles_of(c0, j), d, width, impl).astype(total.dtype)

                return body

            def packed_round(r, h):
                c0, count = block_of(r)
                return jax.lax.fori_loop(0, count, body_of(c0), h)

            h = jax.lax.fori_loop(0, rounds, packed_round, jnp.zeros((n, n), _count_dtype()))
            h = ordered_reduce(h, axis)
            return tuple(_from_counts(acc, h, d) for acc in accs)

        if all(_chunked(acc, n) for acc in accs):
            # every contribution is computed for a whole chunk at once: sum the chunk's tiles in their
            # pairwise tree and push that as one aligned block (no loop over tiles)
            level = chunk_tiles.bit_length() - 1

            def block_roots(c0, count):
                def block_body(j, stacks):
                    x = sample_tiles(point_keys, dist, tiles_of(c0, j), d, dtype, width)  # (k, n, width)
                    # generated once: XLA would otherwise fuse the generator into each pair's reduction
                    x = jax.lax.optimization_barrier(x)
                    return tuple(
                        _push_block(acc, stack, j, _tree_sum(acc, _elementwise_contributions(acc, x)), level)
                        for acc, stack in zip(accs, stacks)
                    )

                stacks = tuple(jnp.zeros((levels, n, n), acc_dtype()) for _ in accs)
                stacks = jax.lax.fori_loop(0, count, block_body, stacks)
                # the stack holds count whole chunks (tiles past n_tiles are zero and change no sum)
                return tuple(_finish(acc, s, count * chunk_tiles) for acc, s in zip(accs, stacks))

        else:
            # one tile at a time, generated where it is used (its samples are consumed by the dot or
            # the pair reductions right away, never a chunk of them in memory): chunk_tiles is 1 here and
            # the trip count `count` (this block's tiles) is a run-time value, so one program serves
            # every d with this width and number of levels (``_program``)
            assert chunk_tiles == 1, "tile by tile: the device blocks are counted in tiles (_program)"

            def gram_prefix(t, w):
                x = sample_tiles(point_keys, dist, t[None], d, dtype, w)[0]  # (n, w): the tile's first w
                return _gram_tile(jax.lax.optimization_barrier(x)).astype(acc_dtype())

            # ``short_tiles`` (Gram only, full-width tiles, GRAM_PREFIX_MIN_POINTS): a block's single tile
            # is drawn short (``single``)

            def block_roots(c0, count):
                def tile_body(i, stacks, prefix=False):
                    t = c0 + i
                    if prefix:
                        # only the tile's valid coordinates are drawn and multiplied: the narrowest branch
                        # width >= valid, chosen at run time (one program for every d); a short draw is a
                        # prefix of the full one and the padding is zero, so the product is that of the full tile
                        valid = jnp.clip(d - t.astype(d.dtype) * TILE, 0, TILE)
                        b = sum((valid > w).astype(jnp.int32) for w in GRAM_PREFIX_WIDTHS)
                        branches = [functools.partial(gram_prefix, w=w) for w in (*GRAM_PREFIX_WIDTHS, TILE)]
                        return (_push(accs[0], stacks[0], i, jax.lax.switch(b, branches, t)),)
                    x = sample_tiles(point_keys, dist, t[None], d, dtype, width)[0]  # (n, width)
                    # generated once: XLA would otherwise fuse the generator into each pair's reduction
                    x = jax.lax.optimization_barrier(x)
                    out = []
                    for acc, stack in zip(accs, stacks):
                        val = _gram_tile(x) if acc[0] == "gram" else _tile_contribution(acc, x)
                        out.append(_push(acc, stack, i, val.astype(acc_dtype())))
                    return tuple(out)

                def empty(_):  # a block past the last tile (a device's later rounds)
                    return tuple(jnp.zeros((n, n), acc_dtype()) for _ in accs)

                def stacked(_):
                    zeros = tuple(jnp.zeros((levels, n, n), acc_dtype()) for _ in accs)
                    out = jax.lax.fori_loop(0, count, tile_body, zeros)
                    return tuple(_finish(acc, s, count) for acc, s in zip(accs, out))

                def single(_):
                    # one tile in this block (d <= TILE on one device): the same operations as pushing it
                    # into the stack and finishing (stack[0] combined with zero), without the (levels, n, n)
                    # stack, whose zero-filling (64 MB at 1024 points) cost more than the tile's product at
                    # small d; a Gram-only tile is drawn and multiplied at the narrowest width that holds its
                    # valid coordinates (``GRAM_PREFIX_WIDTHS``; several tiles: full tiles, as the stacked
                    # loop's one program must serve d up to 2**8 tiles without a branch per width)
                    one = tile_body(0, tuple(jnp.zeros((1, n, n), acc_dtype()) for _ in accs), prefix=True)
                    return tuple(_combine(acc, s[0], jnp.zeros_like(s[0])) for acc, s in zip(accs, one))

                if not short_tiles:
                    # no short-tile branches to take: one copy of the tile loop (a second, single-tile copy
                    # doubled these programs' compile time for a stack zero-fill saved once per call)
                    return stacked(None)
                return jax.lax.switch(jnp.minimum(count, 2), [empty, single, stacked], None)

        def one_round(r, roots):
            return tuple(
                jax.lax.dynamic_update_index_in_dim(all_r, root, r, 0)
                for all_r, root in zip(roots, block_roots(*block_of(r)))
            )

        # the roots of this device's blocks, one per round, then every block's root in block order in one
        # fixed tree: the zero-padded pairwise tree over tiles, whatever the devices and rounds
        roots = tuple(jnp.zeros((rounds, n, n), acc_dtype()) for _ in accs)
        roots = jax.lax.fori_loop(0, rounds, one_round, roots)
        return tuple(ordered_reduce_blocks(r, axis, functools.partial(_combine, acc)) for acc, r in zip(accs, roots))

    rep = replicated(mesh)
    f = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(),) * 5, out_specs=PartitionSpec(), check_vma=False)
    return kernel_jit(f, platform=mesh.devices.flat[0].platform, in_shardings=(rep,) * 5, out_shardings=rep)


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
    packed) whose samples (n x chunk x itemsize bytes; n x chunk / 8 packed) fit in ``budget``.

    Up to ELEMENTWISE_GRAM_MAX_POINTS points (float tiles) the budget is at most 1 MB: a chunk is
    generated and reduced at once, and a chunk that stays in the core's cache is faster to reduce.
    """
    if not packed and n <= ELEMENTWISE_GRAM_MAX_POINTS:
        budget = min(budget, 1 << 20)
    if packed:
        k = max(1, budget * 8 // (n * TILE))
        return TILE * min(8192, 1 << (k.bit_length() - 1))
    k = max(1, budget // (n * TILE * itemsize))
    return TILE * min(1024, 1 << (k.bit_length() - 1))


def _levels(d: int, chunk_tiles: int = 1) -> int:
    """Levels of the binary-counter stack over the tiles of dimension d, rounded up to whole chunks of
    ``chunk_tiles`` (bucketed: one compile serves many d)."""
    n_tiles = -(-d // TILE)
    n_tiles = -(-n_tiles // chunk_tiles) * chunk_tiles
    if n_tiles == 1:
        return 1  # one tile: the stack holds it alone (a deeper stack only costs (levels, n, n) work)
    return 8 * (-(-max(1, n_tiles.bit_length()) // 8))


def memory_estimate(
    n: int, d: int, metrics, *, chunk: int | None = None, dtype=np.float32, packed: bool = False
) -> int:
    """Bytes that ``pairwise_matrices`` will hold at its peak (samples, contributions, accumulators),
    per device. ``packed``: the Rademacher bit-packed path (1 bit per coordinate)."""
    itemsize = np.dtype(dtype).itemsize
    chunk = chunk or default_chunk(n, itemsize=itemsize, packed=packed)
    k = chunk // TILE
    accs = {make_metric(m.name, m.p).accumulator if isinstance(m, Metric) else m for m in metrics}
    if packed:  # words, their xor with one row, counts, and the (n, n) results
        return int(3 * n * chunk // 8 + (4 + len(accs)) * n * n * 8)
    if not all(_chunked(acc, n) for acc in accs):
        k = 1  # tile by tile (``_runner``): one tile's samples and contributions at a time
    samples = 2 * k * n * TILE * itemsize
    per_acc = [((k if acc[0] != "gram" else 1) + max(8, _levels(d)) + 4) * n * n * 8 for acc in accs]
    row_work = 2 * n * TILE * itemsize * k
    return int(samples + sum(per_acc) + row_work)


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
    if d > MAX_DIM:
        raise ValueError(f"{fn}: d={d} is above {MAX_DIM} = 2**31 tiles of {TILE} (tile indices are int32)")
    return int(n), int(d), k, dtype


def uses_packed(dist: Distribution, packed: bool | None = None) -> bool:
    """Whether ``pairwise_matrices`` takes the bit-packed popcount path for ``dist`` (auto: Rademacher)."""
    return isinstance(dist, Rademacher) if packed is None else bool(packed)


def _program(key, dist, n, d, metrics, chunk, dtype, devices, packed):
    """The jitted runner and its arguments for one call of ``pairwise_matrices`` (validated)."""
    packed = uses_packed(dist, packed)
    if packed and not isinstance(dist, Rademacher):
        raise ValueError(f"pairwise_matrices: packed=True needs Rademacher vectors, got {dist.label()}")
    n, d, k, dtype = _check("pairwise_matrices", dist, n, d, chunk, dtype, packed)
    metrics = [m if isinstance(m, Metric) else make_metric(m) for m in metrics]
    accs = tuple(dict.fromkeys(m.accumulator for m in metrics))
    mesh = make_mesh(devices)
    n_tiles = -(-d // TILE)  # ceil(d / TILE)
    few_packed = packed and chunk is None and n <= PACKED_ONE_PROGRAM_MAX_POINTS and n_tiles <= PACKED_ONE_PROGRAM_TILES
    if d < TILE or few_packed:
        k = 1  # one short tile: chunking cannot matter (packed: see PACKED_ONE_PROGRAM_MAX_POINTS)
    n_chunks = -(-n_tiles // k)
    rounds = _rounds(n, len(accs), mesh.size)
    block = cyclic_blocks(n_chunks, mesh.size, rounds)
    width, levels = tile_width(d), _levels(d, k)
    short_tiles = False
    if packed:
        levels = 0  # integer counts: no stack
        if n <= PACKED_ONE_PROGRAM_MAX_POINTS:
            width = TILE
    elif not all(_chunked(acc, n) for acc in accs):
        # tile by tile (``_runner``): the same device blocks counted in tiles
        n_chunks, block, k, levels = n_tiles, block * k, 1, _levels(d)
        if n <= ONE_PROGRAM_MAX_POINTS:  # one program for every d up to 2**8 tiles
            width, levels = TILE, max(levels, 8)
        # a block's single tile drawn short (GRAM_PREFIX_WIDTHS): Gram only, full-width tiles, enough points
        short_tiles = accs == (("gram",),) and width == TILE and n >= GRAM_PREFIX_MIN_POINTS
    key = as_key(key)
    impl = str(jax.random.key_impl(key))
    key_data = jax.random.key_data(key)
    idt = jax.dtypes.canonicalize_dtype(np.int64)
    # the law's run-time parameters (a power law's exponent, an MLP's layer table) are arguments: one
    # program serves every exponent and every network of one depth (``Distribution.runtime_form``)
    template, law_args = dist.runtime_form(dtype)
    args = [key_data, np.asarray(d, idt), np.asarray(n_chunks, idt), np.asarray(block, idt), law_args]
    if not isinstance(key_data, jax.core.Tracer):
        args[0] = np.asarray(key_data)  # host value: valid input for a mesh spanning several processes
    run = _runner(mesh, impl, template, n, accs, k, levels, dtype, width, packed, rounds, short_tiles)
    return run, args, metrics, accs


#: bytes of block roots (rounds x devices (n, n) float64 matrices per accumulator) a call may gather
ROOTS_BUDGET = 64 << 20
#: most blocks a device takes in turn (``_rounds``)
MAX_ROUNDS = 8


def _rounds(n: int, n_accs: int, n_dev: int) -> int:
    """Blocks each device takes in turn: up to MAX_ROUNDS (the devices' shares then differ by at most
    one block in 8; one block each can split 86% / 14%), as long as the gathered roots fit ROOTS_BUDGET.
    Any value gives the same bits (the tree over aligned blocks is the tree over tiles); on one device
    more rounds only add a few (n, n) combines, so one device takes one."""
    if n_dev == 1:
        return 1
    return max(1, min(MAX_ROUNDS, ROOTS_BUDGET // (n_dev * n * n * 8 * n_accs)))


def pairwise_matrices(
    key,
    dist: Distribution,
    n: int,
    d: int,
    metrics,
    *,
    chunk=None,
    dtype=jnp.float32,
    devices=None,
    packed: bool | None = None,
):
    """Distance matrices of ``n`` random vectors in dimension ``d`` for several metrics in one pass.

    Args:
        key: PRNG key (typed or raw).
        dist: coordinate law, e.g. ``sim.vectors.Gaussian()``.
        n: number of points, >= 2.
        d: dimension, >= 1 (up to 2**31 - 1 without x64, up to MAX_DIM = 2**43 with it).
        metrics: sequence of ``Metric`` (or metric names).
        chunk: coordinates generated at once: TILE times a power of two (default from n, ~32 MB).
            The result is bit-identical for every chunk (on one machine and jax version: see the
            module docstring for the scope across machines).
        dtype: float32 (default) or float64 for the samples; accumulation is float64 under x64.
        devices: where the tiles are generated (see ``sim.devices.make_mesh``): None (every device
            JAX sees, across processes after ``jax.distributed.initialize``), a count N (the first N),
            a device list or a 1-D Mesh. Each device streams an aligned block of chunks; the result
            is bit-identical for every number of devices (same scope as ``chunk``).
        packed: Rademacher only: count differing signs with popcount(xor) on the packed words
            (32 coordinates per uint32, integer-exact) instead of float tiles. None: automatic
            (on for Rademacher); both paths see the same vectors and agree exactly (d < 2**53, x64).

    Returns:
        Tuple of ``(n, n)`` float arrays (float64 under x64), one per metric; zero diagonal;
        replicated over the mesh.

    References:
        Threefry: Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3".
    """
    run, args, metrics, accs = _program(key, dist, n, d, metrics, chunk, dtype, devices, packed)
    by_acc = dict(zip(accs, run(*args)))
    return tuple(_finalise_jit(m, by_acc[m.accumulator]) for m in metrics)


def pairwise_distances(
    key,
    dist: Distribution,
    n: int,
    d: int,
    *,
    metric="euclidean",
    p=None,
    chunk=None,
    dtype=jnp.float32,
    devices=None,
    packed: bool | None = None,
) -> jax.Array:
    """``(n, n)`` matrix of ``metric`` distances between n random vectors of dimension d.

    See ``pairwise_matrices`` for the arguments. ``cosine`` gives the cosine distance 1 - cos(angle).
    """
    return pairwise_matrices(
        key, dist, n, d, [make_metric(metric, p)], chunk=chunk, dtype=dtype, devices=devices, packed=packed
    )[0]


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
        q = float(metric.exponent or 1.0)  # cityblock / minkowski: always set
        out = s if q == 1 else s ** (1 / q)
    return jnp.where(eye, jnp.zeros((), out.dtype), out)


#: ``_finalise`` as one compiled program per metric and size: its (n, n) elementwise steps fused into one
#: pass instead of one dispatch (and one fresh 8 MB array at 1024 points) each; the same operations
#: (tests/test_distances.py checks the bits against the op-by-op evaluation).
_finalise_jit = jax.jit(_finalise, static_argnums=0)


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
    # over the pairs i < j by masking the (n, n) matrix, not gathering its n(n-1)/2 entries (a
    # gather and a searchsorted histogram cost 3x the distances themselves at n = 1024, d = 100)
    n = m.shape[0]
    pairs = n * (n - 1) // 2
    mask = jnp.arange(n)[:, None] < jnp.arange(n)[None, :]
    zero = jnp.zeros((), m.dtype)
    mean = jnp.sum(jnp.where(mask, m, zero)) / pairs
    std = jnp.sqrt(jnp.sum(jnp.where(mask, (m - mean) ** 2, zero)) / pairs)
    lo = jnp.min(jnp.where(mask, m, jnp.asarray(jnp.inf, m.dtype)))
    hi = jnp.max(jnp.where(mask, m, jnp.asarray(-jnp.inf, m.dtype)))
    hist = _histogram(m / mean, mask, edges)
    return PairStats(mean, std, std / mean, lo, hi, (hi - lo) / lo, hist)


def _histogram(r: jax.Array, mask: jax.Array, edges: tuple) -> jax.Array:
    """Counts of the entries of ``r`` where ``mask`` in the bins of ``edges``, as ``jnp.histogram``
    counts them ([e_k, e_k+1), the last bin closed, values outside or NaN dropped), int32.

    Evenly spaced edges (to 1e-9) take the bin from one multiplication, corrected by one step each way
    against the edges themselves (so that rounding cannot move a value across an edge); others a search.
    """
    e = jnp.asarray(edges, r.dtype)
    nb = len(edges) - 1
    step = np.diff(np.asarray(edges))
    if np.allclose(step, step[0], rtol=1e-9, atol=0):
        b = jnp.clip(jnp.floor((r - edges[0]) * (nb / (edges[-1] - edges[0]))).astype(jnp.int32), 0, nb - 1)
        b = b - (r < e[b]).astype(jnp.int32)
        b = jnp.clip(b, 0, nb - 1)
        b = b + (r >= e[jnp.minimum(b + 1, nb)]).astype(jnp.int32)
    else:
        b = jnp.searchsorted(e, r, side="right").astype(jnp.int32) - 1
    b = jnp.where(r == e[-1], nb - 1, b)
    keep = mask & (r >= e[0]) & (r <= e[-1])
    counts = jnp.zeros(nb + 1, jnp.int32).at[jnp.where(keep, jnp.clip(b, 0, nb - 1), nb).ravel()].add(1)
    return counts[:nb]


def pair_stats(m: jax.Array, *, edges=HIST_EDGES) -> PairStats:
    """Mean, std, rel_std, min, max, rel_contrast and histogram of value/mean over pairs i < j.

    Args:
        m: (n, n) symmetric pair matrix, n >= 2.
        edges: histogram bin edges for value/mean (a tuple, static).
    """
    return _pair_stats(m, tuple(float(e) for e in edges))
