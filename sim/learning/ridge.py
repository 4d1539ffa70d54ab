"""Ridge and ridgeless (minimum-norm) least squares on features, and whole learning curves over nested
training sets.

The predictor with ridge ``delta`` >= 0 on features ``phi`` (n, P) is
``f(x) = phi(x) . w`` with ``w = phi^T (phi phi^T + delta I)^-1 y = (phi^T phi + delta I)^-1 phi^T y``;
``delta -> 0`` gives the minimum-norm interpolator (n < P) or ordinary least squares (n >= P).
``delta`` is the ridge added to the *un-normalised* Gram matrix, the delta of the spectral theory
(``sim.learning.theory``); the 1/n-normalised objective ``(1/n)|y - phi w|^2 + lam |w|^2`` has
``delta = n lam``.

* ``min_norm_fit(phi, y, ridge)``: one fit through the SVD of ``phi`` (backward stable at any shape,
  including the interpolation threshold n = P and rank-deficient features: singular values below
  ``rcond * s_max`` are dropped, as ``numpy.linalg.lstsq`` does).
* ``ridge_curve(phi, y, phi_test, y_test, f_test, ns, ridge)``: train and test losses for every
  training-set size in ``ns`` (static), the first n rows of ``phi`` being the training set of size n.
  Sizes share their work: sizes n < P solve the dual system and share one Cholesky factor (that of a
  leading block of a matrix is the leading block of its factor); sizes n >= P solve the primal system
  with Gram matrices accumulated from one size to the next. Cost per seed: about
  ``n_max P^2 + (#sizes >= P) P^3/3 + m^2 P`` (m: largest size < P), against one least-squares solve
  per size in a loop. Float64 keeps it accurate at n = P, where the Gram matrix of Gaussian features
  has condition number about 4P^2 (relative error ~1e-9 at P = 2000). A singular Gram matrix (ridge 0
  with rank-deficient features) makes the Cholesky factor non-finite: the losses come back NaN, never
  silently wrong; use ``method="svd"`` (one SVD per size, always defined) for such features.
* ``dual_curve(k_train, k_test, y, y_test, f_test, ns, ridge)``: the same from kernel matrices (kernel
  regression), sharing one Cholesky factor across all sizes.

Every function is pure and jit/vmap-able (vmap over seeds); losses are the mean over samples of the
squared error summed over outputs.

References:
    Hastie, Montanari, Rosset, Tibshirani 2019, arXiv 1903.08560 (minimum-norm least squares).
    Golub & Van Loan, Matrix Computations, 4th ed., 4.2 (Cholesky), 5.5 (SVD least squares).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

__all__ = ["Curve", "min_norm_fit", "ridge_curve", "dual_curve", "METHODS"]

METHODS = ("cholesky", "svd")


class Curve(NamedTuple):
    """Losses per training-set size, each of shape (len(ns),) (or (seeds, len(ns)) under vmap).

    test_loss: mean squared error against the (noisy) test labels; excess_risk: against the noiseless
    test target; train_loss: on the training set."""

    test_loss: jax.Array
    excess_risk: jax.Array
    train_loss: jax.Array


def _as2d(y):
    return y[:, None] if y.ndim == 1 else y


def _mse(pred, target):
    return jnp.mean(jnp.sum((pred - target) ** 2, axis=-1))


def min_norm_fit(phi, y, ridge=0.0, *, rcond=None):
    """Weights of ridge regression (``ridge`` > 0) or of the minimum-norm least-squares fit (0).

    Args:
        phi: (n, P) features. y: (n,) or (n, k) labels. ridge: delta >= 0.
        rcond: relative cut-off of singular values for ridge 0 (default ``max(n, P) * eps``, numpy's).

    Returns:
        (P,) or (P, k) weights, ``y``'s trailing shape.
    """
    u, s, vt = jnp.linalg.svd(phi, full_matrices=False)
    eps = jnp.finfo(phi.dtype).eps
    cut = (max(phi.shape) * eps if rcond is None else rcond) * s[0]
    keep = s > cut
    safe = jnp.where(keep, s, 1.0)
    filt = jnp.where(keep, s / (safe * safe + ridge), 0.0)
    y2 = _as2d(y)
    w = vt.T @ (filt[:, None] * (u.T @ y2))
    return w if y.ndim == 2 else w[:, 0]


def _losses(pred_tr, y_tr, pred_te, y_te, f_te):
    return _mse(pred_te, y_te), _mse(pred_te, f_te), _mse(pred_tr, y_tr)


def dual_curve(k_train, k_test, y, y_test, f_test, ns, ridge=0.0) -> Curve:
    """Kernel (dual) regression at every size in ``ns``.

    Args:
        k_train: (m, m) kernel matrix of the first m >= max(ns) training inputs.
        k_test: (n_test, m) kernel between test and training inputs.
        y: (m, k) or (m,) training labels; y_test, f_test: (n_test, k) noisy and noiseless test targets.
        ns: static tuple of sizes, each in 1..m.
        ridge: delta >= 0.

    Returns:
        ``Curve``.
    """
    ns = tuple(int(n) for n in ns)
    y, y_test, f_test = _as2d(y), _as2d(y_test), _as2d(f_test)
    m = max(ns)
    a = k_train[:m, :m] + ridge * jnp.eye(m, dtype=k_train.dtype)
    chol = jnp.linalg.cholesky(a)
    out = []
    for n in ns:
        alpha = cho_solve((chol[:n, :n], True), y[:n])
        pred_te = k_test[:, :n] @ alpha
        pred_tr = y[:n] - ridge * alpha  # (K + delta I) alpha = y
        out.append(_losses(pred_tr, y[:n], pred_te, y_test, f_test))
    return Curve(*(jnp.stack(v) for v in zip(*out)))


def _svd_curve(phi, y, phi_test, y_test, f_test, ns, ridge):
    out = []
    for n in ns:
        w = min_norm_fit(phi[:n], y[:n], ridge)
        out.append(_losses(phi[:n] @ w, y[:n], phi_test @ w, y_test, f_test))
    return Curve(*(jnp.stack(v) for v in zip(*out)))


def ridge_curve(phi, y, phi_test, y_test, f_test, ns, ridge=0.0, *, method: str = "cholesky") -> Curve:
    """Ridge / minimum-norm least squares on features at every size in ``ns`` (nested training sets).

    Args:
        phi: (N, P) training features, N >= max(ns); the first n rows are the training set of size n.
        y: (N,) or (N, k) labels. phi_test: (n_test, P). y_test, f_test: (n_test,) or (n_test, k).
        ns: static tuple of sizes.
        ridge: delta >= 0 (0: minimum norm).
        method: ``"cholesky"`` (shared factorisations, fast; NaN if a Gram matrix is singular) or
            ``"svd"`` (one SVD per size; defined for rank-deficient features).

    Returns:
        ``Curve``.
    """
    if method not in METHODS:
        raise ValueError(f"ridge_curve: method must be one of {METHODS}, got {method!r}")
    ns = tuple(int(n) for n in ns)
    if list(ns) != sorted(set(ns)) or ns[0] < 1 or ns[-1] > phi.shape[0]:
        raise ValueError(f"ridge_curve: ns must be increasing sizes in 1..{phi.shape[0]}, got {ns}")
    y, y_test, f_test = _as2d(y), _as2d(y_test), _as2d(f_test)
    if method == "svd":
        return _svd_curve(phi, y, phi_test, y_test, f_test, ns, ridge)
    p = phi.shape[1]
    dual = tuple(n for n in ns if n < p)
    primal = tuple(n for n in ns if n >= p)
    parts = []
    if dual:
        m = dual[-1]
        parts.append(dual_curve(phi[:m] @ phi[:m].T, phi_test @ phi[:m].T, y[:m], y_test, f_test, dual, ridge))
    if primal:
        out = []
        gram = jnp.zeros((p, p), phi.dtype)
        rhs = jnp.zeros((p, y.shape[1]), phi.dtype)
        start = 0
        eye = jnp.eye(p, dtype=phi.dtype)
        for n in primal:
            block, yb = phi[start:n], y[start:n]
            gram = gram + block.T @ block
            rhs = rhs + block.T @ yb
            start = n
            w = cho_solve((jnp.linalg.cholesky(gram + ridge * eye), True), rhs)
            out.append(_losses(phi[:n] @ w, y[:n], phi_test @ w, y_test, f_test))
        parts.append(Curve(*(jnp.stack(v) for v in zip(*out))))
    return Curve(*(jnp.concatenate(v) for v in zip(*parts)))


@functools.partial(jax.jit, static_argnames=("ns", "method"))
def _ridge_curve_jit(phi, y, phi_test, y_test, f_test, ridge, ns, method):
    return ridge_curve(phi, y, phi_test, y_test, f_test, ns, ridge, method=method)
