"""Tolerances from sample sizes: every statistical assertion states its failure probability.

Z = 4.5 standard errors: two-sided failure probability 7e-6 per check for a normal statistic, so a
suite of a few hundred such checks at fixed seeds fails by chance with probability < 0.2%; and since
seeds are fixed, a check that passes once passes always.
"""

from __future__ import annotations

import math

import numpy as np

Z = 4.5


def assert_mean(samples, expected, *, z=Z, what="mean"):
    """The sample mean is within z standard errors of ``expected`` (SE from the sample itself)."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert abs(x.mean() - expected) <= z * se, (
        f"{what}: {x.mean():.6g} vs {expected:.6g}, |diff| = {abs(x.mean() - expected):.3g} = "
        f"{abs(x.mean() - expected) / se if se > 0 else math.inf:.2f} SE (limit {z})"
    )


def assert_variance(samples, expected, *, z=Z, what="variance"):
    """The sample variance is within z standard errors of ``expected``.

    SE(s^2) = sqrt((m4 - s^4) / N) with m4 the sample 4th central moment (delta method).
    """
    x = np.asarray(samples, dtype=np.float64).ravel()
    c = x - x.mean()
    s2 = np.mean(c**2) * x.size / (x.size - 1)
    se = math.sqrt(max(np.mean(c**4) - s2**2, 0.0) / x.size)
    assert abs(s2 - expected) <= z * se, (
        f"{what}: {s2:.6g} vs {expected:.6g}, |diff| = {abs(s2 - expected) / se:.2f} SE (limit {z})"
    )


def binomial_two_sided_p(count: int, total: int, p: float) -> float:
    """Exact two-sided tail probability of a binomial count: 2 min(P(X <= count), P(X >= count)), X ~ Bin(total, p)
    (capped at 1), from the incomplete beta function: P(X >= k) = I_p(k, n - k + 1)."""
    from sim.fit import betainc

    if p <= 0 or p >= 1:
        return 1.0 if count == (0 if p <= 0 else total) else 0.0
    upper = 1.0 if count == 0 else betainc(count, total - count + 1, p)  # P(X >= count)
    lower = 1.0 if count == total else 1.0 - betainc(count + 1, total - count, p)  # P(X <= count)
    return min(1.0, 2 * min(lower, upper))


def assert_proportion(count, total, expected, *, z=Z, what="proportion"):
    """A binomial count/total is consistent with probability ``expected`` at the two-sided level of z normal
    standard errors (2 Phi(-z) = 6.8e-6 for z = 4.5), by the exact binomial test: the normal approximation
    is wrong in the tails at small expected counts (total * p of a few), which is where the rare-event
    proportions of this suite live. At large counts the two agree."""
    count, total = int(count), int(total)
    p_value = binomial_two_sided_p(count, total, expected)
    level = math.erfc(z / math.sqrt(2))
    se = math.sqrt(expected * (1 - expected) / total)
    assert p_value >= level, (
        f"{what}: {count}/{total} = {count / total:.6g} vs {expected:.6g}"
        + (f" ({(count / total - expected) / se:+.2f} SE)" if se > 0 else "")
        + f", exact two-sided p = {p_value:.2g} < {level:.2g} (z = {z})"
    )
