"""Random loss functions ("landscapes") of a parameter vector: a Gaussian random field, the spherical
p-spin glass and the training loss of a small MLP.

A landscape is a frozen dataclass (hashable, so it can be a static ``jit`` argument) holding only the
*options* of the family. The random instance lives in a pytree of arrays (``params``) made by
``landscape.sample(key, n)``; every other method is a pure function of ``(params, x)`` that can be
``jit``-ed and ``vmap``-ed over starts or over instances:

============  ==========================  ==========================================================
name          x lives on                  energy (``energy_density`` divides by ``n``)
============  ==========================  ==========================================================
grf           R^n                         phi(x), E phi(x) phi(y) = n exp(-|x - y|^2 / (2 n s^2))
pspin         sphere |x|^2 = n            H(x) = n^-(p-1)/2 sum J_{i1..ip} x_i1 ... x_ip
mlp           R^P (P = number of params)  (1/2m) sum |f_x(inputs) - targets|^2 (teacher or real data)
============  ==========================  ==========================================================

Methods (``params`` from ``sample``, ``x`` a point of shape ``(dim,)``):

* ``energy(params, x)``: the loss, scalar; ``energy_density(params, x)``: per spin / per dimension
  (``energy / n`` for grf and pspin, the loss itself for mlp, which is already a mean).
* ``grad(params, x)``: the (Riemannian, for pspin) gradient, shape ``(dim,)``.
* ``hessian(params, x)``: the (Riemannian) Hessian as a ``(dim, dim)`` matrix. For pspin it is
  ``P (D^2 H) P - (x . DH / n) P`` with ``P = I - x x^T / n`` the tangent projector: the normal
  direction ``x`` is an exact zero eigenvector of this matrix and is *not* a Hessian eigenvalue.
* ``grad_hessian(params, x)``: both at once (the GRF evaluates its cosines and sines once for both).
* ``tangent_hessian(params, x)``: the Hessian in an orthonormal basis of the tangent space,
  ``(tdim, tdim)`` with ``tdim = dim - 1`` on the sphere: its eigenvalues define the index.
* ``start(key, params)``: one random starting point; ``retract(x, v)``: move from ``x`` along the
  tangent vector ``v`` (``x + v``, or back onto the sphere).
* ``grad_scale(params)``, ``distance_scale(params)``: the typical size of the gradient at a random
  point and of the distances between points: tolerances in ``sim.critical`` are relative to them.

References: Bray & Dean, PRL 98, 150201 (2007); Fyodorov, PRL 92, 240601 (2004); Auffinger, Ben Arous,
Cerny, CPAM 66, 165 (2013); Rahimi & Recht, NIPS 2007 (random features); Dauphin et al., NIPS 2014.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sim._util import as_key, float_dtype, make_named, sincos
from sim.learning.data import REAL_DATASETS, read_real
from sim.learning.data import load as load_data
from sim.models import mlp_init, mlp_num_params, teacher_task

__all__ = [
    "Landscape",
    "GRF",
    "PSpin",
    "MLP",
    "GRFParams",
    "PSpinParams",
    "MLPParams",
    "MLP_DATA",
    "LANDSCAPES",
    "make_landscape",
    "PSPIN_MAX_COUPLINGS",
    "sphere_tangent_basis",
]

#: Largest number of stored p-spin couplings n**p (dense float64 tensor of 128 MiB): p = 2 up to
#: n = 4096, p = 3 up to n = 256, p = 4 up to n = 64.
PSPIN_MAX_COUPLINGS = 1 << 24

# GRF Hessians use a table of the upper triangles of the m outer products w_m w_m^T up to this many
# entries (128 MiB)
_GRF_OUTER_MAX = 1 << 24


@dataclasses.dataclass(frozen=True)
class Landscape:
    """Base class: a family of random losses. Subclasses fill in the methods listed in the module doc."""

    name: ClassVar[str] = ""
    #: "euclidean" or "sphere" (radius sqrt(n))
    manifold: ClassVar[str] = "euclidean"

    # -- sizes -------------------------------------------------------------------------------
    def check_size(self, n: int) -> None:
        """Raise ValueError when ``n`` is not a valid size for this family."""
        if int(n) != n or n < 1:
            raise ValueError(f"{self.name}: dimension must be an integer >= 1, got {n!r}")

    def dim(self, n: int) -> int:
        """Length of the parameter vector x for size ``n``."""
        return int(n)

    def tangent_dim(self, n: int) -> int:
        """Dimension of the space the Hessian acts on (n - 1 on the sphere)."""
        return self.dim(n) - (1 if self.manifold == "sphere" else 0)

    # -- the random instance -----------------------------------------------------------------
    def sample(self, key, n: int, *, dtype=jnp.float64):
        raise NotImplementedError

    def size(self, params) -> int:
        """The size ``n`` the instance was sampled with (static: read from array shapes)."""
        raise NotImplementedError

    # -- values ---------------------------------------------------------------------------------
    def energy(self, params, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def energy_density(self, params, x: jax.Array) -> jax.Array:
        return self.energy(params, x) / self.size(params)

    def euclidean_grad(self, params, x):
        return jax.grad(self.energy, argnums=1)(params, x)

    def euclidean_hessian(self, params, x):
        return jax.hessian(self.energy, argnums=1)(params, x)

    def grad(self, params, x):
        g = self.euclidean_grad(params, x)
        if self.manifold == "sphere":
            n = x.shape[0]
            g = g - x * (jnp.dot(x, g) / n)
        return g

    def hessian(self, params, x):
        h = self.euclidean_hessian(params, x)
        if self.manifold != "sphere":
            return h
        n = x.shape[0]
        proj = jnp.eye(n, dtype=x.dtype) - jnp.outer(x, x) / n
        radial = jnp.dot(x, self.euclidean_grad(params, x)) / n
        return proj @ h @ proj - radial * proj

    def grad_hessian(self, params, x):
        """``(grad(params, x), hessian(params, x))`` in one call; families override it to share work."""
        return self.grad(params, x), self.hessian(params, x)

    def tangent_hessian(self, params, x):
        h = self.hessian(params, x)
        if self.manifold != "sphere":
            return h
        b = sphere_tangent_basis(x)
        return b.T @ h @ b

    # -- moving around ----------------------------------------------------------------------
    def start(self, key, params) -> jax.Array:
        raise NotImplementedError

    def retract(self, x: jax.Array, v: jax.Array) -> jax.Array:
        if self.manifold != "sphere":
            return x + v
        n = x.shape[0]
        v = v - x * (jnp.dot(x, v) / n)
        y = x + v
        return y * (jnp.sqrt(jnp.asarray(n, x.dtype)) / jnp.linalg.norm(y))

    def grad_scale(self, params) -> jax.Array:
        raise NotImplementedError

    def distance_scale(self, params) -> float:
        raise NotImplementedError

    def label(self) -> str:
        fields = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)]
        return f"{self.name}({', '.join(fields)})" if fields else self.name


def sphere_tangent_basis(x: jax.Array) -> jax.Array:
    """Orthonormal basis of the tangent space of the sphere at ``x``: shape ``(n, n - 1)``.

    The first n - 1 columns of the Householder reflection that maps ``x/|x|`` to ``-+e_n``.
    """
    n = x.shape[0]
    u = x / jnp.linalg.norm(x)
    e = jnp.zeros((n,), x.dtype).at[n - 1].set(1.0)
    sign = jnp.where(u[n - 1] >= 0, 1.0, -1.0).astype(x.dtype)
    w = u + sign * e
    refl = jnp.eye(n, dtype=x.dtype) - 2.0 * jnp.outer(w, w) / jnp.dot(w, w)
    return refl[:, : n - 1]


# ----------------------------------------------------------------------------------------------
# Gaussian random field by random Fourier features


class GRFParams(NamedTuple):
    """A GRF instance: ``freq`` (features, n), amplitudes ``a``, ``b`` (features,)."""

    freq: jax.Array
    a: jax.Array
    b: jax.Array


@dataclasses.dataclass(frozen=True)
class GRF(Landscape):
    """Isotropic Gaussian random field on R^n with squared-exponential covariance.

    ``phi(x) = sqrt(n / M) sum_m (a_m cos(w_m . x) + b_m sin(w_m . x)) + (confine / 2) |x|^2`` with
    ``a_m, b_m ~ N(0, 1)`` and ``w_m ~ N(0, I / (n s^2))`` (``s = length_scale``, ``M = features``),
    so that without confinement ``E phi(x) phi(y) = n f(|x - y|^2 / (2n))`` with
    ``f(r) = exp(-r / s^2)`` exactly, for any M: the normalisation of docs/theory.md#grf-bray-dean (energy density
    ``eps = phi / n``). For this f the constant ``-f'/(f sqrt(f''))`` is 1 for every s, so the theory
    of a typical critical point is ``alpha(eps) = F_semicircle(eps)`` and ``eps_c = -2`` whatever s.

    Gaussianity and the number of features: given the frequencies the field is exactly Gaussian, but
    with the random covariance ``(n/M) sum_m cos(w_m . (x - y))`` instead of ``n f``; unconditionally it
    is a Gaussian scale mixture whose excess kurtosis is O(1/M). More important here: the Hessian
    ``-sqrt(n/M) sum_m c_m w_m w_m^T`` is a sum of M rank-one matrices, so it has rank <= M and its
    spectrum tends to the semicircle only when ``M / n`` is large (at ``M / n = c`` it is a
    Marchenko-Pastur-like deformation, kurtosis 2 + O(1/c)). Measured at n = 32 (Hessians at random
    points, mean removed): Kolmogorov distance to the semicircle 0.045 at c = 4, 0.017 at c = 16,
    0.010 at c = 64 (the last is the finite-n floor). The default ``M = 16 n`` (``features_per_dim``)
    is the compromise: the Hessian costs O(M n^2). ``features`` overrides it.

    ``confine > 0`` adds ``(confine / 2)|x|^2``: the Hessian shifts by ``confine`` and the critical
    points stay in a ball of radius ~ ``sqrt(n) / confine``; the alpha(eps) theory above is then
    not the right one (it assumes confine = 0).
    """

    name: ClassVar[str] = "grf"
    features: int | None = None
    features_per_dim: int = 16
    length_scale: float = 1.0
    confine: float = 0.0

    def __post_init__(self):
        if self.features is not None and (int(self.features) != self.features or self.features < 1):
            raise ValueError(f"grf: features must be an integer >= 1, got {self.features!r}")
        if int(self.features_per_dim) != self.features_per_dim or self.features_per_dim < 1:
            raise ValueError(f"grf: features_per_dim must be an integer >= 1, got {self.features_per_dim!r}")
        if not (math.isfinite(self.length_scale) and self.length_scale > 0):
            raise ValueError(f"grf: length_scale must be a finite number > 0, got {self.length_scale!r}")
        if not (math.isfinite(self.confine) and self.confine >= 0):
            raise ValueError(f"grf: confine must be a finite number >= 0, got {self.confine!r}")

    def num_features(self, n: int) -> int:
        return int(self.features) if self.features is not None else int(self.features_per_dim) * int(n)

    def sample(self, key, n, *, dtype=jnp.float64) -> GRFParams:
        """A field on R^n. Keys: frequencies ``fold_in(key, 0)``, a ``fold_in(key, 1)``, b ``fold_in(key, 2)``."""
        self.check_size(n)
        dtype = float_dtype(dtype, fn="grf.sample")
        key, n, m = as_key(key), int(n), self.num_features(n)
        freq = jax.random.normal(jax.random.fold_in(key, 0), (m, n), dtype) / (self.length_scale * math.sqrt(n))
        a = jax.random.normal(jax.random.fold_in(key, 1), (m,), dtype)
        b = jax.random.normal(jax.random.fold_in(key, 2), (m,), dtype)
        return GRFParams(freq, a, b)

    def size(self, params):
        return params.freq.shape[1]

    def _amp(self, params):
        m, n = params.freq.shape
        return math.sqrt(n / m)

    # sin and cos of the features' phases come from one sim._util.sincos call (8x faster than XLA's
    # float64 sin and cos, which were half the cost of a Newton iteration)

    def energy(self, params, x):
        sin, cos = sincos(params.freq @ x)
        phi = self._amp(params) * jnp.sum(params.a * cos + params.b * sin)
        return phi + 0.5 * self.confine * jnp.dot(x, x)

    def euclidean_grad(self, params, x):
        sin, cos = sincos(params.freq @ x)
        c = self._amp(params) * (params.b * cos - params.a * sin)
        return params.freq.T @ c + self.confine * x

    def euclidean_hessian(self, params, x):
        sin, cos = sincos(params.freq @ x)
        return self._hessian(params, self._amp(params) * (params.a * cos + params.b * sin))

    def grad_hessian(self, params, x):
        sin, cos = sincos(params.freq @ x)
        amp = self._amp(params)
        g = params.freq.T @ (amp * (params.b * cos - params.a * sin)) + self.confine * x
        return g, self._hessian(params, amp * (params.a * cos + params.b * sin))

    def _hessian(self, params, c):
        """``-sum_m c_m w_m w_m^T + confine I`` for feature weights ``c`` (m,)."""
        m, n = params.freq.shape
        if m * n * (n + 1) // 2 <= _GRF_OUTER_MAX:
            # sum_m c_m w_m w_m^T as one product with the (m, n(n+1)/2) table of the outer products'
            # upper triangles: under vmap over starts a single (starts, m) x (m, n(n+1)/2) matrix
            # product, half the work of the full n^2 table
            rows, cols = np.triu_indices(n)
            packed = -(c @ (params.freq[:, rows] * params.freq[:, cols]))
            where = np.zeros((n, n), dtype=np.int32)
            where[rows, cols] = where[cols, rows] = np.arange(rows.size)
            h = packed[where]
        else:
            h = -(params.freq.T * c[None, :]) @ params.freq
        return h + self.confine * jnp.eye(n, dtype=c.dtype)

    def start(self, key, params):
        """x ~ N(0, n s^2 I): a few correlation lengths (s sqrt(n)) from the origin in every direction."""
        n = self.size(params)
        dt = params.freq.dtype
        return jax.random.normal(key, (n,), dt) * jnp.asarray(self.length_scale * math.sqrt(n), dt)

    def grad_scale(self, params):
        # E |grad phi|^2 = n (-f'(0)) = n / s^2
        return jnp.asarray(math.sqrt(self.size(params)) / self.length_scale, params.freq.dtype)

    def distance_scale(self, params):
        # the correlation length of the field
        return self.length_scale * math.sqrt(self.size(params))


# ----------------------------------------------------------------------------------------------
# Spherical p-spin glass


class PSpinParams(NamedTuple):
    """A p-spin instance: the symmetrised, scaled coupling tensor ``n^-(p-1)/2 sym(J)``, shape (n,)*p."""

    coupling: jax.Array


@dataclasses.dataclass(frozen=True)
class PSpin(Landscape):
    """Spherical p-spin glass on ``|x|^2 = n`` (Auffinger, Ben Arous, Cerny 2013 normalisation).

    ``H(x) = n^-(p-1)/2 sum_{i1..ip} J_{i1..ip} x_i1 ... x_ip`` with i.i.d. N(0, 1) couplings, so that
    ``E H(x) H(y) = n (x . y / n)^p``; energies per spin ``u = H / n``. The couplings are stored as a
    dense symmetrised tensor (same H; gradient and Hessian are then single contractions), allowed up
    to ``n**p <= PSPIN_MAX_COUPLINGS`` (p = 3: n <= 256; p = 4: n <= 64); larger sizes raise.

    p = 2: ``H = x^T M x`` with ``M = (J + J^T) / (2 sqrt(n))``; ``PSpinParams.coupling`` is M.
    """

    name: ClassVar[str] = "pspin"
    manifold: ClassVar[str] = "sphere"
    p: int = 3

    def __post_init__(self):
        if not isinstance(self.p, (int, np.integer)) or isinstance(self.p, bool) or self.p < 2:
            raise ValueError(f"pspin: p must be an integer >= 2, got {self.p!r}")

    def check_size(self, n):
        if int(n) != n or n < 2:
            raise ValueError(f"pspin: dimension must be an integer >= 2 (the sphere in R^1 is 2 points), got {n!r}")
        if int(n) ** self.p > PSPIN_MAX_COUPLINGS:
            raise ValueError(
                f"pspin: n**p = {int(n)}**{self.p} couplings exceed PSPIN_MAX_COUPLINGS = {PSPIN_MAX_COUPLINGS}"
            )

    def sample(self, key, n, *, dtype=jnp.float64) -> PSpinParams:
        """Couplings J ~ N(0, 1) of shape (n,)*p from ``key``, symmetrised and scaled."""
        self.check_size(n)
        dtype = float_dtype(dtype, fn="pspin.sample")
        return _pspin_sample(as_key(key), int(n), int(self.p), dtype)

    def size(self, params):
        return params.coupling.shape[0]

    def _contract(self, params, x, k):
        """Contract the coupling tensor with x along its last k axes."""
        t = params.coupling
        for _ in range(k):
            t = t @ x
        return t

    def energy(self, params, x):
        return self._contract(params, x, self.p)

    def euclidean_grad(self, params, x):
        return self.p * self._contract(params, x, self.p - 1)

    def euclidean_hessian(self, params, x):
        return (self.p * (self.p - 1)) * self._contract(params, x, self.p - 2)

    def start(self, key, params):
        """Uniform on the sphere |x|^2 = n."""
        n = self.size(params)
        g = jax.random.normal(key, (n,), params.coupling.dtype)
        return g * (math.sqrt(n) / jnp.linalg.norm(g))

    def grad_scale(self, params):
        # E |Euclidean grad H|^2 = p n at any point of the sphere
        return jnp.asarray(math.sqrt(self.p * self.size(params)), params.coupling.dtype)

    def distance_scale(self, params):
        return math.sqrt(self.size(params))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _pspin_sample(key, n, p, dtype):
    j = jax.random.normal(key, (n,) * p, dtype)
    perms = list(itertools.permutations(range(p)))
    sym = sum(jnp.transpose(j, perm) for perm in perms) / len(perms)
    return PSpinParams(sym * (n ** (-(p - 1) / 2)))


# ----------------------------------------------------------------------------------------------
# Training loss of a small MLP (teacher-student, or real data)

#: data the MLP landscape is trained on: a synthetic teacher, or a real data set of ``sim.learning.data``
MLP_DATA = ("teacher",) + REAL_DATASETS

# keys of the start's random choices (init scale, training steps): fold_in(key, _START_STREAM + j), apart
# from the keys fold_in(key, layer) that mlp_init uses for the layers
_START_STREAM = 1 << 16


class MLPParams(NamedTuple):
    """An MLP-loss instance: the data (``inputs`` (m, d_in), ``targets`` (m, d_out)) and a flat parameter
    vector of shape (P,): the teacher that labelled the data (a global minimum when noise = 0), or, for
    real data, a LeCun initialisation (a reference point that fixes the sizes; no teacher exists)."""

    inputs: jax.Array
    targets: jax.Array
    teacher: jax.Array


def _positive_tuple(name, values, *, integer: bool):
    try:
        vals = tuple(values)
    except TypeError:
        vals = ()
    if integer:
        ok = bool(vals) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in vals)
        what = "a non-empty list of integers >= 0"
    else:
        ok = bool(vals) and all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and v > 0
            for v in vals
        )
        what = "a non-empty list of finite numbers > 0"
    if not ok:
        raise ValueError(f"mlp: {name} must be {what}, got {values!r}")
    return tuple(int(v) for v in vals) if integer else tuple(float(v) for v in vals)


@dataclasses.dataclass(frozen=True)
class MLP(Landscape):
    """Mean squared training loss of a one-hidden-layer tanh MLP ``(d_in, n, d_out)``.

    The size ``n`` is the **hidden width**; the loss is a function of the flattened parameter vector
    of length ``P = (d_in + 1) n + (n + 1) d_out`` (``ravel_pytree`` order: W1, b1, W2, b2; see
    ``sim.models``). The energy is ``(1/2m) sum_i |f_x(input_i) - target_i|^2 + (wd/2)|x|^2`` (already
    a mean over the data); the index fraction is index / P.

    Data (``data``):

    * ``"teacher"`` (default): ``num_samples`` Gaussian inputs labelled by a random teacher of the same
      widths (``sim.models.teacher_task``) plus ``noise``: the student can fit the teacher exactly, so
      the global minimum is 0 when noise = 0. ``d_in`` defaults to 2, ``d_out`` to 1.
    * a real data set of ``sim.learning.data`` (``"digits"``, ``"mnist1d"``): ``num_samples`` training
      images drawn by ``sim.learning.data.load`` (standardised inputs, one-hot targets: regression on
      one-hot labels); ``d_in`` and ``d_out`` are the data's (64 and 10 for digits; giving others
      raises) and ``noise`` must be 0.

    Starts (``start``): LeCun initialisation (``sim.models.mlp_init``) times a scale drawn uniformly
    from ``init_scales``, then a number of full-batch gradient-descent steps on this loss (learning
    rate ``train_lr``) drawn uniformly from ``train_steps``: points along training trajectories, so
    that the starts span the loss levels from the initialisation to trained networks. The defaults
    (scale 1, no steps) start at the initialisation itself.

    Permutations of hidden units and sign flips (tanh is odd) map critical points to other critical
    points with the same energy and index: they are counted as different points. Without weight decay,
    critical points of tanh networks are mostly degenerate (a unit with zero outgoing weight, or two
    merged units, leaves whole lines of critical points: zero Hessian eigenvalues), and Newton-type
    searches converge only linearly there; measured at widths 2-16 (teacher) the finder then converged
    on < 1-45% of starts. ``weight_decay`` (default 1e-3) adds ``(wd/2)|x|^2``, which makes the critical
    points isolated (no zero modes were found with it on the teacher task) at the price of moving the
    global minimum slightly off the teacher. Set it to 0 for the plain loss (``sim.critical.hessian_index``
    reports zero modes).
    """

    name: ClassVar[str] = "mlp"
    data: str = "teacher"
    d_in: int | None = None
    d_out: int | None = None
    num_samples: int = 64
    noise: float = 0.0
    weight_decay: float = 1e-3
    init_scales: tuple[float, ...] = (1.0,)
    train_steps: tuple[int, ...] = (0,)
    train_lr: float = 0.05

    def __post_init__(self):
        if self.data not in MLP_DATA:
            raise ValueError(f"mlp: unknown data {self.data!r}; valid: {', '.join(MLP_DATA)}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"mlp: weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        for field in ("d_in", "d_out", "num_samples"):
            v = getattr(self, field)
            if field != "num_samples" and v is None:
                continue
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"mlp: {field} must be an integer >= 1, got {v!r}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"mlp: noise must be a finite number >= 0, got {self.noise!r}")
        object.__setattr__(self, "init_scales", _positive_tuple("init_scales", self.init_scales, integer=False))
        object.__setattr__(self, "train_steps", _positive_tuple("train_steps", self.train_steps, integer=True))
        if not (isinstance(self.train_lr, (int, float)) and math.isfinite(self.train_lr) and self.train_lr > 0):
            raise ValueError(f"mlp: train_lr must be a finite number > 0, got {self.train_lr!r}")
        if self.data == "teacher":
            sizes = {"d_in": 2, "d_out": 1}
        else:
            if self.noise != 0:
                raise ValueError(f"mlp: noise labels the teacher's data; data {self.data!r} has its own labels")
            real = read_real(self.data)  # cached; raises for mnist1d without its package
            sizes = {"d_in": int(real.x_pool.shape[1]), "d_out": int(real.classes)}
            if self.num_samples > real.x_pool.shape[0]:
                raise ValueError(
                    f"mlp: num_samples must be at most {real.x_pool.shape[0]} (the {self.data} training pool), "
                    f"got {self.num_samples}"
                )
        for field, v in sizes.items():
            given = getattr(self, field)
            if given is None:
                object.__setattr__(self, field, v)
            elif self.data != "teacher" and given != v:
                raise ValueError(f"mlp: {field} is {v} for data {self.data!r} (fixed by the data), got {given!r}")

    def widths(self, n: int) -> tuple[int, int, int]:
        return (int(self.d_in), int(n), int(self.d_out))  # type: ignore[arg-type]  # resolved in __post_init__

    def dim(self, n):
        return mlp_num_params(self.widths(n))

    def sample(self, key, n, *, dtype=jnp.float64) -> MLPParams:
        """Teacher: data from ``sim.models.teacher_task(key, (d_in, n, d_out), num_samples, noise=noise)``;
        the teacher is ``mlp_init(fold_in(key, 1), widths)`` as teacher_task draws it. Real data:
        ``sim.learning.data.load(data, fold_in(key, 0), num_samples, 1)`` (its training part) and the
        reference point ``mlp_init(fold_in(key, 1), widths)``."""
        self.check_size(n)
        dtype = float_dtype(dtype, fn="mlp.sample")
        key, widths = as_key(key), self.widths(n)
        ref = ravel_pytree(mlp_init(jax.random.fold_in(key, 1), widths, dtype=dtype))[0]
        if self.data != "teacher":
            d = load_data(self.data, jax.random.fold_in(key, 0), int(self.num_samples), 1, dtype=dtype)
            return MLPParams(d.x_train, d.y_train, ref)
        task = teacher_task(key, widths, int(self.num_samples), noise=self.noise, dtype=dtype)
        return MLPParams(task.x, task.y, ref)

    def size(self, params):
        """The hidden width."""
        return self.hidden_width(params.teacher)

    def hidden_width(self, x) -> int:
        """Hidden width from the length P of a parameter vector."""
        return (x.shape[0] - self.d_out) // (self.d_in + 1 + self.d_out)  # type: ignore[operator]

    def unflatten(self, x):
        """Flat vector -> list of (W, b), the inverse of ``ravel_pytree`` for these widths."""
        widths = self.widths(self.hidden_width(x))
        out, i = [], 0
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            w = x[i : i + fan_in * fan_out].reshape(fan_in, fan_out)
            i += fan_in * fan_out
            out.append((w, x[i : i + fan_out]))
            i += fan_out
        return out

    def energy(self, params, x):
        r = self.output(x, params.inputs) - params.targets
        loss = 0.5 * jnp.mean(jnp.sum(r * r, axis=-1))  # sim.models.mse_loss
        return loss + 0.5 * self.weight_decay * jnp.dot(x, x)

    def energy_density(self, params, x):
        return self.energy(params, x)

    def _forward(self, params, x):
        """Closed-form pieces: augmented inputs X~ = [X, 1] (m, d+1), first layer U~ = [W1; b1] (d+1, n),
        h = tanh(X~ U~) (m, n), h~ = [h, 1], second layer V~ = [W2; b2] (n+1, d_out), residual r (m, d_out).
        The flat vector is [vec(U~), vec(V~)] row-major: exactly ravel_pytree's order W1, b1, W2, b2."""
        m, d = params.inputs.shape
        n = self.hidden_width(x)
        k = int(self.d_out)
        split = (d + 1) * n
        u, v = x[:split].reshape(d + 1, n), x[split:].reshape(n + 1, k)
        xa = jnp.concatenate([params.inputs, jnp.ones((m, 1), x.dtype)], axis=1)
        h = jnp.tanh(xa @ u)
        ha = jnp.concatenate([h, jnp.ones((m, 1), x.dtype)], axis=1)
        r = ha @ v - params.targets
        return xa, u, v, h, ha, r

    def unit_mask(self, n: int, active, dtype=jnp.float64) -> jax.Array:
        """Mask (P,) of the parameters of a width-``n`` network that belong to hidden units ``j < active``
        (their incoming weights and bias, their outgoing weights) or to the output bias: 1 there, 0 on
        the *silent* units ``j >= active``. ``active`` may be traced (0 <= active <= n).

        A point whose silent units have all their weights at 0 is critical for the width-``n`` loss iff
        it is critical for the loss restricted to the unmasked parameters: a silent unit's output
        ``tanh(0) = 0`` and its outgoing weights 0 make both its gradients vanish exactly (Fukumizu &
        Amari 2000, the embedding of a narrower network). The Hessian is block diagonal across the
        silent units; each contributes the block ``[[wd I, Q], [Q^T, wd I]]`` with ``Q = X~^T R / m``
        (inputs against residuals), eigenvalues ``wd -+ sigma_i(Q)``: one descending direction per
        singular value of ``Q`` above ``wd``."""
        d, k = int(self.d_in) + 1, int(self.d_out)  # type: ignore[arg-type]
        on = jnp.arange(n) < active
        u = jnp.broadcast_to(on[None, :], (d, n))
        v = jnp.concatenate([jnp.broadcast_to(on[:, None], (n, k)), jnp.ones((1, k), bool)], axis=0)
        return jnp.concatenate([u.reshape(-1), v.reshape(-1)]).astype(dtype)

    def euclidean_grad(self, params, x):
        xa, u, v, h, ha, r = self._forward(params, x)
        m = xa.shape[0]
        gu = xa.T @ ((r @ v[:-1].T) * (1 - h * h)) / m
        gv = ha.T @ r / m
        return jnp.concatenate([gu.reshape(-1), gv.reshape(-1)]) + self.weight_decay * x

    def euclidean_hessian(self, params, x):
        return self.grad_hessian(params, x)[1]

    def grad_hessian(self, params, x):
        """Gradient and exact Hessian in closed form (Gauss-Newton part plus the residual terms), about
        (m P^2 / n) operations instead of the m P^2 of forward-over-reverse autodiff (``jax.hessian``;
        the tests compare both). Index order [a, j] for U~ and [j, k] for V~ (see ``_forward``)."""
        xa, u, v, h, ha, r = self._forward(params, x)
        m, da = xa.shape
        n, k = h.shape[1], v.shape[1]
        w2 = v[:-1]  # (n, k)
        t1 = 1 - h * h  # tanh'
        t2 = -2 * h * t1  # tanh''
        rw = r @ w2.T  # (m, n): sum_k r_ik W2[j, k]
        phi = (xa[:, :, None] * t1[:, None, :]).reshape(m, da * n)  # d z_ij / d U~[a, j] times tanh'
        # U~U~: (1/m) sum_i [(W2 W2^T)_jj' t'_ij t'_ij' + delta_jj' rw_ij t''_ij] x~_ia x~_ib
        huu = (phi.T @ phi / m) * jnp.tile(w2 @ w2.T, (da, da))
        diag = jnp.einsum("ia,ij,ib->ajb", xa, rw * t2, xa) / m  # (da, n, da)
        huu = huu + (diag[:, :, :, None] * jnp.eye(n, dtype=x.dtype)[None, :, None, :]).reshape(da * n, da * n)
        # U~V~: (1/m) sum_i t'_ij x~_ia (W2[j, k] h~_ic + delta_jc r_ik), column index [c, k]
        p = jnp.einsum("iz,ic->zc", phi, ha).reshape(da, n, n + 1) / m  # (a, j, c)
        q = jnp.einsum("iz,ik->zk", phi, r).reshape(da, n, k) / m  # (a, j, k)
        huv = p[:, :, :, None] * w2[None, :, None, :]  # (a, j, c, k)
        eye = jnp.eye(n, n + 1, dtype=x.dtype)  # delta_jc, c < n
        huv = (huv + eye[None, :, :, None] * q[:, :, None, :]).reshape(da * n, (n + 1) * k)
        # V~V~: delta_kk' (1/m) sum_i h~_ic h~_ic'
        hvv = jnp.kron(ha.T @ ha / m, jnp.eye(k, dtype=x.dtype))
        hess = jnp.block([[huu, huv], [huv.T, hvv]]) + self.weight_decay * jnp.eye(x.shape[0], dtype=x.dtype)
        gu = xa.T @ (rw * t1) / m
        gv = ha.T @ r / m
        grad = jnp.concatenate([gu.reshape(-1), gv.reshape(-1)]) + self.weight_decay * x
        return grad, hess

    def start(self, key, params):
        """LeCun init ``mlp_init(key, widths)`` times a scale from ``init_scales``, then gradient descent for a
        number of steps from ``train_steps`` (choices drawn with ``fold_in(key, 2^16)`` and ``fold_in(key,
        2^16 + 1)``); with the defaults, the initialisation itself."""
        dt = params.inputs.dtype
        x = ravel_pytree(mlp_init(key, self.widths(self.size(params)), dtype=dt))[0]
        if self.init_scales == (1.0,) and self.train_steps == (0,):
            return x
        pick = [jax.random.fold_in(key, _START_STREAM + j) for j in range(2)]
        scale = jnp.asarray(self.init_scales, dt)[jax.random.randint(pick[0], (), 0, len(self.init_scales))]
        steps = jnp.asarray(self.train_steps, jnp.int32)[jax.random.randint(pick[1], (), 0, len(self.train_steps))]
        lr = jnp.asarray(self.train_lr, dt)
        return jax.lax.fori_loop(0, steps, lambda _, y: y - lr * self.euclidean_grad(params, y), x * scale)

    def grad_scale(self, params):
        # the gradient of the loss at a random start is of the order of the RMS target
        return jnp.sqrt(jnp.mean(params.targets * params.targets))

    def distance_scale(self, params):
        # parameters at initialisation: |x|^2 ~ sum of fan_in * fan_out / fan_in = n (d_out + 1)
        return math.sqrt(self.size(params) * (1 + self.d_out))

    def output(self, x, inputs):
        """Network output at parameters ``x`` (flat) for ``inputs`` of shape (batch, d_in).

        Same as ``sim.models.mlp_apply(self.unflatten(x), inputs)``, with the bias broadcast written
        out (hdsim's tests run with ``jax_numpy_rank_promotion = "raise"``).
        """
        layers = self.unflatten(x)
        h = inputs
        for w, b in layers[:-1]:
            h = jnp.tanh(h @ w + b[None, :])
        w, b = layers[-1]
        return h @ w + b[None, :]


LANDSCAPES: dict[str, type[Landscape]] = {c.name: c for c in (GRF, PSpin, MLP)}


def make_landscape(name: str, **options) -> Landscape:
    """Build a landscape by name, passing only the options it takes (``None`` values are ignored).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or a bad option.
    """
    return make_named(LANDSCAPES, "landscape", name, options)
