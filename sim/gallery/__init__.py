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


def _make_one(out_dir, name: str, quick: bool) -> dict:
    """Run entry ``name`` and commit its files into ``out_dir``."""
    spec = REGISTRY[name]
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
    return {"name": name, "files": files, "caption": caption}


def make_figures(
    out_dir, names=None, *, quick=False, progress: Callable[[str], None] | None = None, workers: int = 1
) -> list[dict]:
    """Regenerate the gallery figures ``names`` (default all) into ``out_dir``.

    Each figure's files are committed together once it is complete. Returns one dict per figure with
    its name, files and caption, in the order of ``names``; ``progress(name)`` is called in that order
    too (before the entry runs; with workers, once it is done).

    ``workers > 1`` runs the topics (``TOPICS``: the entries of a topic share their experiments) in that
    many worker processes (``_parallel``). Every file is the same, byte for byte, as in a sequential run
    (the JSON's timings aside): each entry runs the same programs on the same inputs. The workers are
    spawned, so a script calling this with ``workers > 1`` needs the usual ``if __name__ == "__main__":``
    guard. Measured on 2 cores under load (another engineer's jobs, load 4 to 6), two workers did not
    shorten the wall time of critical_index_energy + spectrum_training (124 s against 112 s, the same
    97 CPU-s): one process already keeps about 1.5 cores busy; hence the CLI's default of 1.
    """
    names = list(names or REGISTRY)
    groups = _groups(names)
    if workers > 1 and len(groups) > 1:
        return _parallel(out_dir, names, groups, quick, progress, workers)
    done = []
    for name in names:
        if progress:
            progress(name)
        done.append(_make_one(out_dir, name, quick))
    return done


def _topic_of(name: str) -> str:
    """The module that registered entry ``name`` (its topic: entries of one topic share experiments)."""
    return REGISTRY[name].make.__module__


def _groups(names: list[str]) -> list[list[str]]:
    """``names`` split by topic (in order of first appearance), each group in the order of ``names``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_topic_of(name), []).append(name)
    return list(groups.values())


#: rough CPU-s of each topic's quick entries (cold compilation cache): the longest start first
_QUICK_COST = {"critical": 43, "distances": 40, "scaling": 37, "spectrum": 35, "train": 23, "rmt": 19, "batch": 13}

#: JAX options a worker process copies from its parent (the CLI sets them: x64, the compilation cache)
_JAX_OPTIONS = (
    "jax_enable_x64",
    "jax_enable_compilation_cache",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def _jax_options() -> dict:
    import jax

    return {k: getattr(jax.config, k) for k in _JAX_OPTIONS if hasattr(jax.config, k)}


def _worker_init(options: dict) -> None:
    import jax

    for k, v in options.items():
        jax.config.update(k, v)


def _worker_run(stage: str, module: str, names: list[str], quick: bool) -> tuple[list[dict], tuple | None]:
    """In a worker: import the topic ``module`` (which registers its entries), run its entries ``names``
    into the private directory ``stage``, up to the first error. Returns (the finished entries, None or
    (the failed entry's name, its exception))."""
    importlib.import_module(module)
    done = []
    for name in names:
        try:
            done.append(_make_one(stage, name, quick))
        except Exception as e:
            return done, (name, e)
    return done, None


def _parallel(out_dir, names, groups, quick, progress, workers) -> list[dict]:
    """Run the topic ``groups`` in ``workers`` spawned processes, each topic writing into its own private
    directory; the parent then commits every entry's files into ``out_dir`` (one ``Output`` commit per
    entry, as in a sequential run) in the order of ``names``, as soon as that entry and all entries
    before it are done, and calls ``progress`` in that order. The first error (in the order of
    ``names``) is raised once the running topics have stopped: the entries before it are in place, none
    after it, as in a sequential run."""
    import multiprocessing
    import shutil
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    order = sorted(range(len(groups)), key=lambda i: -_QUICK_COST.get(_topic_of(groups[i][0]).rsplit(".", 1)[-1], 0))
    results: dict[str, dict] = {}
    failed: dict[str, BaseException] = {}
    done: list[dict] = []
    nxt = 0
    with tempfile.TemporaryDirectory(prefix="hdsim-figures-") as tmp:
        stage = Path(tmp)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(groups)), ctx, _worker_init, (_jax_options(),)) as pool:
            futures = {}
            for i in order:  # a private directory per topic: no two processes commit into one directory
                topic_dir = stage / _topic_of(groups[i][0])
                topic_dir.mkdir()
                module = REGISTRY[groups[i][0]].make.__module__
                futures[pool.submit(_worker_run, str(topic_dir), module, groups[i], quick)] = groups[i]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    if f.cancelled():
                        continue
                    ok, error = f.result()
                    for r in ok:
                        results[r["name"]] = r
                    if error is not None:
                        failed[error[0]] = error[1]
                if failed:  # stop the topics not started; the running ones finish
                    for f in pending:
                        f.cancel()
                # commit, in the order of names, every entry whose predecessors are all done (never one
                # after a failed entry)
                while nxt < len(names) and names[nxt] in results:
                    r = results[names[nxt]]
                    if progress:
                        progress(r["name"])
                    with Output(out_dir) as out:
                        for fname in r["files"]:
                            shutil.copyfile(stage / _topic_of(r["name"]) / fname, out.path(fname))
                    done.append(r)
                    nxt += 1
        if failed:
            raise failed[min(failed, key=names.index)]
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
