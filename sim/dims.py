"""The one parser of dimension lists, shared by every command that takes ``--dims``.

Grammar: comma-separated items, each one of

* ``N``: an integer, scientific notation allowed when it is an integer (``1e3``, ``1.75e11``);
* ``A:B``: every integer from A to B inclusive;
* ``A:B:K``: K integers log-spaced from A to B inclusive (rounded; duplicates after rounding dropped).

The result is sorted and de-duplicated. Every error names the offending item and what is allowed.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_dims", "DimsError", "MAX_DIM"]

MAX_DIM = 2**53  # float64 represents every integer up to here
_NUM = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+]?\d+)?$")


class DimsError(ValueError):
    """A malformed or out-of-range --dims value."""


def _int(token: str, item: str) -> int:
    t = token.strip()
    if not _NUM.match(t):
        raise DimsError(
            f"--dims: {item!r} is not a positive integer, A:B or A:B:K (e.g. 10,100,1e3 or 2:50 or 10:1e5:9)"
        )
    if re.fullmatch(r"\+?\d+", t):
        v = int(t)
    else:
        f = float(t)
        if not f.is_integer():
            raise DimsError(f"--dims: {t!r} in {item!r} is not an integer")
        v = int(f)
    if v < 1:
        raise DimsError(f"--dims: {t!r} in {item!r} must be >= 1")
    if v > MAX_DIM:
        raise DimsError(f"--dims: {t!r} in {item!r} exceeds the largest supported dimension 2**53")
    return v


def parse_dims(text: str, *, max_count: int = 100_000) -> tuple[int, ...]:
    """Parse a --dims string into a sorted tuple of distinct positive integers.

    Raises:
        DimsError: one-line message naming the bad item.
    """
    if not isinstance(text, str) or not text.strip():
        raise DimsError("--dims: empty; give e.g. 10,100,1000 or 2:50 or 10:1e5:9")
    out: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise DimsError(f"--dims: empty item in {text!r}")
        parts = item.split(":")
        if len(parts) == 1:
            out.add(_int(parts[0], item))
        elif len(parts) in (2, 3):
            a, b = _int(parts[0], item), _int(parts[1], item)
            if b < a:
                raise DimsError(f"--dims: range {item!r} must have A <= B")
            if len(parts) == 2:
                if b - a + 1 > max_count:
                    raise DimsError(f"--dims: range {item!r} has more than {max_count} dimensions")
                out.update(range(a, b + 1))
            else:
                k = _int(parts[2], item)
                if k > max_count:
                    raise DimsError(f"--dims: {item!r} asks for more than {max_count} dimensions")
                if k == 1:
                    out.add(a)
                else:
                    la, lb = math.log(a), math.log(b)
                    out.update(int(round(math.exp(la + (lb - la) * i / (k - 1)))) for i in range(k))
                    out.update((a, b))
        else:
            raise DimsError(f"--dims: {item!r} has too many ':' (allowed: N, A:B, A:B:K)")
        if len(out) > max_count:
            raise DimsError(f"--dims: more than {max_count} dimensions")
    return tuple(sorted(out))
