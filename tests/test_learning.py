"""sim.learning learners: minimum-norm / ridge least squares against numpy's lstsq and direct solves, the
shared-factorisation learning curves against one solve per size (including n = P), kernels, features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sim.learning import data, ridge
from sim.learning.features import random_features
from sim.learning.kernel import empirical_spectrum, kernel_curve, kernel_matrix

KEY = jax.random.key(3)


def _np_losses(phi, y, phi_t, y_t, f_t, n, delta):
    a, b = phi[:n], y[:n]
    if delta == 0:
        w = np.linalg.lstsq(a, b, rcond=None)[0]
    else:
        w = np.linalg.solve(a.T @ a + delta * np.eye(a.shape[1]), a.T @ b)
    mse = lambda p, t: np.mean(np.sum((p - t) ** 2, axis=1))  # noqa: E731
    return mse(phi_t @ w, y_t), mse(phi_t @ w, f_t), mse(a @ w, b)


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (40, 40)])
def test_min_norm_fit_matches_lstsq(shape):
    rng = np.random.default_rng(0)
    phi = rng.standard_normal(shape)
    y = rng.standard_normal((shape[0], 2))
    w = np.asarray(ridge.min_norm_fit(jnp.asarray(phi), jnp.asarray(y)))
    np.testing.assert_allclose(w, np.linalg.lstsq(phi, y, rcond=None)[0], rtol=1e-9, atol=1e-10)


def test_min_norm_fit_rank_deficient():
    """Two identical columns: the minimum-norm solution splits the weight evenly, as lstsq does."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((20, 5))
    phi = np.concatenate([a, a[:, :1]], axis=1)
    y = rng.standard_normal(20)
    w = np.asarray(ridge.min_norm_fit(jnp.asarray(phi), jnp.asarray(y)))
    np.testing.assert_allclose(w, np.linalg.lstsq(phi, y, rcond=None)[0], rtol=1e-9, atol=1e-10)
    assert w[0] == pytest.approx(w[5], rel=1e-10)


@pytest.mark.parametrize("delta", [0.0, 3.0])
def test_ridge_curve_matches_one_solve_per_size(delta):
    """Dual sizes (n < P), the threshold n = P and primal sizes (n > P) agree with numpy to 1e-8."""
    d = data.isotropic(KEY, 90, 64, dim=40, noise=0.5)
    args = [np.asarray(v) for v in (d.x_train, d.y_train, d.x_test, d.y_test, d.f_test)]
    ns = (5, 17, 39, 40, 41, 60, 90)
    for method in ridge.METHODS:
        c = ridge._ridge_curve_jit(d.x_train, d.y_train, d.x_test, d.y_test, d.f_test, delta, ns, method)
        for j, n in enumerate(ns):
            want = _np_losses(*args, n, delta)
            got = (c.test_loss[j], c.excess_risk[j], c.train_loss[j])
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-8, atol=1e-12, err_msg=f"{method} n={n}")


def test_ridge_curve_singular_gram_is_nan_not_wrong():
    x = np.random.default_rng(2).standard_normal((30, 4))
    phi = jnp.asarray(np.concatenate([x, x[:, :1]], axis=1))  # rank 4 of 5 columns
    y = phi[:, :1]
    c = ridge.ridge_curve(phi, y, phi, y, y, (10, 20))
    assert np.all(np.isnan(np.asarray(c.test_loss)) | ~np.isfinite(np.asarray(c.test_loss)))
    s = ridge.ridge_curve(phi, y, phi, y, y, (10, 20), method="svd")
    np.testing.assert_allclose(np.asarray(s.test_loss), 0.0, atol=1e-20)


def test_kernel_curve_rbf_matches_direct_solve():
    d = data.load("digits", KEY, 120, 40)
    c = kernel_curve(d, (30, 120), 0.5, kernel="rbf")
    x, y, xt, yt = (np.asarray(v) for v in (d.x_train, d.y_train, d.x_test, d.y_test))
    for j, n in enumerate((30, 120)):
        sq = ((x[:n, None, :] - x[None, :n, :]) ** 2).sum(-1)
        k = np.exp(-sq / (2 * 64))
        kt = np.exp(-((xt[:, None, :] - x[None, :n, :]) ** 2).sum(-1) / (2 * 64))
        alpha = np.linalg.solve(k + 0.5 * np.eye(n), y[:n])
        assert float(c.test_loss[j]) == pytest.approx(np.mean(np.sum((kt @ alpha - yt) ** 2, 1)), rel=1e-9)


def test_empirical_spectrum_of_linear_kernel_is_the_covariance_spectrum():
    """Linear kernel on N points: its non-zero eigenvalues / N are those of the uncentred second-moment
    matrix X^T X / N, and the target power sums to |Y|^2 / N."""
    x = np.random.default_rng(4).standard_normal((200, 6)) * np.arange(1, 7)
    y = x @ np.ones(6)
    lam, v2 = empirical_spectrum(jnp.asarray(x), jnp.asarray(y), kernel="linear")
    np.testing.assert_allclose(np.asarray(lam)[:6], np.sort(np.linalg.eigvalsh(x.T @ x / 200))[::-1], rtol=1e-10)
    assert float(jnp.sum(v2)) == pytest.approx(float(y @ y) / 200, rel=1e-12)
    with pytest.raises(ValueError, match="kernel must be one of"):
        kernel_matrix(jnp.asarray(x), jnp.asarray(x), kernel="poly")


def test_random_features_nested_and_scaled():
    x = jax.random.normal(KEY, (500, 30), jnp.float64)
    small = random_features(KEY, x, 8, activation="linear")
    big = random_features(KEY, x, 16, activation="linear")
    np.testing.assert_allclose(np.asarray(big[:, :8]) * 4, np.asarray(small) * np.sqrt(8), rtol=1e-12)
    # linear random projections of N(0, I) inputs: feature j has variance |w_j|^2/(d P) (within 5 SE), with
    # w_j drawn from fold_in(key, j)
    w2 = np.array(
        [float(jnp.sum(jax.random.normal(jax.random.fold_in(KEY, j), (30,), jnp.float64) ** 2)) for j in range(16)]
    )
    v = np.asarray(big).var(axis=0) * 16 * 30 / w2
    assert np.all(np.abs(v - 1) < 5 * np.sqrt(2 / 500))
    with pytest.raises(ValueError, match="activation must be one of"):
        random_features(KEY, x, 4, activation="gelu")


def test_linear_random_features_span_the_inputs():
    """Linear random features with P > d span the inputs' column space: for n >= P the minimum-norm fit on
    them (SVD: their Gram matrix has rank d < P) predicts as plain least squares does, to 1e-8; the Cholesky
    path reports the singular Gram matrix as NaN instead of a wrong number."""
    from sim.learning.features import features_curve
    from sim.learning.linear import linear_curve

    d = data.isotropic(KEY, 120, 50, dim=10, noise=0.3)
    ns = (40, 80, 120)
    lin = linear_curve(d, ns)
    feat = features_curve(jax.random.key(5), d, ns, 25, activation="linear", input_scale=10.0, method="svd")
    chol = features_curve(jax.random.key(5), d, ns, 25, activation="linear", input_scale=10.0)
    assert np.all(np.isnan(np.asarray(chol.test_loss)))
    for a, b in zip(lin, feat):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-8)
