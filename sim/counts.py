"""Eigenvalue counts of a symmetric operator from matvecs: deflation plus the kernel polynomial method.

For a symmetric ``H`` (n x n) given only as a matvec (e.g. ``sim.hvp.hessian_matvec``) this estimates the
fractions ``F(t) = #{lambda < t} / n`` at any list of thresholds, with a *bracket* that covers both
the probe noise and the polynomial (quadrature) error, so that ``N-(eps) = F(-eps)``,
``N+(eps) = 1 - F(eps)`` and ``N0(eps) = F(eps) - F(-eps)`` come with honest error bars at every eps.
Memory O(n k) (k = Lanczos steps of the deflation), time: ``lanczos_steps + bounds_steps`` matvecs
once, plus ``degree / 2`` matvecs per probe.

**1. Deflation** (``moments``). Lanczos with full reorthogonalisation from one random probe
(``lanczos_steps``) gives Ritz pairs; the converged ones at both ends of the spectrum (residual
``<= rtol * max|theta|``, at most ``max_deflate`` per end) are the outliers: for network Hessians a
handful of them dominate ``||H||`` (Papyan 2019; Ghorbani, Krishnan & Xiao 2019). With ``V`` (k x n)
their orthonormal Ritz vectors, ``H`` is, in the basis ``[V, V_perp]``, ``[[V^T H V, E^T], [E, B]]``
with ``E = (I - V V^T) H V`` computed explicitly (k matvecs). By Weyl's inequality the eigenvalues of
``H`` and of ``blockdiag(V^T H V, B)`` differ by at most ``rho = ||E||_2``, so

    C_D(t - rho) <= #{lambda(H) < t} <= C_D(t + rho),   C_D(t) = #{eig(V^T H V) < t} + #{eig(B) < t},

and the k deflated eigenvalues are counted exactly (``eigvalsh`` of the k x k ``V^T H V``). When the
deflated values lie a distance ``eta`` outside the bulk interval, the shift is the quadratic
``2 rho^2 / (eta + sqrt(eta^2 + 4 rho^2))`` instead (Li & Li 2005; ``weyl_shift``).

**2. The bulk ``B`` rescaled to its own width.** A second Lanczos run (``bounds_steps``) on
``P H P`` (``P = I - V V^T``) from a projected probe bounds the spectrum of ``B``: ``[theta_min - beta_m,
theta_max + beta_m]`` (``beta_m`` the final residual norm), widened by ``margin`` of its width. ``B``
is mapped to ``[-1, 1]`` by ``x = (lambda - c) / h``; the directions in ``V`` are sent to ``c`` (the
operator is ``(P H P + c V^T V - c) / h``) so that rounding never excites anything outside [-1, 1]:
each new Chebyshev vector is projected as a whole, once per step, with ``V`` rounded to the product
dtype (the products are no more accurate than that; in float32 this halves the bytes of ``V`` read per
step, at n = 10^6 the largest cost after the products), so rounding leaves only a V-component of that
size, which the next projection removes and never lets accumulate.
If an eigenvalue of ``B`` still fell outside, Chebyshev moments would grow past ``mu_0``:
``Moments.interval_ok`` checks ``|mu_j| <= mu_0 (1 + 1e-6)`` for every probe and ``counts`` refuses
to report a count when it fails.

**3. Kernel polynomial method.** For Gaussian probes ``z`` projected to ``u = P z`` (Gaussian in the
complement of ``V``), the Chebyshev moments ``mu_j = u^T T_j(x(H)) u`` for ``j = 0..degree`` come from
``degree / 2`` matvecs with the doubling identities ``mu_2j = 2 v_j.v_j - mu_0``,
``mu_2j+1 = 2 v_j+1.v_j - mu_1`` (``v_j = T_j u``); the recurrence runs in ``recurrence_dtype`` (default
float64 when JAX has x64) and only the products use ``dtype`` (float32 is fine: the three-term
recurrence is stable, its rounding error grows about linearly in the degree). The step
function ``1[x < tau]`` has Chebyshev coefficients ``c_0 = (pi - phi) / pi``, ``c_j = -2 sin(j phi) /
(j pi)`` (``tau = cos phi``); with Jackson damping ``g_j`` the polynomial
``p_phi(cos psi) = sum_j g_j c_j cos(j psi)`` is the periodic convolution of the step (in the angle
``psi``) with the Jackson kernel ``K_D``, a *positive* kernel of unit mass and angular resolution
``~ pi / (D + 2)`` (Weisse, Wellein, Alvermann & Fehske 2006). Hence ``0 <= p <= 1`` on [-1, 1], and
with ``tail(s) = 1 - int_{-s}^{s} K_D`` (closed form, computed exactly):

    p_{phi + s}(x) - tail(s) <= 1[x < tau] <= p_{phi - s}(x) + tail(s)       for all x in [-1, 1],

(the step shifted by ``s`` in angle towards smaller resp. larger x), so that for the bulk

    tr p_{phi+s}(B) - tail(s) n_B <= #{eig(B) < tau} <= tr p_{phi-s}(B) + tail(s) n_B.

The bracket's only non-rigorous part is the stochastic trace: each trace is estimated as
``n_B`` times the mean over probes of ``u^T p(x(H)) u / u^T u`` (``u / |u|`` is uniform on the sphere of
the complement, so this is unbiased, and exact for ``p = 1``),
with its standard error across probes (Hutchinson 1989; for a spectral projector of rank ``r`` the
per-probe standard deviation is about ``sqrt(2 f (1 - f) / n)``, ``f = r / n``: 0.7e-3 at n = 10^6).
``counts`` takes, over a fixed list of shifts ``s = kappa pi / (D + 2)``, the largest lower and the
smallest upper bound, and widens them by ``z`` standard errors. As ``eps`` shrinks below the kernel's resolution the bracket widens to the mass of
the spectrum within a few resolutions of the threshold: it is never clipped. The point estimate is
the unshifted Jackson trace (plus the deflated count), also never clipped, with the probe standard
error. This is the error model of Lin, Saad & Yang 2016 (KPM with Jackson damping, stochastic trace)
and Di Napoli, Polizzi & Saad 2016 (eigenvalue counts in an interval from a filtered stochastic
trace, with the transition width of the damped step as the attribution error), made two-sided.

Threshold units are those of ``H``. Everything is traceable except ``counts`` (host numpy, float64).

References:
    Lin, Saad & Yang, "Approximating spectral densities of large matrices", SIAM Review 58 (2016).
    Di Napoli, Polizzi & Saad, "Efficient estimation of eigenvalue counts in an interval", Numer.
    Linear Algebra Appl. 23 (2016). Weisse, Wellein, Alvermann & Fehske, "The kernel polynomial
    method", Rev. Mod. Phys. 78 (2006). Hutchinson, Commun. Stat. Simul. Comput. 18 (1989).
    Papyan, "Measurements of three-level hierarchical structure in the outliers in the spectrum of
    deepnet Hessians", ICML 2019. Ghorbani, Krishnan & Xiao, ICML 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import acc_dtype, as_key, float_dtype
from sim.devices import make_mesh
from sim.lanczos import _basis_rows, _dense_tridiagonal, _lanczos, _lanczos_blocks, _sharded_map

__all__ = ["Moments", "Counts", "moments", "counts", "jackson", "jackson_tail", "step_coefficients", "weyl_shift"]

Matvec = Callable[[jax.Array], jax.Array]

#: angular shifts (in units of pi / (degree + 2)) tried for the bracket
SHIFTS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)


class Moments(NamedTuple):
    """What ``moments`` returns (k = 2 * max_deflate deflation slots, p probes, D = degree).

    Attributes:
        mu: (p, D + 1) Chebyshev moments ``u^T T_j(x(H)) u`` of the projected probes (recurrence dtype).
        centre, halfwidth: () the map ``x = (lambda - centre) / halfwidth`` of the bulk onto [-1, 1].
        deflated: (k,) eigenvalues of ``V^T H V`` of the deflated outliers (nan in unused slots).
        num_deflated: () int32, k used.
        rho: () ``||(I - V V^T) H V||_2``, the Weyl shift that deflation may cause.
        spectrum_lower, spectrum_upper: () bounds of the spectrum of H from the first Lanczos run.
        interval_ok: () bool, every probe's moments satisfy ``|mu_j| <= mu_0 (1 + 1e-6)``.
        dim: () int32, n.
        norm: () largest |Ritz value| of the deflation run, an estimate (and lower bound) of ||H||.
    """

    mu: jax.Array
    centre: jax.Array
    halfwidth: jax.Array
    deflated: jax.Array
    num_deflated: jax.Array
    rho: jax.Array
    spectrum_lower: jax.Array
    spectrum_upper: jax.Array
    interval_ok: jax.Array
    dim: jax.Array
    norm: jax.Array


class Counts(NamedTuple):
    """Fractions of eigenvalues below each threshold (numpy float64 arrays of the thresholds' shape).

    Attributes:
        fraction: point estimate (Jackson-damped step, unshifted; never clipped).
        stderr: its standard error across probes.
        lower, upper: the bracket: polynomial error (shifted steps with the kernel's tail mass) and the
            Weyl shift of deflation, widened by ``z`` standard errors across probes.
        resolution: () the kernel's angular resolution ``pi / (D + 2)`` mapped to eigenvalue units at the
            bulk's centre, ``halfwidth * pi / (D + 2)`` (the width below which counts are not resolved).
    """

    fraction: np.ndarray
    stderr: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    resolution: float


def jackson(degree: int) -> np.ndarray:
    """Jackson damping factors ``g_0..g_D`` (float64; Weisse et al. 2006, eq. 71)."""
    m = int(degree) + 1  # moments 0..D
    j = np.arange(m)
    a = math.pi / (m + 1)
    return ((m - j + 1) * np.cos(a * j) + np.sin(a * j) / math.tan(a)) / (m + 1)


def step_coefficients(phi, degree: int) -> np.ndarray:
    """Chebyshev coefficients of ``1[x < cos(phi)]`` on [-1, 1], for angles ``phi`` (...,) in [0, pi].

    Returns (..., D + 1): ``c_0 = (pi - phi) / pi``, ``c_j = -2 sin(j phi) / (j pi)``.
    """
    phi = np.asarray(phi, np.float64)[..., None]
    j = np.arange(1, int(degree) + 1)
    c0 = (math.pi - phi) / math.pi
    return np.concatenate([c0, -2.0 * np.sin(j * phi) / (j * math.pi)], axis=-1)


def jackson_tail(s, degree: int) -> np.ndarray:
    """Mass of the Jackson kernel ``K_D`` (unit mass on the circle) at angular distance > s >= 0.

    ``K_D(u) = (g_0 + 2 sum_j g_j cos(j u)) / (2 pi)``, so ``int_{-s}^{s} K_D = (g_0 s + 2 sum_j g_j
    sin(j s) / j) / pi``.
    """
    s = np.asarray(s, np.float64)[..., None]
    g = jackson(degree)
    j = np.arange(1, int(degree) + 1)
    inside = (g[0] * s[..., 0] + 2.0 * np.sum(g[1:] * np.sin(j * s) / j, axis=-1)) / math.pi
    return np.clip(1.0 - inside, 0.0, 1.0)  # a mass: rounding only


def _ritz(res, steps):
    t = _dense_tridiagonal(res.alpha, res.beta)
    theta, y = jnp.linalg.eigh(t)
    resid = jnp.abs(res.residual * y[steps - 1, :])
    return theta, y, resid


def moments(
    key,
    matvec: Matvec,
    dim: int,
    *,
    degree: int,
    num_probes: int,
    lanczos_steps: int = 80,
    bounds_steps: int = 40,
    max_deflate: int = 16,
    rtol: float = 1e-5,
    margin: float = 0.01,
    batch_size: int | None = None,
    dtype=jnp.float32,
    recurrence_dtype=None,
    devices=None,
) -> Moments:
    """Deflate the converged extreme Ritz pairs, bound the rest, and take Chebyshev moments of the bulk.

    Traceable (the caller jits; build ``matvec`` inside). Keys: deflation start ``fold_in(key, 0)``,
    bounds start ``fold_in(key, 1)``, restart vectors ``fold_in(key, 2)``, probe ``i``:
    ``fold_in(fold_in(key, 3), i)`` (independent of ``num_probes``, ``batch_size`` and the devices).

    Args:
        key: PRNG key.
        matvec: ``(dim,) -> (dim,)`` product with a symmetric H, accepting ``dtype`` vectors.
        dim: n.
        degree: D >= 2, even: Chebyshev degree (D / 2 matvecs per probe).
        num_probes: p >= 2 Gaussian probes for the stochastic trace.
        lanczos_steps: Krylov depth of the deflation run (full reorthogonalisation: O(steps n) memory).
        bounds_steps: Krylov depth of the run bounding the deflated bulk.
        max_deflate: at most this many Ritz pairs deflated at each end.
        rtol: a Ritz pair is deflated when its residual is <= rtol * max|theta|.
        margin: the bulk interval is widened by this fraction of its width at each end.
        batch_size: probes run together under vmap (default all); whole batches split over devices.
        dtype: dtype of the matvec's vectors (float32 or float64).
        recurrence_dtype: dtype of the Lanczos and Chebyshev vectors and of the moments (default: float64
            when x64 is on, else float32).
        devices: see ``sim.lanczos.slq``.

    Returns:
        ``Moments``; pass it to ``counts``.
    """
    for name, v, lo in (
        ("degree", degree, 2),
        ("num_probes", num_probes, 2),
        ("lanczos_steps", lanczos_steps, 1),
        ("bounds_steps", bounds_steps, 1),
        ("max_deflate", max_deflate, 0),
        ("dim", dim, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"moments: {name} must be an integer >= {lo}, got {v!r}")
    if degree % 2:
        raise ValueError(f"moments: degree must be even (D / 2 matvecs give D + 1 moments), got {degree}")
    if lanczos_steps > dim or bounds_steps > dim:
        raise ValueError(f"moments: lanczos_steps and bounds_steps must be <= dim ({dim})")
    if 2 * max_deflate > lanczos_steps:
        raise ValueError(f"moments: 2 * max_deflate must be <= lanczos_steps, got {max_deflate}")
    if not (rtol > 0 and 0 <= margin < 1):
        raise ValueError(f"moments: need rtol > 0 and 0 <= margin < 1, got {rtol!r}, {margin!r}")
    if batch_size is None:
        batch_size = int(num_probes)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"moments: batch_size must be an integer >= 1, got {batch_size!r}")
    dt = float_dtype(dtype, fn="moments")
    rdt = acc_dtype() if recurrence_dtype is None else float_dtype(recurrence_dtype, fn="moments")
    key = as_key(key)
    n, m1, m2, kd = int(dim), int(lanczos_steps), int(bounds_steps), int(max_deflate)
    half = int(degree) // 2

    def hv(x):  # products in dt, vectors in rdt
        return matvec(x.astype(dt)).astype(rdt)

    def gaussian(k):
        return jax.random.normal(k, (n,), rdt)

    restart = jax.random.normal(jax.random.fold_in(key, 2), (n,), rdt)

    # 1. deflation: converged Ritz pairs at both ends of a full-reorthogonalisation Lanczos run
    v0 = gaussian(jax.random.fold_in(key, 0))
    res, blocks = _lanczos_blocks(hv, v0, restart, m1, "full")
    theta, y, resid = _ritz(res, m1)
    scale = jnp.max(jnp.abs(theta))
    conv = resid <= rtol * scale
    if kd:
        idx = jnp.concatenate([jnp.arange(kd), m1 - 1 - jnp.arange(kd)])  # bottom run, top run
        ok = jnp.concatenate([jnp.cumprod(conv[:kd]), jnp.cumprod(conv[::-1][:kd])]).astype(bool)
        vecs = _basis_rows(y[:, idx].T, blocks, m1) * ok[:, None]  # (2 kd, n), unused rows zero
        hvecs = jax.vmap(hv)(vecs)
        rq = vecs @ hvecs.T
        rq = 0.5 * (rq + rq.T)
        # eigenvalues of V^T H V on the used slots (unused rows/cols are zero: push them out of the way)
        big = 4.0 * (scale + 1.0)
        dvals = jnp.linalg.eigvalsh(jnp.where(ok[:, None] & ok[None, :], rq, jnp.diag(jnp.where(ok, 0.0, big))))
        dvals = jnp.sort(jnp.where(dvals >= big * 0.5, jnp.nan, dvals))
        e = hvecs - (hvecs @ vecs.T) @ vecs  # (I - V V^T) H V, rows
        rho = jnp.sqrt(jnp.maximum(jnp.max(jnp.linalg.eigvalsh(e @ e.T)), 0.0))
        num_def = jnp.sum(ok).astype(jnp.int32)
    else:
        vecs = jnp.zeros((0, n), rdt)
        dvals = jnp.zeros((0,), rdt)
        rho = jnp.zeros((), rdt)
        num_def = jnp.zeros((), jnp.int32)

    def project(x):
        return x - (vecs @ x) @ vecs if kd else x

    # 2. bounds of the deflated bulk B
    u0 = project(gaussian(jax.random.fold_in(key, 1)))
    # the Lanczos vectors of P H P lie in the complement already (u0, the restart and the basis are
    # projected), so one projection of the product suffices
    res_b = _lanczos(lambda x: project(hv(x)), u0, project(restart), m2, "full")
    tb, _, _ = _ritz(res_b, m2)
    lo_b, hi_b = tb[0] - res_b.residual, tb[-1] + res_b.residual
    pad = margin * (hi_b - lo_b) + 1e-12 * scale
    lo_b, hi_b = lo_b - pad, hi_b + pad
    centre = 0.5 * (lo_b + hi_b)
    hw = 0.5 * (hi_b - lo_b)

    # The Chebyshev steps project with V rounded to the product dtype: the products are only that
    # accurate anyway, so this changes nothing but halves (float32) the bytes of V read per step, the
    # largest cost after the products at large n. Each new vector is projected as a whole, once: the
    # V-components left by rounding never accumulate along the recurrence.
    vecs_dt = vecs.astype(dt)

    def project_dt(x):
        if not kd:
            return x
        c = vecs_dt @ x.astype(dt)
        return x - (c @ vecs_dt).astype(rdt)

    def first(u):  # v_1 = x(B) u for u in the complement
        return project_dt((hv(u) - centre * u) / hw)

    def next_vector(vc, vp):  # v_{j+1} = 2 x(B) v_j - v_{j-1}
        return project_dt(2.0 * (hv(vc) - centre * vc) / hw - vp)

    # 3. KPM moments per probe
    pkey = jax.random.fold_in(key, 3)

    def one(i):
        u = project(gaussian(jax.random.fold_in(pkey, i)))
        v1 = first(u)
        mu0, mu1 = jnp.vdot(u, u), jnp.vdot(u, v1)

        def body(j, c):
            vp, vc, even, odd = c  # v_{j-1}, v_j
            vn = next_vector(vc, vp)
            even = even.at[j].set(2.0 * jnp.vdot(vc, vc) - mu0)
            odd = odd.at[j].set(2.0 * jnp.vdot(vn, vc) - mu1)
            return vc, vn, even, odd

        even = jnp.zeros((half + 1,), rdt).at[0].set(mu0)
        odd = jnp.zeros((half + 1,), rdt).at[0].set(mu1)
        # j = 1..half-1 in the loop: even_j = mu_2j, odd_j = mu_2j+1 (from v_{j+1}); then mu_2half from v_half
        vp, vc, even, odd = jax.lax.fori_loop(1, half, body, (u, v1, even, odd))
        even = even.at[half].set(2.0 * jnp.vdot(vc, vc) - mu0)
        mu = jnp.stack([even, odd], axis=-1).reshape(-1)[: 2 * half + 1]
        return mu

    bs = min(int(batch_size), int(num_probes))
    mu = _sharded_map(one, make_mesh(devices), int(num_probes), bs)
    ok_int = jnp.all(jnp.abs(mu) <= mu[:, :1] * (1.0 + 1e-6))
    lo_h = jnp.minimum(theta[0] - res.residual, lo_b)
    hi_h = jnp.maximum(theta[-1] + res.residual, hi_b)
    return Moments(mu, centre, hw, dvals, num_def, rho, lo_h, hi_h, ok_int, jnp.asarray(n, jnp.int32), scale)


def _mean_se(x: np.ndarray):
    p = x.shape[0]
    return x.mean(0), (x.std(0, ddof=1) / math.sqrt(p) if p > 1 else np.full(x.shape[1:], np.nan))


def counts(mom: Moments, thresholds, *, z: float = 2.0, shifts=SHIFTS) -> Counts:
    """Fractions of eigenvalues strictly below each threshold, with the bracket of the module docstring.

    Host-side (numpy float64). ``#{lambda <= t}`` obeys the same bracket.

    Args:
        mom: ``Moments`` from ``moments``.
        thresholds: (T,) thresholds in the eigenvalue units of H.
        z: standard errors (across probes) added outside the polynomial bracket.
        shifts: angular shifts, in units of ``pi / (D + 2)``, among which the tightest bracket is taken.

    Returns:
        ``Counts`` with (T,) arrays.

    Raises:
        ValueError: the moments show an eigenvalue outside the bulk interval (``interval_ok`` false).
    """
    if not bool(mom.interval_ok):
        raise ValueError(
            "counts: a Chebyshev moment exceeds mu_0: an eigenvalue of the deflated operator lies outside its "
            "estimated interval; use more bounds_steps or a larger margin"
        )
    t = np.atleast_1d(np.asarray(thresholds, np.float64))
    mu = np.asarray(mom.mu, np.float64)  # (p, D + 1)
    deg = mu.shape[1] - 1
    n = int(mom.dim)
    c, h = float(mom.centre), float(mom.halfwidth)
    dvals = np.asarray(mom.deflated, np.float64)
    dvals = dvals[np.isfinite(dvals)]
    shift = weyl_shift(float(mom.rho), dvals, c - h, c + h)
    n_bulk = n - dvals.size
    mu = mu / mu[:, :1] * n_bulk  # normalised probes: Gaussian in the complement, so exactly unbiased
    g = jackson(deg)
    a = math.pi / (deg + 2)
    ss = np.asarray(shifts, np.float64) * a
    tails = jackson_tail(ss, deg)

    def phi(tt):
        return np.arccos(np.clip((tt - c) / h, -1.0, 1.0))

    def traces(ph):  # per-probe bulk traces of p_phi: (p, ...) for angles (...)
        w = g * step_coefficients(np.clip(ph, 0.0, math.pi), deg)
        return np.einsum("pj,...j->p...", mu, w)

    est = (traces(phi(t)) + np.sum(dvals[None, :] < t[:, None], 1)[None, :]) / n  # (p, T)
    f, se = _mean_se(est)
    # lower: the step at t - shift moved by s towards smaller x (larger angle), minus the kernel's tail;
    # upper: at t + shift moved by s towards larger x, plus the tail. Beyond the interval: exact.
    ph_lo = phi(t - shift)[:, None] + ss[None, :]  # (T, S)
    ph_hi = phi(t + shift)[:, None] - ss[None, :]
    lo_m, lo_se = _mean_se(traces(ph_lo))
    hi_m, hi_se = _mean_se(traces(ph_hi))
    lo_all = np.where(ph_lo >= math.pi, 0.0, lo_m - tails[None, :] * n_bulk - z * lo_se)
    hi_all = np.where(ph_hi <= 0.0, float(n_bulk), hi_m + tails[None, :] * n_bulk + z * hi_se)
    # every bulk eigenvalue lies in [c - h, c + h] (interval_ok): beyond it the bulk count is exact
    lo_all = np.where((t - shift >= c + h)[:, None], float(n_bulk), lo_all)
    hi_all = np.where((t + shift <= c - h)[:, None], 0.0, hi_all)
    d_lo = np.sum(dvals[None, :] < (t - shift)[:, None], 1)
    d_hi = np.sum(dvals[None, :] <= (t + shift)[:, None], 1)
    lower = (lo_all.max(1) + d_lo) / n
    upper = (hi_all.min(1) + d_hi) / n
    return Counts(f, se, lower, upper, h * a)


def weyl_shift(rho: float, deflated, lo: float, hi: float) -> float:
    """How far deflation can move an eigenvalue: ``rho = ||E||_2`` of the off-diagonal block, or, when the
    deflated values lie a distance ``eta > 0`` outside the bulk interval ``[lo, hi]``, the quadratic
    bound ``2 rho^2 / (eta + sqrt(eta^2 + 4 rho^2))`` (Li & Li, "A note on eigenvalues of perturbed
    Hermitian matrices", Linear Algebra Appl. 395, 2005)."""
    d = np.asarray(deflated, np.float64)
    if d.size == 0 or rho == 0:
        return float(rho)
    eta = float(np.min(np.where(d < lo, lo - d, np.where(d > hi, d - hi, 0.0))))
    if eta <= 0:
        return float(rho)
    return float(2 * rho * rho / (eta + math.sqrt(eta * eta + 4 * rho * rho)))
