"""The project's one data module: synthetic Gaussian features with a prescribed spectrum, and real data
that ships inside an installed package (nothing is downloaded at run time).

Synthetic (pure, key first, jit/vmap-able):

* ``gaussian(key, n_train, n_test, eigenvalues, target_power, noise=..., dtype=...)``: features
  ``x = g * sqrt(lambda)`` with ``g ~ N(0, I)``, so the covariance is ``diag(lambda)``, and labels
  ``y = x . w + sqrt(noise) * eps`` with ``lambda_i w_i^2 = v_i^2`` (``target_power``: the power of the
  target in mode i). Sample i of the training set is drawn from ``fold_in(key_train, i)``, so the first
  n samples of a draw of N > n are the draw of n: learning curves over n are nested, and the same seed
  gives the same numbers whatever the batch of sample sizes.
* ``powerlaw_spectrum(dim, alpha, beta)``: ``lambda_i = i^-alpha``, ``v_i^2 = i^-beta / zeta(beta)``
  (total target power 1 in the infinite-dimensional limit; ``dim`` modes kept).
* ``isotropic_spectrum(dim, r2)``: ``lambda_i = 1``, ``v_i^2 = r2 / dim`` (``|w|^2 = r2``; Hastie et al.'s
  setting for double descent).

Real data (``load(name, key, n_train, n_test, dtype=...)``, names in ``REAL_DATASETS``):

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 64 pixels, 10 classes; the
  file ships in the scikit-learn wheel). A fixed split (``SPLIT_SEED``) holds out ``TEST_POOL["digits"]``
  images; ``key`` picks the ``n_train`` training images from the rest and the order of the test pool.
* ``mnist1d``: MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package's
  ``make_dataset`` (no download; 4,000 training and 1,000 test signals of length 40, 10 classes).

Inputs are standardised per coordinate with the mean and standard deviation of the whole training pool
(never of the test pool; constant pixels stay 0). Targets are one-hot ``(n, classes)`` float arrays
(regression on one-hot targets, as in the spectral learning-curve literature), with the integer labels
beside them for classification. Reading the files is the only I/O, in ``read_real`` (cached), called
at load time, never on import.

References:
    Hastie, Montanari, Rosset, Tibshirani 2019, arXiv 1903.08560 (isotropic features, double descent).
    Bordelon, Canatar, Pehlevan 2020, ICML (spectral learning curves; power-law spectra).
    Greydanus 2020, arXiv 2011.14439 (MNIST-1D).
    docs/theory.md#eigenlearning (spectra and target power), docs/theory.md#double-descent (isotropic case).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import as_key, float_dtype

__all__ = [
    "Data",
    "gaussian",
    "powerlaw_spectrum",
    "isotropic_spectrum",
    "powerlaw",
    "isotropic",
    "load",
    "read_real",
    "RealData",
    "REAL_DATASETS",
    "SYNTHETIC_DATASETS",
    "DATASETS",
    "TEST_POOL",
    "SPLIT_SEED",
    "MNIST1D_SEED",
    "mnist1d_unavailable",
]

SYNTHETIC_DATASETS = ("powerlaw", "isotropic")
REAL_DATASETS = ("digits", "mnist1d")
DATASETS = SYNTHETIC_DATASETS + REAL_DATASETS
#: images held out as the test pool (digits), or the package's own held-out split (mnist1d)
TEST_POOL = {"digits": 497, "mnist1d": 1000}
#: seed of the fixed digits train/test split
SPLIT_SEED = 0
#: seed passed to mnist1d's make_dataset (its default)
MNIST1D_SEED = 42


class Data(NamedTuple):
    """A train/test draw. Shapes: ``x_*`` (n, d); ``y_*`` and ``f_test`` (n, k) with k = 1 for synthetic
    regression and k = classes for real data (one-hot); ``labels_*`` (n,) int32 class labels, or None.

    ``f_test`` is the noiseless target on the test inputs (the excess risk is measured against it); for
    real data it equals ``y_test``."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    f_test: jax.Array
    labels_train: jax.Array | None = None
    labels_test: jax.Array | None = None


# ---- synthetic Gaussian features ----


def _zeta(s: float, terms: int = 100_000) -> float:
    """Riemann zeta(s), s > 1: a partial sum plus the Euler-Maclaurin tail (error < 1e-15 relative)."""
    n = terms
    head = math.fsum(k**-s for k in range(1, n))
    return head + n ** (1 - s) / (s - 1) + 0.5 * n**-s + s * n ** (-s - 1) / 12


def powerlaw_spectrum(dim: int, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues, target_power)`` of the power-law model: ``lambda_i = i^-alpha``,
    ``v_i^2 = i^-beta / zeta(beta)`` for i = 1..dim (float64 numpy).

    Raises:
        ValueError: dim < 1, alpha < 0 or beta <= 1 (the target power must be summable).
    """
    if int(dim) != dim or dim < 1:
        raise ValueError(f"powerlaw_spectrum: dim must be an integer >= 1, got {dim}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"powerlaw_spectrum: alpha must be >= 0, got {alpha}")
    if not (math.isfinite(beta) and beta > 1):
        raise ValueError(f"powerlaw_spectrum: beta must be > 1 (summable target power), got {beta}")
    i = np.arange(1, int(dim) + 1, dtype=np.float64)
    return i ** -float(alpha), i ** -float(beta) / _zeta(float(beta))


def isotropic_spectrum(dim: int, r2: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(eigenvalues, target_power)`` of isotropic features: ``lambda_i = 1``, ``v_i^2 = r2/dim``."""
    if int(dim) != dim or dim < 1:
        raise ValueError(f"isotropic_spectrum: dim must be an integer >= 1, got {dim}")
    if not (math.isfinite(r2) and r2 >= 0):
        raise ValueError(f"isotropic_spectrum: r2 must be >= 0, got {r2}")
    return np.ones(int(dim)), np.full(int(dim), float(r2) / int(dim))


def _rows(key, n, d, dtype):
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (d,), dtype))(jnp.arange(n))


@functools.partial(jax.jit, static_argnames=("n_train", "n_test", "dtype"))
def _gaussian(key, eigenvalues, target_power, noise, *, n_train, n_test, dtype):
    d = eigenvalues.shape[0]
    lam = eigenvalues.astype(dtype)
    w = jnp.sqrt(target_power.astype(dtype) / lam)  # lambda_i w_i^2 = v_i^2 (positive signs: the risk
    sd = jnp.sqrt(lam)  # of a Gaussian design depends on v_i^2 only)
    k_xtr, k_xte, k_etr, k_ete = (jax.random.fold_in(key, j) for j in range(4))
    x_tr = _rows(k_xtr, n_train, d, dtype) * sd[None, :]
    x_te = _rows(k_xte, n_test, d, dtype) * sd[None, :]
    f_tr, f_te = (x_tr @ w)[:, None], (x_te @ w)[:, None]
    s = jnp.sqrt(jnp.asarray(noise, dtype))
    e_tr = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k_etr, i), (), dtype))(jnp.arange(n_train))
    e_te = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(k_ete, i), (), dtype))(jnp.arange(n_test))
    return Data(x_tr, f_tr + s * e_tr[:, None], x_te, f_te + s * e_te[:, None], f_te)


def _check_sizes(fn, n_train, n_test):
    for name, v, least in (("n_train", n_train, 1), ("n_test", n_test, 1)):
        if int(v) != v or v < least:
            raise ValueError(f"{fn}: {name} must be an integer >= {least}, got {v}")


def gaussian(
    key, n_train: int, n_test: int, eigenvalues, target_power, *, noise: float = 0.0, dtype=jnp.float64
) -> Data:
    """Gaussian features with covariance ``diag(eigenvalues)`` and a linear target of power
    ``target_power`` per mode, plus label noise of variance ``noise`` (on train and test labels).

    Args:
        key: PRNG key (typed or raw).
        n_train, n_test: sample counts (static).
        eigenvalues: (d,) positive covariance eigenvalues lambda_i.
        target_power: (d,) non-negative v_i^2 = lambda_i w_i^2.
        noise: label-noise variance sigma^2 >= 0.
        dtype: float32 or float64.

    Returns:
        ``Data`` with ``y_*`` of shape (n, 1) and ``f_test`` the noiseless test target.
    """
    dt = float_dtype(dtype, fn="gaussian")
    _check_sizes("gaussian", n_train, n_test)
    lam = np.asarray(eigenvalues, np.float64)
    v2 = np.asarray(target_power, np.float64)
    if lam.ndim != 1 or lam.shape != v2.shape or lam.size == 0:
        raise ValueError(
            f"gaussian: eigenvalues and target_power must be 1-D of one length, got {lam.shape}, {v2.shape}"
        )
    if not (np.all(lam > 0) and np.all(np.isfinite(lam))):
        raise ValueError("gaussian: eigenvalues must be finite and > 0")
    if not (np.all(v2 >= 0) and np.all(np.isfinite(v2))):
        raise ValueError("gaussian: target_power must be finite and >= 0")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"gaussian: noise must be a finite variance >= 0, got {noise}")
    return _gaussian(
        as_key(key), jnp.asarray(lam), jnp.asarray(v2), float(noise), n_train=int(n_train), n_test=int(n_test), dtype=dt
    )


def powerlaw(
    key, n_train: int, n_test: int, *, dim: int, alpha: float, beta: float, noise: float = 0.0, dtype=jnp.float64
) -> Data:
    """``gaussian`` on ``powerlaw_spectrum(dim, alpha, beta)`` (alpha > 0; alpha = 0 is ``isotropic``)."""
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"powerlaw: alpha must be > 0 (use isotropic for alpha = 0), got {alpha}")
    lam, v2 = powerlaw_spectrum(dim, alpha, beta)
    return gaussian(key, n_train, n_test, lam, v2, noise=noise, dtype=dtype)


def isotropic(
    key, n_train: int, n_test: int, *, dim: int, r2: float = 1.0, noise: float = 0.0, dtype=jnp.float64
) -> Data:
    """``gaussian`` on ``isotropic_spectrum(dim, r2)``: identity covariance, |w|^2 = r2."""
    lam, v2 = isotropic_spectrum(dim, r2)
    return gaussian(key, n_train, n_test, lam, v2, noise=noise, dtype=dtype)


# ---- real data shipped inside packages ----


class RealData(NamedTuple):
    """Arrays of a real data set as read (float64 inputs, int labels), split into fixed pools."""

    x_pool: np.ndarray  # (N_train_pool, d) training pool, standardised with its own statistics
    labels_pool: np.ndarray  # (N_train_pool,)
    x_test: np.ndarray  # (N_test_pool, d) test pool, standardised with the training pool's statistics
    labels_test: np.ndarray
    classes: int
    source: str


def mnist1d_unavailable() -> str | None:
    """None if MNIST-1D can be generated here, else one line saying why not."""
    try:
        import mnist1d.data  # noqa: F401
    except ImportError as e:
        return f"the mnist1d package is not installed ({e}); pip install mnist1d (it generates the data locally)"
    return None


def _standardise(pool, test):
    mu = pool.mean(axis=0)
    sd = pool.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)  # constant pixels (digits' corners) stay 0
    return (pool - mu) / sd, (test - mu) / sd


@functools.cache
def read_real(name: str) -> RealData:
    """Read a real data set from its installed package (the only I/O in this module; cached).

    ``digits``: ``sklearn.datasets.load_digits`` (a CSV inside the scikit-learn wheel), split by a fixed
    permutation (numpy ``default_rng(SPLIT_SEED)``) into a test pool of ``TEST_POOL['digits']`` images and a
    training pool of the rest. ``mnist1d``: the ``mnist1d`` package's ``make_dataset`` with its default
    arguments (seed 42, 5,000 signals, its own 4,000/1,000 split); that function seeds numpy's and
    Python's global generators, so their states are saved and restored around the call.

    Raises:
        ValueError: unknown name, or MNIST-1D without the mnist1d package.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.int64)
        perm = np.random.default_rng(SPLIT_SEED).permutation(x.shape[0])
        te, tr = perm[: TEST_POOL["digits"]], perm[TEST_POOL["digits"] :]
        xp, xt = _standardise(x[tr], x[te])
        return RealData(xp, y[tr], xt, y[te], 10, f"sklearn.datasets.load_digits (split seed {SPLIT_SEED})")
    if name == "mnist1d":
        why = mnist1d_unavailable()
        if why:
            raise ValueError(f"mnist1d: {why}")
        import random

        from mnist1d.data import get_dataset_args, make_dataset

        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            args = get_dataset_args()
            args.seed = MNIST1D_SEED
            d = make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        xp, xt = _standardise(np.asarray(d["x"], np.float64), np.asarray(d["x_test"], np.float64))
        return RealData(
            xp,
            np.asarray(d["y"], np.int64),
            xt,
            np.asarray(d["y_test"], np.int64),
            10,
            f"mnist1d.data.make_dataset (seed {MNIST1D_SEED})",
        )
    raise ValueError(f"read_real: unknown data set {name!r}; valid: {', '.join(REAL_DATASETS)}")


@functools.partial(jax.jit, static_argnames=("n_train", "n_test", "classes", "dtype"))
def _draw(key, x_pool, l_pool, x_test, l_test, *, n_train, n_test, classes, dtype):
    k_tr, k_te = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    i_tr = jax.random.permutation(k_tr, x_pool.shape[0])[:n_train]
    i_te = jax.random.permutation(k_te, x_test.shape[0])[:n_test]
    lab_tr, lab_te = l_pool[i_tr].astype(jnp.int32), l_test[i_te].astype(jnp.int32)
    y_tr = jax.nn.one_hot(lab_tr, classes, dtype=dtype)
    y_te = jax.nn.one_hot(lab_te, classes, dtype=dtype)
    return Data(x_pool[i_tr].astype(dtype), y_tr, x_test[i_te].astype(dtype), y_te, y_te, lab_tr, lab_te)


def load(name: str, key, n_train: int, n_test: int | None = None, *, dtype=jnp.float64) -> Data:
    """A random draw of ``n_train`` training and ``n_test`` test samples of a real data set.

    The train/test pools are fixed (``read_real``); ``key`` picks which training samples (a random subset
    of the training pool, without replacement) and which test samples (default: the whole test pool).
    Jit/vmap-able in ``key`` once the data are read (``read_real`` is called here, outside any trace).

    Args:
        name: one of ``REAL_DATASETS``.
        key: PRNG key.
        n_train: 1 .. size of the training pool.
        n_test: 1 .. size of the test pool (default: all of it).
        dtype: float32 or float64 (inputs and one-hot targets).

    Returns:
        ``Data`` with one-hot ``y_*``/``f_test`` of shape (n, classes) and int32 ``labels_*``.

    Raises:
        ValueError: unknown name, a sample count larger than the pool, bad dtype.
    """
    if name not in REAL_DATASETS:
        raise ValueError(f"load: unknown data set {name!r}; valid: {', '.join(REAL_DATASETS)}")
    dt = float_dtype(dtype, fn="load")
    rd = read_real(name)
    n_test = rd.x_test.shape[0] if n_test is None else n_test
    _check_sizes("load", n_train, n_test)
    if n_train > rd.x_pool.shape[0]:
        raise ValueError(f"load: {name} has {rd.x_pool.shape[0]} training samples, asked for n_train = {n_train}")
    if n_test > rd.x_test.shape[0]:
        raise ValueError(f"load: {name} has {rd.x_test.shape[0]} test samples, asked for n_test = {n_test}")
    return _draw(
        as_key(key),
        jnp.asarray(rd.x_pool),
        jnp.asarray(rd.labels_pool),
        jnp.asarray(rd.x_test),
        jnp.asarray(rd.labels_test),
        n_train=int(n_train),
        n_test=int(n_test),
        classes=rd.classes,
        dtype=dt,
    )
