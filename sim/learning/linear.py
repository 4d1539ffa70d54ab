"""Linear regression on the raw features: ridge or ridgeless (minimum-norm) least squares, whole learning
curves per seed (``linear_curve``), batched over seeds by the caller's ``vmap``.

References: Hastie, Montanari, Rosset, Tibshirani 2019, arXiv 1903.08560; docs/theory.md#double-descent.
"""

from __future__ import annotations

from sim.learning.data import Data
from sim.learning.ridge import Curve, ridge_curve

__all__ = ["linear_curve"]


def linear_curve(data: Data, ns, ridge=0.0, *, method: str = "cholesky") -> Curve:
    """Losses of ridge regression (``ridge`` = delta >= 0; 0: minimum norm) on ``data``'s inputs, for the
    nested training sets of sizes ``ns`` (static tuple; the first n training rows). See
    ``sim.learning.ridge.ridge_curve``."""
    return ridge_curve(data.x_train, data.y_train, data.x_test, data.y_test, data.f_test, ns, ridge, method=method)
