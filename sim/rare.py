"""log P(a GOE matrix is positive definite) far into the large-deviation regime.

P(GOE_N positive definite) falls like exp(-theta N^2), theta = ln(3)/4 (Dean & Majumdar 2006): plain
Monte Carlo sees no minimum beyond N ~ 6. Two methods reach N = 50 and beyond:

``log_p_positive_definite_exact(n)`` — de Bruijn's Pfaffian formula (exact, mpmath arithmetic).
    For the GOE weight w(x) = exp(-x^2/4) and phi_i(x) = x^i w(x), the integral of
    prod_{i<j} |x_i - x_j| prod w(x_i) over ordered points in an interval I is the Pfaffian of
    A_ij = int int_{I^2} sign(y - x) phi_i(x) phi_j(y) dx dy (bordered by int_I phi_i when N is
    odd). P = Pf(A over (0, inf)) / Pf(A over R). On (0, inf) the double integrals are closed forms:
    int_0^inf y^j w(y) int_0^y x^i w(x) dx dy = Gamma(m) 4^m / 2 * 2F1(m, (i+1)/2; (i+3)/2; -1) / (i+1)
    with m = (i + j + 2)/2; the whole-line matrix follows from the half-line one by parity. The
    monomial basis is ill-conditioned, so the arithmetic runs at ~3N + 30 digits (checked against
    doubled precision in the tests). N = 50 takes a few seconds.

``log_p_positive_definite_ti(key, n, ...)`` — a Monte Carlo estimate with an error bar, independent of
    the formula above (thermodynamic integration over a shift of the spectrum, Gibbs sampling of the
    tridiagonal model). Cost O(N) per sweep per chain.

    *Tridiagonal model* (Dumitriu & Edelman 2002): the symmetric tridiagonal T with diagonal
    a_k ~ N(0, 2) (k = 0..N-1) and off-diagonal b_k with b_k^2 ~ chi^2_{N-1-k} (k = 0..N-2), all
    independent, has exactly the eigenvalue law of the GOE of ``sim.rmt.goe(normalized=False)`` (it is
    what Householder tridiagonalisation of that matrix produces). T is positive definite iff all the
    pivots d_0 = a_0, d_k = a_k - b_{k-1}^2 / d_{k-1} are > 0 (Sylvester), a check in O(N).

    *Thermodynamic integration*: Z(s) = P(T + sI positive definite). Writing x = a + s, the law of x
    is N(s, 2) and d/ds ln Z(s) = E_s[sum_k (x_k - s)] / 2 = E_s[tr T] / 2, the expectation taken under
    the law conditioned on T + sI > 0. Hence

        ln P(T > 0) = ln Z(s_max) - int_0^{s_max} E_s[tr T] / 2 ds,

    with s_max = 2 sqrt(N) + 10 N^(-1/6) (the soft edge plus ten Tracy–Widom widths, so
    ln Z(s_max) > -1e-9 is neglected). The integral is done by Gauss–Legendre quadrature on [0, 2 sqrt(N)]
    and [2 sqrt(N), s_max] (the finite-N trace of the third-order transition of Majumdar & Schehr sits at
    s = 2 sqrt(N)). At each node, independent Markov chains sample the conditioned law by a
    systematic-scan Gibbs sampler: given the rest, x_k must exceed b_{k-1}^2/d_{k-1} + b_k^2/e_{k+1}
    (top pivot of the block above, bottom pivot of the block below), an exactly sampled truncated
    normal; b_k^2 must stay below d_k e_{k+1}, updated by two Metropolis–Hastings random-walk moves on
    log b_k^2 (a small and a large step). Each sweep ends with two collective moves (a common scaling
    of the whole matrix, a common shift of the diagonal) that the one-coordinate scan is slow at.
    Chains start from a diagonally dominant matrix; the default burn-in equals the measured sweeps
    (at n = 50 the trace relaxes in ~100 sweeps, integrated autocorrelation ~10 sweeps; a burn-in of
    100 left a bias of ~0.4 in ln P, 1.5 standard errors). The standard error of each node is the
    spread across its independent chains; the node errors combine with the squared quadrature weights.
    Validation (tests/test_rare.py, slow): n = 2..50 against the exact formula, z-scores with mean
    -0.15 and spread 1.04, max |z| 2.3 (one seed per n; the previous version of the sampler measured
    spread 1.22 and max |z| 3.5 there, so the error bars can be ~20% optimistic).

Precision: the exact formula runs in mpmath. The thermodynamic integration keeps the chains' state
and pivot recurrences in float64 (it needs ``jax.config.update("jax_enable_x64", True)`` and is refused
with a ValueError without it: no function here changes the global setting); the Metropolis–Hastings
proposals and acceptance draws are float32 (their rounding changes the proposal law by ~6e-8 relative,
far below the statistical error), the exactly sampled truncated normal uses erfc-based tail
probabilities, and the collective moves compute their log acceptance ratios as differences (no
logarithms of the state). float32 chains are refused: in float32 the forward and backward pivot
recurrences round a pivot of a nearly singular T to zero or below, and whole quadrature nodes turn
nan or -inf (3 of 6 seeds at n = 6 with the default effort, and at n = 12, 14, 50). Both functions
return Python floats (host-level estimators, not traceable kernels); ``tridiagonal_goe`` and
``tridiagonal_pivots`` are kernels (dtype argument, work under a caller's ``jit``).

References:
    Dean & Majumdar, PRL 97, 160201 (2006) and PRE 77, 041108 (2008); de Bruijn, J. Indian Math. Soc.
    19, 133 (1955); Dumitriu & Edelman, J. Math. Phys. 43, 5830 (2002); Majumdar & Schehr, J. Stat.
    Mech. P01012 (2014).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from sim._util import as_key, float_dtype
from sim.vectors import fold_in, split

__all__ = [
    "TIResult",
    "log_p_positive_definite_exact",
    "log_p_positive_definite_exact_many",
    "log_p_positive_definite_ti",
    "ti_shift_max",
    "tridiagonal_goe",
    "tridiagonal_pivots",
]


# ----------------------------------------------------------------------------------------------
# exact: de Bruijn's Pfaffian


@functools.cache
def _exact_table(size: int, dps: int):
    """The n-independent ingredients of de Bruijn's matrices for every n <= size, at ``dps`` digits:
    ``moments[i]`` = int_0^inf x^i w and ``inner[i][j]`` = int_0^inf y^j w(y) int_0^y x^i w(x) dx dy
    (i, j < size). The matrices of size n are their leading blocks, so one table serves every n <= size:
    this is where the time goes (size^2 hypergeometric functions), the determinants are cheap."""
    import mpmath as mp

    with mp.workdps(dps):
        half = mp.mpf(1) / 2
        moments = [mp.mpf(2) ** i * mp.gamma((i + 1) * half) for i in range(size)]  # int_0^inf x^i w
        inner = [[mp.mpf(0)] * size for _ in range(size)]
        for i in range(size):
            for j in range(size):
                m = (i + j + 2) * half
                f = mp.hyp2f1(m, (i + 1) * half, (i + 3) * half, -1) / (i + 1)
                inner[i][j] = mp.gamma(m) * mp.mpf(4) ** m * half * f
    return moments, inner


@functools.cache
def _log_p_exact(n: int, dps: int, table_size: int) -> float:
    import mpmath as mp

    moments, inner = _exact_table(table_size, dps)
    with mp.workdps(dps):
        size = n + n % 2
        a_half, a_full = mp.zeros(size), mp.zeros(size)
        for i in range(n):
            for j in range(n):
                d = inner[i][j] - inner[j][i]  # both points in (0, inf)
                a_half[i, j] = d
                # R^2 = four quadrants: (+,+) d; (-,-) -(-1)^(i+j) d; (-,+) (-1)^i M_i M_j; (+,-) -(-1)^j M_i M_j
                a_full[i, j] = (1 - (-1) ** (i + j)) * d + ((-1) ** i - (-1) ** j) * moments[i] * moments[j]
        if n % 2:
            for i in range(n):
                a_half[i, n], a_half[n, i] = moments[i], -moments[i]
                a_full[i, n] = (1 + (-1) ** i) * moments[i]
                a_full[n, i] = -a_full[i, n]
        # Pf^2 = det; both Pfaffians are positive (integrals of positive functions)
        return float((mp.log(mp.det(a_half)) - mp.log(mp.det(a_full))) / 2)


def _check_exact_n(n, fn):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= 200:
        raise ValueError(f"{fn}: n must be an integer in [1, 200], got {n!r}")
    return int(n)


def log_p_positive_definite_exact_many(ns) -> dict[int, float]:
    """``log_p_positive_definite_exact`` for every n of ``ns`` from one shared table: all at the digits
    of the largest (3 max(ns) + 30), so the size^2 hypergeometric functions are evaluated once instead
    of once per n (``hdsim rmt --dims 2:50``: about 20x less work). Each value agrees with the
    single-n call to its relative accuracy (~1e-15; more digits can only change the last bit).

    Args:
        ns: matrix sizes, each 1 <= n <= 200.

    Returns:
        dict n -> ln P(GOE_n positive definite).
    """
    ns = sorted({_check_exact_n(n, "log_p_positive_definite_exact_many") for n in ns})
    if not ns:
        return {}
    big = ns[-1]
    return {n: _log_p_exact(n, 3 * big + 30, big) for n in ns}


def log_p_positive_definite_exact(n: int, *, dps: int | None = None) -> float:
    """ln P(GOE_n is positive definite), exact (de Bruijn's Pfaffian formula in mpmath arithmetic).

    The GOE normalisation does not matter (positive definiteness is scale-free).

    Args:
        n: matrix size, 1 <= n <= 200 (n = 50 takes a few seconds; results are cached).
        dps: decimal digits of the arithmetic; default 3n + 30.

    Returns:
        ln P as a Python float (relative accuracy ~1e-15).

    References:
        de Bruijn (1955); Dean & Majumdar, PRE 77, 041108 (2008).
    """
    n = _check_exact_n(n, "log_p_positive_definite_exact")
    dps = 3 * n + 30 if dps is None else int(dps)
    if dps < 15:
        raise ValueError(f"log_p_positive_definite_exact: dps must be >= 15, got {dps}")
    return _log_p_exact(n, dps, n)


# ----------------------------------------------------------------------------------------------
# the tridiagonal model


def tridiagonal_goe(key, n: int, *, batch_shape=(), dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Diagonal and squared off-diagonal of a tridiagonal matrix with the GOE eigenvalue law.

    Same law of eigenvalues as ``sim.rmt.goe(key, n, normalized=False)`` (off-diagonal variance 1,
    diagonal variance 2); divide by sqrt(n) for the normalised ensemble.

    Args:
        key: PRNG key; matrix with flat batch index i uses ``fold_in(key, i)``.
        n: size, >= 1.
        batch_shape: leading batch dimensions.
        dtype: float32 or float64.

    Returns:
        ``(a, c)``: diagonal of shape ``batch_shape + (n,)`` and squared off-diagonal
        ``c_k = b_k^2 ~ chi^2_{n-1-k}`` of shape ``batch_shape + (n - 1,)``.

    References:
        Dumitriu & Edelman, J. Math. Phys. 43, 5830 (2002).
    """
    dtype = float_dtype(dtype, fn="tridiagonal_goe")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 1:
        raise ValueError(f"tridiagonal_goe: n must be an integer >= 1, got {n!r}")
    batch_shape = tuple(int(b) for b in batch_shape)
    return _tridiagonal_goe(as_key(key), int(n), batch_shape, dtype)


def _one_tridiagonal(key, n, dtype):
    ka, kc = split(key, 2)
    a = jnp.sqrt(jnp.asarray(2.0, dtype)) * jax.random.normal(ka, (n,), dtype)
    dof = jnp.arange(n - 1, 0, -1).astype(dtype)
    c = 2.0 * jax.random.gamma(kc, dof / 2, (n - 1,), dtype)
    return a, c


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _tridiagonal_goe(key, n, batch_shape, dtype):
    size = math.prod(batch_shape)
    keys = jax.vmap(lambda i: fold_in(key, i))(jnp.arange(size, dtype=jnp.uint32))
    a, c = jax.vmap(lambda k: _one_tridiagonal(k, n, dtype))(keys)
    return a.reshape(batch_shape + (n,)), c.reshape(batch_shape + (n - 1,))


def tridiagonal_pivots(a: jax.Array, c: jax.Array) -> jax.Array:
    """LDL^T pivots of the symmetric tridiagonal matrix with diagonal ``a`` and squared off-diagonal ``c``.

    d_0 = a_0, d_k = a_k - c_{k-1} / d_{k-1}. The number of negative pivots is the number of negative
    eigenvalues (Sylvester; this is the Sturm count at 0). Batched over leading axes.

    Args:
        a: ``(..., n)``.
        c: ``(..., n - 1)``.

    Returns:
        ``(..., n)`` pivots.
    """
    a = jnp.asarray(a)
    c = jnp.asarray(c)
    if a.shape[:-1] != c.shape[:-1] or c.shape[-1] != a.shape[-1] - 1:
        raise ValueError(f"tridiagonal_pivots: shapes must be (..., n) and (..., n-1), got {a.shape}, {c.shape}")
    return _pivots(a, c)


@jax.jit
def _pivots(a, c):
    def step(d_prev, ac):
        ak, ck = ac
        d = ak - ck / d_prev
        return d, d

    a_t = jnp.moveaxis(a, -1, 0)
    c_t = jnp.moveaxis(c, -1, 0)
    _, rest = jax.lax.scan(step, a_t[0], (a_t[1:], c_t))
    return jnp.moveaxis(jnp.concatenate([a_t[:1], rest], axis=0), 0, -1)


# ----------------------------------------------------------------------------------------------
# thermodynamic integration with a Gibbs sampler of the conditioned tridiagonal model


class TIResult(NamedTuple):
    """Result of ``log_p_positive_definite_ti``.

    Attributes:
        log_p: estimate of ln P(GOE_n positive definite).
        stderr: its standard error (from independent chains per node and the quadrature weights).
        nodes: shift values s_j of the quadrature, shape ``(K,)``.
        weights: quadrature weights, shape ``(K,)``.
        mean_trace: E_s[tr T] at each node, shape ``(K,)``.
        mean_trace_stderr: its standard error, shape ``(K,)``.
        accept_c: mean Metropolis acceptance of the off-diagonal updates (diagnostic).
    """

    log_p: float
    stderr: float
    nodes: np.ndarray
    weights: np.ndarray
    mean_trace: np.ndarray
    mean_trace_stderr: np.ndarray
    accept_c: float


def ti_shift_max(n: int) -> float:
    """Upper end s_max = 2 sqrt(n) + 10 n^(-1/6) of the thermodynamic integration."""
    return 2.0 * math.sqrt(n) + 10.0 * n ** (-1.0 / 6.0)


def _quadrature(n: int, k_bulk: int, k_edge: int) -> tuple[np.ndarray, np.ndarray]:
    edge, smax = 2.0 * math.sqrt(n), ti_shift_max(n)
    nodes, weights = [], []
    for (lo, hi), k in (((0.0, edge), k_bulk), ((edge, smax), k_edge)):
        t, w = np.polynomial.legendre.leggauss(k)
        nodes.append(lo + (hi - lo) * (t + 1) / 2)
        weights.append(w * (hi - lo) / 2)
    return np.concatenate(nodes), np.concatenate(weights)


def _upper_tail(z):
    """Phi(-z) = erfc(z / sqrt 2) / 2: one erfc (``ndtr`` evaluates erf and erfc and selects), accurate
    in the upper tail and to an absolute 1e-16 (float64) below it."""
    return 0.5 * jax.lax.erfc(z * jnp.asarray(1 / math.sqrt(2.0), z.dtype))


def _trunc_std_normal_above(u, z):
    """Y ~ N(0, 1) conditioned on Y > z by inversion: Phi(-Y) = u Phi(-z), for z below ``cap`` (37 in
    float64, 9 in float32: Phi(-z) u stays a normal number); beyond, the exponential tail Y = z - ln(u)/z
    (relative error O(z^-2); never met in float64: prior mass e^-685)."""
    cap = 37.0 if z.dtype == jnp.float64 else 9.0
    zc = jnp.minimum(z, cap)
    y = jnp.where(z > cap, z - jnp.log(u) / jnp.maximum(z, 1.0), -ndtri(u * _upper_tail(zc)))
    return jnp.maximum(y, z)  # rounding


def _bucket(n: int) -> int:
    """Padded size of the sampler (a multiple of 8): one compilation serves 8 consecutive n."""
    return 8 * (-(-int(n) // 8))


# The sampler runs on padded arrays of static size m >= n with n traced: x_k = 1 and c_k = 0 for the
# padding (k >= n for x, k >= n - 1 for c), so T = T_n (+) I and the padding never changes.


def _masks(n, m, dtype):
    k = jnp.arange(m)
    act_x = k < n
    act_c = k[:-1] < n - 1
    dof = jnp.where(act_c, n - 1 - k[:-1], 1).astype(dtype)  # chi^2 dof of c_k (1 on padding: unused)
    return act_x, act_c, dof


def _backward_pivots(x, c):
    """e_{m-1} = x_{m-1}, e_k = x_k - c_k / e_{k+1} (bottom-up pivots), shape (m,)."""

    def step(e_next, xc):
        xk, ck = xc
        e = xk - ck / e_next
        return e, e

    _, rest = jax.lax.scan(step, x[-1], (x[:-1], c), reverse=True)
    return jnp.concatenate([rest, x[-1:]])


def _gibbs_sweep(key, state, s, n):
    """One sweep of the law of (x, c) conditioned on T(x, c) > 0, with x_k ~ N(s, 2), c_k ~ chi^2_{n-1-k}.

    A systematic scan k = 0..n-1 (x_k by exact truncated-normal Gibbs, then c_k by two Metropolis–Hastings
    random-walk moves on log c_k), followed by collective scale and shift moves.
    """
    x, c = state
    dtype, m = x.dtype, x.shape[0]
    act_x, act_c, dof = _masks(n, m, dtype)
    e = _backward_pivots(x, c)
    # e_{k+1} for k = 0..m-1 (inf past the end: no constraint from below); padding gives e = 1, c = 0
    e_next = jnp.concatenate([e[1:], jnp.full((1,), jnp.inf, dtype)])
    c_pad = jnp.concatenate([c, jnp.zeros((1,), dtype)])
    dof_pad = jnp.concatenate([dof, jnp.ones((1,), dtype)])
    actc_pad = jnp.concatenate([act_c, jnp.zeros((1,), bool)])
    # all random numbers of the sweep at once (cheaper than splitting keys inside the scan). The
    # Metropolis–Hastings proposals and acceptance draws only need float32 (their rounding, ~6e-8
    # relative, changes the proposal law by that much, far below the statistical error); the exactly
    # sampled truncated normal keeps a uniform of the chain's dtype (its far tail needs u below 2^-24).
    ku, kn, ka, kg = split(key, 4)
    lo = max(1e-300, float(jnp.finfo(dtype).tiny))  # smallest uniform: log and ndtri stay finite
    u_x = jax.random.uniform(ku, (m,), dtype, minval=lo)
    f32 = jnp.float32
    sig = jnp.minimum(1.0, 2.0 / jnp.sqrt(dof_pad.astype(f32)))
    # two log-scale random-walk moves on c_k: a small and a large step (the bound can be tight or loose)
    log_step = sig[None, :] * jax.random.normal(kn, (2, m), f32) * jnp.asarray([[0.5], [2.0]], f32)
    ratio = jnp.exp(log_step).astype(dtype)  # the proposal factor c -> c e^step
    log_u = jnp.log(jax.random.uniform(ka, (2, m), f32, minval=float(jnp.finfo(f32).tiny))).astype(dtype)
    log_step = log_step.astype(dtype)
    sqrt2 = math.sqrt(2.0)

    def body(carry, inp):
        d_prev, c_prev = carry  # top pivot d_{k-1} (inf for k = 0) and updated c_{k-1} (0 for k = 0)
        xk_old, ck, ek1, nuk, uk, ls, q, lu, ax, ac = inp
        # x_k | rest: N(s, 2) truncated to x_k > c_{k-1}/d_{k-1} + c_k/e_{k+1}
        low = c_prev / d_prev + ck / ek1
        xk = s + sqrt2 * _trunc_std_normal_above(uk, (low - s) / sqrt2)
        xk = jnp.where(ax, xk, xk_old)
        dk = xk - c_prev / d_prev
        # c_k | rest: chi^2_nu truncated to c_k < d_k e_{k+1}; target of log c: (nu/2) log c - c/2
        bound = dk * ek1
        p1 = ck * q[0]
        acc1 = ac & (p1 < bound) & (lu[0] < (nuk / 2) * ls[0] - (p1 - ck) / 2)
        ck1 = jnp.where(acc1, p1, ck)
        p2 = ck1 * q[1]
        acc2 = ac & (p2 < bound) & (lu[1] < (nuk / 2) * ls[1] - (p2 - ck1) / 2)
        ck2 = jnp.where(acc2, p2, ck1)
        return (dk, ck2), (xk, ck2, acc1.astype(dtype) + acc2.astype(dtype))

    init = (jnp.asarray(jnp.inf, dtype), jnp.asarray(0.0, dtype))
    inputs = (x, c_pad, e_next, dof_pad, u_x, log_step.T, ratio.T, log_u.T, act_x, actc_pad)
    _, (x_new, c_new, acc) = jax.lax.scan(body, init, inputs)
    x_new, c_new = _global_moves(kg, x_new, c_new[:-1], s, n)
    return (x_new, c_new), jnp.sum(acc) / (2 * jnp.maximum(n - 1, 1))


def _scale_log_ratio(x, c, s, n, logr):
    """log pi(r x, r^2 c) - log pi(x, c) + log Jacobian r^(3n - 2), r = e^logr, as a difference: with
    dx = (r - 1) x, the Gaussian part is -dx (2 (x - s) + dx)/4 and the chi^2 part (dof - 2) log r -
    (r^2 - 1) c / 2 per entry (no logarithm of c)."""
    act_x, act_c, dof = _masks(n, x.shape[0], x.dtype)
    rm1 = jnp.expm1(logr)
    dx = jnp.where(act_x, rm1 * x, 0.0)
    gauss = -jnp.sum(dx * (2 * jnp.where(act_x, x - s, 0.0) + dx)) / 4
    chi2 = jnp.sum(jnp.where(act_c, (dof - 2) * logr - rm1 * (rm1 + 2) * c / 2, 0.0))
    return gauss + chi2 + (3 * n.astype(x.dtype) - 2) * logr


def _shift_log_ratio(x, s, n, t):
    """log pi(x + t) - log pi(x) for x ~ N(s, 2) on the active entries: -t (2 (x - s) + t)/4 summed."""
    act_x = jnp.arange(x.shape[0]) < n
    return -jnp.sum(jnp.where(act_x, t * (2 * (x - s) + t), 0.0)) / 4


def _global_moves(key, x, c, s, n):
    """Collective Metropolis–Hastings moves that the one-coordinate scan is slow at.

    Scale: (x, c) -> (r x, r^2 c), log r ~ N(0, (0.5/n)^2): keeps T > 0; Jacobian r^(n + 2(n-1)).
    Shift: x -> x + t, t ~ N(0, 1/n): needs a fresh O(n) positivity check of the pivots.
    The log acceptance ratios are written as differences (no log of c: the chi^2 factor of a scaling
    is (dof/2 - 1) 2 log r per entry), and the proposals and acceptance draws are float32 (see
    ``_gibbs_sweep``).
    """
    dtype = x.dtype
    f32 = jnp.float32
    act_x, act_c, _ = _masks(n, x.shape[0], dtype)
    nf = n.astype(dtype)
    k1, k2, k3, k4 = split(key, 4)
    tiny = float(jnp.finfo(f32).tiny)
    logr = ((0.5 / nf.astype(f32)) * jax.random.normal(k1, (), f32)).astype(dtype)
    r = jnp.exp(logr)
    xs, cs = jnp.where(act_x, r * x, x), jnp.where(act_c, r * r * c, c)
    log_a = _scale_log_ratio(x, c, s, n, logr)
    ok = jnp.log(jax.random.uniform(k2, (), f32, minval=tiny)).astype(dtype) < log_a
    x, c = jnp.where(ok, xs, x), jnp.where(ok, cs, c)
    t = (jax.random.normal(k3, (), f32) / jnp.sqrt(nf.astype(f32))).astype(dtype)
    xt = jnp.where(act_x, x + t, x)
    pd = jnp.all(_pivots(xt, c) > 0)
    log_a = _shift_log_ratio(x, s, n, t)
    ok = pd & (jnp.log(jax.random.uniform(k4, (), f32, minval=tiny)).astype(dtype) < log_a)
    return jnp.where(ok, xt, x), c


def _init_state(n, m, dtype):
    """A positive definite start: c_k at its prior mean, x by Gershgorin (diagonal > off-diagonal sums)."""
    _, act_c, dof = _masks(n, m, dtype)
    c = jnp.where(act_c, dof, 0.0)
    b = jnp.sqrt(c)
    zero = jnp.zeros((1,), dtype)
    x = jnp.concatenate([zero, b]) + jnp.concatenate([b, zero]) + 1.0
    return x, c


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _run_chains(key, nodes, n, m, chains, burn, sweeps):
    """Per-chain mean of tr T after burn-in at every node, shape (K, chains); and the mean acceptance."""
    dtype = nodes.dtype

    def one_chain(node_idx, chain_idx, s):
        k = fold_in(fold_in(key, node_idx), chain_idx)
        act_x = jnp.arange(m) < n

        def sweep(carry, t):
            st, tot, acc_tot = carry
            st, acc = _gibbs_sweep(fold_in(k, t), st, s, n)
            keep = (t >= burn).astype(dtype)
            tr = jnp.sum(jnp.where(act_x, st[0] - s, 0.0))
            return (st, tot + keep * tr, acc_tot + keep * acc), None

        zero = jnp.zeros((), dtype)
        (_, tot, acc_tot), _ = jax.lax.scan(sweep, (_init_state(n, m, dtype), zero, zero), jnp.arange(burn + sweeps))
        return tot / sweeps, acc_tot / sweeps

    k_idx = jnp.arange(nodes.shape[0], dtype=jnp.uint32)
    c_idx = jnp.arange(chains, dtype=jnp.uint32)
    f = jax.vmap(jax.vmap(one_chain, in_axes=(None, 0, None)), in_axes=(0, None, 0))
    return f(k_idx, c_idx, nodes)


def log_p_positive_definite_ti(
    key,
    n: int,
    *,
    chains: int = 32,
    sweeps: int = 400,
    burn: int | None = None,
    nodes_bulk: int = 24,
    nodes_edge: int = 8,
    dtype=jnp.float64,
) -> TIResult:
    """ln P(GOE_n positive definite) by thermodynamic integration (Monte Carlo, with a standard error).

    See the module docstring for the method. Every chain is independent (key ``fold_in(fold_in(key,
    node), chain)``) so the standard error is the spread between chains; it is honest when ``burn``
    exceeds the relaxation time (default ``burn = sweeps``; checked against the exact formula up to
    n = 50 in the tests).

    Args:
        key: PRNG key.
        n: matrix size >= 1.
        chains: independent chains per quadrature node (>= 2).
        sweeps: Gibbs sweeps per chain after burn-in (>= 1).
        burn: burn-in sweeps per chain.
        nodes_bulk: Gauss–Legendre nodes on [0, 2 sqrt(n)].
        nodes_edge: Gauss–Legendre nodes on [2 sqrt(n), s_max].
        dtype: arithmetic of the chains: float64 only (needs ``jax_enable_x64``, refused without it);
            float32 is refused with a ValueError (its pivots lose positivity, see the module docstring).

    Returns:
        ``TIResult`` (``log_p``, ``stderr``, per-node diagnostics).

    References:
        Dumitriu & Edelman (2002) for the tridiagonal model; Dean & Majumdar (2006) for theta.
    """
    fn = "log_p_positive_definite_ti"
    for name, v, lo in (
        ("n", n, 1),
        ("chains", chains, 2),
        ("sweeps", sweeps, 1),
        ("nodes_bulk", nodes_bulk, 1),
        ("nodes_edge", nodes_edge, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
            raise ValueError(f"{fn}: {name} must be an integer >= {lo}, got {v!r}")
    burn = int(sweeps) if burn is None else burn
    if isinstance(burn, bool) or not isinstance(burn, (int, np.integer)) or int(burn) < 0:
        raise ValueError(f"{fn}: burn must be an integer >= 0, got {burn!r}")
    if np.dtype(dtype) == np.float32:
        raise ValueError(
            f"{fn}: dtype float32 is not supported (float32 pivots of nearly singular matrices round to "
            "zero and whole nodes turn nan or -inf); use dtype=float64, whose chains already draw their "
            "Metropolis-Hastings moves in float32"
        )
    dtype = float_dtype(dtype, fn=fn)
    n, chains, sweeps, burn = int(n), int(chains), int(sweeps), int(burn)
    nodes, weights = _quadrature(n, int(nodes_bulk), int(nodes_edge))
    means, acc = _run_chains(
        as_key(key), jnp.asarray(nodes, dtype), jnp.asarray(n, jnp.int32), _bucket(n), chains, burn, sweeps
    )
    means = np.asarray(means, np.float64)
    acc = float(np.mean(np.asarray(acc, np.float64)))
    mean_tr = means.mean(axis=1)
    se_tr = means.std(axis=1, ddof=1) / math.sqrt(chains)
    log_p = -0.5 * float(np.sum(weights * mean_tr))
    stderr = 0.5 * float(np.sqrt(np.sum((weights * se_tr) ** 2)))
    return TIResult(log_p, stderr, nodes, weights, mean_tr, se_tr, acc if n > 1 else float("nan"))
