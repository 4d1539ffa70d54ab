"""Fits of the laws hdsim measures, each with a confidence interval to quote beside the theory.

* ``fit_power_law``: y = c x^b on log-log axes, residual-bootstrap interval (every d^b law).
* ``fit_theta``: -ln P(minimum) = theta N^2 + b N + c, weighted, parametric-bootstrap interval.
* ``fit_linear`` (weighted) and ``fit_slope`` (ordinary least squares, errors from the scatter).
* ``fit_gap_power_law``: distance to a threshold against n, weighted on log-log axes.
* ``fit_minima_decay``: logistic (binomial maximum-likelihood) decay of a fraction with N.
* ``wilson_interval``, ``clopper_pearson_interval``: intervals of a binomial proportion (the exact
  Clopper-Pearson one for small counts, where a normal error bar p +- z sqrt(p(1-p)/n) is wrong).
* ``spearman``: the Spearman rank correlation (average ranks for ties).

All plain numpy except ``fit_power_law`` (jax bootstrap); seeds are explicit, so intervals are
reproducible.

``fit_power_law(key, x, y)`` fits y = c * x^b by least squares on log-log axes and returns b with a
residual-bootstrap-t confidence interval: the residuals of the log-log fit are resampled with
replacement (``n_boot`` times, keys ``fold_in(key, i)``), added to the fitted line, and refitted; the
quantiles of the studentised replicates (b* - b)/se* set the interval b - q se. Residual (not case)
resampling keeps every x in every replicate, so it works with the handful of dimensions a sweep has;
studentising fixes the under-coverage of the plain percentile interval with so few points (measured:
0.88 instead of 0.95 with 9 points; see tests/test_fit.py).

References:
    Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 9 (bootstrapping regression).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import as_key

__all__ = [
    "PowerLawFit",
    "fit_power_law",
    "LinearFit",
    "fit_linear",
    "fit_slope",
    "ThetaFit",
    "fit_theta",
    "GapFit",
    "fit_gap_power_law",
    "MinimaDecay",
    "fit_minima_decay",
    "wilson_interval",
    "clopper_pearson_interval",
    "betainc",
    "student_t_quantile",
    "spearman",
]


class PowerLawFit(NamedTuple):
    """y = prefactor * x^exponent; [ci_low, ci_high] is the ``level`` bootstrap interval of the
    exponent and ``stderr`` its ordinary least-squares standard error."""

    exponent: float
    prefactor: float
    ci_low: float
    ci_high: float
    stderr: float
    level: float

    def label(self, symbol: str = "b") -> str:
        """e.g. ``b = -0.497 [-0.503, -0.491]``."""
        return f"{symbol} = {self.exponent:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}]"


def _ols(lx, ly):
    xm = lx - lx.mean()
    slope = jnp.sum(xm * (ly - ly.mean())) / jnp.sum(xm * xm)
    return slope, ly.mean() - slope * lx.mean()


@functools.partial(jax.jit, static_argnums=(3,))
def _boot(key, lx, ly, n_boot):
    slope, icpt = _ols(lx, ly)
    fitted = icpt + slope * lx
    # residuals shrink by (n - 2)/n in variance when fitted: rescale them (Davison & Hinkley 1997, 6.2.3)
    resid = (ly - fitted) * jnp.sqrt(lx.shape[0] / (lx.shape[0] - 2.0))

    def one(i):
        idx = jax.random.randint(jax.random.fold_in(key, i), lx.shape, 0, lx.shape[0])
        y = fitted + resid[idx]
        b, a = _ols(lx, y)
        return b, _slope_se(lx, y, b, a)

    boot_slopes, boot_se = jax.vmap(one)(jnp.arange(n_boot))
    return slope, icpt, _slope_se(lx, ly, slope, icpt), (boot_slopes - slope) / boot_se


def _slope_se(lx, ly, slope, icpt):
    xm = lx - lx.mean()
    r = ly - (icpt + slope * lx)
    return jnp.sqrt(jnp.sum(r * r) / (lx.shape[0] - 2.0) / jnp.sum(xm * xm))


def fit_power_law(key, x, y, *, n_boot: int = 4000, level: float = 0.95) -> PowerLawFit:
    """Fit y = c * x^b on log-log axes.

    Args:
        key: PRNG key for the bootstrap.
        x, y: positive 1-D arrays of the same length >= 3.
        n_boot: bootstrap replicates.
        level: confidence level of the interval.

    Returns:
        ``PowerLawFit`` (floats).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 3:
        raise ValueError(f"fit_power_law: x and y must be 1-D of equal length >= 3, got {x.shape}, {y.shape}")
    if not (np.all(x > 0) and np.all(y > 0) and np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("fit_power_law: x and y must be finite and > 0")
    if not 0 < level < 1:
        raise ValueError(f"fit_power_law: level must be in (0, 1), got {level}")
    lx, ly = np.log(x), np.log(y)
    slope, icpt, stderr, t = jax.device_get(_boot(as_key(key), jnp.asarray(lx), jnp.asarray(ly), int(n_boot)))
    t = t[np.isfinite(t)]  # a replicate with zero residual scatter has no t statistic
    if stderr == 0 or t.size == 0:  # noiseless: the slope is exact
        return PowerLawFit(float(slope), float(np.exp(icpt)), float(slope), float(slope), 0.0, float(level))
    q_lo, q_hi = np.quantile(t, [(1 - level) / 2, (1 + level) / 2])
    lo, hi = slope - q_hi * stderr, slope - q_lo * stderr
    return PowerLawFit(float(slope), float(np.exp(icpt)), float(lo), float(hi), float(stderr), float(level))


class ThetaFit(NamedTuple):
    """-ln P(min) = theta N^2 + b N + c, weighted least squares; [ci_low, ci_high] is the ``level``
    parametric-bootstrap interval of theta (see ``fit_theta``)."""

    theta: float
    b: float
    c: float
    ci_low: float
    ci_high: float
    stderr: float
    chi2_per_dof: float
    dims: tuple[int, ...]
    level: float

    def label(self) -> str:
        return f"theta = {self.theta:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}]"


def _wls(x, y, w):
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    return coef


def fit_theta(
    dims, log_p, stderr, *, min_dim: int = 10, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> ThetaFit | None:
    """Fit -ln P = theta N^2 + b N + c to measured log P(min) at N >= ``min_dim``.

    Points are weighted by 1/stderr (points with a non-finite value or a non-positive stderr are left
    out). The interval is a parametric bootstrap: every replicate refits fitted + stderr * z, z ~ N(0, 1)
    (numpy ``default_rng(seed)``, so the interval is reproducible), with the stderrs inflated by
    sqrt(chi^2/dof) when the points scatter more than their error bars say. Fitting the linear term
    removes the O(N) correction that biases theta from -ln P / N^2 (at N = 50 it is still 3%).

    Returns:
        ``ThetaFit``, or None with fewer than 4 usable points.
    """
    n = np.asarray(dims, np.float64)
    y = -np.asarray(log_p, np.float64)
    se = np.asarray(stderr, np.float64)
    ok = np.isfinite(n) & np.isfinite(y) & np.isfinite(se) & (se > 0) & (n >= min_dim)
    n, y, se = n[ok], y[ok], se[ok]
    if n.size < 4:
        return None
    x = np.stack([n**2, n, np.ones_like(n)], axis=1)
    w = 1.0 / se
    coef = _wls(x, y, w)
    resid = (y - x @ coef) * w
    dof = n.size - 3
    chi2 = float(np.sum(resid**2) / dof)
    infl = max(1.0, math.sqrt(chi2))
    cov = np.linalg.inv((x * w[:, None]).T @ (x * w[:, None])) * infl**2
    fitted = x @ coef
    rng = np.random.default_rng(seed)
    boots = np.array([_wls(x, fitted + infl * se * rng.standard_normal(n.size), w)[0] for _ in range(n_boot)])
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return ThetaFit(
        float(coef[0]),
        float(coef[1]),
        float(coef[2]),
        float(lo),
        float(hi),
        math.sqrt(cov[0, 0]),
        chi2,
        tuple(int(v) for v in n),
        level,
    )


class LinearFit(NamedTuple):
    """y = slope x + intercept by weighted least squares; [ci_low, ci_high] = slope -+ z * stderr."""

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    stderr: float
    chi2_per_dof: float


def fit_linear(x, y, stderr, *, level: float = 0.95, through_origin: bool = False) -> LinearFit | None:
    """Weighted least squares of y on x (errors ``stderr``), normal interval for the slope.

    The slope's standard error is inflated by sqrt(chi^2/dof) when the scatter exceeds the error bars.
    Returns None with too few usable points (2, or 1 through the origin).
    """
    x, y, se = (np.asarray(v, np.float64) for v in (x, y, stderr))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(se) & (se > 0)
    x, y, se = x[ok], y[ok], se[ok]
    k = 1 if through_origin else 2
    if x.size < k + 1:
        return None
    a = x[:, None] if through_origin else np.stack([x, np.ones_like(x)], axis=1)
    w = 1.0 / se
    coef = _wls(a, y, w)
    chi2 = float(np.sum(((y - a @ coef) * w) ** 2) / (x.size - k))
    cov = np.linalg.inv((a * w[:, None]).T @ (a * w[:, None])) * max(1.0, chi2)
    s = math.sqrt(cov[0, 0])
    z = float(_normal_quantile((1 + level) / 2))
    return LinearFit(
        float(coef[0]),
        0.0 if through_origin else float(coef[1]),
        float(coef[0] - z * s),
        float(coef[0] + z * s),
        s,
        chi2,
    )


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def fit_slope(x, y, *, level: float = 0.95) -> LinearFit | None:
    """Ordinary least-squares slope of y on x, its standard error from the residual scatter and a
    normal interval (for clouds of points without error bars, e.g. index fraction against energy).

    Returns None with fewer than 3 finite points or no spread in x.
    """
    x, y = (np.asarray(v, np.float64) for v in (x, y))
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 3 or np.ptp(x) == 0:
        return None
    xm = x - x.mean()
    slope = float(np.sum(xm * (y - y.mean())) / np.sum(xm * xm))
    icpt = float(y.mean() - slope * x.mean())
    resid = y - (icpt + slope * x)
    s2 = float(np.sum(resid**2) / (x.size - 2))
    se = math.sqrt(s2 / float(np.sum(xm * xm)))
    z = float(_normal_quantile((1 + level) / 2))
    return LinearFit(slope, icpt, slope - z * se, slope + z * se, se, s2)


class GapFit(NamedTuple):
    """``gap = prefactor * n^exponent`` by weighted least squares on log-log axes; 95% Wald interval."""

    exponent: float
    se: float
    ci_low: float
    ci_high: float
    prefactor: float


def fit_gap_power_law(n, gap, gap_se) -> GapFit | None:
    """Fit the distance to the threshold against n (weights 1/SE(log gap)^2, SE(log gap) = SE/gap).

    The interval is scaled by the reduced chi-square when it is above 1. None when fewer than 3
    positive gaps with finite SE.
    """
    n, gap, se = (np.asarray(v, np.float64) for v in (n, gap, gap_se))
    ok = (gap > 0) & np.isfinite(se) & (se > 0)
    if ok.sum() < 3:
        return None
    x, y, s = np.log(n[ok]), np.log(gap[ok]), se[ok] / gap[ok]
    w = 1 / s**2
    design = np.stack([np.ones_like(x), x], axis=1)
    info = design.T @ (design * w[:, None])
    beta = np.linalg.solve(info, design.T @ (w * y))
    chi2 = float(np.sum(w * (y - design @ beta) ** 2) / max(x.size - 2, 1))
    cov = np.linalg.inv(info) * max(chi2, 1.0)
    b, sb = float(beta[1]), float(math.sqrt(cov[1, 1]))
    return GapFit(b, sb, b - 1.96 * sb, b + 1.96 * sb, float(math.exp(beta[0])))


def wilson_interval(k, n, z: float = 1.96):
    """Wilson score interval of a binomial proportion k / n (arrays in, ``(low, high)`` out)."""
    k, n = np.asarray(k, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        d = 1 + z * z / n
        c = (p + z * z / (2 * n)) / d
        h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return np.clip(c - h, 0, 1), np.clip(c + h, 0, 1)


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) (a, b > 0, 0 <= x <= 1), float64, pure Python.

    Continued fraction (modified Lentz) on whichever of I_x(a, b) = 1 - I_{1-x}(b, a) converges fast
    (Press et al., Numerical Recipes, 3rd ed., 6.4), with ln B(a, b) from the Stirling series at large a, b;
    relative error ~1e-15 for a, b < 15, below 1e-10 up to a + b ~ 1e6 (tests/test_fit.py, against scipy).
    """
    if not (a > 0 and b > 0 and 0 <= x <= 1):
        raise ValueError(f"betainc: need a, b > 0 and 0 <= x <= 1, got a={a!r}, b={b!r}, x={x!r}")
    if x == 0 or x == 1:
        return float(x)
    log_front = _log_beta_front(a, b, x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _stirling_corr(z):
    """lgamma(z) - [(z - 1/2) ln z - z + ln(2 pi)/2] for z >= 15 (Stirling series, error < 1e-17)."""
    z2 = 1.0 / (z * z)
    return (1 / 12 - z2 * (1 / 360 - z2 * (1 / 1260 - z2 * (1 / 1680 - z2 / 1188)))) / z


def _log_beta_front(a, b, x):
    """ln(x^a (1 - x)^b / B(a, b)) without the cancellation of lgamma(a + b) - lgamma(b) at large
    arguments (which costs ~eps * lgamma(a + b): 1e-9 relative at a + b = 4e5)."""
    small, big = min(a, b), max(a, b)
    if big < 15:
        return math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    s = a + b
    if small < 15:  # lgamma(big) - lgamma(s) by Stirling on both, lgamma(small) directly
        log_b = (
            math.lgamma(small)
            - (big - 0.5) * math.log1p(small / big)
            - small * math.log(s)
            + small
            + _stirling_corr(big)
            - _stirling_corr(s)
        )
        return a * math.log(x) + b * math.log1p(-x) - log_b
    # both large: ln B = ln(2 pi)/2 + (a - 1/2) ln(a/s) + (b - 1/2) ln(b/s) - ln(s)/2 + corrections
    return (
        a * math.log(x * s / a)
        + b * math.log1p(-x)
        + b * math.log(s / b)
        + 0.5 * math.log(a * b / s)
        - 0.5 * math.log(2 * math.pi)
        - _stirling_corr(a)
        - _stirling_corr(b)
        + _stirling_corr(s)
    )


def _betacf(a, b, x):
    tiny, eps = 1e-300, 1e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"betainc: continued fraction did not converge for a={a}, b={b}, x={x}")  # pragma: no cover


def _beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q, by bisection (I_x is increasing in x): to the last bit of a float64."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def student_t_quantile(p: float, dof: float) -> float:
    """Quantile of Student's t with ``dof`` degrees of freedom, 0 < p < 1 (bisection on the CDF
    1 - I_x(dof/2, 1/2)/2, x = dof/(dof + t^2), for t > 0; pure Python)."""
    if not (0 < p < 1 and dof > 0):
        raise ValueError(f"student_t_quantile: need 0 < p < 1 and dof > 0, got p={p!r}, dof={dof!r}")
    if p < 0.5:
        return -student_t_quantile(1 - p, dof)
    if p == 0.5:
        return 0.0
    q = 2 * (1 - p)  # I_x(dof/2, 1/2) at the quantile; x falls as t grows
    x = 1.0 - _beta_quantile(1 - q, 0.5, dof / 2)  # I_x(a, b) = 1 - I_{1-x}(b, a)
    return math.sqrt(dof * (1 - x) / x)


def clopper_pearson_interval(k, n, level: float = 0.95):
    """Exact (Clopper-Pearson) interval of a binomial proportion k / n (arrays in, ``(low, high)`` out).

    low = Beta^-1((1 - level)/2; k, n - k + 1) (0 when k = 0), high = Beta^-1((1 + level)/2; k + 1, n - k)
    (1 when k = n): the interval inverts two one-sided binomial tests, so it covers the true proportion
    with probability >= ``level`` for every n and p (Clopper & Pearson 1934). Use it for small counts,
    where the normal bar p -+ z sqrt(p (1 - p) / n) is too short on one side and can reach below 0.
    Matches ``scipy.stats.binomtest(k, n).proportion_ci(level, method="exact")`` (tests/test_fit.py).
    """
    if not 0 < level < 1:
        raise ValueError(f"clopper_pearson_interval: level must be in (0, 1), got {level}")
    k_arr, n_arr = np.broadcast_arrays(np.asarray(k), np.asarray(n))
    lo = np.empty(k_arr.shape, np.float64)
    hi = np.empty(k_arr.shape, np.float64)
    alpha = 1.0 - level
    for i, (kk, nn) in enumerate(zip(k_arr.ravel().tolist(), n_arr.ravel().tolist())):
        if not (float(kk).is_integer() and float(nn).is_integer() and 0 <= kk <= nn and nn >= 1):
            raise ValueError(f"clopper_pearson_interval: need integers 0 <= k <= n, n >= 1, got k={kk}, n={nn}")
        kk, nn = int(kk), int(nn)
        lo.flat[i] = 0.0 if kk == 0 else _beta_quantile(alpha / 2, kk, nn - kk + 1)
        hi.flat[i] = 1.0 if kk == nn else _beta_quantile(1 - alpha / 2, kk + 1, nn - kk)
    return lo, hi


class MinimaDecay(NamedTuple):
    """``logit(minima fraction) = intercept - rate * N``; [ci_low, ci_high]: 95% Wald interval of rate."""

    rate: float
    se: float
    ci_low: float
    ci_high: float
    intercept: float
    dims: int


def fit_minima_decay(dims, minima, unique) -> MinimaDecay | None:
    """Binomial (logistic) maximum-likelihood fit of the fraction of minima against the dimension.

    Args:
        dims: N per point; minima, unique: counts (minima among unique critical points).

    Returns:
        ``MinimaDecay`` or None when fewer than 3 dimensions have points, or no minima / only minima.
    """
    x = np.asarray(dims, np.float64)
    k = np.asarray(minima, np.float64)
    n = np.asarray(unique, np.float64)
    ok = n > 0
    x, k, n = x[ok], k[ok], n[ok]
    if x.size < 3 or k.sum() == 0 or k.sum() == n.sum():
        return None
    design = np.stack([np.ones_like(x), x], axis=1)
    beta = np.zeros(2)
    for _ in range(100):  # Newton (IRLS) on the binomial log-likelihood
        eta = design @ beta
        p = 1 / (1 + np.exp(-eta))
        w = n * p * (1 - p)
        info = design.T @ (design * w[:, None]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(info, design.T @ (k - n * p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    eta = design @ beta
    p = 1 / (1 + np.exp(-eta))
    cov = np.linalg.inv(design.T @ (design * (n * p * (1 - p))[:, None]))
    se = float(math.sqrt(cov[1, 1]))
    rate = float(-beta[1])
    return MinimaDecay(rate, se, rate - 1.96 * se, rate + 1.96 * se, float(beta[0]), int(x.size))


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either input is constant or n < 3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(v.size)
        r[order] = np.arange(v.size, dtype=np.float64)
        _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inv, weights=r)
        return (sums / counts)[inv]

    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])
