"""Closed-form theory for distances and angles between independent random vectors.

For two independent vectors x, y with independent coordinates, coordinate j scaled by s_j (s_j = 1 for
i.i.d. laws), and q > 0, let W_q = sum_j |x_j - y_j|^q. Then, with c_q = E|x - y|^q for one pair of
unscaled coordinates,

    E W_q   = c_q * sum_j s_j^q,
    Var W_q = (c_2q - c_q^2) * sum_j s_j^(2q).

The squared Euclidean distance is W_2, the cityblock distance W_1, the Minkowski distance W_p^(1/p).
For q = 2 and 4 the c_q follow from the raw moments m_k of a coordinate,
E(x - y)^2 = 2(m2 - m1^2) and E(x - y)^4 = 2 m4 - 8 m1 m3 + 6 m2^2, so every law with a finite fourth
moment has the exact mean and variance of the squared distance.

Distances D = W^(1/p) use the delta method (second order for the mean, first order for the spread):
``kind = "asymptotic"``, relative error O(1/d). Gaussian vectors have the exact chi law:
|x - y|^2 = 2 chi^2_d, E|x - y| = 2 Gamma((d+1)/2) / Gamma(d/2).

Angles: for isotropic laws the cosine c has density proportional to (1 - c^2)^((d-3)/2), mean 0 and
variance exactly 1/d, and the angle theta has density sin^(d-2)(theta) / B(d). Rademacher vectors
have c = x.y/d with mean 0 and variance exactly 1/d too. Other laws: the delta method on
c = U / sqrt(Vx Vy) with U = x.y/d, V = |x|^2/d gives mean -> m1^2/m2 and variance
g' Sigma g / d (see ``cosine_theory``).

Where no closed form is known (Cauchy's moments, the Chebyshev maximum) the result is NaN, never a
made-up number.

References:
    Beyer, Goldstein, Ramakrishnan, Shaft 1999, "When is nearest neighbor meaningful?".
    Aggarwal, Hinneburg, Keim 2001, "On the surprising behavior of distance metrics in high
    dimensional space". François, Wertz, Verleysen 2007, "The concentration of fractional distances".
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from sim.distances import Metric, make_metric
from sim.vectors import Distribution, Gaussian, Rademacher

__all__ = [
    "Theory",
    "abs_diff_moment",
    "power_sum_moments",
    "sqdist_moments",
    "distance_theory",
    "cosine_theory",
    "chi_mean",
    "chi_rel_std",
    "angle_density",
    "effective_rank",
]

NAN = math.nan


class Theory(NamedTuple):
    """Theoretical mean and relative std (std/mean) of a pair statistic; ``kind`` is
    ``"exact"``, ``"asymptotic"`` (large d, O(1/d) relative error) or ``"none"`` (both NaN)."""

    mean: float
    rel_std: float
    kind: str


NONE = Theory(NAN, NAN, "none")


def abs_diff_moment(dist: Distribution, q: float) -> float:
    """E|x - y|^q for two independent unscaled coordinates of ``dist`` (NaN where unknown)."""
    m = [1.0] + [dist.raw_moment(k) for k in (1, 2, 3, 4)]
    if q == 2:
        return 2 * (m[2] - m[1] ** 2)
    if q == 4:
        return 2 * m[4] - 8 * m[1] * m[3] + 6 * m[2] ** 2
    return dist.abs_diff_moment(q)


def power_sum_moments(dist: Distribution, d: int, q: float) -> tuple[float, float]:
    """(E W_q, Var W_q) of W_q = sum_j |x_j - y_j|^q over d coordinates, exact (NaN where unknown)."""
    cq, c2q = abs_diff_moment(dist, q), abs_diff_moment(dist, 2 * q)
    mean = cq * dist.scale_power_sum(d, q / 2)
    var = (c2q - cq * cq) * dist.scale_power_sum(d, q)
    return mean, var


def sqdist_moments(dist: Distribution, d: int) -> tuple[float, float]:
    """(E S, Var S) of the squared Euclidean distance S = |x - y|^2, exact.

    Gaussian: (2d, 8d); uniform(0,1): (d/6, 7d/180); Rademacher: (2d, 4d); anisotropic Gaussian with
    covariance eigenvalues l_j: (2 sum l_j, 8 sum l_j^2).
    """
    return power_sum_moments(dist, d, 2.0)


#: above this d the chi-law moments come from their asymptotic series (relative error < 1e-13; below
#: it the log-gamma difference is good to ~3e-13 relative)
_CHI_SERIES_DIM = 1000


def chi_mean(d: int) -> float:
    """E|x - y| for independent standard Gaussian x, y in R^d: 2 Gamma((d+1)/2) / Gamma(d/2).

    For large d the difference of log-gammas loses digits (absolute error ~ 1e-16 d); there the series
    Gamma(x + 1/2) / Gamma(x) = sqrt(x) (1 - 1/(8x) + 1/(128x^2) + 5/(1024x^3) - 21/(32768x^4) + ...)
    with x = d/2 is used.
    """
    if d > _CHI_SERIES_DIM:
        return math.sqrt(2.0 * d) * (1 - 1 / (4 * d) + 1 / (32 * d**2) + 5 / (128 * d**3) - 21 / (2048 * d**4))
    return 2.0 * math.exp(math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def chi_rel_std(d: int) -> float:
    """std/mean of |x - y| for independent standard Gaussian x, y in R^d: sqrt(2d - m^2)/m, m = chi_mean.

    2d - m^2 cancels catastrophically for large d (at d = 10^8 it even goes negative in float64), so
    there 1 - m^2/(2d) = 1/(2d) - 1/(8d^2) - 1/(16d^3) + 5/(128d^4) + O(d^-5) is used (the square of the
    series in ``chi_mean``).
    """
    if d > _CHI_SERIES_DIM:
        r = chi_mean(d) / math.sqrt(2.0 * d)
        return math.sqrt(1 / (2 * d) - 1 / (8 * d**2) - 1 / (16 * d**3) + 5 / (128 * d**4)) / r
    mean = chi_mean(d)
    return math.sqrt(2 * d - mean * mean) / mean


def _root_theory(mean_w: float, var_w: float, p: float) -> Theory:
    """Delta method for D = W^(1/p): mean to second order, rel_std to first order."""
    if not (math.isfinite(mean_w) and math.isfinite(var_w)) or mean_w <= 0:
        return NONE
    r = 1 / p
    mean = mean_w**r * (1 + r * (r - 1) * var_w / (2 * mean_w**2))
    return Theory(mean, r * math.sqrt(var_w) / mean_w, "asymptotic")


def distance_theory(dist: Distribution, metric: Metric | str, d: int) -> Theory:
    """Mean and relative std of the ``metric`` distance between two independent vectors of ``dist``.

    Args:
        dist: coordinate law.
        metric: a ``Metric`` or a name (minkowski needs a Metric with p).
        d: dimension.

    Returns:
        ``Theory(mean, rel_std, kind)``; for ``cosine``, the cosine distance 1 - cos.
    """
    metric = metric if isinstance(metric, Metric) else make_metric(metric)
    name = metric.name
    if name == "chebyshev":
        return NONE
    if name == "cosine":
        c_mean, c_var, kind = cosine_theory(dist, d)
        mean = 1 - c_mean
        return Theory(mean, math.sqrt(c_var) / mean if math.isfinite(c_var) else NAN, kind)
    q = metric.exponent
    if q is None:  # only chebyshev and cosine have no exponent, both handled above
        return NONE
    mean_w, var_w = power_sum_moments(dist, d, q)
    if not (math.isfinite(mean_w) and math.isfinite(var_w)):
        return NONE
    if name == "sqeuclidean" or q == 1:
        return Theory(mean_w, math.sqrt(var_w) / mean_w, "exact")
    if name == "euclidean" and isinstance(dist, Gaussian):
        return Theory(chi_mean(d), chi_rel_std(d), "exact")
    return _root_theory(mean_w, var_w, q)


def cosine_theory(dist: Distribution, d: int) -> tuple[float, float, str]:
    """(mean, variance, kind) of the cosine between two independent vectors.

    Exact (0, 1/d) for Gaussian and Rademacher vectors. For laws with finite fourth moments, the delta
    method on c = U / sqrt(Vx Vy) (U = x.y/d, V = |x|^2/d) gives mean m1^2/m2 and variance
    g' Sigma g / d_eff with g = (1/m2, -m1^2/(2 m2^2), -m1^2/(2 m2^2)) and Sigma the per-coordinate
    covariance of (x y, x^2, y^2); for anisotropic laws d_eff = (sum s_j^2)^2 / sum s_j^4. Symmetric
    laws without moments (Cauchy) have mean exactly 0 and unknown variance.
    """
    if isinstance(dist, (Gaussian, Rademacher)):
        return 0.0, 1.0 / d, "exact"
    m1, m2, m3, m4 = (dist.raw_moment(k) for k in (1, 2, 3, 4))
    if not all(math.isfinite(v) for v in (m1, m2, m3, m4)):
        return (0.0, NAN, "exact") if dist.symmetric else (NAN, NAN, "none")
    g = np.array([1 / m2, -(m1**2) / (2 * m2**2), -(m1**2) / (2 * m2**2)])
    cov_uv = m1 * m3 - m1**2 * m2
    sigma = np.array([[m2**2 - m1**4, cov_uv, cov_uv], [cov_uv, m4 - m2**2, 0.0], [cov_uv, 0.0, m4 - m2**2]])
    var = float(g @ sigma @ g) / effective_rank(dist, d)
    return (0.0 if dist.symmetric else m1**2 / m2), var, "asymptotic"


def effective_rank(dist: Distribution, d: int) -> float:
    """(sum_j s_j^2)^2 / sum_j s_j^4: the dimension that governs concentration (d for i.i.d. laws)."""
    return dist.scale_power_sum(d, 1.0) ** 2 / dist.scale_power_sum(d, 2.0)


def angle_density(theta_deg, d: int) -> np.ndarray:
    """Density (per degree) of the angle between two independent isotropic vectors in R^d, d >= 2.

    f(theta) = sin^(d-2)(theta) / B(d), B(d) = sqrt(pi) Gamma((d-1)/2) / Gamma(d/2), theta in radians;
    times pi/180 per degree.
    """
    t = np.radians(np.asarray(theta_deg, dtype=np.float64))
    log_b = 0.5 * math.log(math.pi) + math.lgamma((d - 1) / 2) - math.lgamma(d / 2)
    with np.errstate(divide="ignore"):
        log_f = (d - 2) * np.log(np.sin(t)) - log_b
    return np.exp(log_f) * math.pi / 180
