"""sim.fit: exact on noiseless data, and intervals that cover the truth as often as they claim.

Coverage is checked over R independent replicates at fixed seeds: the count of covering intervals is a
binomial proportion, held to within 4.5 binomial standard errors of the coverage the method should have.
"""

import math

import jax
import numpy as np
import pytest
from scipy import integrate, special, stats
from stats_helpers import assert_mean, assert_proportion

from sim import fit

KEY = jax.random.key(7)


def test_power_law_exact_on_noiseless_data():
    x = np.array([10, 100, 1000, 10_000, 100_000], float)
    f = fit.fit_power_law(KEY, x, 3.0 * x**-0.5)
    assert f.exponent == pytest.approx(-0.5, abs=1e-12)
    assert f.prefactor == pytest.approx(3.0, rel=1e-10)
    assert f.ci_low == pytest.approx(-0.5, abs=1e-9) and f.ci_high == pytest.approx(-0.5, abs=1e-9)


def test_power_law_interval_covers_the_exponent_and_is_no_wider_than_exact():
    """Residual bootstrap-t on 9 log-spaced points with 5% lognormal noise: the 95% interval covers the
    exponent 95% of the time within 4.5 binomial SE (the plain percentile interval gave 0.88), and it is as
    wide as the exact interval: the noise is Gaussian on log-log axes, where slope -+ t(7) * stderr is exact;
    the mean ratio of the two widths on the same data is 1 within 4.5 SE (an interval too wide to miss
    would fail here, a too-narrow one in the coverage)."""
    rng = np.random.default_rng(0)
    x = np.logspace(1, 5, 9)
    t_exact = stats.t(x.size - 2).ppf(0.975)
    reps, hit, ratio = 400, 0, []
    for r in range(reps):
        y = 2.0 * x**-0.5 * np.exp(0.05 * rng.standard_normal(x.size))
        f = fit.fit_power_law(jax.random.fold_in(KEY, r), x, y, n_boot=1000)
        hit += f.ci_low <= -0.5 <= f.ci_high
        ratio.append((f.ci_high - f.ci_low) / (2 * t_exact * f.stderr))
    assert_proportion(hit, reps, 0.95, what="fit_power_law 95% interval coverage")
    assert_mean(ratio, 1.0, what="bootstrap-t width / exact t-interval width")


def test_power_law_defaults_on_a_design_they_were_not_tuned_on():
    """The bootstrap defaults (n_boot = 4000, residual bootstrap-t) were set on 9 points with 5% noise and a
    decreasing law; here 5 points, 20% noise, a rising law y = 0.7 x^1.3: coverage of the 95% interval
    within 4.5 binomial SE of 0.95, and the width of the exact t(3) interval within 5% on average (measured:
    3.0% narrower, +- 0.14%: with 5 residuals to resample the bootstrap quantiles fall a little short of
    t(3)'s, which costs ~0.4% of coverage, 0.946 instead of 0.95; 5% of width would cost ~0.7%)."""
    rng = np.random.default_rng(5)
    key = jax.random.key(11)
    x = np.array([3.0, 10.0, 30.0, 100.0, 300.0])
    t_exact = stats.t(x.size - 2).ppf(0.975)
    reps, hit, ratio = 400, 0, []
    for r in range(reps):
        f = fit.fit_power_law(jax.random.fold_in(key, r), x, 0.7 * x**1.3 * np.exp(0.2 * rng.standard_normal(x.size)))
        hit += f.ci_low <= 1.3 <= f.ci_high
        ratio.append((f.ci_high - f.ci_low) / (2 * t_exact * f.stderr))
    assert_proportion(hit, reps, 0.95, what="fit_power_law 95% coverage, 5 points")
    assert abs(np.mean(ratio) - 1) <= 0.05, np.mean(ratio)


def test_slope_exact_and_coverage():
    x = np.linspace(-1, 1, 20)
    f = fit.fit_slope(x, 2 * x + 1)
    assert f.slope == pytest.approx(2) and f.intercept == pytest.approx(1) and f.stderr == pytest.approx(0, abs=1e-12)
    rng = np.random.default_rng(1)
    reps = 2000
    hits = sum(
        (lambda g: g.ci_low <= 2 <= g.ci_high)(fit.fit_slope(x, 2 * x + 1 + 0.3 * rng.standard_normal(x.size)))
        for _ in range(reps)
    )
    # a normal interval on an estimate with a t(18) law: its exact coverage
    expected = stats.t(x.size - 2).cdf(1.959964) - stats.t(x.size - 2).cdf(-1.959964)
    assert_proportion(hits, reps, expected, what="fit_slope 95% interval coverage")
    assert fit.fit_slope([1, 1, 1], [1, 2, 3]) is None


def test_weighted_linear_fit_coverage_and_width_with_known_errors():
    """Known error bars, no extra scatter. The slope's sampling spread is then exactly sd = sqrt((A^T W A)^-1_00)
    and fit_linear's interval is slope -+ z sd max(1, sqrt(chi2/dof)) with chi2 ~ chi^2_8 independent of the
    slope (Gaussian linear model). So its exact coverage is E[2 Phi(z max(1, sqrt(X/8))) - 1] and its
    expected half-width z sd E[max(1, sqrt(X/8))], X ~ chi^2_8 (both by quadrature): two-sided checks, which
    an interval too wide or too narrow fails (the old one-sided coverage check passed an infinite interval)."""
    rng = np.random.default_rng(2)
    x = np.arange(1.0, 11.0)
    se = 0.1 + 0.05 * x
    a = np.stack([x, np.ones_like(x)], axis=1) / se[:, None]
    sd = math.sqrt(np.linalg.inv(a.T @ a)[0, 0])
    dof = x.size - 2
    z = stats.norm.ppf(0.975)
    chi2 = stats.chi2(dof)
    infl = lambda v: max(1.0, math.sqrt(v / dof))  # noqa: E731
    # below X = dof there is no inflation: that part of each integral is closed form
    coverage = (
        0.95 * chi2.cdf(dof)
        + integrate.quad(lambda v: chi2.pdf(v) * (2 * stats.norm.cdf(z * infl(v)) - 1), dof, np.inf)[0]
    )
    half_width = z * sd * (chi2.cdf(dof) + integrate.quad(lambda v: chi2.pdf(v) * infl(v), dof, np.inf)[0])
    reps = 2000
    hits, widths = 0, []
    for _ in range(reps):
        f = fit.fit_linear(x, 0.5 * x - 1 + se * rng.standard_normal(x.size), se)
        hits += f.ci_low <= 0.5 <= f.ci_high
        widths.append((f.ci_high - f.ci_low) / 2)
    assert 0.955 < coverage < 0.965  # the inflation adds ~1% to the nominal 95%: what the check can resolve
    assert_proportion(hits, reps, coverage, what="fit_linear 95% interval coverage")
    assert_mean(widths, half_width, what="fit_linear interval half-width")


def test_gap_power_law_and_minima_decay_recover_their_parameters():
    n = np.array([8, 16, 32, 64, 128], float)
    gap = 0.9 * n**-0.7
    g = fit.fit_gap_power_law(n, gap, 1e-3 * gap)
    assert g.exponent == pytest.approx(-0.7, abs=1e-9) and g.prefactor == pytest.approx(0.9, rel=1e-8)
    dims = np.array([2, 4, 6, 8, 10])
    p = 1 / (1 + np.exp(-(1.0 - 0.5 * dims)))
    unique = np.full(dims.size, 10**6)
    m = fit.fit_minima_decay(dims, np.round(p * unique), unique)
    assert m.rate == pytest.approx(0.5, abs=5 * m.se)


# counts from none to all, small and large n: where the normal bar fails and where it is fine
COUNTS = [(0, 10), (1, 10), (5, 10), (10, 10), (6, 400_000), (3, 16_384), (1, 1_000_000), (7, 20), (499, 1000)]


def test_binomial_intervals_match_scipy():
    """Clopper-Pearson against scipy's exact interval (found by root-finding to ~2e-12 absolute, hence the
    atol) and against the beta quantiles themselves (rtol 1e-9); Wilson against scipy's Wilson interval."""
    k, n = (np.array(v) for v in zip(*COUNTS))
    for level in (0.95, 0.68):
        lo, hi = fit.clopper_pearson_interval(k, n, level)
        wlo, whi = fit.wilson_interval(k, n, z=stats.norm.ppf((1 + level) / 2))
        for i, (kk, nn) in enumerate(COUNTS):
            cp = stats.binomtest(int(kk), int(nn)).proportion_ci(level, method="exact")
            assert lo[i] == pytest.approx(cp.low, rel=1e-6, abs=1e-11)
            assert hi[i] == pytest.approx(cp.high, rel=1e-6, abs=1e-11)
            a = (1 - level) / 2
            assert lo[i] == (0.0 if kk == 0 else pytest.approx(special.betaincinv(kk, nn - kk + 1, a), rel=1e-9))
            assert hi[i] == (1.0 if kk == nn else pytest.approx(special.betaincinv(kk + 1, nn - kk, 1 - a), rel=1e-9))
            w = stats.binomtest(int(kk), int(nn)).proportion_ci(level, method="wilson")
            assert wlo[i] == pytest.approx(w.low, rel=1e-9, abs=1e-15) and whi[i] == pytest.approx(w.high, rel=1e-9)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        fit.clopper_pearson_interval(11, 10)


def test_betainc_matches_scipy():
    for a, b, x in [(3, 5, 0.3), (0.5, 0.5, 0.9), (1, 1, 0.25), (14.5, 16, 0.5)]:
        assert fit.betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-14)
    # large arguments (the counts of a 400,000-matrix run): near x = a / (a + b) the continued fraction
    # needs ~sqrt(b) terms and keeps ~1e-11
    for a, b, x in [(7, 400_000, 2e-5), (200, 300, 0.41), (200_000, 200_001, 0.4999), (1e5, 3, 0.99998)]:
        assert fit.betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10)


def test_student_t_quantile_matches_scipy():
    for p, dof in [(0.975, 1), (0.975, 7), (0.995, 31), (0.025, 4), (0.8, 2.5), (0.5, 3), (0.975, 1000)]:
        assert fit.student_t_quantile(p, dof) == pytest.approx(stats.t(dof).ppf(p), rel=1e-9, abs=1e-12)


def test_clopper_pearson_covers_at_least_its_level():
    """The exact interval's coverage, summed over the whole binomial law (no sampling): >= 0.95 for every p,
    unlike the normal bar p -+ 1.96 sqrt(p (1 - p) / n), which covers far less at small n p."""
    n = 30
    ks = np.arange(n + 1)
    lo, hi = fit.clopper_pearson_interval(ks, np.full(ks.size, n))
    for p in (0.01, 0.05, 0.2, 0.5, 0.9):
        pmf = stats.binom(n, p).pmf(ks)
        assert np.sum(pmf[(lo <= p) & (p <= hi)]) >= 0.95
    ph = ks / n
    normal = np.abs(ph - 0.05) <= 1.959964 * np.sqrt(ph * (1 - ph) / n)
    assert np.sum(stats.binom(n, 0.05).pmf(ks)[normal]) < 0.80  # the bar this replaces
