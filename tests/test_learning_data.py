"""sim.learning.data: synthetic spectra reproduce their covariance and target power; real data load from
their packages with a fixed split, standardised inputs and one-hot targets."""

import math
import random

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from sim.learning import data

KEY = jax.random.key(11)


def test_powerlaw_spectrum_normalisation_and_zeta():
    lam, v2 = data.powerlaw_spectrum(5, 1.5, 2.0)
    np.testing.assert_allclose(lam, np.arange(1, 6) ** -1.5, rtol=1e-15)
    np.testing.assert_allclose(v2 * float(mpmath.zeta(2.0)), np.arange(1, 6) ** -2.0, rtol=1e-13)
    for s in (1.095, 1.5, 3.0):
        assert data._zeta(s) == pytest.approx(float(mpmath.zeta(s)), rel=1e-13)


def test_gaussian_covariance_target_and_noise():
    """Column variances equal lambda_i and the clean target's variance equals sum v_i^2, within 5 SE
    (SE of a sample variance of n normals: sqrt(2/n) relative); the noise has variance sigma^2."""
    lam, v2 = data.powerlaw_spectrum(8, 1.0, 2.0)
    n = 20_000
    d = data.gaussian(KEY, n, n, lam, v2, noise=0.25)
    x = np.asarray(d.x_train)
    assert x.dtype == np.float64 and x.shape == (n, 8) and d.y_train.shape == (n, 1)
    se = math.sqrt(2 / n)
    np.testing.assert_allclose(x.var(axis=0) / lam, 1.0, atol=5 * se)
    f = np.asarray(d.f_test)[:, 0]
    assert f.var() / v2.sum() == pytest.approx(1.0, abs=5 * se)
    eps = np.asarray(d.y_test)[:, 0] - f
    assert eps.var() / 0.25 == pytest.approx(1.0, abs=5 * se)
    # the train labels carry noise of the same variance (the clean train target is x . w)
    w = np.sqrt(v2 / lam)
    assert (np.asarray(d.y_train)[:, 0] - x @ w).var() / 0.25 == pytest.approx(1.0, abs=5 * se)


def test_gaussian_is_nested_and_reproducible():
    """The first n samples of a draw of N > n are the draw of n (learning curves share their data)."""
    lam, v2 = data.isotropic_spectrum(6, 2.0)
    small = data.gaussian(KEY, 5, 3, lam, v2, noise=1.0)
    big = data.gaussian(KEY, 40, 3, lam, v2, noise=1.0)
    np.testing.assert_array_equal(np.asarray(big.x_train[:5]), np.asarray(small.x_train))
    np.testing.assert_array_equal(np.asarray(big.y_train[:5]), np.asarray(small.y_train))
    other = data.gaussian(jax.random.key(12), 5, 3, lam, v2, noise=1.0)
    assert not np.array_equal(np.asarray(other.x_train), np.asarray(small.x_train))
    f32 = data.isotropic(KEY, 5, 3, dim=6, r2=2.0, dtype=jnp.float32)
    assert f32.x_train.dtype == jnp.float32
    # batched over seeds with vmap: the same numbers as one call per key
    keys = jax.random.split(KEY, 3)
    batch = jax.vmap(lambda k: data.gaussian(k, 5, 3, lam, v2, noise=1.0))(keys)
    np.testing.assert_array_equal(
        np.asarray(batch.x_train[1]), np.asarray(data.gaussian(keys[1], 5, 3, lam, v2, noise=1.0).x_train)
    )


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(dim=4, alpha=0.0, beta=2.0), "alpha must be > 0"),
        (dict(dim=4, alpha=1.0, beta=1.0), "beta must be > 1"),
        (dict(dim=0, alpha=1.0, beta=2.0), "dim must be"),
        (dict(dim=4, alpha=1.0, beta=2.0, noise=-1.0), "noise must be"),
    ],
)
def test_powerlaw_refuses_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        data.powerlaw(KEY, 4, 4, **kw)


def test_digits_split_standardised_one_hot():
    rd = data.read_real("digits")
    assert rd.x_pool.shape == (1797 - data.TEST_POOL["digits"], 64) and rd.x_test.shape == (497, 64)
    np.testing.assert_allclose(rd.x_pool.mean(axis=0), 0.0, atol=1e-12)
    sd = rd.x_pool.std(axis=0)
    assert np.all((np.abs(sd - 1) < 1e-12) | (sd == 0))
    assert sorted(set(rd.labels_pool.tolist())) == list(range(10))
    d = data.load("digits", KEY, 100, 50)
    assert d.x_train.shape == (100, 64) and d.y_train.shape == (100, 10) and d.y_test.shape == (50, 10)
    np.testing.assert_array_equal(np.argmax(np.asarray(d.y_train), axis=1), np.asarray(d.labels_train))
    np.testing.assert_array_equal(np.asarray(d.y_test), np.asarray(d.f_test))
    # the training draw is a subset of the training pool, without repeats, and never from the test pool
    rows = {tuple(r) for r in np.round(np.asarray(d.x_train), 9)}
    pool = {tuple(r) for r in np.round(rd.x_pool, 9)}
    assert len(rows) == 100 and rows <= pool
    again = data.load("digits", KEY, 100, 50)
    np.testing.assert_array_equal(np.asarray(again.x_train), np.asarray(d.x_train))


def test_load_refuses_more_than_the_pool():
    with pytest.raises(ValueError, match="digits has 1300 training samples, asked for n_train = 1301"):
        data.load("digits", KEY, 1301)
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        data.load("cifar", KEY, 10)


@pytest.mark.skipif(data.mnist1d_unavailable() is not None, reason="mnist1d not installed")
def test_mnist1d_generated_locally_leaves_global_rng_alone():
    np.random.seed(123)
    random.seed(5)
    expect_np, expect_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(5)
    data.read_real.cache_clear()
    rd = data.read_real("mnist1d")
    assert np.random.random() == expect_np and random.random() == expect_py
    assert rd.x_pool.shape == (4000, 40) and rd.x_test.shape == (1000, 40)
    d = data.load("mnist1d", KEY, 64, 32, dtype=jnp.float32)
    assert d.x_train.shape == (64, 40) and d.x_train.dtype == jnp.float32 and d.labels_train.dtype == jnp.int32
