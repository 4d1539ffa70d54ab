"""Kernel (ridge / ridgeless) regression, and the empirical kernel spectrum that the spectral theory
needs for real data.

Kernels (``KERNELS``): ``linear`` k(x, x') = x.x' (kernel regression with it is ridge regression on the
inputs, so the theory on the covariance spectrum applies exactly) and ``rbf``
k(x, x') = exp(-|x - x'|^2 / (2 l^2)) with bandwidth l (default l^2 = the inputs' mean squared norm).

``empirical_spectrum(x_pool, y_pool)``: eigenvalues lambda_k = mu_k / N of the kernel matrix of a pool
of N inputs and the target's power v_k^2 = |u_k^T Y|^2 / N in each eigenvector (summed over outputs):
the spectrum of the kernel's integral operator over the pool's empirical distribution, to feed
``sim.learning.theory.learning_curve`` (Bordelon, Canatar, Pehlevan 2020, section 4).

References: Bordelon, Canatar, Pehlevan 2020, ICML; Simon et al. 2023, TMLR; docs/theory.md#eigenlearning.
"""

from __future__ import annotations

import jax.numpy as jnp

from sim.learning.data import Data
from sim.learning.ridge import Curve, dual_curve

__all__ = ["KERNELS", "kernel_matrix", "kernel_curve", "empirical_spectrum"]

KERNELS = ("linear", "rbf")


def kernel_matrix(x1, x2, *, kernel: str = "linear", bandwidth=None):
    """(n1, n2) kernel matrix between the rows of ``x1`` and ``x2``."""
    if kernel == "linear":
        return x1 @ x2.T
    if kernel == "rbf":
        l2 = x1.shape[1] if bandwidth is None else bandwidth**2
        sq = jnp.sum(x1 * x1, axis=1)[:, None] + jnp.sum(x2 * x2, axis=1)[None, :] - 2 * (x1 @ x2.T)
        return jnp.exp(-jnp.maximum(sq, 0) / (2 * l2))
    raise ValueError(f"kernel_matrix: kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")


def kernel_curve(data: Data, ns, ridge=0.0, *, kernel: str = "linear", bandwidth=None) -> Curve:
    """Losses of kernel ridge(less) regression for the nested training sets of sizes ``ns`` (static).

    One Cholesky factor of the kernel matrix of the first max(ns) samples serves every size. Ridgeless
    needs a non-singular kernel matrix (rbf: distinct inputs; linear: n <= d and inputs of full rank),
    else the losses are NaN."""
    ns = tuple(int(n) for n in ns)
    m = max(ns)
    xt = data.x_train[:m]
    k_tr = kernel_matrix(xt, xt, kernel=kernel, bandwidth=bandwidth)
    k_te = kernel_matrix(data.x_test, xt, kernel=kernel, bandwidth=bandwidth)
    return dual_curve(k_tr, k_te, data.y_train[:m], data.y_test, data.f_test, ns, ridge)


def empirical_spectrum(x_pool, y_pool, *, kernel: str = "linear", bandwidth=None):
    """(eigenvalues (N,), target_power (N,)) of the kernel over a pool of N inputs, largest first."""
    x_pool = jnp.asarray(x_pool)
    y = jnp.asarray(y_pool)
    y = y[:, None] if y.ndim == 1 else y
    n = x_pool.shape[0]
    mu, u = jnp.linalg.eigh(kernel_matrix(x_pool, x_pool, kernel=kernel, bandwidth=bandwidth))
    mu, u = mu[::-1], u[:, ::-1]
    v2 = jnp.sum((u.T @ y) ** 2, axis=1) / n
    return jnp.maximum(mu, 0) / n, v2
