"""Learning curves in closed form: the spectral (eigenlearning) prediction for any spectrum and target,
the power-law exponents it implies, and Hastie et al.'s double-descent risk. Plain numpy, float64.

Spectral prediction (kernel or linear ridge regression with ridge ``delta`` on n samples; features
with covariance / kernel eigenvalues lambda_i and target power v_i^2 per mode; label noise sigma^2):

* the effective ridge kappa > 0 solves ``sum_i lambda_i/(lambda_i + kappa) + delta/kappa = n``
  (``effective_ridge``; with delta = 0 and n >= the number of modes there is no positive root and
  kappa = 0: the model interpolates nothing it cannot fit);
* learnabilities ``L_i = lambda_i/(lambda_i + kappa)`` and ``E0 = n/(n - sum_i L_i^2)``;
* test MSE against noisy labels ``E0 (sum_i (1 - L_i)^2 v_i^2 + sigma^2)``; excess risk (against the
  clean target) = that minus sigma^2; train MSE = (delta/(n kappa))^2 times the test MSE
  (``learning_curve``).

Exponents of the excess risk in n for lambda_i = i^-alpha, v_i^2 ~ i^-beta (``exponent``):
noiseless and ridgeless min(beta - 1, 2 alpha); ridge delta/n ~ n^-l (l < alpha), noiseless 2 l min(r, 1)
with beta = 1 + 2 alpha r; noisy with the optimal ridge 2 alpha min(r,1)/(1 + 2 alpha min(r,1)); noisy and
ridgeless 0 (tempered: E0 tends to a constant > 1).

Double descent, isotropic features, |w|^2 = r^2, gamma = P/n, minimum-norm least squares
(``hmrt_asymptotic``, ``hmrt_finite``); the optimally tuned ridge lam* = gamma sigma^2/r^2 removes the
peak (``hmrt_optimal_ridge``: the spectral prediction at delta = n lam*).

References:
    Bordelon, Canatar, Pehlevan 2020, "Spectrum dependent learning curves in kernel regression and
    wide neural networks", ICML; Canatar, Bordelon, Pehlevan 2021, Nat. Commun. 12, 2914.
    Simon, Dickens, Karkada, DeWeese 2023, "The eigenlearning framework", TMLR (arXiv 2110.03922).
    Spigler, Geiger, Wyart 2020, J. Stat. Mech. 124001; Cui, Loureiro, Krzakala, Zdeborova 2021, NeurIPS.
    Hastie, Montanari, Rosset, Tibshirani 2019, arXiv 1903.08560, Theorems 1 and 2.
    Dobriban & Wager 2018, Ann. Statist. 46, 247 (optimal ridge).
    docs/theory.md#eigenlearning, docs/theory.md#learning-curve-exponents, docs/theory.md#double-descent.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = [
    "Prediction",
    "effective_ridge",
    "learning_curve",
    "exponent",
    "REGIMES",
    "hmrt_asymptotic",
    "hmrt_finite",
    "hmrt_optimal_ridge",
    "KAPLAN_ALPHA_D",
]

#: Kaplan et al. 2020's data exponent of Transformer language models
KAPLAN_ALPHA_D = 0.095
REGIMES = ("ridgeless", "ridge", "optimal", "tempered")


class Prediction(NamedTuple):
    """The spectral prediction at each n (arrays of n's shape)."""

    kappa: np.ndarray
    e0: np.ndarray
    test_loss: np.ndarray
    excess_risk: np.ndarray
    train_loss: np.ndarray


def _check_spectrum(eigenvalues, target_power=None):
    lam = np.asarray(eigenvalues, np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError("eigenvalues must be a non-empty 1-D array of finite values >= 0")
    if target_power is None:
        return lam, None
    v2 = np.asarray(target_power, np.float64)
    if v2.shape[:1] != lam.shape or not np.all(np.isfinite(v2)) or np.any(v2 < 0):
        raise ValueError("target_power must be finite, >= 0, one value (or row) per eigenvalue")
    return lam, v2


def effective_ridge(eigenvalues, n, ridge=0.0, *, iters: int = 200) -> np.ndarray:
    """kappa solving ``sum_i lambda_i/(lambda_i + kappa) + ridge/kappa = n`` for each n.

    The left side falls strictly in kappa, from (number of non-zero modes, or +inf with a ridge) at 0+ to
    0 at infinity, and the root lies below ``(sum lambda + ridge)/n``: bisection on log kappa (``iters``
    halvings of a bracket 60 decades wide: relative accuracy far below float64's), then Newton steps.
    With ``ridge = 0`` and ``n`` at least the number of non-zero modes, kappa = 0.

    Args:
        eigenvalues: (D,) lambda_i >= 0. n: scalar or array of sample counts > 0. ridge: delta >= 0.

    Returns:
        kappa with the shape of ``n``.
    """
    lam, _ = _check_spectrum(eigenvalues)
    lam = lam[lam > 0]
    n = np.asarray(n, np.float64)
    if np.any(n <= 0) or not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"effective_ridge: n must be > 0 and ridge >= 0, got n = {n}, ridge = {ridge}")
    flat = n.reshape(-1)
    hi = np.log((lam.sum() + ridge) / flat) + 1e-12
    lo = hi - 60 * math.log(10)

    def f(logk):
        k = np.exp(logk)[:, None]
        return np.sum(lam[None, :] / (lam[None, :] + k), axis=1) + ridge / k[:, 0] - flat

    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        pos = f(mid) > 0
        lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
    kappa = np.exp(0.5 * (lo + hi))
    for _ in range(3):  # Newton on kappa: f'(k) = -sum lam/(lam + k)^2 - ridge/k^2
        k = kappa[:, None]
        g = np.sum(lam / (lam + k), axis=1) + ridge / kappa - flat
        dg = -np.sum(lam / (lam + k) ** 2, axis=1) - ridge / kappa**2
        kappa = np.maximum(kappa - g / dg, 0.5 * kappa)
    if ridge == 0:
        kappa = np.where(flat >= lam.size, 0.0, kappa)
    return kappa.reshape(n.shape)


def learning_curve(eigenvalues, target_power, n, *, ridge: float = 0.0, noise: float = 0.0) -> Prediction:
    """The spectral prediction of the test, excess and train MSE at each n.

    Args:
        eigenvalues: (D,) lambda_i >= 0 (covariance or kernel eigenvalues; zero modes carry target power
            that no sample count learns).
        target_power: (D,) or (D, k) v_i^2 (power of the target in mode i, summed over k outputs).
        n: scalar or array of sample counts.
        ridge: delta >= 0 added to the un-normalised Gram matrix. noise: label-noise variance sigma^2.

    Returns:
        ``Prediction`` (arrays of n's shape). With ridge 0, E0 and the losses are inf at n = D (the
        interpolation threshold) and for n > D the model is ordinary least squares, E0 = n/(n - D).
    """
    lam, v2 = _check_spectrum(eigenvalues, target_power)
    if v2.ndim == 2:
        v2 = v2.sum(axis=1)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"learning_curve: noise must be >= 0, got {noise}")
    n_arr = np.asarray(n, np.float64)
    kappa = effective_ridge(lam, n_arr, ridge).reshape(-1)
    flat = n_arr.reshape(-1)
    pos = lam > 0
    k = kappa[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        li = np.where(pos[None, :], lam[None, :] / (lam[None, :] + k), 0.0)
        denom = flat - np.sum(li**2, axis=1)
        e0 = np.where(denom > 0, flat / denom, np.inf)
        bias = np.sum((1 - li) ** 2 * v2[None, :], axis=1)
        test = e0 * (bias + noise)
        train = np.where(kappa > 0, (ridge / (flat * kappa)) ** 2, 0.0) * test
        train = np.where(np.isfinite(test), train, np.nan)
    shape = n_arr.shape
    return Prediction(
        kappa.reshape(shape),
        e0.reshape(shape),
        test.reshape(shape),
        (test - noise).reshape(shape),
        train.reshape(shape),
    )


def exponent(alpha: float, beta: float, regime: str = "ridgeless", *, ridge_decay: float | None = None) -> float:
    """Exponent b of the excess risk ~ n^-b for lambda_i = i^-alpha, v_i^2 ~ i^-beta (large n).

    Regimes: ``ridgeless`` (noiseless, ridge 0 or decaying faster than n^-alpha): min(beta - 1, 2 alpha);
    ``ridge`` (noiseless, delta/n ~ n^-l with l = ``ridge_decay`` < alpha): 2 l min(r, 1), r = (beta-1)/(2 alpha);
    ``optimal`` (noisy, optimal ridge): 2 alpha min(r,1)/(1 + 2 alpha min(r,1)); ``tempered`` (noisy, ridge 0): 0.
    """
    if not (alpha > 0 and beta > 1):
        raise ValueError(f"exponent: need alpha > 0 and beta > 1, got alpha = {alpha}, beta = {beta}")
    s = min((beta - 1) / (2 * alpha), 1.0)  # min(r, 1)
    if regime == "ridgeless":
        return 2 * alpha * s
    if regime == "ridge":
        if ridge_decay is None or not ridge_decay > 0:
            raise ValueError("exponent: regime 'ridge' needs ridge_decay l > 0")
        return 2 * alpha * s if ridge_decay >= alpha else 2 * ridge_decay * s
    if regime == "optimal":
        return 2 * alpha * s / (1 + 2 * alpha * s)
    if regime == "tempered":
        return 0.0
    raise ValueError(f"exponent: unknown regime {regime!r}; valid: {', '.join(REGIMES)}")


def hmrt_asymptotic(gamma, r2: float = 1.0, noise: float = 1.0) -> np.ndarray:
    """Hastie et al.'s limiting risk of minimum-norm least squares on isotropic features, gamma = P/n:
    sigma^2 gamma/(1 - gamma) below 1, r^2 (1 - 1/gamma) + sigma^2/(gamma - 1) above, inf at 1."""
    g = np.asarray(gamma, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(g < 1, noise * g / (1 - g), r2 * (1 - 1 / g) + noise / (g - 1))
    return np.where(g == 1, np.inf, out)


def hmrt_finite(n, p, r2: float = 1.0, noise: float = 1.0) -> np.ndarray:
    """Exact expected risk at finite n for a Gaussian design: sigma^2 P/(n - P - 1) for P < n - 1,
    r^2 (1 - n/P) + sigma^2 n/(P - n - 1) for P > n + 1, inf for |P - n| <= 1 (the expectation diverges)."""
    n = np.asarray(n, np.float64)
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        under = noise * p / (n - p - 1)
        over = r2 * (1 - n / p) + noise * n / (p - n - 1)
    return np.where(p < n - 1, under, np.where(p > n + 1, over, np.inf))


def hmrt_optimal_ridge(n, p, r2: float = 1.0, noise: float = 1.0) -> np.ndarray:
    """Excess risk of ridge regression at the optimal penalty lam* = gamma sigma^2/r^2 (Dobriban & Wager
    2018), from the spectral prediction on P isotropic modes with delta = n lam* = P sigma^2/r^2 (exact in
    the proportional limit). Scalars or broadcastable arrays of n and P."""
    n, p = np.broadcast_arrays(np.asarray(n, np.float64), np.asarray(p, np.float64))
    out = np.empty(n.shape)
    for idx in np.ndindex(n.shape):
        d = int(p[idx])
        lam, v2 = np.ones(d), np.full(d, r2 / d)
        out[idx] = learning_curve(lam, v2, n[idx], ridge=d * noise / r2, noise=noise).excess_risk
    return out
