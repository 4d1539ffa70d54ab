"""The shared shape of an experiment's output."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

Progress = Callable[[int], None]


def no_progress(_: int) -> None:
    """Default progress callback."""


@dataclasses.dataclass
class Result:
    """What an experiment returns.

    Attributes:
        rows: the main table, one dict per row, every row with the same keys in the same order.
        tables: further tables by name (e.g. ``"hist"``), same convention.
        info: JSON-able facts about the run beyond the config (timings, throughput, notes).
    """

    rows: list[dict[str, Any]]
    tables: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
