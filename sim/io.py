"""Writing results: atomic CSV/JSON files and the run metadata that goes next to every output.

``Output`` stages every file of a run in a hidden directory inside the target directory and puts
them all in place only when the run has succeeded (``commit``, journaled: a crash never leaves a mix
of old and new files, see ``recover``); on failure nothing half-written remains.

CSV cells follow one convention in every file (``format_value``): a missing value is an empty cell,
float32 values are written with the 7 significant digits they carry, other floats with ``repr``
(shortest round-trip form), so files are byte-identical across re-runs with the same numbers; wall
times go only into the JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "Output",
    "recover",
    "check_writable",
    "run_metadata",
    "versions",
    "device_info",
    "to_csv_text",
    "format_value",
    "FLOAT32_DIGITS",
]


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
        "x64": bool(jax.config.jax_enable_x64),  # type: ignore[attr-defined]  # JAX's flags are dynamic attributes
        "host": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def run_metadata(
    command: str, params: dict, *, seed: int | None, wall_seconds: float, info: dict | None = None
) -> dict:
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


#: significant decimal digits written for a float32 value: float32 carries 24 bits (7.2 digits), and
#: rounding to 7 digits (relative error <= 5e-8, about half a float32 ulp) drops the digits that differ
#: between CPUs and summation orders.
FLOAT32_DIGITS = 7


def format_value(v: Any) -> str:
    """One CSV cell. The conventions, the same in every CSV hdsim writes:

    * a missing value (``None``, or a float NaN: not applicable, not converged, no closed form) is an
      empty cell; NaN is never written;
    * a float32 (or narrower) numpy scalar is written with ``FLOAT32_DIGITS`` significant digits, the
      digits it carries;
    * any other float (Python float, float64) with ``repr``: the shortest text that reads back to the
      same float64, so files are byte-identical across re-runs with the same numbers;
    * +-inf as ``inf`` / ``-inf``; booleans as ``True`` / ``False``; integers in full.
    """
    import numpy as np

    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (np.floating, float)):
        x = float(v)
        if math.isnan(x):
            return ""
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if isinstance(v, np.floating) and np.dtype(type(v)).itemsize <= 4:
            return format(x, f".{FLOAT32_DIGITS}g")
        return repr(x)
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v)


def to_csv_text(rows: Iterable[dict[str, Any]]) -> str:
    """CSV text of rows that all have the same keys (header from the first row); cells by ``format_value``."""
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
        w.writerow([format_value(r[k]) for k in keys])
    return buf.getvalue()


def _json_default(o):
    import numpy as np

    if isinstance(o, np.floating) and np.dtype(type(o)).itemsize <= 4:
        return float(format(float(o), f".{FLOAT32_DIGITS}g"))  # the digits a float32 carries
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


#: prefix of the hidden staging directories ``Output`` creates inside the target directory
STAGE_PREFIX = ".hdsim-stage-"
_JOURNAL = "COMMIT"
_OWNER = "OWNER"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _owner_alive(stage: Path) -> bool:
    """Whether the process that created ``stage`` may still be writing to it."""
    try:
        owner = json.loads((stage / _OWNER).read_text())
    except (OSError, ValueError):
        # no owner file yet: a run between mkdtemp and its first write, or one that crashed right there
        try:
            return time.time() - stage.stat().st_mtime < 60
        except OSError:
            return False
    if owner.get("host") != platform.node():
        return True  # another machine on a shared file system: cannot tell, leave it alone
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, KeyError, ValueError, TypeError):
        return True
    return True


def _apply(directory: Path, stage: Path, journal: dict) -> list[Path]:
    """Carry out a written commit journal (idempotent: files already moved are skipped)."""
    done = []
    for name in journal["replace"]:
        src, final = stage / name, directory / name
        if src.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, final)
        done.append(final)
    for name in journal.get("remove", []):
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            pass
    _fsync_dir(directory)
    shutil.rmtree(stage, ignore_errors=True)
    return done


def recover(directory: str | os.PathLike) -> list[str]:
    """Finish or undo what a crashed run left in ``directory``; returns what was done, one line each.

    A staging directory with a commit journal belongs to a commit that was decided but interrupted:
    its remaining renames are carried out (roll forward), so the directory holds all of that run's
    files, never a mix of old and new. One without a journal, whose process is gone, is removed (roll
    back): the previous files stay as they were. Staging directories of live processes are left alone.
    ``Output`` calls this when it opens a directory.
    """
    path = Path(directory)
    log: list[str] = []
    if not path.is_dir():
        return log
    for stage in sorted(path.glob(STAGE_PREFIX + "*")):
        if not stage.is_dir():
            continue
        journal = stage / _JOURNAL
        if journal.exists():
            try:
                spec = json.loads(journal.read_text())
            except ValueError:  # pragma: no cover - the journal is written by rename, never partially
                spec = None
            if spec is not None:
                _apply(path, stage, spec)
                log.append(f"completed an interrupted commit of {len(spec['replace'])} files")
                continue
        if not _owner_alive(stage):
            shutil.rmtree(stage, ignore_errors=True)
            log.append(f"removed the staged files of an unfinished run ({stage.name})")
    return log


class Output:
    """Stage the files of one run, then put them all in place at once.

    Files are written into a hidden staging directory inside ``directory`` (same file system, so a
    rename moves them). ``commit()`` makes the files durable, writes a journal listing every rename
    and removal, then carries it out: a crash before the journal leaves the previous files untouched,
    a crash after it is completed by the next ``Output`` (or ``recover``) on that directory, so no
    mix of old and new files survives. ``discard()`` removes the staged files. Nothing named
    ``*.part`` is ever created next to the outputs.

    Use as a context manager: committed on success, discarded on an exception.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = check_writable(directory)
        self.recovered = recover(self.dir)
        self._stage: Path | None = None
        self._staged: list[str] = []
        self._remove: list[str] = []

    def _stage_dir(self) -> Path:
        if self._stage is None:
            self._stage = Path(tempfile.mkdtemp(dir=self.dir, prefix=STAGE_PREFIX))
            (self._stage / _OWNER).write_text(json.dumps({"host": platform.node(), "pid": os.getpid()}))
        return self._stage

    def path(self, name: str) -> Path:
        """The staging path of the final file ``name`` (for writers such as matplotlib's savefig)."""
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0].startswith(STAGE_PREFIX):
            raise ValueError(f"Output.path: {name!r} must be a relative path inside the output directory")
        tmp = self._stage_dir() / rel
        tmp.parent.mkdir(parents=True, exist_ok=True)
        key = rel.as_posix()
        if key not in self._staged:
            self._staged.append(key)
        if key in self._remove:
            self._remove.remove(key)
        return tmp

    def text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def csv(self, name: str, rows) -> None:
        self.text(name, to_csv_text(rows))

    def json(self, name: str, obj: dict) -> None:
        self.text(name, json.dumps(_clean(obj), indent=2, default=_json_default) + "\n")

    def remove(self, name: str) -> None:
        """Delete ``name`` from the directory in the same commit (e.g. a figure of a previous run that
        this run does not rewrite); a name staged in this run is kept."""
        key = Path(name).as_posix()
        if key not in self._staged and key not in self._remove:
            self._remove.append(key)

    def staged_names(self) -> list[str]:
        """Names (relative to the directory) of the files staged so far."""
        return list(self._staged)

    def commit(self) -> list[Path]:
        """Put every staged file in place and delete the files marked by ``remove``; see the class doc."""
        stage = self._stage
        if stage is None:  # nothing staged
            removed = [n for n in self._remove if (self.dir / n).exists()]
            if removed:
                stage = self._stage_dir()
            else:
                self._remove.clear()
                return []
        for name in self._staged:
            with open(stage / name, "rb") as f:
                os.fsync(f.fileno())
        journal = {"replace": list(self._staged), "remove": list(self._remove)}
        tmp = stage / (_JOURNAL + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(journal))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, stage / _JOURNAL)  # the commit point
        _fsync_dir(stage)
        done = _apply(self.dir, stage, journal)
        self._stage = None
        self._staged.clear()
        self._remove.clear()
        return done

    def discard(self) -> None:
        """Remove the staged files (a commit whose journal is already written is completed instead)."""
        stage = self._stage
        if stage is not None:
            if (stage / _JOURNAL).exists():
                _apply(self.dir, stage, json.loads((stage / _JOURNAL).read_text()))
            else:
                shutil.rmtree(stage, ignore_errors=True)
        self._stage = None
        self._staged.clear()
        self._remove.clear()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False
