"""Random symmetric matrices as Hessians at critical points, and the statistics of their index.

Ensembles (every sampler: key first, ``batch_shape`` leading dimensions, matrix with flat batch index
``i`` drawn from ``fold_in(key, i)`` so a batch is the same whatever its chunking):

===========  ====================================================================================
goe          H = (A + A^T)/sqrt(2), A with i.i.d. N(0, 1) entries: off-diagonal variance 1, diagonal
             variance 2 (density proportional to exp(-tr H^2 / 4)). ``normalized=True`` divides by
             sqrt(n): the spectrum fills [-2, 2] (semicircle sqrt(4 - x^2)/(2 pi)).
wigner       symmetric, off-diagonal entries i.i.d. from a law of mean 0 and variance 1 (``gaussian``,
             ``rademacher`` +-1, ``uniform`` on [-sqrt 3, sqrt 3]), diagonal sqrt(2) times the same
             law (variance 2, as in the GOE). Same semicircle after dividing by sqrt(n) (universality);
             ``rademacher`` matrices can be exactly singular, so their index is counted with ``eigh``.
wishart      W = X^T X / m, X an (m, n) matrix of N(0, 1): the Gauss–Newton part of a least-squares
             Hessian. Spectrum Marchenko–Pastur on [(1 - sqrt q)^2, (1 + sqrt q)^2], q = n/m.
shifted_goe  H = GOE/sqrt(n) + s I: the Hessian at a critical point at energy ~ -s of a random field
             (Bray & Dean 2007); its index fraction tends to F(-s), F the semicircle CDF.
===========  ====================================================================================

Index statistics: ``index`` counts negative eigenvalues (by ``eigvalsh`` or by the signs of the LDL^T
pivots: Sylvester's law of inertia, O(n^3/3) and no eigenvalues), ``index_histogram`` streams any
number of samples in fixed-size chunks and returns exact int64 counts of every index 0..n,
``index_summary`` turns counts into the index fraction, P(index = 0) and their standard errors.

Compilation: the streamed ``ldl`` counts of goe and wigner matrices run one compiled program per size
bucket (``ldl_bucket``: multiples of 8 up to 64), not one per n: matrix n is built inside the bucket's
(m, m) program as [[H, 0], [0, I]] with n a runtime value (the identity block adds no negative pivot),
its entries taken by flat position from the same random draw as ``sample_ensemble`` (same numbers up
to the rounding of the last operations: one ulp on some entries, so a count could differ only for an
eigenvalue within an ulp of zero). ``hdsim rmt --dims 2:50`` compiles 7 counters instead of 49.

Devices: the streaming counters (``index_histogram``, ``eigenvalue_histogram``) take ``devices=``
(``sim.devices.make_mesh``: None for every device JAX sees, a count, a device list or a 1-D mesh). The
sample axis is cut into chunks of ``chunk`` matrices whatever the number of devices; each compiled
call gives device k the chunk ``r * D + k`` (so every device runs the same fixed-shape program on the
same matrices it would get on one device) and the integer counts are summed exactly (``psum``). The
counts are therefore bit-identical for 1, 2, 8 ... devices and any number of ``jax.distributed``
processes.

References:
    Bray & Dean, PRL 98, 150201 (2007); Dean & Majumdar, PRL 97, 160201 (2006); Majumdar, Nadal,
    Scardicchio & Vivo, PRL 103, 220603 (2009); Marchenko & Pastur (1967).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from sim._util import as_key, float_dtype
from sim.devices import make_mesh, replicated
from sim.vectors import fold_in, standard_normal

__all__ = [
    "ENSEMBLES",
    "WIGNER_LAWS",
    "INDEX_METHODS",
    "Ensemble",
    "goe",
    "wigner",
    "wishart",
    "shifted_goe",
    "sample_ensemble",
    "index",
    "ldl_pivots",
    "ldl_bucket",
    "index_histogram",
    "eigenvalue_histogram",
    "index_summary",
    "batch_index_stats",
]

ENSEMBLES = ("goe", "wigner-rademacher", "wigner-uniform", "wishart")
WIGNER_LAWS = ("gaussian", "rademacher", "uniform")
INDEX_METHODS = ("eigh", "ldl")


def _check_n(n, fn):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 1:
        raise ValueError(f"{fn}: n must be an integer >= 1, got {n!r}")
    return int(n)


def _check_batch(batch_shape, fn):
    try:
        shape = tuple(int(b) for b in batch_shape)
    except TypeError:
        raise ValueError(f"{fn}: batch_shape must be a tuple of ints, got {batch_shape!r}") from None
    if any(b < 0 for b in shape):
        raise ValueError(f"{fn}: batch_shape must be non-negative, got {batch_shape!r}")
    if math.prod(shape) >= 2**32:
        raise ValueError(f"{fn}: at most 2**32 - 1 matrices per call, got {math.prod(shape)}")
    return shape


# ----------------------------------------------------------------------------------------------
# one matrix from one key (the units that every sampler and the streaming counters vmap)


def _draw_law(law, key, shape, dtype):
    if law == "gaussian":
        return jax.random.normal(key, shape, dtype)
    if law == "rademacher":
        return jax.random.rademacher(key, shape, dtype)
    s3 = math.sqrt(3.0)
    return jax.random.uniform(key, shape, dtype, minval=-s3, maxval=s3)


def _goe_normals(key, size, dtype):
    """The ``size`` N(0, 1) entries of a GOE draw: ``sim.vectors.standard_normal`` (float32: Threefry words
    through ``erfinv32``, both halves of every block, ~3x ``jax.random.normal``'s rate; float64:
    ``jax.random.normal``, as before). Element j depends on j only (a short draw is a prefix of a long one)."""
    return standard_normal(key, (size,), dtype)


def _goe_one(key, n, dtype):
    a = _goe_normals(key, n * n, dtype).reshape((n, n))
    return (a + a.T) * jnp.asarray(1 / math.sqrt(2), dtype)


def _wigner_one(key, n, law, dtype):
    x = _draw_law(law, key, (n, n), dtype)
    upper = jnp.triu(x, 1)
    diag = jnp.diagonal(x) * jnp.asarray(math.sqrt(2), dtype)
    return upper + upper.T + jnp.diag(diag)


def _wishart_one(key, n, m, dtype):
    x = jax.random.normal(key, (m, n), dtype)
    return jnp.matmul(x.T, x, precision=jax.lax.Precision.HIGHEST) / jnp.asarray(m, dtype)


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """A matrix law, hashable (a static jit argument).

    Attributes:
        name: ``goe``, ``wigner`` or ``wishart``.
        law: entry law of ``wigner`` (``gaussian``, ``rademacher``, ``uniform``).
        aspect: m/n for ``wishart`` (m = ceil(aspect * n) rows), >= 1 for a full-rank W.
    """

    name: str = "goe"
    law: str = "gaussian"
    aspect: float = 2.0

    def __post_init__(self):
        if self.name not in ("goe", "wigner", "wishart"):
            raise ValueError(f"Ensemble: unknown name {self.name!r}; valid: goe, wigner, wishart")
        if self.law not in WIGNER_LAWS:
            raise ValueError(f"Ensemble: unknown law {self.law!r}; valid: {', '.join(WIGNER_LAWS)}")
        if not (isinstance(self.aspect, (int, float)) and math.isfinite(self.aspect) and self.aspect > 0):
            raise ValueError(f"Ensemble: aspect must be a finite number > 0, got {self.aspect!r}")

    @classmethod
    def from_label(cls, label: str, *, aspect: float = 2.0) -> Ensemble:
        """``goe``, ``wigner-<law>`` or ``wishart`` (as in ``ENSEMBLES``)."""
        if label == "goe":
            return cls("goe")
        if label.startswith("wigner-"):
            return cls("wigner", law=label[len("wigner-") :])
        if label == "wishart":
            return cls("wishart", aspect=aspect)
        raise ValueError(f"unknown ensemble {label!r}; valid: {', '.join(ENSEMBLES)}")

    @property
    def label(self) -> str:
        return {"goe": "goe", "wigner": f"wigner-{self.law}", "wishart": "wishart"}[self.name]

    @property
    def continuous(self) -> bool:
        """Entries have a density (exactly singular matrices have probability 0)."""
        return not (self.name == "wigner" and self.law == "rademacher")

    def rows(self, n: int) -> int:
        return max(1, math.ceil(self.aspect * n))

    def scale(self, n: int) -> float:
        """Divide by this to normalise: sqrt(n) for the Wigner family, 1 for Wishart (already /m)."""
        return 1.0 if self.name == "wishart" else math.sqrt(n)

    def one(self, key, n: int, dtype) -> jax.Array:
        """One unnormalised matrix of size n from one key."""
        if self.name == "goe":
            return _goe_one(key, n, dtype)
        if self.name == "wigner":
            return _wigner_one(key, n, self.law, dtype)
        return _wishart_one(key, n, self.rows(n), dtype)


def _from_indices(ens: Ensemble, key, idx, n, normalized, shift, dtype):
    """Matrices with sample indices ``idx`` (uint32): fold_in(key, i) each; then /scale and + shift I."""
    h = jax.vmap(lambda i: ens.one(fold_in(key, i), n, dtype))(idx)
    if normalized:
        h = h * jnp.asarray(1 / ens.scale(n), dtype)
    if shift is not None:
        h = h + (shift.astype(dtype) * jnp.eye(n, dtype=dtype))[None]
    return _mirror_upper(h)


def _mirror_upper(h):
    """Exactly symmetric copy of h (..., n, n) from its upper triangle.

    Needed because XLA may fuse the random draw into the consumer and evaluate entry (i, j) and
    (j, i) by different code paths (vector and scalar), which round differently: ``a + a.T`` then
    differs from its transpose by an ulp. Gathering the upper triangle once and scattering the same
    values to both places is exact.
    """
    n = h.shape[-1]
    r, c = np.triu_indices(n)
    vals = h[..., r, c]
    return jnp.zeros_like(h).at[..., r, c].set(vals).at[..., c, r].set(vals)


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4, 5))
def _sample(ens, key, n, batch_shape, normalized, dtype, shift):
    size = math.prod(batch_shape)
    h = _from_indices(ens, key, jnp.arange(size, dtype=jnp.uint32), n, normalized, shift, dtype)
    return h.reshape(batch_shape + (n, n))


def sample_ensemble(
    key, ens: Ensemble, n: int, *, batch_shape=(), normalized=True, shift=None, dtype=jnp.float32
) -> jax.Array:
    """Matrices of any ``Ensemble``: shape ``batch_shape + (n, n)``; ``shift`` adds s I after normalising."""
    return _sample_checked(key, ens, n, batch_shape, normalized, shift, dtype, "sample_ensemble")


def _sample_checked(key, ens, n, batch_shape, normalized, shift, dtype, fn):
    n = _check_n(n, fn)
    batch_shape = _check_batch(batch_shape, fn)
    dtype = float_dtype(dtype, fn=fn)
    if not isinstance(ens, Ensemble):
        raise ValueError(f"{fn}: ens must be an Ensemble, got {ens!r}")
    s = None
    if shift is not None:
        if not math.isfinite(float(shift)):
            raise ValueError(f"{fn}: shift must be finite, got {shift!r}")
        s = jnp.asarray(float(shift), dtype)
    return _sample(ens, as_key(key), n, batch_shape, bool(normalized), dtype, s)


def goe(key, n: int, *, batch_shape=(), normalized=True, dtype=jnp.float32) -> jax.Array:
    """Gaussian Orthogonal Ensemble.

    H = (A + A^T)/sqrt(2) with A of i.i.d. N(0, 1) entries: symmetric, off-diagonal variance 1,
    diagonal variance 2, law proportional to exp(-tr H^2 / 4) (invariant under H -> O H O^T).
    With ``normalized=True`` H is divided by sqrt(n) and its spectrum fills [-2, 2] (semicircle).

    Args:
        key: PRNG key (typed or raw). Matrix with flat batch index i uses ``fold_in(key, i)``.
        n: matrix size, >= 1.
        batch_shape: leading batch dimensions.
        normalized: divide by sqrt(n).
        dtype: float32 or float64.

    Returns:
        Array of shape ``batch_shape + (n, n)``, exactly symmetric.

    References:
        Mehta, Random Matrices (2004), ch. 2–3.
    """
    return _sample_checked(key, Ensemble("goe"), n, batch_shape, normalized, None, dtype, "goe")


def wigner(key, n: int, *, law: str = "rademacher", batch_shape=(), normalized=True, dtype=jnp.float32):
    """Wigner matrix: off-diagonal i.i.d. from ``law`` (mean 0, variance 1), diagonal sqrt(2) x law.

    Args:
        key: PRNG key; matrix i uses ``fold_in(key, i)``.
        n: size >= 1.
        law: ``gaussian`` (same law as ``goe``, other numbers), ``rademacher`` (+-1), ``uniform``
            (on [-sqrt 3, sqrt 3]).
        batch_shape, normalized, dtype: as in ``goe``.

    Returns:
        Array of shape ``batch_shape + (n, n)``.

    References:
        Wigner, Ann. Math. 67, 325 (1958).
    """
    if law not in WIGNER_LAWS:
        raise ValueError(f"wigner: unknown law {law!r}; valid: {', '.join(WIGNER_LAWS)}")
    return _sample_checked(key, Ensemble("wigner", law=law), n, batch_shape, normalized, None, dtype, "wigner")


def wishart(key, n: int, *, aspect: float = 2.0, batch_shape=(), dtype=jnp.float32) -> jax.Array:
    """Wishart (Laguerre) matrix W = X^T X / m, X of shape (m, n) with N(0, 1) entries, m = ceil(aspect n).

    Positive semi-definite; spectrum Marchenko–Pastur with q = n/m (see ``sim.theory.rmt``).

    Returns:
        Array of shape ``batch_shape + (n, n)``.

    References:
        Marchenko & Pastur, Math. USSR-Sb. 1, 457 (1967).
    """
    if not (isinstance(aspect, (int, float)) and math.isfinite(aspect) and aspect > 0):
        raise ValueError(f"wishart: aspect must be a finite number > 0, got {aspect!r}")
    return _sample_checked(key, Ensemble("wishart", aspect=float(aspect)), n, batch_shape, True, None, dtype, "wishart")


def shifted_goe(key, n: int, shift: float, *, batch_shape=(), dtype=jnp.float32) -> jax.Array:
    """H = GOE/sqrt(n) + shift I (the same GOE matrices as ``goe(key, n)`` plus the shift).

    References:
        Bray & Dean, PRL 98, 150201 (2007).
    """
    return _sample_checked(key, Ensemble("goe"), n, batch_shape, True, shift, dtype, "shifted_goe")


# ----------------------------------------------------------------------------------------------
# index


LDL_BLOCK = 16

#: Matrices larger than this are eliminated by ``_ldl_pivots_recursive`` (row panels, recursive halving);
#: up to it by ``_ldl_pivots_blocked`` (column panels), whose pivots the committed figures were made with.
LDL_RECURSIVE_ABOVE = 64


def _ldl_block(n: int) -> int:
    """Panel width of the blocked elimination: 16 up to n = 64, 32 beyond (fewer, larger matrix
    products; at n = 128 about 1.1x faster than 16, and half the compile time)."""
    return LDL_BLOCK if n <= 64 else 2 * LDL_BLOCK


def _ldl_sub_batch(n: int) -> int:
    """Matrices eliminated together: about 2^16 / n^2 (a float64 working set of a few hundred KiB, which
    stays in L2 cache), a power of two between 8 and 256."""
    return int(min(256, max(8, 2 ** math.floor(math.log2(max(1, 2**16 // (n * n)))))))


def _ldl_pivots(h, block=None, dtype=None):
    """Pivots of the unpivoted LDL^T of symmetric h (..., n, n), eliminated in ``dtype`` (default h's):
    shape (..., n).

    The batch is cut into sub-batches of ``_ldl_sub_batch(n)`` matrices by a static reshape (padded with
    identity matrices to a multiple) and eliminated one sub-batch after another (``lax.map``): each
    sub-batch's working set stays in cache, where one pass over the whole chunk streamed it through
    memory once per panel (at n = 32: 2x faster; n = 128: 1.3x). Up to n = ``LDL_RECURSIVE_ABOVE`` the
    elimination is ``_ldl_pivots_blocked`` (``block`` its panel width), beyond it
    ``_ldl_pivots_recursive`` (``block`` its leaf width).
    """
    n = h.shape[-1]
    batch = h.shape[:-2]
    size = math.prod(batch)
    sb = _ldl_sub_batch(n)
    dtype = h.dtype if dtype is None else dtype
    if n > LDL_RECURSIVE_ABOVE:
        leaf = LDL_LEAF if block is None else block

        def eliminate(x):
            return _ldl_pivots_recursive(x.astype(dtype), leaf)
    else:
        block = _ldl_block(n) if block is None else block

        def eliminate(x):
            return _ldl_pivots_blocked(x.astype(dtype), block)

    if size <= sb:
        return eliminate(h)
    flat = h.reshape((size, n, n))
    groups = -(-size // sb)
    pad = groups * sb - size
    if pad:
        flat = jnp.concatenate([flat, jnp.broadcast_to(jnp.eye(n, dtype=h.dtype), (pad, n, n))])
    # the conversion to the elimination dtype happens per sub-batch, in cache
    piv = jax.lax.map(eliminate, flat.reshape((groups, sb, n, n)))
    return piv.reshape((groups * sb, n))[:size].reshape(batch + (n,))


#: Leaf width of ``_ldl_pivots_recursive``: rows eliminated one by one in a ``fori_loop``.
LDL_LEAF = 16


def _ldl_pivots_recursive(a, leaf):
    """Pivots of the unpivoted LDL^T = U^T D U of symmetric a (..., m, m): shape (..., m).

    Recursive, by rows (a symmetric matrix's first rows are its first columns, and rows are contiguous):
    the first w1 rows (about half, a multiple of ``leaf``) are factored as a panel (``_ldl_row_panel``),
    the trailing (m - w1)^2 block gets one batched product A22 -= U12^T D1 U12, and the rest recurses.
    Every level's products are as large as the matrix allows (at n = 128: 64 x 64 x 64 on top), and the
    one-row-at-a-time work is left to ``leaf``-row panels, whose cost grows with leaf^2 per row. At
    n = 128 it takes about 0.6x the time of the column-panel ``_ldl_pivots_blocked`` on this CPU.
    """
    m = a.shape[-1]
    if m <= leaf:
        return _ldl_leaf(a)[1]
    w1 = _ldl_split(m, leaf)
    u12, d1 = _ldl_row_panel(a[..., :w1, :], leaf)
    a22 = a[..., w1:, w1:] - _ldl_gram(u12, d1, m - w1)
    return jnp.concatenate([d1, _ldl_pivots_recursive(a22, leaf)], axis=-1)


def _ldl_split(w: int, leaf: int) -> int:
    """Rows of the first half of a recursion step: about w/2, a multiple of ``leaf`` (at least ``leaf``)."""
    return leaf * max(1, (w // leaf) // 2)


def _ldl_gram(u, d, k):
    """U[:, :k]^T D U for U (..., w, M) and D = diag(d) (..., w): shape (..., k, M), in one product.

    U is transposed to (M, w) first and kept so (``optimization_barrier``: XLA would otherwise fold the
    transpose back into the product): XLA's CPU product contracting the last axes of both operands ran at
    about 38 GFLOP/s at (8, 64, 64, 64) in float64 here, the one contracting the second-to-last at 16."""
    hp = jax.lax.Precision.HIGHEST
    nb = u.ndim - 2
    batch = tuple(range(nb))
    lt = jax.lax.optimization_barrier(jnp.swapaxes(u, -1, -2))  # (M, w): contiguous rows for the product
    return jax.lax.dot_general(
        lt[..., :k, :], lt * d[..., None, :], (((nb + 1,), (nb + 1,)), (batch, batch)), precision=hp
    )


def _ldl_row_panel(r, leaf):
    """The first w rows r (..., w, m) of a symmetric matrix: U's entries right of the panel's diagonal
    block, U[:, w:] (..., w, m - w), and the pivots (..., w). Halves recursively down to ``leaf`` rows."""
    w = r.shape[-2]
    if w <= leaf:
        return _ldl_leaf(r)
    w1 = _ldl_split(w, leaf)
    u1, d1 = _ldl_row_panel(r[..., :w1, :], leaf)  # u1: (w1, m - w1)
    u2, d2 = _ldl_row_panel(r[..., w1:, w1:] - _ldl_gram(u1, d1, w - w1), leaf)  # u2: (w - w1, m - w)
    return jnp.concatenate([u1[..., :, w - w1 :], u2], axis=-2), jnp.concatenate([d1, d2], axis=-1)


def _ldl_leaf(r):
    """Rows r (..., w, m) of a symmetric matrix eliminated one by one (left-looking, a ``fori_loop``):
    row j of U is (r_j - sum_{i<j} U_ij d_i U_i) / d_j. Returns U[:, w:] (..., w, m - w) and d (..., w)."""
    hp = jax.lax.Precision.HIGHEST
    w, m = r.shape[-2], r.shape[-1]
    cols = jnp.arange(m)

    def row(j, carry):
        u, d = carry  # rows >= j of u and entries >= j of d are zero
        uj = jax.lax.dynamic_index_in_dim(u, j, axis=-1, keepdims=False)
        x = jax.lax.dynamic_index_in_dim(r, j, axis=-2, keepdims=False)
        x = x - jnp.einsum("...i,...im->...m", d * uj, u, precision=hp)
        dj = jax.lax.dynamic_index_in_dim(x, j, axis=-1, keepdims=True)
        x = jnp.where(cols > j, x / dj, jnp.where(cols == j, 1.0, 0.0).astype(x.dtype))
        return (
            jax.lax.dynamic_update_index_in_dim(u, x, j, axis=-2),
            jax.lax.dynamic_update_index_in_dim(d, dj[..., 0], j, axis=-1),
        )

    zero = (jnp.zeros(r.shape, r.dtype), jnp.zeros(r.shape[:-2] + (w,), r.dtype))
    u, d = jax.lax.fori_loop(0, w, row, zero)
    return u[..., :, w:], d


def _ldl_pivots_blocked(h, block):
    """Pivots of the unpivoted LDL^T of symmetric h (..., n, n): shape (..., n).

    Right-looking blocked elimination: each panel of ``block`` columns is factored column by column
    (left-looking inside the panel, a ``fori_loop`` over its columns, so the program does not grow
    with n column by column: it compiles in about a second at n = 64, where the unrolled panels took
    ten times longer), then the trailing matrix gets one batched matrix product A22 -= L21 D L21^T.
    About n^3/3 flops, most of them in matrix products.
    """
    hp = jax.lax.Precision.HIGHEST
    a = h
    piv = []
    while a.shape[-1] > 0:
        nb = min(block, a.shape[-1])
        lower, d = _ldl_panel(a[..., :, :nb])
        piv.append(d)
        l21 = lower[..., nb:, :]
        a = a[..., nb:, nb:] - jnp.matmul(l21 * d[..., None, :], jnp.swapaxes(l21, -1, -2), precision=hp)
    return jnp.concatenate(piv, axis=-1)


def _ldl_panel(p):
    """Unit lower L (..., m, nb) and pivots D (..., nb) of the first nb columns p (..., m, nb) of a
    symmetric matrix: column j is p[:, j] - L[:, :j] D[:j] L[j, :j], divided by its diagonal entry."""
    hp = jax.lax.Precision.HIGHEST
    m, nb = p.shape[-2], p.shape[-1]
    rows = jnp.arange(m)

    def column(j, carry):
        l, d = carry  # noqa: E741  (L of the LDL^T factorisation) columns >= j of l and entries >= j of d are zero
        lj = jax.lax.dynamic_index_in_dim(l, j, axis=-2, keepdims=False)
        c = jax.lax.dynamic_index_in_dim(p, j, axis=-1, keepdims=False)
        c = c - jnp.einsum("...mi,...i->...m", l, d * lj, precision=hp)
        dj = jax.lax.dynamic_index_in_dim(c, j, axis=-1, keepdims=True)
        col = jnp.where(rows > j, c / dj, jnp.where(rows == j, 1.0, 0.0).astype(c.dtype))
        return (
            jax.lax.dynamic_update_index_in_dim(l, col, j, axis=-1),
            jax.lax.dynamic_update_index_in_dim(d, dj[..., 0], j, axis=-1),
        )

    zero = (jnp.zeros(p.shape, p.dtype), jnp.zeros(p.shape[:-2] + (nb,), p.dtype))
    return jax.lax.fori_loop(0, nb, column, zero)


_ldl_pivots_jit = jax.jit(_ldl_pivots)


def _pivot_dtype(pivot_dtype, fn):
    """The elimination dtype of ``method="ldl"``: float64 refused clearly without x64 (never switched on)."""
    try:
        return float_dtype(pivot_dtype, fn=fn)
    except ValueError as e:
        raise ValueError(
            f"{e} (pivot_dtype of method='ldl'); or pass pivot_dtype=jnp.float32 (loses a pivot sign "
            "about once in 3e4 GOE matrices at n = 32), or method='eigh'"
        ) from None


def ldl_pivots(h: jax.Array, *, dtype=None) -> jax.Array:
    """Pivots d_k of H = L D L^T without pivoting (d_k = det H[:k+1, :k+1] / det H[:k, :k]).

    By Sylvester's law of inertia the number of negative pivots is the number of negative eigenvalues.
    Without pivoting a small pivot makes later entries grow, so the arithmetic must be wide: ``index``
    and ``index_histogram`` eliminate in float64 by default (float32 elimination lost one sign in 3e4
    GOE matrices at n = 32; float64 matched float64 ``eigvalsh`` on all matrices tested). Do not use it
    for discrete entries (``rademacher``), whose minors can vanish. Works under ``jit``.

    Args:
        h: symmetric matrices, shape ``(..., n, n)``.
        dtype: arithmetic of the elimination (float32, or float64 with ``jax_enable_x64`` on); default
            the dtype of ``h``.

    Returns:
        Pivots, shape ``(..., n)``, in ``dtype``.
    """
    h = jnp.asarray(h)
    if h.ndim < 2 or h.shape[-1] != h.shape[-2]:
        raise ValueError(f"ldl_pivots: h must have shape (..., n, n), got {h.shape}")
    dt = float_dtype(h.dtype if dtype is None else dtype, fn="ldl_pivots")
    return _ldl_pivots_jit(h.astype(dt))


def _index_of(h, method, pivot_dtype=np.float64):
    """Index of each matrix of ``h`` (traced): ``ldl`` eliminates in ``pivot_dtype``, ``eigh`` in h's dtype."""
    if method == "ldl":
        return jnp.sum(_ldl_pivots(h, dtype=pivot_dtype) < 0, axis=-1)
    return jnp.sum(jnp.linalg.eigvalsh(h) < 0, axis=-1)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _index_jit(h, method, pivot_dtype):
    return _index_of(h, method, pivot_dtype)


def index(h: jax.Array, *, method: str = "eigh", pivot_dtype=jnp.float64) -> jax.Array:
    """Number of negative eigenvalues of each symmetric matrix in ``h``.

    Precision: ``eigh`` works in the dtype of ``h`` (a sign is wrong only for eigenvalues within a few
    ulps of |H| of zero). ``ldl`` needs float64 elimination (unpivoted LDL^T in float32 loses the sign of
    a pivot about once in 3e4 GOE matrices at n = 32, through element growth after a small pivot; in
    float64 it matched float64 eigvalsh on every matrix tested): ``pivot_dtype`` float64, the default,
    needs ``jax.config.update("jax_enable_x64", True)`` and is refused with a ValueError without it
    (this function never changes the global setting). Works under a caller's ``jit`` and ``vmap``.

    Args:
        h: shape ``(..., n, n)``.
        method: ``eigh`` (``jnp.linalg.eigvalsh``) or ``ldl`` (signs of the LDL^T pivots, see
            ``ldl_pivots``; no eigenvalues). Use ``eigh`` for discrete entries.
        pivot_dtype: arithmetic of the ``ldl`` elimination (float64 or float32); ignored by ``eigh``.

    Returns:
        int32 array of shape ``h.shape[:-2]``.
    """
    if method not in INDEX_METHODS:
        raise ValueError(f"index: unknown method {method!r}; valid: {', '.join(INDEX_METHODS)}")
    h = jnp.asarray(h)
    if h.ndim < 2 or h.shape[-1] != h.shape[-2]:
        raise ValueError(f"index: h must have shape (..., n, n), got {h.shape}")
    pdt = _pivot_dtype(pivot_dtype, "index") if method == "ldl" else None
    return _index_jit(h, method, pdt)


def default_chunk(n: int) -> int:
    """Matrices per streamed chunk: about 2^20 matrix entries, between 64 and 2^14 (fastest on CPU)."""
    return int(min(2**14, max(64, 2**20 // (n * n))))


def _chunk_indices(axis, first, chunk, total):
    """Sample indices (uint32) of this device's chunk ``first + k`` and which of them are < total.

    Chunk c always holds samples [c * chunk, (c + 1) * chunk); chunks past the end are all invalid.
    """
    c = first + jax.lax.axis_index(axis).astype(jnp.uint32)
    start = c * jnp.uint32(chunk)
    idx = start + jnp.arange(chunk, dtype=jnp.uint32)
    n_chunks = (total - jnp.uint32(1)) // jnp.uint32(chunk) + jnp.uint32(1)
    valid = (c < n_chunks) & (jnp.arange(chunk, dtype=jnp.uint32) < total - jnp.minimum(start, total))
    return idx, valid


def _index_counts(ens, key, idx, valid, n, method, dtype, shift, pivot_dtype):
    h = _from_indices(ens, key, idx, n, True, shift, dtype)
    k = _index_of(h, method, pivot_dtype)
    return jnp.zeros((n + 1,), jnp.int32).at[k].add(valid.astype(jnp.int32))


def _eig_counts(ens, key, idx, valid, n, dtype, shift, edges):
    ev = jnp.linalg.eigvalsh(_from_indices(ens, key, idx, n, True, shift, dtype))
    w = jnp.broadcast_to(valid[:, None], ev.shape).astype(jnp.int32)
    b = jnp.searchsorted(edges, ev.ravel(), side="right") - 1  # bin i: edges[i] <= x < edges[i+1]
    inside = (b >= 0) & (b < edges.shape[0] - 1)
    return jnp.zeros((edges.shape[0] - 1,), jnp.int32).at[jnp.where(inside, b, 0)].add(jnp.where(inside, w.ravel(), 0))


def ldl_bucket(n: int) -> int:
    """Padded size m >= n of the streamed ``ldl`` counters: a multiple of 8 up to n = 64, then of
    2^(ceil(log2 n) - 3) (16 up to 128, 32 up to 256, ...), so every size of ``--dims 2:50`` shares one
    of 7 compiled programs, at most (1 + 1/8)^3 more flops beyond n = 64."""
    n = int(n)
    step = 8 if n <= 64 else 2 ** (math.ceil(math.log2(n)) - 3)
    return step * -(-n // step)


def _padded_from_indices(ens, key, idx, n, m, inv_scale, shift, dtype):
    """The matrices of ``_from_indices`` (normalised, plus shift I) of a traced size n <= m, embedded as
    [[H, 0], [0, I]] in (m, m): the identity block adds m - n positive pivots and no negative one.

    Entry (r, c) of H is element ``r n + c`` of a flat draw from ``fold_in(key, i)``; every random element
    depends on its flat position only (``standard_normal`` for the GOE; JAX's partitionable threefry,
    ``jax_threefry_partitionable``, the default, for wigner), so these are the entries of the (n, n) draw of ``Ensemble.one``, combined by
    the same operations. goe and wigner only (a Wishart matrix's row count depends on n).
    """
    r = jnp.arange(m)
    inside = (r[:, None] < n) & (r[None, :] < n)
    flat = jnp.where(inside, r[:, None] * n + r[None, :], 0)

    def one(i):
        k = fold_in(key, i)
        if ens.name == "goe":
            a = _goe_normals(k, m * m, dtype)[flat]
            return (a + a.T) * jnp.asarray(1 / math.sqrt(2), dtype)
        x = _draw_law(ens.law, k, (m * m,), dtype)[flat]
        upper = jnp.triu(x, 1)
        return upper + upper.T + jnp.diag(jnp.diagonal(x) * jnp.asarray(math.sqrt(2), dtype))

    h = jax.vmap(one)(idx) * inv_scale
    h = _mirror_upper(h + (shift * jnp.eye(m, dtype=dtype))[None])
    return jnp.where(inside[None], h, jnp.eye(m, dtype=dtype)[None])


def _padded(ens, method) -> bool:
    """Whether the streamed counts use one program per ``ldl_bucket`` (else one per n)."""
    partitionable = bool(jax.config.jax_threefry_partitionable)  # type: ignore[attr-defined]  # JAX's flags are dynamic attributes
    return method == "ldl" and ens.name in ("goe", "wigner") and partitionable


@functools.lru_cache(maxsize=64)
def _counter(mesh, impl, ens, chunk, size, method, dtype, pivot_dtype, padded):
    """Jitted ``(key_data, first, shift, total[, edges | n, inv_scale]) -> counts`` over ``mesh``
    (replicated int32).

    Device k counts the matrices of chunk ``first + k`` (fixed shape ``(chunk, size, size)`` on every
    device); the per-device counts are integers and add exactly. ``method=None``: eigenvalue histogram.
    ``padded``: ``size`` is the bucket m and the matrix size n (<= m) is an argument, so one program
    serves every n of the bucket (``_padded_from_indices``); the counts have m + 1 entries.
    """
    axis = mesh.axis_names[0]

    def local(key_data, first, shift, total, *extra):
        key = jax.random.wrap_key_data(key_data, impl=impl)
        idx, valid = _chunk_indices(axis, first, chunk, total)
        if method is None:
            c = _eig_counts(ens, key, idx, valid, size, dtype, shift, extra[0])
        elif padded:
            h = _padded_from_indices(ens, key, idx, extra[0], size, extra[1], shift, dtype)
            k = _index_of(h, method, pivot_dtype)
            c = jnp.zeros((size + 1,), jnp.int32).at[k].add(valid.astype(jnp.int32))
        else:
            c = _index_counts(ens, key, idx, valid, size, method, dtype, shift, pivot_dtype)
        return jax.lax.psum(c, axis)

    nargs = 5 if method is None else 6 if padded else 4
    rep = replicated(mesh)
    f = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(),) * nargs, out_specs=PartitionSpec(), check_vma=False)
    return jax.jit(f, in_shardings=(rep,) * nargs, out_shardings=rep)


def _stream_counts(fn, key, ens, n, samples, chunk, method, dtype, shift, edges, devices, progress, pivot_dtype=None):
    """Run ``_counter`` over every chunk of ``samples`` matrices, ``mesh.size`` chunks per call."""
    if not isinstance(ens, Ensemble):
        raise ValueError(f"{fn}: ens must be an Ensemble, got {ens!r}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or not 1 <= int(samples) < 2**32:
        raise ValueError(f"{fn}: samples must be an integer in [1, 2**32), got {samples!r}")
    if not math.isfinite(float(shift)):
        raise ValueError(f"{fn}: shift must be finite, got {shift!r}")
    samples = int(samples)
    padded = _padded(ens, method)
    size = ldl_bucket(n) if padded else n
    chunk = default_chunk(size) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"{fn}: chunk must be >= 1, got {chunk}")
    chunk = min(chunk, samples)
    mesh = make_mesh(devices)
    key = as_key(key)
    impl = str(jax.random.key_impl(key))
    key_data = np.asarray(jax.random.key_data(key))  # host values: valid inputs for a multi-process mesh
    args = [np.asarray(float(shift), dtype), np.asarray(samples, np.uint32)]
    if edges is not None:
        args.append(np.asarray(edges, dtype))
    if padded:
        args += [np.asarray(n, np.int32), np.asarray(1 / ens.scale(n), dtype)]
    counts = None
    run = _counter(mesh, impl, ens, chunk, size, method, dtype, pivot_dtype, padded)
    for first in range(0, -(-samples // chunk), mesh.size):
        c = np.asarray(run(key_data, np.asarray(first, np.uint32), *args), np.int64)
        counts = c if counts is None else counts + c
        if progress is not None:
            progress(min(mesh.size * chunk, samples - first * chunk))
    if padded:
        counts = counts[: n + 1]  # the identity padding has no negative pivot: entries > n are 0
    return counts


def index_histogram(
    key,
    ens: Ensemble,
    n: int,
    samples: int,
    *,
    shift: float = 0.0,
    method: str | None = None,
    chunk: int | None = None,
    dtype=jnp.float32,
    pivot_dtype=jnp.float64,
    devices=None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Counts of each index 0..n over ``samples`` normalised matrices (plus ``shift`` I), streamed.

    Matrix i is drawn from ``fold_in(key, i)`` (the same matrices as ``sample_ensemble`` with
    ``batch_shape=(samples,)``, up to an ulp for goe/wigner with ``ldl``, see the module docstring), so
    the counts do not depend on ``chunk`` or on the devices. goe/wigner with ``ldl``: one compiled
    program serves every n of ``ldl_bucket(n)`` (the default chunk is then ``default_chunk`` of the bucket).

    Args:
        key: PRNG key.
        ens: the ensemble.
        n: size >= 1.
        samples: number of matrices, 1 <= samples < 2^32.
        shift: s in H + s I (after normalising).
        method: ``eigh`` or ``ldl``; default ``ldl`` for continuous ensembles, ``eigh`` otherwise.
        chunk: matrices per device and compiled call (default ``default_chunk(n)``, at most ``samples``).
        dtype: float32 or float64 of the matrices.
        pivot_dtype: arithmetic of the ``ldl`` elimination (see ``index``): float64 (the default; needs
            ``jax_enable_x64``, refused without it) or float32. Ignored by ``eigh``.
        devices: where the chunks run (see ``sim.devices.make_mesh``): None (every device JAX sees),
            a count N (the first N), a device list or a 1-D Mesh. Device k of D takes chunks k, k + D,
            ...; the counts are bit-identical for every number of devices.
        progress: called with the number of matrices done after each call (``D`` chunks).

    Returns:
        int64 numpy array of shape ``(n + 1,)``: entry k counts matrices of index k.
    """
    fn = "index_histogram"
    n = _check_n(n, fn)
    dtype = float_dtype(dtype, fn=fn)
    if not isinstance(ens, Ensemble):
        raise ValueError(f"{fn}: ens must be an Ensemble, got {ens!r}")
    method = method or ("ldl" if ens.continuous else "eigh")
    if method not in INDEX_METHODS:
        raise ValueError(f"{fn}: unknown method {method!r}; valid: {', '.join(INDEX_METHODS)}")
    pdt = _pivot_dtype(pivot_dtype, fn) if method == "ldl" else None
    return _stream_counts(fn, key, ens, n, samples, chunk, method, dtype, shift, None, devices, progress, pdt)


def eigenvalue_histogram(
    key,
    ens: Ensemble,
    n: int,
    samples: int,
    edges,
    *,
    shift: float = 0.0,
    chunk: int | None = None,
    dtype=jnp.float32,
    devices=None,
) -> np.ndarray:
    """Empirical spectrum: counts of the eigenvalues of ``samples`` normalised matrices in bins ``edges``.

    Uses the same matrices as ``index_histogram`` with the same key. Eigenvalues outside the edges are
    not counted; divide by ``samples * n * widths`` for a density. ``devices``: as in ``index_histogram``
    (bit-identical counts for every number of devices).

    Returns:
        int64 numpy array of shape ``(len(edges) - 1,)``.
    """
    fn = "eigenvalue_histogram"
    n = _check_n(n, fn)
    dtype = float_dtype(dtype, fn=fn)
    edges = np.asarray(edges, np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{fn}: edges must be a strictly increasing 1-d array of >= 2 values")
    return _stream_counts(fn, key, ens, n, samples, chunk, None, dtype, shift, edges, devices, None)


def index_summary(counts) -> dict[str, float]:
    """Statistics of an index histogram (``counts[k]`` = matrices of index k, size n + 1).

    Returns:
        dict with ``samples``, ``mean_index``, ``var_index``, ``mean_index_fraction``,
        ``std_index_fraction`` (spread of k/n across matrices), ``mean_index_fraction_stderr``,
        ``p_min`` (fraction of index 0), ``p_min_stderr`` (binomial; when no minimum was seen, the
        value 0 has no standard error, and ``p_min_upper95`` = 3/samples is the one-sided 95% bound),
        ``log_p_min`` / ``log_p_min_stderr`` (delta method; nan when p_min = 0).
    """
    c = np.asarray(counts, np.int64)
    if c.ndim != 1 or c.size < 2 or np.any(c < 0) or c.sum() == 0:
        raise ValueError("index_summary: counts must be a non-empty, non-negative 1-d histogram of size n + 1")
    n = c.size - 1
    total = int(c.sum())
    k = np.arange(n + 1, dtype=np.float64)
    mean = float(np.sum(k * c) / total)
    var = float(np.sum((k - mean) ** 2 * c) / max(total - 1, 1))
    p = c[0] / total
    se_p = math.sqrt(p * (1 - p) / total)
    return {
        "samples": total,
        "mean_index": mean,
        "var_index": var,
        "mean_index_fraction": mean / n,
        "std_index_fraction": math.sqrt(var) / n,
        "mean_index_fraction_stderr": math.sqrt(var / total) / n,
        "p_min": float(p),
        "p_min_stderr": float(se_p),
        "p_min_upper95": 3.0 / total if c[0] == 0 else float("nan"),
        "log_p_min": math.log(p) if c[0] > 0 else float("nan"),
        "log_p_min_stderr": float(se_p / p) if c[0] > 0 else float("nan"),
    }


def batch_index_stats(h, *, method: str = "eigh") -> dict:
    """Index statistics of a batch of symmetric matrices held in memory.

    Args:
        h: shape ``(B, n, n)`` (any leading batch shape is flattened).
        method: ``eigh`` or ``ldl`` (see ``index``).

    Returns:
        dict with ``index`` (int64 numpy array, shape ``(B,)``), ``index_fraction`` (``index / n``),
        ``counts`` (the index distribution, shape ``(n + 1,)``), ``eigenvalues`` (shape ``(B, n)``, only
        for ``method="eigh"``, else None) and every entry of ``index_summary(counts)``.
    """
    h = jnp.asarray(h)
    if h.ndim < 3 or h.shape[-1] != h.shape[-2]:
        raise ValueError(f"batch_index_stats: h must have shape (..., n, n) with a batch axis, got {h.shape}")
    n = h.shape[-1]
    h = h.reshape((-1, n, n))
    ev = None
    if method == "eigh":
        ev = np.asarray(jnp.linalg.eigvalsh(h))
        k = np.sum(ev < 0, axis=-1).astype(np.int64)
    else:
        k = np.asarray(index(h, method=method), np.int64)
    counts = np.bincount(k, minlength=n + 1).astype(np.int64)
    return {"index": k, "index_fraction": k / n, "counts": counts, "eigenvalues": ev, **index_summary(counts)}
