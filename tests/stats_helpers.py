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
        f"{what}: {x.mean():.6g} vs {expected:.6g}, |diff| = {abs(x.mean() - expected) / se:.2f} SE (limit {z})"
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


def assert_proportion(count, total, expected, *, z=Z, what="proportion"):
    """A binomial proportion count/total is within z binomial standard errors of ``expected``."""
    p_hat = count / total
    se = math.sqrt(expected * (1 - expected) / total)
    assert abs(p_hat - expected) <= z * se, (
        f"{what}: {p_hat:.6g} vs {expected:.6g}, |diff| = {abs(p_hat - expected) / se:.2f} SE (limit {z})"
    )
