"""Random vectors in dimension d: coordinate laws and the tile-keyed stream that generates them.

A vector of dimension ``d`` is generated in *tiles* of ``TILE`` consecutive coordinates. Coordinates
``[t*TILE, (t+1)*TILE)`` of point ``i`` are drawn from the key ``fold_in(fold_in(key, i), t)``, so

* coordinate ``j`` of point ``i`` is the same whatever ``d`` (vectors are nested in ``d``), whatever
  the number of points, and whatever chunk or device computes it;
* nothing forces a whole vector into memory: any range of tiles can be generated on its own.

Laws (``Distribution`` subclasses, all frozen dataclasses so they can be static jit arguments):

=============  =============================================  =====================================
name           coordinates                                    parameters
=============  =============================================  =====================================
gaussian       N(0, 1)
uniform        Uniform(0, 1) (not centred: cos -> 3/4)
rademacher     +-1 with probability 1/2
student-t      Student t with ``df`` degrees of freedom        df > 0
cauchy         standard Cauchy (no moments)
lognormal      exp(sigma * N(0, 1))                           sigma > 0
powerlaw       independent N(0, lambda_j), lambda_j = j**-a    a >= 0 (j = 1..d)
init           parameters of an MLP at initialisation         widths, scheme (he, lecun, glorot)
=============  =============================================  =====================================

What holds where (the stream's promises and their scope):

* the random *bits* of every tile (Threefry-2x32 words, ``sign_words``) are integer functions of the key
  and the (point, tile) indices: identical on every backend (CPU, GPU, TPU), machine, device count,
  chunk size and jax version that keeps ``fold_in`` and Threefry-2x32 (Rademacher vectors, made of
  these bits alone, are identical everywhere);
* float coordinates are float32 (or float64) transforms of those bits (``erfinv32`` for float32
  Gaussians, ``erf_inv`` for float64, ``log``/``tan``/... for the other laws), evaluated by the
  backend's own math library (``erfinv32`` calls only ``log`` and ``sqrt``): bit-identical
  on one machine with one jax/jaxlib version, otherwise equal to about 1 ulp (what the transform's
  implementation may change);
* keys of another PRNG implementation (``jax.random.key(s, impl="rbg")``) fall back to
  ``jax.random``'s draws for that implementation, whose bits XLA's RngBitGenerator defines per backend:
  then even the bits may differ between CPU and accelerators. (On this project's CPU ``rbg`` and
  ``unsafe_rbg`` are also slower than the Threefry stream here: ``benchmarks/bench_stream.py``.)

``powerlaw`` is an anisotropic Gaussian written in its eigenbasis (distances are invariant under
rotations, so this is no loss of generality): its concentration is governed by the effective rank
``(tr S)^2 / tr S^2``, not by d. ``init`` lays out the parameters layer by layer (W1, b1, W2, b2, ...):
weights are N(0, s_l^2) with s_l^2 = gain / fan (He: 2/fan_in, LeCun: 1/fan_in, Glorot:
2/(fan_in + fan_out)), biases are 0 as in the usual schemes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import as_key, float_dtype, make_named

__all__ = [
    "TILE",
    "Distribution",
    "Gaussian",
    "Uniform",
    "Rademacher",
    "StudentT",
    "Cauchy",
    "LogNormal",
    "PowerLaw",
    "Init",
    "DISTRIBUTIONS",
    "make_distribution",
    "mlp_widths_for_dim",
    "sample",
    "sample_tiles",
    "tile_width",
    "init_params",
    "sign_words",
    "fold_in",
    "split",
    "standard_normal",
    "erfinv32",
    "sign_blocks",
    "threefry2x32",
]

#: Coordinates per tile: the unit of key derivation. Part of the definition of the random stream.
TILE = 4096


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Base class: a law for the coordinates of a random vector.

    Subclasses implement ``draw`` (i.i.d. standard draws) and, when coordinates are not identically
    distributed, ``scale`` (a per-coordinate standard deviation multiplier).
    """

    name: ClassVar[str] = ""
    #: law of x -> -x invariant (then the cosine has mean exactly 0)
    symmetric: ClassVar[bool] = True
    #: law invariant under rotations of R^d (then the angle has the exact sin^(d-2) density)
    isotropic: ClassVar[bool] = False
    #: every coordinate has the same law
    iid: ClassVar[bool] = True

    def draw(self, key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
        raise NotImplementedError

    def scale(self, index: jax.Array, dtype) -> jax.Array:
        """Standard deviation multiplier of the coordinates at 0-based positions ``index``."""
        return jnp.ones(index.shape, dtype)

    def raw_moment(self, k: int) -> float:
        """E x^k of one (unscaled) coordinate; nan if it does not exist."""
        return math.nan

    def abs_diff_moment(self, q: float) -> float:
        """E|x - y|^q for two independent unscaled coordinates; nan where no closed form is known."""
        return math.nan

    def scale_power_sum(self, d: int, s: float) -> float:
        """sum_j scale_j^(2 s) over the d coordinates (d for i.i.d. laws)."""
        return float(d)

    def label(self) -> str:
        """Short human-readable name with parameters, e.g. ``student-t(df=5)``."""
        fields = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)]
        return f"{self.name}({', '.join(fields)})" if fields else self.name

    def check_dim(self, d: int) -> None:
        """Raise ValueError if this law cannot make vectors of dimension d."""

    def runtime_form(self, dtype) -> tuple[Distribution, tuple[np.ndarray, ...]]:
        """``(template, arrays)``: a hashable law that fixes a compiled program, and the arrays that complete
        it at run time (``template.bind(arrays)`` inside the program is this law). Laws whose parameters
        only scale the coordinates (``PowerLaw``'s exponent, ``Init``'s layer table) pass them as arrays, so
        that one compiled stream serves every exponent or network of one depth with the same numbers; the
        others are their own template and take no arrays."""
        return self, ()

    def bind(self, arrays: tuple) -> Distribution:
        """This template completed by the (possibly traced) ``arrays`` of ``runtime_form``."""
        return self


@dataclasses.dataclass(frozen=True)
class Gaussian(Distribution):
    name: ClassVar[str] = "gaussian"
    isotropic: ClassVar[bool] = True

    def draw(self, key, shape, dtype):
        return standard_normal(key, shape, dtype)

    def raw_moment(self, k):
        return 0.0 if k % 2 else float(math.prod(range(k - 1, 0, -2)))

    def abs_diff_moment(self, q):
        # x - y ~ N(0, 2): E|x - y|^q = 2^q Gamma((q+1)/2) / sqrt(pi)
        return 2.0**q * math.exp(math.lgamma((q + 1) / 2)) / math.sqrt(math.pi)


@dataclasses.dataclass(frozen=True)
class Uniform(Distribution):
    name: ClassVar[str] = "uniform"
    symmetric: ClassVar[bool] = False

    def draw(self, key, shape, dtype):
        return jax.random.uniform(key, shape, dtype)

    def raw_moment(self, k):
        return 1.0 / (k + 1)

    def abs_diff_moment(self, q):
        # |x - y| has density 2(1 - t) on [0, 1]
        return 2.0 / ((q + 1) * (q + 2))


@dataclasses.dataclass(frozen=True)
class Rademacher(Distribution):
    """+-1 coordinates: coordinate c of a draw is bit c of ``sign_words`` (0 -> +1, 1 -> -1).

    The packed words are the definition, so the streamed distance kernels can count differing signs
    with popcount(xor) on the words (``sim.distances``, 32 coordinates per word) and still describe
    exactly the vectors ``sample`` returns.
    """

    name: ClassVar[str] = "rademacher"

    def draw(self, key, shape, dtype):
        size = math.prod(shape)
        words = sign_words(key, -(-size // 32))
        bits = (words[:, None] >> jnp.arange(32, dtype=jnp.uint32)[None, :]) & jnp.uint32(1)
        x = jnp.asarray(1, dtype) - jnp.asarray(2, dtype) * bits.reshape(-1)[:size].astype(dtype)
        return x.reshape(shape)

    def raw_moment(self, k):
        return 0.0 if k % 2 else 1.0

    def abs_diff_moment(self, q):
        # |x - y| is 0 or 2 with probability 1/2 each
        return 2.0 ** (q - 1)


@dataclasses.dataclass(frozen=True)
class StudentT(Distribution):
    name: ClassVar[str] = "student-t"
    df: float = 5.0

    def __post_init__(self):
        if not (isinstance(self.df, (int, float)) and math.isfinite(self.df) and self.df > 0):
            raise ValueError(f"student-t: df must be a finite number > 0, got {self.df!r}")

    def draw(self, key, shape, dtype):
        return jax.random.t(key, self.df, shape, dtype)

    def raw_moment(self, k):
        nu = self.df
        if k >= nu:
            return math.nan
        if k % 2:
            return 0.0
        # E t^(2m) = nu^m prod_{i=1..m} (2i - 1) / (nu - 2i)
        m = k // 2
        return float(nu**m * math.prod((2 * i - 1) / (nu - 2 * i) for i in range(1, m + 1)))


@dataclasses.dataclass(frozen=True)
class Cauchy(Distribution):
    name: ClassVar[str] = "cauchy"

    def draw(self, key, shape, dtype):
        return jax.random.cauchy(key, shape, dtype)

    def abs_diff_moment(self, q):
        # x - y is Cauchy with scale 2: E|x - y|^q = 2^q / cos(pi q / 2) for 0 < q < 1
        return 2.0**q / math.cos(math.pi * q / 2) if 0 < q < 1 else math.nan


@dataclasses.dataclass(frozen=True)
class LogNormal(Distribution):
    name: ClassVar[str] = "lognormal"
    symmetric: ClassVar[bool] = False
    sigma: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"lognormal: sigma must be a finite number > 0, got {self.sigma!r}")

    def draw(self, key, shape, dtype):
        return jax.random.lognormal(key, self.sigma, shape, dtype)

    def raw_moment(self, k):
        return math.exp(k * k * self.sigma**2 / 2)


@dataclasses.dataclass(frozen=True)
class PowerLaw(Distribution):
    """Anisotropic Gaussian, coordinate j (1-based) ~ N(0, j^-a)."""

    name: ClassVar[str] = "powerlaw"
    iid: ClassVar[bool] = False
    a: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.a, (int, float)) and math.isfinite(self.a) and self.a >= 0):
            raise ValueError(f"powerlaw: exponent a must be a finite number >= 0, got {self.a!r}")

    def draw(self, key, shape, dtype):
        return standard_normal(key, shape, dtype)

    def scale(self, index, dtype):
        return _power_scale(index, jnp.asarray(-self.a / 2, dtype), dtype)

    raw_moment = Gaussian.raw_moment
    abs_diff_moment = Gaussian.abs_diff_moment

    def scale_power_sum(self, d, s):
        return harmonic(d, self.a * s)

    def runtime_form(self, dtype):
        return _PowerLawTemplate(), (np.asarray(-self.a / 2, dtype),)


def _power_scale(index, exponent, dtype):
    """(index + 1) ** exponent in ``dtype``: the power law's standard deviations.

    XLA rewrites ``x ** -1`` with a constant exponent as ``1 / x``, which rounds differently from ``pow``
    (16 of 18,000 coordinates at a = 2): written out here, a run-time exponent (``runtime_form``) gives the
    numbers of the exponent compiled in, for every a (tests/test_distances.py)."""
    j = index.astype(dtype) + 1
    return jnp.where(exponent == -1, 1 / j, j**exponent)


@dataclasses.dataclass(frozen=True)
class _PowerLawTemplate(Distribution):
    """``PowerLaw`` with its exponent -a/2 a run-time array (``runtime_form``)."""

    name: ClassVar[str] = "powerlaw"
    iid: ClassVar[bool] = False

    def bind(self, arrays):
        exponent = arrays[0]
        return _BoundScale(lambda index, dtype: _power_scale(index, exponent, dtype))


class _BoundScale(Distribution):
    """Gaussian coordinates times ``scale_fn(index, dtype)``: a template bound to its run-time arrays."""

    name: ClassVar[str] = "bound"
    iid: ClassVar[bool] = False

    def __init__(self, scale_fn):
        object.__setattr__(self, "_scale_fn", scale_fn)

    def draw(self, key, shape, dtype):
        return standard_normal(key, shape, dtype)

    def scale(self, index, dtype):
        return self._scale_fn(index, dtype)


@dataclasses.dataclass(frozen=True)
class Init(Distribution):
    """All parameters of an MLP with layer ``widths`` (input first) at initialisation."""

    name: ClassVar[str] = "init"
    iid: ClassVar[bool] = False
    widths: tuple[int, ...] = (784, 256, 256, 10)
    scheme: str = "he"
    SCHEMES: ClassVar[tuple[str, ...]] = ("he", "lecun", "glorot")

    def __post_init__(self):
        w = tuple(self.widths)
        if len(w) < 2 or any(not isinstance(v, (int, np.integer)) or v < 1 for v in w):
            raise ValueError(f"init: widths must be >= 2 positive integers, got {self.widths!r}")
        if self.scheme not in self.SCHEMES:
            raise ValueError(f"init: unknown scheme {self.scheme!r}; valid: {', '.join(self.SCHEMES)}")
        object.__setattr__(self, "widths", tuple(int(v) for v in w))

    @property
    def dim(self) -> int:
        """Number of parameters (weights and biases)."""
        return sum(a * b + b for a, b in zip(self.widths[:-1], self.widths[1:]))

    def layers(self) -> list[tuple[int, float]]:
        """(size, std) of each block of coordinates in order: W1, b1, W2, b2, ..."""
        gain = {"he": 2.0, "lecun": 1.0, "glorot": 2.0}[self.scheme]
        out = []
        for fan_in, fan_out in zip(self.widths[:-1], self.widths[1:]):
            fan = fan_in + fan_out if self.scheme == "glorot" else fan_in
            out += [(fan_in * fan_out, math.sqrt(gain / fan)), (fan_out, 0.0)]
        return out

    def check_dim(self, d):
        if d != self.dim:
            raise ValueError(f"init: an MLP with widths {self.widths} has {self.dim} parameters, not d={d}")

    def draw(self, key, shape, dtype):
        return standard_normal(key, shape, dtype)

    def _table(self, dtype):
        """(ends of the coordinate blocks, std of each block and 0 past the end) as numpy arrays."""
        sizes, stds = zip(*self.layers())
        return np.cumsum(sizes), np.asarray(stds + (0.0,), dtype)  # index >= dim (padding) gets 0

    def scale(self, index, dtype):
        ends, table = self._table(dtype)
        return _table_scale(index, jnp.asarray(ends), jnp.asarray(table), dtype)

    def runtime_form(self, dtype):
        ends, table = self._table(dtype)
        return _InitTemplate(blocks=len(ends)), (ends, table)

    raw_moment = Gaussian.raw_moment
    abs_diff_moment = Gaussian.abs_diff_moment

    def scale_power_sum(self, d, s):
        return float(sum(size * std ** (2 * s) for size, std in self.layers() if std > 0))


def _table_scale(index, ends, table, dtype):
    """``table[b]`` for the block b of each coordinate ``index`` (blocks end at ``ends``)."""
    return table.astype(dtype)[jnp.searchsorted(ends, index, side="right")]


@dataclasses.dataclass(frozen=True)
class _InitTemplate(Distribution):
    """``Init`` with its table of block ends and standard deviations run-time arrays (``runtime_form``):
    one template per number of blocks (2 per layer)."""

    name: ClassVar[str] = "init"
    iid: ClassVar[bool] = False
    blocks: int = 0

    def bind(self, arrays):
        ends, table = arrays
        return _BoundScale(lambda index, dtype: _table_scale(index, ends, table, dtype))


def fold_in(key: jax.Array, data) -> jax.Array:
    """``jax.random.fold_in(key, data)``, bit for bit, for a typed key and a 32-bit integer ``data``.

    Threefry keys: the new key is the block ``threefry2x32(key, (0, data))``, written with the unrolled
    ``threefry2x32`` (plain uint32 operations that fuse with their neighbours): JAX lowers its primitive
    on CPU as a rolled loop, which costs about 0.35 CPU-s to compile per call site against 0.18 here, and
    the stream kernels fold a key in at every point and tile (tests/test_distances.py checks the keys).
    Keys of another PRNG implementation: ``jax.random.fold_in``.
    """
    impl = str(jax.random.key_impl(key))
    if impl != "threefry2x32":
        return jax.random.fold_in(key, data)
    k1, k2 = jax.random.key_data(key)
    data = jnp.asarray(data).astype(jnp.uint32)
    y0, y1 = threefry2x32(k1, k2, jnp.zeros_like(data), data)
    return jax.random.wrap_key_data(jnp.stack([y0, y1], axis=-1), impl=impl)


def split(key: jax.Array, num: int = 2) -> jax.Array:
    """``jax.random.split(key, num)``, bit for bit, for a typed scalar key: the blocks
    ``threefry2x32(key, (0, j))``, j < num, with the unrolled ``threefry2x32`` (see ``fold_in``: cheaper to
    compile than JAX's rolled loop on CPU). Other PRNG implementations, or JAX's non-partitionable
    Threefry (``jax_threefry_partitionable`` off): ``jax.random.split``."""
    impl = str(jax.random.key_impl(key))
    if impl != "threefry2x32" or not getattr(jax.config, "jax_threefry_partitionable", False):
        return jax.random.split(key, num)
    k1, k2 = jax.random.key_data(key)
    y0, y1 = threefry2x32(k1, k2, jnp.zeros((num,), jnp.uint32), jnp.arange(num, dtype=jnp.uint32))
    return jax.random.wrap_key_data(jnp.stack([y0, y1], axis=-1), impl=impl)


def sign_words(key: jax.Array, n_words: int) -> jax.Array:
    """``n_words`` uint32 words of random bits from ``key``: the packed form of Rademacher draws.

    Word ``2j`` and ``2j + 1`` are the low and high halves of the 64-bit Threefry-2x32 block with
    counter ``j``, i.e. the little-endian words of ``jax.random.bits(key, (m,), jnp.uint64)`` (with
    x64 on; the same words without it). Every block depends only on its counter, so the first
    words of a short draw are the first words of a long one (short tiles are prefixes of full tiles).
    ``jax.random.bits(key, shape, uint32)`` would hash one block per 32-bit word and fold its halves
    together; using both halves halves the hashing per coordinate. Keys of another PRNG
    implementation fall back to ``jax.random.bits(key, (n_words,), uint32)``.

    Args:
        key: a typed PRNG key (scalar).
        n_words: number of 32-bit words (static), >= 1.

    Returns:
        uint32 array of shape ``(n_words,)``.
    """
    key = as_key(key)
    if str(jax.random.key_impl(key)) != "threefry2x32":
        return jax.random.bits(key, (n_words,), jnp.uint32)
    lo, hi = sign_blocks(key, -(-int(n_words) // 2))
    return jnp.stack([lo, hi], axis=-1).reshape(-1)[:n_words]


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard normal draws; float32 from both halves of every Threefry block.

    About 6x ``jax.random.normal``'s float32 rate per CPU second on this project's CPU, and 3.4x numpy
    PCG64's (both halves of each block, the unrolled ``threefry2x32`` fused with ``erfinv32``, compiled
    with CPU_COMPILER_OPTIONS; ``benchmarks/bench_stream.py`` prints the rates).

    float32: value ``j`` (row-major) is ``sqrt(2) erfinv32(u_j)`` with ``u_j`` uniform on
    [nextafter(-1, 0), 1) made from the 23 high bits of ``sign_words(key, size)[j]``: the mapping of
    ``jax.random.normal``, which however hashes one Threefry block per 32-bit word and keeps half of
    it, and whose ``jax.lax.erf_inv`` is up to 65 ulp off in the tails (``erfinv32``: at most 3.8).
    Like ``sign_words``, a short draw is the prefix of a long one. Other dtypes and other PRNG
    implementations: ``jax.random.normal``.

    Args:
        key: a typed PRNG key (scalar).
        shape: static output shape.
        dtype: float dtype.

    Returns:
        Array of ``shape`` and ``dtype``.
    """
    key = as_key(key)
    if np.dtype(dtype) != np.float32 or str(jax.random.key_impl(key)) != "threefry2x32":
        return jax.random.normal(key, shape, dtype)
    size = math.prod(shape)
    if size == 0:
        return jnp.zeros(shape, dtype)
    return normals_from_words(sign_words(key, size)).reshape(shape)


def normals_from_words(words: jax.Array) -> jax.Array:
    """float32 standard normals from uint32 words, elementwise: ``sqrt(2) erfinv32(u)`` with ``u`` uniform
    on [nextafter(-1, 0), 1) made from each word's 23 high bits (``standard_normal``'s mapping; also the
    batch streams' in ``sim.learning.parallel.stream_normals``)."""
    f = jax.lax.bitcast_convert_type((words >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0  # [0, 1)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = jnp.maximum(lo, f * (np.float32(1.0) - lo) + lo)
    return np.float32(math.sqrt(2.0)) * erfinv32(u)


#: Coefficients (highest degree first) of Giles' single-precision erfinv: p(w - 2.5) for w < 5 and
#: p(sqrt(w) - 3) for w >= 5, w = -log((1 - x)(1 + x)); erfinv(x) = x p.
_ERFINV_CENTRAL = (
    2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
    -0.00125372503, -0.00417768164, 0.246640727, 1.50140941,
)  # fmt: skip
_ERFINV_TAIL = (
    -0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
    -0.0076224613, 0.00943887047, 1.00167406, 2.83297682,
)  # fmt: skip


def erfinv32(x: jax.Array) -> jax.Array:
    """Inverse error function in float32: Giles' single-precision approximation.

    M. Giles, "Approximating the erfinv function", GPU Computing Gems Jade Edition (2011): with
    w = -log((1 - x)(1 + x)), erfinv(x) = x p(w - 2.5) for w < 5 and x p(sqrt(w) - 3) otherwise, p
    two polynomials of degree 8. (1 - x)(1 + x) keeps the tails accurate where ``1 - x*x`` (the
    ``log1p(-x*x)`` of ``jax.lax.erf_inv``) rounds x*x first: at most 3.8 ulp from the exact value
    over every uniform the stream makes and over (-1, 1), where ``jax.lax.erf_inv`` float32 is up to
    65 ulp off near |x| = 1 (tests/test_distances.py). Both branches are evaluated and selected, so
    the whole is one branch-free vectorisable loop. erfinv(+-1) = +-inf; |x| > 1 gives nan.

    Args:
        x: float32 array (other float inputs are converted to float32).

    Returns:
        float32 array of the shape of ``x``.
    """
    x = jnp.asarray(x, jnp.float32)
    w = -jnp.log((np.float32(1) - x) * (np.float32(1) + x))

    def horner(coeffs, t):
        p = jnp.full_like(t, np.float32(coeffs[0]))
        for c in coeffs[1:]:
            p = np.float32(c) + p * t
        return p

    central = horner(_ERFINV_CENTRAL, w - np.float32(2.5))
    tail = horner(_ERFINV_TAIL, jnp.sqrt(w) - np.float32(3))
    y = jnp.where(w < np.float32(5), central, tail) * x
    return jnp.where(jnp.abs(x) == np.float32(1), x * np.float32(np.inf), y)


def sign_blocks(key: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    """The words of ``sign_words(key, 2 m)`` as (even words, odd words), each uint32 of shape ``(m,)``:
    the low and high halves of the Threefry-2x32 blocks 0..m-1 (threefry keys only).

    The blocks are ``threefry2x32(key, (0, j))``, exactly JAX's ``threefry2x32_p``, but written out
    round by round (``threefry2x32``): JAX lowers the primitive on CPU as a loop of 5 steps over whole
    arrays, which XLA cannot fuse with what consumes the words, and which stores the state between
    steps; unrolled, the 20 rounds, the float transform and the masking are one elementwise loop
    (3.4x the words per CPU second on this project's CPU; tests check the words bit for bit).
    """
    k1, k2 = jax.random.key_data(key)
    hi, lo = threefry2x32(k1, k2, jnp.zeros((m,), jnp.uint32), jnp.arange(m, dtype=jnp.uint32))
    return lo, hi


#: Threefry-2x32 rotation constants of the even and odd groups of four rounds (Salmon et al. 2011).
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(k1: jax.Array, k2: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 block cipher (20 rounds) of the counters (x0, x1) under the key (k1, k2).

    Bit for bit the function of JAX's ``threefry2x32_p`` (and of Random123), in plain uint32 adds,
    shifts and xors that broadcast and fuse: the key words are scalars or arrays broadcasting against
    the counters. See ``sign_blocks`` for why it is written out here.
    """
    ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r)))
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def harmonic(d: int, s: float) -> float:
    """Generalised harmonic number sum_{j=1..d} j^-s in float64 (exact sum, Euler-Maclaurin tail)."""
    n0 = min(d, 1 << 20)
    j = np.arange(1, n0 + 1, dtype=np.float64)
    total = float(np.sum(j[::-1] ** -s))  # smallest terms first
    if d > n0:
        # Euler-Maclaurin for sum_{j=n0+1}^{d} f(j), f(x) = x^-s: error ~ f'''(n0) / 720, below 1e-30
        a, b = float(n0), float(d)
        f = lambda x: x**-s  # noqa: E731
        df = lambda x: -s * x ** (-s - 1)  # noqa: E731
        integral = math.log(b / a) if s == 1 else (b ** (1 - s) - a ** (1 - s)) / (1 - s)
        total += integral + (f(b) - f(a)) / 2 + (df(b) - df(a)) / 12
    return total


DISTRIBUTIONS: dict[str, type[Distribution]] = {
    c.name: c for c in (Gaussian, Uniform, Rademacher, StudentT, Cauchy, LogNormal, PowerLaw, Init)
}


def make_distribution(name: str, **params) -> Distribution:
    """Build a distribution by name, passing only the parameters it takes.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a bad parameter.
    """
    return make_named(DISTRIBUTIONS, "distribution", name, params)


def mlp_widths_for_dim(d: int, *, d_in: int = 784, d_out: int = 10, depth: int = 2) -> tuple[int, ...]:
    """Widths (d_in, h, ..., h, d_out) with ``depth`` hidden layers and the largest h whose MLP has at
    most ``d`` parameters. Lets a dimension sweep use realistic networks.

    Raises:
        ValueError: if even h = 1 has more than d parameters.
    """

    def count(h):
        return Init(widths=(d_in,) + (h,) * depth + (d_out,)).dim

    if count(1) > d:
        raise ValueError(f"init: d={d} is below the smallest MLP ({count(1)} parameters)")
    lo, hi = 1, 2
    while count(hi) <= d:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= d else (lo, mid)
    return (d_in,) + (lo,) * depth + (d_out,)


# ----------------------------------------------------------------------------------------------
# The tile stream


def tile_width(d: int) -> int:
    """Coordinates drawn per tile for dimension ``d``: TILE, or the power of two >= d when d < TILE.

    JAX's counter-based (partitionable) threefry makes ``draw(key, (w,))`` the first w values of
    ``draw(key, (TILE,))`` for every law here, so a short tile is a prefix of the full one: the same
    coordinates, without drawing 4096 of them for a vector of dimension 10.
    """
    return TILE if d >= TILE else 1 << max(0, int(d) - 1).bit_length()


def sample_tiles(point_keys: jax.Array, dist: Distribution, tiles: jax.Array, d, dtype, width: int = TILE) -> jax.Array:
    """Coordinates of ``tiles`` for every point; positions >= d are 0.

    Args:
        point_keys: keys of the points, shape ``(n,)``: ``fold_in(key, i)``.
        dist: coordinate law.
        tiles: tile indices, int array of shape ``(k,)``.
        d: dimension (int or traced int scalar).
        dtype: float32 or float64.
        width: coordinates drawn per tile (static): TILE, or ``tile_width(d)`` when d < TILE.

    Returns:
        Array of shape ``(k, n, width)``.
    """
    offs = jnp.arange(width, dtype=jnp.int32)
    d_full = d // TILE  # number of full tiles
    d_rem = d % TILE

    def one_tile(t):
        x = jax.vmap(lambda k: dist.draw(fold_in(k, t), (width,), dtype))(point_keys)
        valid = jnp.where(t < d_full, TILE, jnp.where(t == d_full, d_rem, 0))
        mask = offs < valid
        if not dist.iid:
            idx = t.astype(jnp.result_type(float)) * TILE + offs
            x = x * dist.scale(idx, dtype)[None, :]
        return jnp.where(mask[None, :], x, jnp.zeros((), dtype))

    return jax.vmap(one_tile)(tiles)


def sample(key, dist: Distribution, n: int, d: int, *, dtype=jnp.float32) -> jax.Array:
    """Materialise ``n`` random vectors of dimension ``d`` (the same numbers the streaming kernels use).

    Args:
        key: PRNG key.
        dist: coordinate law (see module docstring).
        n: number of points, >= 1.
        d: dimension, >= 1. The result has n*d elements: use ``sim.pairwise_distances`` for large d.
        dtype: float32 (default) or float64 (needs x64).

    Returns:
        Array of shape ``(n, d)`` and dtype ``dtype``.
    """
    dtype = float_dtype(dtype, fn="sample")
    if int(n) < 1 or int(d) < 1:
        raise ValueError(f"sample: n and d must be >= 1, got n={n}, d={d}")
    dist.check_dim(int(d))
    template, law_args = dist.runtime_form(dtype)
    return _sample(as_key(key), law_args, template, int(n), int(d), dtype)


#: XLA CPU options of the stream kernels' own top-level programs (``kernel_jit``): prefer 512-bit
#: vectors where the CPU has them (LLVM otherwise caps the preference at what the CPU supports). On
#: this project's AVX-512 CPU the fused Threefry + erfinv32 loop runs about 1.6-2x the Gaussians per
#: CPU second (``benchmarks/bench_stream.py``).
CPU_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}


class kernel_jit:
    """``jax.jit(fun, **jit_kwargs)`` that compiles with CPU_COMPILER_OPTIONS when it is the top-level
    program on CPU devices, and without them when it is traced inside a caller's jit, vmap or grad
    (where XLA refuses per-jit options) or runs on another backend. No global config or environment
    variable is changed: the options live on this jit alone.

    The options change how XLA vectorises elementwise loops and reductions, so a kernel called under
    a caller's transformation may differ from its top-level call by rounding (a few ulp); each form is
    deterministic, and every chunk size and device count of one form gives the same bits.

    Args:
        fun: the function to jit.
        platform: the backend's platform name if known (e.g. a mesh's devices), else the default one.
        jit_kwargs: passed to ``jax.jit``.
    """

    def __init__(self, fun, *, platform: str | None = None, **jit_kwargs):
        self.plain = jax.jit(fun, **jit_kwargs)
        self.tuned = jax.jit(fun, compiler_options=CPU_COMPILER_OPTIONS, **jit_kwargs)
        self.platform = platform
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        return self.pick()(*args, **kwargs)

    def lower(self, *args, **kwargs):
        return self.pick().lower(*args, **kwargs)

    def pick(self):
        """The jitted function this call would use (for ``.lower``)."""
        from jax._src import core

        on_cpu = (self.platform or jax.default_backend()) == "cpu"
        return self.tuned if on_cpu and core.trace_state_clean() else self.plain


@functools.partial(kernel_jit, static_argnums=(2, 3, 4, 5))
def _sample(key, law_args, template, n, d, dtype):
    dist = template.bind(law_args)
    point_keys = jax.vmap(lambda i: fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))
    n_tiles, width = -(-d // TILE), tile_width(d)
    x = sample_tiles(point_keys, dist, jnp.arange(n_tiles, dtype=jnp.int32), d, dtype, width)
    return jnp.moveaxis(x, 0, 1).reshape(n, n_tiles * width)[:, :d]


def init_params(key, widths, *, scheme: str = "he", dtype=jnp.float32) -> jax.Array:
    """All parameters of an MLP with layer ``widths`` at initialisation, flattened (W1, b1, W2, ...).

    Weight matrices are stored row-major with shape (fan_in, fan_out); biases are zero.

    Returns:
        Array of shape ``(P,)`` with P = sum(fan_in*fan_out + fan_out).
    """
    dist = Init(widths=tuple(widths), scheme=scheme)
    return sample(key, dist, 1, dist.dim, dtype=dtype)[0]
