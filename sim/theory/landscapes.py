"""Closed-form theory for critical points of random landscapes (nothing here samples).

Spherical p-spin glass, ``H(x) = n^-(p-1)/2 sum J x..x`` on ``|x|^2 = n``, energies per spin ``u = H/n``
(Auffinger, Ben Arous, Cerny 2013, "ABC"):

* threshold ``E_inf = 2 sqrt((p-1)/p)``: below ``-E_inf`` (down to the ground state ``-E_0``) the
  critical points are exponentially dominated by minima; local descent drifts toward ``-E_inf``.
* complexity of all critical points (ABC Theorem 2.8): ``Theta_p(u) = log(p-1)/2 - (p-2)/(4(p-1)) u^2
  - I_1(u)`` with ``I_1(u) = -(u/E_inf^2) sqrt(u^2 - E_inf^2) - log(-u + sqrt(u^2 - E_inf^2)) +
  log E_inf`` for ``u < -E_inf`` and ``I_1 = 0`` on ``[-E_inf, 0]``; ``-E_0`` is its zero below
  ``-E_inf`` (p = 3: 1.65700, p = 4: 1.79409).
* at energy u the Riemannian Hessian is ``sqrt(p(p-1)/n) M - p u I`` (M a GOE with off-diagonal
  variance 1), so a critical point at u has index fraction ``F(u sqrt(p/(p-1)))``, F the semicircle
  CDF on [-2, 2].
* expected number of critical points (Kac-Rice) at small n: n = 2: ``2 sqrt(3p - 2)``; n = 3:
  ``2 (1 + 4 (p-1)^(3/2) / sqrt(3p - 2))``; p = 2: exactly 2n for every instance.
* Euler characteristic of the sphere S^(n-1): ``sum_k (-1)^k #crit(index k) = 1 + (-1)^(n-1)``.

Gaussian random field with ``E phi(x) phi(y) = n f(|x - y|^2 / (2n))`` (Bray & Dean 2007): at a
critical point of energy density ``eps = phi/n`` the Hessian is, to leading order, a GOE of radius
``2 sqrt(f''(0))`` shifted by ``(f'(0)/f(0)) eps`` (the common diagonal fluctuation has variance
``f'' - f'^2/f``, zero for the squared exponential), so the typical index fraction is
``alpha(eps) = F(-f'(0) eps / (f(0) sqrt(f''(0))))`` and the critical energy (alpha = 0) is
``eps_c = 2 f(0) sqrt(f''(0)) / f'(0)``. For ``f(r) = exp(-r / s^2)``: ``alpha(eps) = F(eps)`` and
``eps_c = -2`` for every length scale s. (Derivation: docs/theory.md#grf-bray-dean; eps_c < 0, minima
below it.)

References: Auffinger, Ben Arous, Cerny, CPAM 66, 165 (2013); Bray & Dean, PRL 98, 150201 (2007);
Fyodorov, PRL 92, 240601 (2004); Wigner 1958 (semicircle).
"""

from __future__ import annotations

import math

import numpy as np

from sim.theory.rmt import semicircle_cdf  # the one definition (also with a centre and radius)

__all__ = [
    "pspin_threshold",
    "pspin_ground_state",
    "pspin_complexity",
    "pspin_index_fraction",
    "pspin_expected_critical_count",
    "sphere_euler_characteristic",
    "grf_index_fraction",
    "grf_critical_energy",
    "grf_hessian_semicircle",
    "pspin_hessian_semicircle",
    "semicircle_density",
    "semicircle_cdf",
]


def _check_p(fn, p):
    if isinstance(p, bool) or int(p) != p or p < 2:
        raise ValueError(f"{fn}: p must be an integer >= 2, got {p!r}")
    return int(p)


def pspin_threshold(p: int) -> float:
    """E_inf = 2 sqrt((p-1)/p): minima reached by descent sit near -E_inf per spin."""
    p = _check_p("pspin_threshold", p)
    return 2.0 * math.sqrt((p - 1) / p)


def pspin_complexity(u, p: int):
    """ABC's complexity Theta_p(u) of all critical points at energy per spin u <= 0 (array in, array out).

    ``(1/n) log E #crit(energy <= u) -> Theta_p(u)`` for ``u <= 0``; p = 2 has no exponential
    complexity (returns 0 for u in [-2, 0] only as a limit; use p >= 3).
    """
    p = _check_p("pspin_complexity", p)
    u = np.asarray(u, dtype=np.float64)
    e = pspin_threshold(p)
    base = 0.5 * math.log(p - 1) - (p - 2) / (4.0 * (p - 1)) * u * u
    s = np.sqrt(np.maximum(u * u - e * e, 0.0))
    i1 = np.where(u < -e, -(u / e**2) * s - np.log(np.maximum(-u + s, 1e-300)) + math.log(e), 0.0)
    return base - i1


def pspin_ground_state(p: int) -> float:
    """E_0: the ground-state energy per spin is -E_0, the zero of Theta_p below -E_inf (p >= 3).

    p = 2: ``H = x^T M x`` on ``|x|^2 = n`` with ``M = (J + J^T) / (2 sqrt(n))`` (off-diagonal variance
    1/(2n)), whose spectrum fills [-sqrt(2), sqrt(2)]: E_0 = sqrt(2) = E_inf(2), no gap between the ground
    state and the threshold (docs/theory.md#pspin).
    """
    p = _check_p("pspin_ground_state", p)
    if p == 2:
        return math.sqrt(2.0)  # the top of the spectrum of M, not of a GOE on [-2, 2]
    e = pspin_threshold(p)
    lo, hi = -10.0, -e  # Theta(lo) < 0 < Theta(hi)
    for _ in range(200):  # bisection to machine precision
        mid = 0.5 * (lo + hi)
        if float(pspin_complexity(mid, p)) < 0:
            lo = mid
        else:
            hi = mid
    return -0.5 * (lo + hi)


def pspin_index_fraction(u, p: int):
    """Index fraction of a critical point at energy per spin u: F(u sqrt(p/(p-1)))."""
    p = _check_p("pspin_index_fraction", p)
    return semicircle_cdf(np.asarray(u, dtype=np.float64) * math.sqrt(p / (p - 1)))


def pspin_expected_critical_count(p: int, n: int) -> float:
    """E #critical points of the spherical p-spin glass in dimension n (Kac-Rice, exact).

    Known in closed form here for n = 2, n = 3 (any p >= 2) and p = 2 (any n: exactly 2n).

    Raises:
        ValueError: other (p, n).
    """
    p = _check_p("pspin_expected_critical_count", p)
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise ValueError(f"pspin_expected_critical_count: n must be an integer >= 2, got {n!r}")
    if p == 2:
        return 2.0 * n
    if n == 2:
        return 2.0 * math.sqrt(3 * p - 2)
    if n == 3:
        return 2.0 * (1.0 + 4.0 * (p - 1) ** 1.5 / math.sqrt(3 * p - 2))
    raise ValueError(f"pspin_expected_critical_count: closed form only for n in (2, 3) or p = 2, got p={p}, n={n}")


def sphere_euler_characteristic(n: int) -> int:
    """chi(S^(n-1)) = 1 + (-1)^(n-1) = sum_k (-1)^k #crit(index k) of any Morse function on the sphere."""
    return 1 + (-1) ** (int(n) - 1)


def grf_critical_energy(f0: float = 1.0, f1: float = -1.0, f2: float = 1.0) -> float:
    """eps_c = 2 f(0) sqrt(f''(0)) / f'(0) for covariance n f(|x-y|^2/(2n)) (default f = exp(-r): -2)."""
    if not (f0 > 0 and f1 < 0 and f2 > 0):
        raise ValueError(f"grf_critical_energy: need f(0) > 0, f'(0) < 0, f''(0) > 0, got {f0}, {f1}, {f2}")
    return 2.0 * f0 * math.sqrt(f2) / f1


def grf_index_fraction(eps, f0: float = 1.0, f1: float = -1.0, f2: float = 1.0):
    """Typical index fraction alpha(eps) = F(2 eps / |eps_c|) at energy density eps (Bray & Dean 2007).

    For the squared-exponential field of ``sim.landscapes.GRF`` (any length scale, no confinement)
    this is F(eps).
    """
    ec = grf_critical_energy(f0, f1, f2)
    return semicircle_cdf(2.0 * np.asarray(eps, dtype=np.float64) / abs(ec))


def semicircle_density(x, centre, radius):
    """Density of the semicircle law on [centre - radius, centre + radius] (array in, array out)."""
    if not (radius > 0):
        raise ValueError(f"semicircle_density: radius must be > 0, got {radius!r}")
    y = (np.asarray(x, dtype=np.float64) - centre) / radius
    return np.where(np.abs(y) < 1, 2.0 / (np.pi * radius) * np.sqrt(np.clip(1.0 - y * y, 0.0, None)), 0.0)


def grf_hessian_semicircle(eps, length_scale: float = 1.0):
    """Hessian spectrum at a typical GRF critical point of energy density eps: ``(centre, radius)``.

    For ``f(r) = exp(-r / s^2)`` (``sim.landscapes.GRF`` without confinement) the Hessian is a GOE of
    radius ``2 sqrt(f''(0)) = 2 / s^2`` shifted by ``(f'(0)/f(0)) eps = -eps / s^2``, so the fraction
    of negative eigenvalues is ``F(eps)`` (``grf_index_fraction``).
    """
    if not (math.isfinite(length_scale) and length_scale > 0):
        raise ValueError(f"grf_hessian_semicircle: length_scale must be a finite number > 0, got {length_scale!r}")
    s2 = float(length_scale) ** 2
    return -np.asarray(eps, dtype=np.float64) / s2, 2.0 / s2


def pspin_hessian_semicircle(u, p: int):
    """Riemannian Hessian spectrum of the p-spin glass at energy per spin u: ``(centre, radius)``.

    ``sqrt(p(p-1)/n) M - p u I`` with M a GOE of off-diagonal variance 1: radius ``2 sqrt(p(p-1))``,
    centre ``-p u`` (ABC 2013).
    """
    p = _check_p("pspin_hessian_semicircle", p)
    return -p * np.asarray(u, dtype=np.float64), 2.0 * math.sqrt(p * (p - 1))
