"""Figures. matplotlib lives only here (and never pyplot: figures are built as ``Figure`` objects).

Importing this package chooses no backend and changes no global setting: ``Figure.savefig`` renders
PNG and SVG with matplotlib's own Agg/SVG canvases whatever backend the caller (a notebook, a GUI
session) uses, so ``import sim.plots`` never overrides a user's ``matplotlib.use``.

Every figure uses the packaged style ``sim.plots.hdsim`` (Okabe-Ito colours, sizes for one or two
columns) and is written as PNG and SVG with timestamps and software versions stripped and a fixed SVG
hash salt, so re-running writes byte-identical files.
"""

from __future__ import annotations

import contextlib

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.figure import Figure

__all__ = ["style", "new_figure", "save", "pick_dims", "COLORS", "MARKERS"]

STYLE = "sim.plots.hdsim"
#: Okabe & Ito (2008) colour-blind-safe palette, black last-but-one.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@contextlib.contextmanager
def style():
    """Context in which figures get the hdsim style."""
    with matplotlib.style.context(STYLE):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 7.0, height: float = 3.0, **kw):
    """A ``Figure`` and its axes array (call inside ``style()``)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig: Figure, out, stem: str) -> list[str]:
    """Write ``stem.png`` and ``stem.svg`` through ``out`` (a ``sim.io.Output``), deterministically."""
    names = []
    with matplotlib.rc_context({"svg.hashsalt": "hdsim"}):
        for ext, meta in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
            name = f"{stem}.{ext}"
            fig.savefig(out.path(name), format=ext, metadata=meta)
            names.append(name)
    return names


def pick_dims(dims, most: int = 4) -> list[int]:
    """Up to ``most`` of the distinct ``dims``, evenly spaced by rank (so evenly in log d for a
    log-spaced sweep), always including the smallest and the largest."""
    dims = sorted(set(int(d) for d in dims))
    if len(dims) <= most:
        return dims
    idx = np.unique(np.round(np.linspace(0, len(dims) - 1, most)).astype(int))
    return [dims[i] for i in idx]
