"""log P(GOE positive definite): the exact Pfaffian formula and the Monte Carlo rare-event estimate."""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sim import rare, rmt
from sim.theory import rmt as th
from tests.stats_helpers import Z, assert_mean, assert_proportion

F64 = jnp.float64


def fit_theta(ns, log_p, se=None):
    """Weighted least squares -ln P = theta n^2 + b n + c; returns (theta, its standard error)."""
    ns = np.asarray(ns, np.float64)
    y = -np.asarray(log_p, np.float64)
    w = np.ones_like(y) if se is None else 1.0 / np.asarray(se, np.float64)
    x = np.stack([ns**2, ns, np.ones_like(ns)], axis=1)
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    cov = np.linalg.inv((x * w[:, None]).T @ (x * w[:, None]))
    return coef[0], math.sqrt(cov[0, 0]) if se is not None else float("nan")


# ----------------------------------------------------------------------------------------------
# exact


def test_exact_formula_reproduces_the_table():
    for n, p in th.EXACT_P_POSITIVE_DEFINITE.items():
        assert rare.log_p_positive_definite_exact(n) == pytest.approx(math.log(p), rel=1e-12, abs=1e-13)
        assert th.exact_log_p_positive_definite(n) == pytest.approx(math.log(p))


def test_exact_formula_is_converged_in_precision():
    a = rare.log_p_positive_definite_exact(30)
    b = rare.log_p_positive_definite_exact(30, dps=250)
    assert a == pytest.approx(b, rel=1e-13)
    with pytest.raises(ValueError, match="log_p_positive_definite_exact: n must be"):
        rare.log_p_positive_definite_exact(0)


def test_exact_theta_from_large_n():
    """theta = ln(3)/4 from a quadratic fit of the exact -ln P over n = 10..40, within 5% (it is ~1%),
    and -ln P - theta n^2 grows almost linearly with slope ~0.38 (docs/theory.md#goe-large-deviation)."""
    ns = np.arange(10, 41, 5)
    lp = np.array([rare.log_p_positive_definite_exact(int(n)) for n in ns])
    theta, _ = fit_theta(ns, lp)
    assert abs(theta / th.THETA - 1) < 0.05, theta
    resid = -lp - th.THETA * ns**2
    slope = np.polyfit(ns, resid, 1)[0]
    assert 0.33 < slope < 0.43, slope


def test_fit_theta_of_the_experiment():
    """sim.fit.fit_theta: exact on a noiseless quadratic; on the exact -ln P over n = 10..40 with
    noise of the size thermodynamic integration gives, theta is within 5% of ln(3)/4 and the bootstrap
    interval is about +-1.96 of its standard error; reproducible from its seed."""
    from sim.fit import fit_theta

    ns = np.arange(10, 41, 5)
    f = fit_theta(ns, -(0.3 * ns**2 + 0.5 * ns - 1.0), np.full(ns.size, 0.1), min_dim=10)
    assert (f.theta, f.b, f.c) == pytest.approx((0.3, 0.5, -1.0), rel=1e-9)
    lp = np.array([rare.log_p_positive_definite_exact(int(n)) for n in ns])  # cached by the test above
    se = 0.005 * ns  # TI's standard error grows ~ linearly in n (0.23 at n = 50 with 32 chains)
    noisy = lp + se * np.random.default_rng(5).standard_normal(ns.size)
    f = fit_theta(ns, noisy, se, seed=3)
    assert abs(f.theta / th.THETA - 1) < 0.05, f
    assert f.ci_low < f.theta < f.ci_high
    assert (f.ci_high - f.ci_low) / 2 == pytest.approx(1.96 * f.stderr, rel=0.15)
    assert fit_theta(ns, noisy, se, seed=3) == f
    assert fit_theta(ns[:3], noisy[:3], se[:3]) is None


# ----------------------------------------------------------------------------------------------
# tridiagonal model


def test_tridiagonal_model_has_the_goe_law():
    n, total = 3, 200_000
    a, c = rare.tridiagonal_goe(jax.random.key(1), n, batch_shape=(total,), dtype=F64)
    assert a.shape == (total, n) and c.shape == (total, n - 1)
    piv = np.asarray(rare.tridiagonal_pivots(a, c))
    pd = int(np.sum(np.all(piv > 0, axis=1)))
    assert_proportion(pd, total, th.EXACT_P_POSITIVE_DEFINITE[n], what="tridiagonal P(PD)")
    # E tr T^2 = n(n + 1) as for the GOE with off-diagonal variance 1
    a, c = np.asarray(a), np.asarray(c)
    assert_mean(np.sum(a**2, 1) + 2 * np.sum(c, 1), n * (n + 1), what="tr T^2")
    # index by pivots = index of the dense matrix
    t = np.zeros((200, n, n))
    idx = np.arange(n)
    t[:, idx, idx] = a[:200]
    t[:, idx[:-1], idx[1:]] = np.sqrt(c[:200])
    t[:, idx[1:], idx[:-1]] = np.sqrt(c[:200])
    np.testing.assert_array_equal(np.sum(piv[:200] < 0, 1), np.sum(np.linalg.eigvalsh(t) < 0, 1))


# ----------------------------------------------------------------------------------------------
# thermodynamic integration


TI_SMALL = {"chains": 16, "sweeps": 200}


@pytest.mark.parametrize("n", [1, 4, 7])
def test_ti_agrees_with_exact_small_n(n):
    r = rare.log_p_positive_definite_ti(jax.random.key(10 + n), n, **TI_SMALL)
    exact = math.log(th.EXACT_P_POSITIVE_DEFINITE[n])
    assert abs(r.log_p - exact) <= Z * r.stderr, f"n={n}: {r.log_p:.4f} +- {r.stderr:.4f} vs {exact:.4f}"
    assert 0 < r.stderr < 0.2
    assert r.nodes.shape == r.weights.shape == r.mean_trace.shape
    np.testing.assert_allclose(np.sum(r.weights), rare.ti_shift_max(n), rtol=1e-12)


@pytest.mark.parametrize("n", [3, 5])
def test_ti_agrees_with_plain_monte_carlo(n):
    """Where plain Monte Carlo still sees minima (n <= 5), both estimates agree within their errors."""
    total = 1_000_000
    s = rmt.index_summary(rmt.index_histogram(jax.random.key(20 + n), rmt.Ensemble("goe"), n, total))
    r = rare.log_p_positive_definite_ti(jax.random.key(30 + n), n, **TI_SMALL)
    se = math.hypot(s["log_p_min_stderr"], r.stderr)
    assert abs(s["log_p_min"] - r.log_p) <= Z * se, f"MC {s['log_p_min']:.4f} vs TI {r.log_p:.4f} (se {se:.4f})"


def test_ti_refuses_float32_chains():
    """float32 chains lose positivity through rounding (nan/-inf nodes from n = 6 on): one clear error."""
    with pytest.raises(ValueError, match="log_p_positive_definite_ti: dtype float32 is not supported"):
        rare.log_p_positive_definite_ti(jax.random.key(0), 4, dtype=jnp.float32)


def test_ti_global_moves_log_ratio_is_the_difference_of_log_targets():
    """The collective moves' log acceptance ratios, written as differences, equal the difference of
    the full log densities (x ~ N(s, 2), c ~ chi^2_dof) of the proposal and the current state."""
    n, m, s = 5, 8, 0.7
    x, c = rare._init_state(jnp.asarray(n), m, F64)
    act_x, act_c, dof = rare._masks(jnp.asarray(n), m, F64)

    def log_target(x, c):
        lx = jnp.where(act_x, -((x - s) ** 2) / 4, 0.0)
        lc = jnp.where(act_c, (dof / 2 - 1) * jnp.log(jnp.where(act_c, c, 1.0)) - c / 2, 0.0)
        return float(jnp.sum(lx) + jnp.sum(lc))

    for logr, t in ((0.07, -0.3), (-0.2, 0.9), (1e-9, 1e-9)):
        r = math.exp(logr)
        xs, cs = jnp.where(act_x, r * x, x), jnp.where(act_c, r * r * c, c)
        want = log_target(xs, cs) - log_target(x, c) + (3 * n - 2) * logr
        got = float(rare._scale_log_ratio(x, c, s, jnp.asarray(n), jnp.asarray(logr, F64)))
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        xt = jnp.where(act_x, x + t, x)
        got = float(rare._shift_log_ratio(x, s, jnp.asarray(n), jnp.asarray(t, F64)))
        assert got == pytest.approx(log_target(xt, c) - log_target(x, c), rel=1e-9, abs=1e-12)


def test_kernels_under_a_callers_jit_and_float64_refused_without_x64():
    key = jax.random.key(3)
    a, c = rare.tridiagonal_goe(key, 5, batch_shape=(64,), dtype=F64)
    f = jax.jit(lambda k: rare.tridiagonal_pivots(*rare.tridiagonal_goe(k, 5, batch_shape=(64,), dtype=F64)))
    np.testing.assert_array_equal(np.asarray(f(key)), np.asarray(rare.tridiagonal_pivots(a, c)))
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="log_p_positive_definite_ti: dtype float64 needs"):
            rare.log_p_positive_definite_ti(key, 3)
        with pytest.raises(ValueError, match="tridiagonal_goe: dtype float64 needs"):
            rare.tridiagonal_goe(key, 3, dtype=np.float64)
        assert not jax.config.jax_enable_x64


def test_ti_validation():
    with pytest.raises(ValueError, match="log_p_positive_definite_ti: chains must be"):
        rare.log_p_positive_definite_ti(jax.random.key(0), 3, chains=1)
    with pytest.raises(ValueError, match="log_p_positive_definite_ti: n must be"):
        rare.log_p_positive_definite_ti(jax.random.key(0), 0)


@pytest.mark.slow
def test_ti_full_range_against_exact_and_theta():
    """n = 2..50: every TI estimate within Z standard errors of the exact value, the z-scores look
    standard normal, and theta from a weighted fit over n >= 10 is within 5% of ln(3)/4."""
    t0 = time.perf_counter()
    ns = np.arange(2, 51)
    est, se, z = [], [], []
    for n in ns:
        r = rare.log_p_positive_definite_ti(jax.random.key(1000 + int(n)), int(n), chains=32, sweeps=400)
        exact = rare.log_p_positive_definite_exact(int(n))
        est.append(r.log_p)
        se.append(r.stderr)
        z.append((r.log_p - exact) / r.stderr)
    z = np.array(z)
    print(
        f"\nTI n=2..50: {time.perf_counter() - t0:.0f} s; z mean {z.mean():.2f}, z std {z.std():.2f}, "
        f"max |z| {np.abs(z).max():.2f}; n=50: {est[-1]:.2f} +- {se[-1]:.2f}"
    )
    assert np.all(np.abs(z) <= Z)
    assert abs(z.mean()) <= Z / math.sqrt(len(z))  # no bias on average
    big = ns >= 10
    theta, theta_se = fit_theta(ns[big], np.array(est)[big], np.array(se)[big])
    print(f"theta = {theta:.5f} +- {theta_se:.5f} (ln 3 / 4 = {th.THETA:.5f})")
    assert abs(theta / th.THETA - 1) < 0.05
