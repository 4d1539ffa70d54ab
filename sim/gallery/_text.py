"""Caption text computed from the numbers: where a theory value falls against a fitted interval.

A caption must say when the theory lies outside the interval it is quoted beside, and why if that is
known; writing the sentence from the numbers keeps it true when a figure is regenerated.
"""

from __future__ import annotations

import math

__all__ = ["verdict"]


def verdict(
    low: float, high: float, theory: float, *, what: str = "theory", spec: str = ".3f", why: str | None = None
) -> str:
    """``"theory 0.316 outside the 95% CI: <why>"`` or ``"theory 0.316 inside it"``.

    Args:
        low, high: the interval.
        theory: the value it is compared with.
        what: how the theory value is named in the caption.
        spec: format of the theory value.
        why: the known reason the theory may fall outside (used only then); without one the caption
            says the cause is not established.
    """
    if not all(math.isfinite(v) for v in (low, high, theory)):
        return f"{what} {theory:{spec}} (no interval to compare with)"
    if low <= theory <= high:
        return f"{what} {theory:{spec}}, inside the interval"
    side = "above" if theory > high else "below"
    return f"{what} {theory:{spec}}, {side} the interval: " + (why or "the cause is not established")
