"""The suite's statistical assertions themselves: they pass and fail where they should."""

import math

import pytest
from scipy import stats
from stats_helpers import assert_mean, assert_proportion, binomial_two_sided_p


@pytest.mark.parametrize(
    "k,n,p", [(0, 50, 0.02), (6, 400_000, 3e-5), (3, 16_384, 1e-4), (520, 1000, 0.5), (1000, 1000, 0.999), (7, 20, 0.2)]
)
def test_exact_binomial_tail_matches_scipy(k, n, p):
    assert binomial_two_sided_p(k, n, p) == pytest.approx(
        min(1.0, 2 * min(stats.binom(n, p).cdf(k), stats.binom(n, p).sf(k - 1))), rel=1e-9
    )


def test_assert_proportion_is_exact_at_small_counts():
    # 9 hits where 1.6 are expected: 5.8 normal SE, which a normal test rejects; the exact tail is 1e-4
    assert_proportion(9, 16_384, 1e-4)
    # 2 hits where 20 are expected: -4.0 normal SE, which a normal test accepts; the exact tail is < 6.8e-6
    with pytest.raises(AssertionError, match="exact two-sided p"):
        assert_proportion(2, 100_000, 2e-4)
    with pytest.raises(AssertionError):
        assert_proportion(600, 1000, 0.5)  # 6.3 SE
    assert_proportion(560, 1000, 0.5)  # 3.8 SE


def test_assert_mean_limits():
    assert_mean([1.0, 2.0, 3.0, 4.0], 2.5)
    with pytest.raises(AssertionError, match="SE"):
        assert_mean([1.0, 1.1, 0.9, 1.0], 2.0)
    with pytest.raises(AssertionError, match="inf SE"):
        assert_mean([1.0, 1.0], 2.0)
    assert math.erfc(4.5 / math.sqrt(2)) == pytest.approx(6.8e-6, rel=0.01)
