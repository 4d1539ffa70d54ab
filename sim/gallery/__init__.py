"""The figure gallery: every figure of ``figures/``, how it is made, and its data.

Each entry runs its experiment (results are shared between entries of one invocation), then writes
``<name>.png``, ``<name>.svg``, ``<name>.csv`` (the data drawn) and ``<name>.json`` (parameters, seed,
versions, device, wall time, and a one-sentence caption with the measured law). PNG, SVG and CSV are
byte-identical across re-runs; only the JSON carries timings.

Entries live in one module per topic (``sim.gallery.distances``, ...), each registering its figures
with ``register``; the order of ``REGISTRY`` is the order of the gallery.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from collections.abc import Callable
from pathlib import Path

from sim.io import Output, run_metadata

__all__ = ["FigureSpec", "REGISTRY", "register", "make_figures", "gallery_markdown", "TOPICS"]


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A gallery entry: ``make(out, quick) -> (caption, params, seed, extra_info)`` writes the files."""

    name: str
    description: str
    make: Callable


REGISTRY: dict[str, FigureSpec] = {}


def register(name, description):
    """Decorator: add ``fn(out, quick)`` to the gallery under ``name``."""

    def deco(fn):
        REGISTRY[name] = FigureSpec(name, description, fn)
        return fn

    return deco


#: topic modules, in gallery order
TOPICS = ("distances", "rmt", "critical", "spectrum", "scaling", "train", "batch")
for _topic in TOPICS:
    importlib.import_module(f"sim.gallery.{_topic}")


def make_figures(out_dir, names=None, *, quick=False, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Regenerate the gallery figures ``names`` (default all) into ``out_dir``.

    Each figure's files are committed together once it is complete. Returns one dict per figure with
    its name, files and caption.
    """
    names = list(names or REGISTRY)
    done = []
    for name in names:
        spec = REGISTRY[name]
        if progress:
            progress(name)
        t0 = time.perf_counter()
        with Output(out_dir) as out:
            caption, params, seed, extra = spec.make(out, quick)
            meta = run_metadata(
                f"hdsim figures --only {name}" + (" --quick" if quick else ""),
                params,
                seed=seed,
                wall_seconds=time.perf_counter() - t0,
                info={"caption": caption, **extra},
            )
            out.json(f"{name}.json", meta)
            files = out.staged_names()
        done.append({"name": name, "files": files, "caption": caption})
    return done


def gallery_markdown(out_dir, *, prefix: str = "") -> str:
    """Markdown of the gallery in ``out_dir``: every figure present there, in gallery order, with its
    caption (from its JSON) and the command that regenerates it. ``prefix`` goes before file names
    (``figures/`` for the README)."""
    parts = []
    for spec in REGISTRY.values():
        meta = Path(out_dir) / f"{spec.name}.json"
        if not meta.exists():
            continue
        caption = json.loads(meta.read_text())["info"]["caption"]
        parts.append(
            f"### {spec.name}\n\n![{spec.description}]({prefix}{spec.name}.png)\n\n{caption}\n\n"
            f"`hdsim figures --only {spec.name}` (data: [{spec.name}.csv]({prefix}{spec.name}.csv))\n"
        )
    return "\n".join(parts)
