"""Writing results: atomic CSV/JSON files and the run metadata that goes next to every output.

``Output`` stages every file of a run under a temporary name in the target directory and renames them
all into place only when the run has succeeded (``commit``); on failure nothing half-written remains.
CSV floats are written with ``repr`` (shortest round-trip form), so files are byte-identical across
re-runs with the same numbers; wall times go only into the JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

__all__ = ["Output", "check_writable", "run_metadata", "versions", "device_info", "to_csv_text"]


def versions() -> dict[str, str]:
    """Versions of hdsim and of the libraries that decide its numbers."""
    import jax
    import jaxlib
    import matplotlib
    import numpy

    from sim import __version__

    return {
        "hdsim": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
        "python": platform.python_version(),
    }


def device_info() -> dict[str, Any]:
    """The JAX backend and devices the run used."""
    import jax

    devs = jax.devices()
    return {
        "platform": devs[0].platform,
        "device_kind": devs[0].device_kind,
        "device_count": len(devs),
        "process_count": jax.process_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "host": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def run_metadata(command: str, params: dict, *, seed: int | None, wall_seconds: float, info: dict | None = None) -> dict:
    """The JSON that sits next to every output: parameters, seed, versions, device and wall time."""
    return {
        "command": command,
        "argv": sys.argv[1:],
        "parameters": params,
        "seed": seed,
        "versions": versions(),
        "device": device_info(),
        "wall_seconds": round(wall_seconds, 3),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **({"info": info} if info else {}),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return repr(v)
    return str(v)


def to_csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text of rows that all have the same keys (header from the first row)."""
    rows = list(rows)
    buf = io.StringIO()
    if not rows:
        return ""
    w = csv.writer(buf, lineterminator="\n")
    keys = list(rows[0])
    w.writerow(keys)
    for r in rows:
        if list(r) != keys:
            raise ValueError(f"to_csv_text: row keys {list(r)} differ from header {keys}")
        w.writerow([_fmt(r[k]) for k in keys])
    return buf.getvalue()


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def check_writable(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check a file can be written there.

    Raises:
        ValueError: naming the directory and the reason.
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".hdsim-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"--out {str(directory)!r} is not a writable directory ({e.strerror or e})") from None
    return path


class Output:
    """Stage files of one run; ``commit()`` renames them all into place, ``discard()`` removes them.

    Use as a context manager: files are committed on success and discarded on an exception.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = check_writable(directory)
        self._staged: list[tuple[Path, Path]] = []

    def path(self, name: str) -> Path:
        """A staging path for the final file ``name`` (for writers such as matplotlib's savefig)."""
        final = self.dir / name
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
        os.close(fd)
        self._staged.append((Path(tmp), final))
        return Path(tmp)

    def text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def csv(self, name: str, rows) -> None:
        self.text(name, to_csv_text(rows))

    def json(self, name: str, obj: dict) -> None:
        self.text(name, json.dumps(_clean(obj), indent=2, default=_json_default) + "\n")

    def staged_names(self) -> list[str]:
        """Names (relative to the directory) of the files staged so far."""
        return [str(final.relative_to(self.dir)) for _, final in self._staged]

    def commit(self) -> list[Path]:
        done = []
        for tmp, final in self._staged:
            os.replace(tmp, final)
            done.append(final)
        self._staged.clear()
        return done

    def discard(self) -> None:
        for tmp, _ in self._staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        self._staged.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False
