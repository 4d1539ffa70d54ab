"""Closed forms for random-matrix Hessians (docs/theory.md, random-matrix sections). Plain numpy, float64.

* Semicircle (GOE normalised by 1/sqrt(N)): rho(x) = sqrt(4 - x^2)/(2 pi) on [-2, 2], CDF
  F(x) = 1/2 + (x sqrt(4 - x^2)/4 + arcsin(x/2))/pi.
* Shifted GOE H = GOE/sqrt(N) + s I: index fraction -> F(-s) (Bray & Dean 2007).
* Marchenko–Pastur (Wishart W = X^T X/m, q = n/m <= 1): density sqrt((b - x)(x - a))/(2 pi q x) on
  [a, b] = [(1 - sqrt q)^2, (1 + sqrt q)^2].
* P(GOE_N positive definite) = exp(-theta N^2 + O(N)), theta = ln(3)/4 (Dean & Majumdar 2006); the exact
  values for N <= 8 (de Bruijn's Pfaffian formula; any N: ``sim.rare.log_p_positive_definite_exact``).
* Var(index of GOE_N) ~ ln(N)/pi^2 + C (Majumdar, Nadal, Scardicchio & Vivo 2009), C ~ 0.24 from
  simulation (docs/theory.md#goe-index-variance).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "THETA",
    "EXACT_P_POSITIVE_DEFINITE",
    "INDEX_VARIANCE_CONSTANT",
    "semicircle_density",
    "semicircle_cdf",
    "shifted_goe_index_fraction",
    "marchenko_pastur_edges",
    "marchenko_pastur_density",
    "marchenko_pastur_cdf",
    "log_p_positive_definite_asymptotic",
    "exact_log_p_positive_definite",
    "goe_index_variance",
]

#: Dean & Majumdar's large-deviation rate: P(GOE_N > 0) = exp(-THETA N^2 + O(N)).
THETA = math.log(3.0) / 4.0

#: P(GOE_N positive definite), exact (de Bruijn's Pfaffian formula; docs/theory.md#goe-positive-definite-exact).
EXACT_P_POSITIVE_DEFINITE = {
    1: 0.5,
    2: (2.0 - math.sqrt(2.0)) / 4.0,
    3: (math.pi - 2.0 * math.sqrt(2.0)) / (4.0 * math.pi),
    4: 0.00245670925978622,
    5: 1.401146854634e-4,
    6: 4.62018747754899e-6,
    7: 8.80461280632549e-8,
    8: 9.69454674930767e-10,
}

#: The constant of Var(index) ~ ln(N)/pi^2 + C for the GOE (from simulation, docs/theory.md#goe-index-variance).
INDEX_VARIANCE_CONSTANT = 0.24


def semicircle_density(x):
    """Wigner semicircle sqrt(4 - x^2)/(2 pi) on [-2, 2], 0 outside. Array in, float64 array out."""
    x = np.asarray(x, np.float64)
    return np.sqrt(np.clip(4.0 - x * x, 0.0, None)) / (2.0 * math.pi)


def semicircle_cdf(x, centre=0.0, radius=2.0):
    """CDF of the semicircle law on [centre - radius, centre + radius]; the standard one (defaults) is
    F(x) = 1/2 + (x sqrt(4 - x^2)/4 + arcsin(x/2))/pi on [-2, 2], 0 below and 1 above.

    The one definition in hdsim: ``sim.theory.landscapes`` (Hessian semicircles of the GRF and the
    p-spin, with their centre and radius) and the experiments use it. Array in, float64 array out.
    """
    if not radius > 0:
        raise ValueError(f"semicircle_cdf: radius must be > 0, got {radius!r}")
    x = np.clip(2.0 * (np.asarray(x, np.float64) - centre) / radius, -2.0, 2.0)
    return 0.5 + (x * np.sqrt(4.0 - x * x) / 4.0 + np.arcsin(x / 2.0)) / math.pi


def shifted_goe_index_fraction(shift, n=None):
    """Index fraction of GOE/sqrt(n) + shift I: F(-shift), plus the 1/n term when ``n`` is given.

    The GOE density has the finite-n correction (1/n)[(delta(x - 2) + delta(x + 2))/4
    - 1/(2 pi sqrt(4 - x^2))] (beta = 1), so E[index]/n = F(-s) + arcsin(s/2)/(2 pi n) + o(1/n)
    (confirmed by simulation at n = 32, 64 to within 1.3 standard errors of 2e-4). The 1/n term integrates
    to 0, so outside the bulk (|s| >= 2) the correction is 0 (the edge itself is smeared over n^(-2/3)).

    References:
        Bray & Dean, PRL 98, 150201 (2007); for the 1/n term e.g. Forrester, Frankel & Garoni,
        J. Math. Phys. 47, 023301 (2006).
    """
    s = np.asarray(shift, np.float64)
    f = semicircle_cdf(-s)
    if n is None:
        return f
    # the 1/n density term integrates to 0 over the whole line: no correction outside the bulk |s| >= 2
    corr = np.where(np.abs(s) < 2.0, np.arcsin(np.clip(s, -2.0, 2.0) / 2.0) / (2.0 * math.pi), 0.0)
    return f + corr / np.asarray(n, np.float64)


def marchenko_pastur_edges(q: float) -> tuple[float, float]:
    """Support [(1 - sqrt q)^2, (1 + sqrt q)^2] of Marchenko–Pastur with ratio q = n/m."""
    if not q > 0:
        raise ValueError(f"marchenko_pastur_edges: q must be > 0, got {q!r}")
    return (1 - math.sqrt(q)) ** 2, (1 + math.sqrt(q)) ** 2


def marchenko_pastur_density(x, q: float):
    """Continuous part of the Marchenko–Pastur density, sqrt((b - x)(x - a))/(2 pi q x) on [a, b].

    For q > 1 there is also an atom of mass 1 - 1/q at 0 (not included here).
    """
    a, b = marchenko_pastur_edges(q)
    x = np.asarray(x, np.float64)
    inside = (x > a) & (x < b)
    xs = np.where(inside, x, (a + b) / 2)
    return np.where(inside, np.sqrt((b - xs) * (xs - a)) / (2 * math.pi * q * xs), 0.0)


def marchenko_pastur_cdf(x, q: float):
    """CDF of Marchenko–Pastur (with the atom 1 - 1/q at 0 when q > 1), by 128-point Gauss–Legendre.

    Substituting t = (a + b)/2 - (b - a)/2 cos(phi) removes the square-root endpoints, so the
    quadrature converges exponentially (error < 1e-12).
    """
    a, b = marchenko_pastur_edges(q)
    x = np.asarray(x, np.float64)
    phi_x = np.arccos(np.clip(((a + b) / 2 - np.clip(x, a, b)) / ((b - a) / 2), -1.0, 1.0))
    u, w = np.polynomial.legendre.leggauss(128)
    phi = phi_x[..., None] * (u + 1) / 2  # nodes on [0, phi_x]
    t = (a + b) / 2 - (b - a) / 2 * np.cos(phi)
    f = ((b - a) / 2) ** 2 * np.sin(phi) ** 2 / (2 * math.pi * q * t)
    cont = np.sum(f * w, axis=-1) * phi_x / 2
    atom = max(0.0, 1.0 - 1.0 / q)
    return np.where(x < 0, 0.0, atom + cont)


def log_p_positive_definite_asymptotic(n):
    """Leading large-deviation term -THETA n^2 of ln P(GOE_n positive definite).

    References:
        Dean & Majumdar, PRL 97, 160201 (2006).
    """
    return -THETA * np.asarray(n, np.float64) ** 2


def exact_log_p_positive_definite(n: int) -> float:
    """ln P(GOE_n positive definite) from the exact table (n <= 8); nan beyond (see ``sim.rare``)."""
    p = EXACT_P_POSITIVE_DEFINITE.get(int(n))
    return math.log(p) if p is not None else float("nan")


def goe_index_variance(n, *, constant: float = INDEX_VARIANCE_CONSTANT):
    """Var(index) of GOE_n: ln(n)/pi^2 + constant (large n).

    References:
        Majumdar, Nadal, Scardicchio & Vivo, PRL 103, 220603 (2009).
    """
    return np.log(np.asarray(n, np.float64)) / math.pi**2 + constant
