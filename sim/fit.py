"""Power-law fits with bootstrap confidence intervals.

``fit_power_law(key, x, y)`` fits y = c * x^b by least squares on log-log axes and returns b with a
residual-bootstrap confidence interval: the residuals of the log-log fit are resampled with
replacement (``n_boot`` times, keys ``fold_in(key, i)``), added to the fitted line, and refitted; the
interval is the percentile interval of the refitted slopes. Residual (not case) resampling keeps
every x in every replicate, so it works with the handful of dimensions a sweep has.

References:
    Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 9 (bootstrapping regression).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import as_key

__all__ = ["PowerLawFit", "fit_power_law"]


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
        return _ols(lx, fitted + resid[idx])[0]

    return slope, icpt, resid, jax.vmap(one)(jnp.arange(n_boot))


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
    slope, icpt, _, boots = jax.device_get(_boot(as_key(key), jnp.asarray(lx), jnp.asarray(ly), int(n_boot)))
    dof = max(x.size - 2, 1)
    resid = ly - (icpt + slope * lx)
    stderr = float(np.sqrt(np.sum(resid**2) / dof / np.sum((lx - lx.mean()) ** 2)))
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return PowerLawFit(float(slope), float(np.exp(icpt)), float(lo), float(hi), stderr, float(level))
