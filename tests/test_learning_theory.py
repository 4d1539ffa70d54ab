"""sim.learning.theory against its closed forms, and measured learning curves against the theory.

Measured means are held to the theory within 4.5 standard errors across seeds (fixed seeds: a pass is
reproducible, and a wrong theory or learner would miss by many SE)."""

import math

import jax
import numpy as np
import pytest

from sim.experiments import scaling
from sim.learning import theory as th
from sim.learning.data import powerlaw_spectrum

Z = 4.5


def test_hmrt_finite_reference_values():
    np.testing.assert_allclose(th.hmrt_finite(200, [100, 400], 1.0, 1.0), [100 / 99, 1 - 0.5 + 200 / 199], rtol=1e-15)
    assert th.hmrt_finite(200, 100) == pytest.approx(1.0101, abs=5e-5)
    assert th.hmrt_finite(200, 400) == pytest.approx(1.5050, abs=5e-5)
    assert np.isinf(th.hmrt_finite(200, 200)) and np.isinf(th.hmrt_finite(200, 201))


@pytest.mark.parametrize("gamma", [0.25, 0.5, 0.9, 1.5, 2.0, 4.0])
def test_spectral_theory_reproduces_isotropic_closed_forms(gamma):
    """P isotropic modes, ridgeless: gamma < 1 gives kappa = 0, E0 = 1/(1 - gamma); gamma > 1 gives
    kappa = gamma - 1, L = 1/gamma, E0 = gamma/(gamma - 1); the risk is Hastie et al.'s limit exactly."""
    n = 1000
    p = int(round(gamma * n))
    for r2, s2 in ((1.0, 1.0), (2.0, 0.3)):
        pr = th.learning_curve(np.ones(p), np.full(p, r2 / p), n, noise=s2)
        if gamma < 1:
            assert pr.kappa == 0 and pr.e0 == pytest.approx(1 / (1 - gamma), rel=1e-12)
        else:
            assert pr.kappa == pytest.approx(gamma - 1, rel=1e-12)
            assert pr.e0 == pytest.approx(gamma / (gamma - 1), rel=1e-10)
        assert pr.excess_risk == pytest.approx(float(th.hmrt_asymptotic(gamma, r2, s2)), rel=1e-10)


def test_effective_ridge_solves_its_equation():
    lam, _ = powerlaw_spectrum(5000, 1.3, 2.0)
    ns = np.array([3.0, 40.0, 777.0])
    for delta in (0.0, 1e-3, 10.0):
        k = th.effective_ridge(lam, ns, delta)
        lhs = np.sum(lam[None, :] / (lam[None, :] + k[:, None]), axis=1) + delta / k
        np.testing.assert_allclose(lhs, ns, rtol=1e-12)
    # train loss identity at a ridge: (delta/(n kappa))^2 E0 (bias + noise)
    pr = th.learning_curve(lam, lam, 50.0, ridge=2.0, noise=0.1)
    assert pr.train_loss == pytest.approx((2.0 / (50 * pr.kappa)) ** 2 * pr.test_loss, rel=1e-14)


@pytest.mark.parametrize("alpha, beta, want", [(1.5, 2.0, 1.0), (1.5, 5.0, 3.0), (2.0, 3.0, 2.0)])
def test_exponent_formula_and_the_theory_curve_slope(alpha, beta, want):
    """min(beta - 1, 2 alpha), and the local slope of the spectral prediction with 2e5 modes at
    n = 10^2..10^3 agrees with it to 0.01 (at larger n the truncation to 2e5 modes steepens it)."""
    assert th.exponent(alpha, beta) == pytest.approx(want)
    lam, v2 = powerlaw_spectrum(200_000, alpha, beta)
    e = th.learning_curve(lam, v2, np.array([1e2, 1e3])).excess_risk
    assert -np.diff(np.log(e))[0] / math.log(10) == pytest.approx(want, abs=0.01)


def test_exponent_regimes():
    assert th.exponent(1.5, 1.0 + 0.095) == pytest.approx(0.095)  # Kaplan's alpha_D from a barely summable target
    assert th.exponent(2.0, 3.0, "ridge", ridge_decay=1.0) == pytest.approx(1.0)
    assert th.exponent(1.0, 2.0, "optimal") == pytest.approx(0.5)
    assert th.exponent(1.0, 2.0, "tempered") == 0.0
    with pytest.raises(ValueError, match="alpha > 0 and beta > 1"):
        th.exponent(1.0, 1.0)


def test_optimal_ridge_is_the_minimiser():
    """The spectral risk over delta is smallest at delta = n lam* = P sigma^2/r^2 (Dobriban & Wager), and the
    optimal-ridge risk stays below the ridgeless one, finite at P = n."""
    n, p = 200, 300
    grid = np.linspace(0.5, 1.5, 201) * p
    risk = [float(th.learning_curve(np.ones(p), np.full(p, 1 / p), n, ridge=d, noise=1.0).excess_risk) for d in grid]
    assert grid[int(np.argmin(risk))] == pytest.approx(p, rel=0.01)
    opt = th.hmrt_optimal_ridge(n, [100, 200, 400])
    assert np.all(np.isfinite(opt)) and np.all(opt < th.hmrt_finite(n, [100, 201, 400]))


@pytest.fixture(scope="module")
def x64():
    jax.config.update("jax_enable_x64", True)


def test_double_descent_measured_against_exact_finite_n(x64):
    """n = 200, r^2 = sigma^2 = 1: minimum-norm least squares over 60 seeds matches the exact finite-n risk
    (1.0101 at P = 100, 1.5050 at P = 400) within 4.5 SE."""
    cfg = scaling.ScalingConfig(
        data="isotropic", learner="linear", noise=1.0, ns=(200,), params=(100, 400), seeds=60, seed=1, n_test=400
    )
    rows = scaling.run(cfg).rows
    for r in rows:
        assert abs(r["excess_risk"] - r["theory_excess_risk"]) < Z * r["excess_risk_stderr"], r
        assert r["theory_excess_risk"] == pytest.approx({100: 1.0101, 400: 1.5050}[r["params"]], abs=5e-5)


def test_powerlaw_learning_curve_and_exponent(x64):
    """(alpha, beta) = (1.5, 2), noiseless, ridgeless, 4096 modes, 8 seeds: the fitted exponent's 95%
    interval holds the theory's 1, and each mean excess risk is within 4.5 SE (+2% for the spectral
    prediction's finite-n error) of the prediction."""
    cfg = scaling.ScalingConfig(
        data="powerlaw",
        learner="linear",
        alpha=1.5,
        beta=2.0,
        ns=(16, 32, 64, 128, 256, 512),
        params=(4096,),
        seeds=8,
        seed=0,
        n_test=500,
    )
    res = scaling.run(cfg)
    fit = res.info["exponent_n"]["4096"]
    assert res.info["theory_exponent_n"] == 1.0
    assert fit["ci_low"] <= 1.0 <= fit["ci_high"], fit
    assert fit["ci_high"] - fit["ci_low"] < 0.2
    for r in res.rows:
        assert (
            abs(r["excess_risk"] - r["theory_excess_risk"])
            < Z * r["excess_risk_stderr"] + 0.02 * r["theory_excess_risk"]
        ), r
