"""The shared shape of an experiment's output, and the checks every config runs on itself.

Configs validate themselves in ``__post_init__`` and raise ``ValueError`` with one line that names the
field and the value and says what is allowed (``"starts must be an integer >= 1, got 0"``); the CLI
shows that line with the field spelled as its option.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Progress = Callable[[int], None]

#: significant digits a float32 statistic carries (24 bits: 7.2 decimal digits)
FLOAT32_DIGITS = 7


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


def carried(x, dtype) -> float:
    """``x`` as a Python float with the digits a statistic computed in ``dtype`` carries.

    float32 (and narrower) results are rounded to ``FLOAT32_DIGITS`` significant digits: the digits
    beyond differ between CPUs and summation orders, so writing them would make a regenerated table
    differ from a committed one for no reason. float64 results are returned unchanged.
    """
    import numpy as np

    v = float(x)
    if np.dtype(dtype).itemsize <= 4 and math.isfinite(v) and v != 0.0:
        return float(format(v, f".{FLOAT32_DIGITS}g"))
    return v


# ---- checks for configs: each raises ValueError naming the field and the value ----


class ConfigError(ValueError):
    """A config field outside what is allowed (one line naming the field and the value)."""


@contextlib.contextmanager
def checking(where: str):
    """Prefix the ``ConfigError`` messages raised inside with ``where: `` (e.g. ``critical: starts ...``)."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _is_int(v) -> bool:
    import numpy as np

    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_int(name: str, v, least: int, *, optional: bool = False) -> None:
    """``v`` is an integer >= ``least`` (or None when ``optional``)."""
    if optional and v is None:
        return
    if not _is_int(v) or v < least:
        raise ConfigError(f"{name} must be {'None or ' if optional else ''}an integer >= {least}, got {v!r}")


def check_number(name: str, v, *, least: float = 0.0, strict: bool = True, optional: bool = False) -> None:
    """``v`` is a finite real number > ``least`` (>= when not ``strict``), or None when ``optional``."""
    if optional and v is None:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if not ok:
        try:
            import numpy as np

            ok = isinstance(v, (np.integer, np.floating))
        except ImportError:  # pragma: no cover
            ok = False
    if not ok or not math.isfinite(v) or v < least or (strict and v == least):
        raise ConfigError(f"{name} must be a finite number {'>' if strict else '>='} {least:g}, got {v!r}")


def check_choice(name: str, v, valid: Iterable) -> None:
    """``v`` is one of ``valid``."""
    valid = tuple(valid)
    if v not in valid:
        raise ConfigError(f"{name}: unknown value {v!r}; valid: {', '.join(map(str, valid))}")


def check_dims(name: str, dims, least: int = 1, most: int | None = None) -> tuple[int, ...]:
    """A non-empty sequence of integers in [least, most]; returns it as a tuple of ints."""
    try:
        dims = tuple(dims)
    except TypeError:
        raise ConfigError(f"{name} must be a non-empty list of integers >= {least}, got {dims!r}") from None
    if not dims:
        raise ConfigError(f"{name} must be a non-empty list of integers >= {least}, got {dims!r}")
    for d in dims:
        if not _is_int(d) or d < least:
            raise ConfigError(f"{name} must be integers >= {least}, got {d!r}")
        if most is not None and d > most:
            raise ConfigError(f"{name}: {d} exceeds the largest allowed value {most}")
    return tuple(int(d) for d in dims)


def check_devices(devices, platform, platforms) -> None:
    """The ``devices`` / ``platform`` fields every sweep has."""
    check_int("devices", devices, 1, optional=True)
    if platform is not None and platform not in platforms:
        raise ConfigError(f"platform must be None or one of {', '.join(platforms)}, got {platform!r}")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity on Linux, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def compile_ahead(jobs: Mapping[Any, Callable[[], Any]], name: str) -> dict[Any, Future]:
    """Start ``jobs`` (each compiles, without running, a program that a later call reuses) side by side,
    one thread per usable core, and return at once: {job key: Future}. XLA compiles with the GIL
    released, and compilation is most of a gallery sweep's cost on CPU, so a sweep compiles its sizes in
    parallel and runs each one as soon as its ``Future`` is done; the programs, hence the results, are
    those of the plain calls."""
    pool = ThreadPoolExecutor(usable_cores(), thread_name_prefix=f"hdsim-{name}-compile")
    futures = {k: pool.submit(job) for k, job in jobs.items()}
    pool.shutdown(wait=False)
    return futures
