"""Critical points of random losses as the dimension grows: index against energy, fraction of minima.

For each size n in ``config.dims`` and each instance, sample a landscape (``sim.landscapes``), run the
Newton-type finder from ``config.starts`` random starts (``sim.critical.find_critical_points``) and,
optionally, gradient descent from the same starts (``sim.critical.minimise``).

Keys: instance i of size n is sampled from ``fold_in(fold_in(fold_in(key(seed), n), i), 0)``; its
starts come from ``fold_in(..., 1)`` (the same starts for the finder and for descent).

Tables (``Result``):

* ``rows``: one row per start of the finder (converged or not: ``converged`` says which rows are
  critical points; index fields are None for the others). ``dim`` is the dimension of the space the
  loss lives on (n for grf/pspin, the number of parameters P for mlp), ``size`` the value from
  ``config.dims`` (the hidden width for mlp), ``index_fraction = index / tangent dimension``
  (n - 1 on the sphere).
* ``tables["summary"]``: one row per size: counts (found = starts x instances, converged,
  not_converged = found - converged, stalled = the part of not_converged that stopped early,
  unique), fraction of minima among unique critical points, mean index fraction, the Spearman
  correlation of index fraction with energy, the theory's mean index fraction at the same energies,
  and the descent results (minima reached, their mean energy with a standard error over instances).
* ``tables["descent"]``: one row per start of gradient descent (same schema as ``rows``).
* ``tables["spectrum"]``: Hessian eigenvalues at up to ``config.spectra`` saddles per size, drawn at
  random among the unique saddles (``numpy.random.default_rng([seed, dim])``).
* ``tables["theory"]``: the curve alpha(energy) of the theory (grf without confinement, pspin).

Devices: the unit of work is one instance at one size (its finder run and, with descent, its descent
run). Items, ordered by size then instance, go round-robin to the devices (item k on device k mod D;
``config.devices`` of them, default all, across processes after ``jax.distributed.initialize``): each
item's key is placed on its device, so its sampling and searches run there, and up to ``2 D`` items are
dispatched ahead of the one being collected, so the devices work concurrently (on CPU at most one fewer
than XLA's intra-op pool has threads, see ``_in_flight``). In a multi-process run each process
dispatches the items of its own devices and every result is then copied to all processes
(``_share``), so process 0 holds the whole table. Every item runs the same program on any device, so
every number (all columns except timings) is bit-identical for 1, 2, 8 ... devices and for any number
of processes. Each device compiles the programs of the sizes it runs once.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from sim import critical, landscapes
from sim.devices import PLATFORMS, get_devices
from sim.experiments.base import (
    ConfigError,
    Progress,
    Result,
    check_choice,
    check_devices,
    check_dims,
    check_int,
    check_number,
    checking,
    no_progress,
    usable_cores,
)
from sim.fit import spearman  # re-exported: it used to live here
from sim.theory import landscapes as theory

__all__ = ["CriticalConfig", "run", "prepare", "spearman", "memory_estimate", "check_memory"]

# finder budget by landscape (MLP critical points converge slowly: flat directions): (max_steps, patience)
_FINDER_DEFAULTS = {"grf": (100, 10), "pspin": (100, 10), "mlp": (300, 50)}


@dataclasses.dataclass(frozen=True)
class CriticalConfig:
    """Parameters of ``hdsim critical``.

    Attributes:
        landscape: "grf", "pspin" or "mlp".
        dims: sizes n (hidden widths for mlp), each >= 1 (>= 2 for pspin).
        starts: random starts per instance, >= 1.
        seed: master seed.
        instances: random landscapes per size, >= 1.
        p: p-spin order (>= 2).
        features, features_per_dim, length_scale, confine: GRF options (``sim.landscapes.GRF``).
        data: what the MLP is trained on: "teacher" (synthetic, default) or a real data set of
            ``sim.learning.data`` ("digits", "mnist1d"); only for landscape "mlp".
        d_in, num_samples, weight_decay, noise: MLP options (``sim.landscapes.MLP``; d_in None: 2 for the
            teacher, the data's for real data).
        start_scales, start_steps, start_lr: MLP starts: LeCun init times a scale from ``start_scales``,
            then full-batch gradient descent for a number of steps from ``start_steps`` at learning rate
            ``start_lr`` (``sim.landscapes.MLP.start``; defaults: the initialisation itself).
        max_steps, patience: finder budget (None: 100 and 10; 300 and 50 for mlp).
        method: the finder's step rule, "lm" or "newton" (see ``sim.critical``), or "subnet" (mlp only:
            minima of sub-networks embedded with silent hidden units, ``sim.critical.subnet_solve``).
            None (default): "subnet" for an MLP on real data (the Newton-type finders converge on few
            starts there, most stall at non-critical minima of |grad|^2), else "lm".
        rtol, zero_tol, dedup_tol: tolerances (see ``sim.critical``).
        descent: also run gradient descent from the same starts.
        descent_steps: iteration cap of the descent.
        spectra: saddles per size whose full Hessian spectrum is kept.
        slots: concurrent runs of the finder (``sim.critical.find_critical_points``; None: its default).
            Results depend on it only through the rounding of batched matrix products; fewer than 8
            slots compile one copy of the search loop instead of three (the quick gallery uses 7).
        devices: number of devices the instances are spread over (None: all of them, in every process
            of a multi-process run). Results do not depend on it.
        platform: backend whose devices are used ("cpu", "gpu", "tpu"; None: JAX's default).
    """

    landscape: str = "grf"
    dims: tuple[int, ...] = (2, 4, 8, 16, 32)
    starts: int = 512
    seed: int = 0
    instances: int = 1
    p: int = 3
    features: int | None = None
    features_per_dim: int = 16
    length_scale: float = 1.0
    confine: float = 0.0
    data: str = "teacher"
    d_in: int | None = None
    num_samples: int = 64
    weight_decay: float = 1e-3
    noise: float = 0.0
    start_scales: tuple[float, ...] = (1.0,)
    start_steps: tuple[int, ...] = (0,)
    start_lr: float = 0.05
    max_steps: int | None = None
    patience: int | None = None
    method: str | None = None
    rtol: float = 1e-8
    zero_tol: float = 1e-6
    dedup_tol: float = 1e-6
    descent: bool = True
    descent_steps: int = 20000
    spectra: int = 4
    slots: int | None = None
    devices: int | None = None
    platform: str | None = None

    def __post_init__(self):
        with checking("critical"):
            check_choice("landscape", self.landscape, landscapes.LANDSCAPES)
            check_choice("data", self.data, landscapes.MLP_DATA)
            if self.data != "teacher" and self.landscape != "mlp":
                raise ConfigError(f"data {self.data!r} applies to landscape mlp only, got landscape {self.landscape!r}")
            for name in ("start_scales", "start_steps"):
                object.__setattr__(self, name, tuple(getattr(self, name)))
            check_int("p", self.p, 2)
            object.__setattr__(self, "dims", check_dims("dims", self.dims))
            for name in ("starts", "instances", "descent_steps"):
                check_int(name, getattr(self, name), 1)
            for name in ("max_steps", "patience"):
                check_int(name, getattr(self, name), 1, optional=True)
            if self.method is None:
                object.__setattr__(self, "method", "subnet" if self.data != "teacher" else "lm")
            check_choice("method", self.method, critical.FINDERS)
            if self.method == "subnet" and self.landscape != "mlp":
                raise ConfigError(f"method 'subnet' applies to landscape mlp only, got landscape {self.landscape!r}")
            check_int("spectra", self.spectra, 0)
            check_int("slots", self.slots, 1, optional=True)
            check_int("seed", self.seed, 0)
            for name in ("rtol", "zero_tol", "dedup_tol"):
                check_number(name, getattr(self, name))
            check_devices(self.devices, self.platform, PLATFORMS)
            land = self.make_landscape()  # validates the landscape options
            for d in self.dims:
                land.check_size(d)

    def make_landscape(self) -> landscapes.Landscape:
        return landscapes.make_landscape(
            self.landscape,
            p=self.p,
            features=self.features,
            features_per_dim=self.features_per_dim,
            length_scale=self.length_scale,
            confine=self.confine,
            data=self.data,
            d_in=self.d_in,
            num_samples=self.num_samples,
            weight_decay=self.weight_decay,
            noise=self.noise,
            init_scales=self.start_scales,
            train_steps=self.start_steps,
            train_lr=self.start_lr,
        )

    def finder_budget(self) -> tuple[int, int]:
        """``(max_steps, patience)`` with the landscape's defaults filled in."""
        steps, patience = _FINDER_DEFAULTS[self.landscape]
        return (self.max_steps or steps, self.patience or patience)


def memory_estimate(config: CriticalConfig, devices) -> int:
    """Bytes held at once: the float64 Hessians of all starts of an instance (S x dim^2, a few copies)
    for every instance running at the same time. CPU devices share the host's memory and run one
    instance each at once, so the largest ``min(D, instances)`` instances count; accelerators count one."""
    land = config.make_landscape()
    per = sorted(
        (
            3 * 8 * config.starts * (land.dim(d) ** 2 + 16 * land.dim(d))
            for d in config.dims
            for _ in range(min(config.instances, len(devices)))
        ),
        reverse=True,
    )
    at_once = min(len(devices), len(per)) if devices[0].platform == "cpu" else 1
    return sum(per[:at_once])


def check_memory(config: CriticalConfig, devices, available: int) -> None:
    """Raise ValueError when ``memory_estimate`` exceeds half of ``available`` bytes."""
    need = memory_estimate(config, devices)
    if need > 0.5 * available:
        land = config.make_landscape()
        dmax = max(land.dim(d) for d in config.dims)
        at_once = min(len(devices), config.instances * len(config.dims)) if devices[0].platform == "cpu" else 1
        raise ValueError(
            f"starts {config.starts} at dimension {dmax} needs about {need / 2**30:.1f} GiB"
            f"{f' ({at_once} instances at once)' if at_once > 1 else ''}, more than half of the "
            f"{available / 2**30:.1f} GiB available; use fewer starts, smaller dims or fewer devices"
        )


def _theory_alpha(config: CriticalConfig, energy):
    """Theory index fraction at these energies, or None where no theory applies."""
    if config.landscape == "grf" and config.confine == 0:
        return theory.grf_index_fraction(energy)
    if config.landscape == "pspin":
        return theory.pspin_index_fraction(energy, config.p)
    return None


def _rows(name, dim, size, instance, cp: critical.CriticalPoints, tdim, method) -> list[dict[str, Any]]:
    conv = np.asarray(cp.converged)
    out = []
    arrays = {
        k: np.asarray(getattr(cp, k))
        for k in ("grad_norm", "energy", "index", "n_zero", "steps", "stalled", "unique", "duplicate_of")
    }
    ev = np.asarray(cp.eigenvalues)
    for s in range(conv.size):
        ok = bool(conv[s])
        idx = int(arrays["index"][s])
        out.append(
            {
                "landscape": name,
                "dim": dim,
                "start": s,
                "converged": ok,
                "grad_norm": float(arrays["grad_norm"][s]),
                "energy": float(arrays["energy"][s]),
                "index": idx if ok else None,
                "index_fraction": idx / tdim if ok else None,
                "min_eig": float(ev[s, 0]) if ok else None,
                "max_eig": float(ev[s, -1]) if ok else None,
                "size": size,
                "instance": instance,
                "method": method,
                "steps": int(arrays["steps"][s]),
                "stalled": bool(arrays["stalled"][s]),
                "n_zero": int(arrays["n_zero"][s]) if ok else None,
                "unique": bool(arrays["unique"][s]),
                "duplicate_of": int(arrays["duplicate_of"][s]) if ok else None,
            }
        )
    return out


def _search_calls(config: CriticalConfig, land, size: int, inst: int, budget, root):
    """The searches of instance ``inst`` of ``size`` from the master key ``root``: a list of
    (kind, args, options) for ``sim.critical`` (kind "find": ``find_critical_points``, "minimise")."""
    max_steps, patience = budget
    k = jax.random.fold_in(jax.random.fold_in(root, size), inst)
    params = land.sample(jax.random.fold_in(k, 0), size)
    k_starts = jax.random.fold_in(k, 1)
    tols = {"rtol": config.rtol, "zero_tol": config.zero_tol, "dedup_tol": config.dedup_tol}
    calls = [
        (
            "find",
            (k_starts, land, params, config.starts),
            dict(max_steps=max_steps, patience=patience, method=str(config.method), slots=config.slots, **tols),
        )
    ]
    if config.descent:
        calls.append(
            (
                "minimise",
                (k_starts, land, params, config.starts),
                dict(descent_steps=config.descent_steps, max_steps=max_steps, patience=patience, **tols),
            )
        )
    return calls


def _compute(config: CriticalConfig, land, size: int, inst: int, budget, root):
    """The searches of instance ``inst`` of ``size`` from the master key ``root``: (finder, descent or None)."""
    calls = _search_calls(config, land, size, inst, budget, root)
    out = [
        (critical.find_critical_points if kind == "find" else critical.minimise)(*args, **options)
        for kind, args, options in calls
    ]
    return out[0], (out[1] if config.descent else None)


def _dispatch(config: CriticalConfig, land, size: int, inst: int, device, budget):
    """Start the searches of instance ``inst`` of ``size`` on ``device``; returns (finder, descent or None)
    without waiting for them (JAX dispatch is asynchronous)."""
    with jax.default_device(device):
        root = jax.device_put(jax.random.key(int(config.seed)), device)
        return _compute(config, land, size, inst, budget, root)


def _compile_size(config: CriticalConfig, land, size: int, device, budget) -> None:
    """Compile (not run) the programs of ``size`` on ``device``: the instances of a size share them."""
    with jax.default_device(device):
        root = jax.device_put(jax.random.key(int(config.seed)), device)
        for kind, args, options in _search_calls(config, land, size, 0, budget, root):
            critical.compile_search(kind, *args, **options)


#: compilations started by ``prepare``: (config, size, device id) -> Future
_COMPILING: dict[tuple, Future] = {}
_COMPILER: list[ThreadPoolExecutor] = []
_LOCK = threading.Lock()


def _compiler() -> ThreadPoolExecutor:
    """The threads that compile in the background, one per usable core (created on first use)."""
    if not _COMPILER:
        _COMPILER.append(ThreadPoolExecutor(usable_cores(), thread_name_prefix="hdsim-critical-compile"))
    return _COMPILER[0]


def _items(config: CriticalConfig, devices) -> list[tuple[int, Any]]:
    """(size, device) of every item that this process runs, in the order it runs them (see ``_results``)."""
    me = jax.process_index()
    out = []
    for j, (size, _) in enumerate((size, inst) for size in config.dims for inst in range(config.instances)):
        device = devices[j % len(devices)]
        if device.process_index == me and (size, device) not in out:
            out.append((size, device))
    return out


def prepare(config: CriticalConfig) -> None:
    """Start compiling the programs that ``run(config)`` needs (per size and device: the finder and, with
    descent, the descent; ``sim.critical.compile_search``) in background threads, one per core, and
    return at once; ``run`` calls it too and waits for a size's programs before running that size.

    Compilation (XLA, single-threaded per program, with the GIL released) is most of the cost of this
    experiment at the gallery's sizes (about 6-10 CPU-s per program against 0.1-2 CPU-s of search), so
    compiling the sizes side by side, and beside the searches of the sizes already compiled, uses
    every core. Calling ``prepare`` for several configurations before running them lets their
    compilations overlap too. The programs are the ones a plain call compiles: results are unchanged,
    bit for bit. A configuration whose programs are being compiled or done is not compiled again."""
    land = config.make_landscape()
    budget = config.finder_budget()
    devices = get_devices(config.devices, platform=config.platform)
    with _LOCK:
        for size, device in _items(config, devices):
            key = (config, size, device.id)
            if key not in _COMPILING:
                _COMPILING[key] = _compiler().submit(_compile_size, config, land, size, device, budget)


def _compiled(config: CriticalConfig, size: int, device) -> None:
    """Wait until ``prepare``'s compilation of ``size`` on ``device`` is done (raises what it raised)."""
    with _LOCK:
        future = _COMPILING.get((config, size, device.id))
    if future is not None:
        future.result()


def _cpu_pool_size() -> int:
    """Threads of XLA's CPU intra-op pool: ``NPROC`` if set (XLA reads it), else the usable cores."""
    try:
        return max(1, int(os.environ["NPROC"]))
    except (KeyError, ValueError):
        return usable_cores()


def _in_flight(devices) -> int:
    """How many items may be dispatched ahead of the one collected.

    Each device runs its items one after the other, so this many consecutive items keep
    ``min(in_flight, D)`` devices busy. On CPU devices the jaxlib LAPACK kernels (batched Cholesky,
    eigh) wait inside XLA's shared intra-op pool for sub-tasks queued on that same pool: as many
    concurrent executions as the pool has threads deadlock. So CPU runs keep at most pool - 1
    devices busy (``hdsim critical --devices`` enlarges the pool through ``NPROC``)."""
    d = len(devices)
    if devices[0].platform == "cpu":
        safe = max(1, _cpu_pool_size() - 1)
        if safe < d:
            return safe
    return 2 * d


def _share(result, owner: int, config: CriticalConfig, land, size: int, budget):
    """Multi-process runs: every process receives the ``result`` (host arrays) of the item that process
    ``owner`` computed (the others pass None): one ``process_allgather`` of the owner's arrays and zeros
    of the same shapes elsewhere. The bits are copied, not recomputed."""
    from jax.experimental import multihost_utils

    if result is None:
        shapes = jax.eval_shape(lambda: _compute(config, land, size, 0, budget, jax.random.key(int(config.seed))))
        result = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    gathered = multihost_utils.process_allgather(result)
    return jax.tree.map(lambda a: np.asarray(a[owner]), gathered)


def _results(config: CriticalConfig, land, devices, budget):
    """Yield (finder, descent) of every item, sizes then instances. Item k runs on ``devices[k mod D]``
    (round-robin; across processes in a multi-process run, where each process dispatches the items of
    its own devices and the results are then shared, ``_share``), with ``_in_flight`` items dispatched
    ahead (also bounds the memory of queued inputs)."""
    items = [(size, inst) for size in config.dims for inst in range(config.instances)]
    me, multi = jax.process_index(), jax.process_count() > 1
    owner = [devices[j % len(devices)].process_index for j in range(len(items))]
    mine = [j for j in range(len(items)) if owner[j] == me]
    ahead = _in_flight([d for d in devices if d.process_index == me] or devices)
    flight = {}
    for j in range(len(items)):
        result = None
        if owner[j] == me:
            i = mine.index(j)
            for a in mine[i : i + ahead]:
                if a not in flight:
                    _compiled(config, items[a][0], devices[a % len(devices)])
                    flight[a] = _dispatch(config, land, *items[a], devices[a % len(devices)], budget)
            cp, dp = flight.pop(j)
            result = (jax.device_get(cp), (jax.device_get(dp) if dp is not None else None))
        if multi:
            result = _share(result, owner[j], config, land, items[j][0], budget)
        yield result


def run(config: CriticalConfig, *, progress: Progress | None = None) -> Result:
    """Run the sweep; see the module docstring for the tables and the use of devices."""
    progress = progress or no_progress
    land = config.make_landscape()
    budget = config.finder_budget()
    max_steps, patience = budget
    devices = get_devices(config.devices, platform=config.platform)
    prepare(config)
    results = _results(config, land, devices, budget)
    rows, descent_rows, summary, spectrum = [], [], [], []
    timings = {}
    t0 = time.perf_counter()
    for size in config.dims:
        dim, tdim = land.dim(size), land.tangent_dim(size)
        size_rows, size_desc, instance_means = [], [], []
        for inst in range(config.instances):
            cp, dp = next(results)
            r = _rows(land.name, dim, size, inst, cp, tdim, config.method)
            size_rows += r
            ev = np.asarray(cp.eigenvalues)
            for row in r:
                row["_eigs"] = ev[row["start"]]
            if dp is not None:
                d = _rows(land.name, dim, size, inst, dp, tdim, "descent")
                size_desc += d
                mins = [x["energy"] for x in d if x["converged"] and x["index"] == 0]
                if mins:
                    instance_means.append(float(np.mean(mins)))
            progress(1)
        t1 = time.perf_counter()
        timings[str(size)] = t1 - t0  # wall time until this size's last instance came back (the sizes overlap)
        t0 = t1

        uniq = [x for x in size_rows if x["unique"]]
        e = np.array([x["energy"] for x in uniq])
        fr = np.array([x["index_fraction"] for x in uniq])
        alpha = _theory_alpha(config, e) if uniq else None
        minima = int(sum(x["index"] == 0 for x in uniq))
        d_conv = [x for x in size_desc if x["converged"]]
        d_min = [x for x in d_conv if x["index"] == 0]
        summary.append(
            {
                "landscape": land.name,
                "dim": dim,
                "found": len(size_rows),
                "converged": int(sum(x["converged"] for x in size_rows)),
                "unique": len(uniq),
                "minima_fraction": minima / len(uniq) if uniq else None,
                "mean_index_fraction": float(fr.mean()) if uniq else None,
                "size": size,
                "instances": config.instances,
                "not_converged": int(sum(not x["converged"] for x in size_rows)),
                "stalled": int(sum(x["stalled"] for x in size_rows)),
                "minima": minima,
                "spearman": spearman(fr, e) if uniq else None,
                "theory_mean_index_fraction": float(np.mean(alpha)) if alpha is not None else None,
                "descent_runs": len(size_desc),
                "descent_converged": len(d_conv),
                "descent_minima": len(d_min),
                "descent_mean_energy": float(np.mean([x["energy"] for x in d_min])) if d_min else None,
                "descent_energy_se": (
                    float(np.std(instance_means, ddof=1) / math.sqrt(len(instance_means)))
                    if len(instance_means) > 1
                    else None
                ),
            }
        )
        saddles = [x for x in uniq if x["index"] > 0]
        if saddles and config.spectra:
            # a seeded random sample of the unique saddles (ordered by instance and start): choosing those
            # whose index is nearest the median would make the spectrum's negative mass match the theory
            # by construction
            rng = np.random.default_rng([config.seed, dim])
            pick = np.sort(rng.choice(len(saddles), size=min(config.spectra, len(saddles)), replace=False))
            for x in (saddles[i] for i in pick):
                for j, lam in enumerate(x["_eigs"]):
                    spectrum.append(
                        {
                            "landscape": land.name,
                            "dim": dim,
                            "instance": x["instance"],
                            "start": x["start"],
                            "index": x["index"],
                            "energy": x["energy"],
                            "k": j,
                            "eigenvalue": float(lam),
                        }
                    )
        for x in size_rows:
            del x["_eigs"]
        rows += size_rows
        descent_rows += size_desc

    theory_rows = []
    if config.landscape == "grf" and config.confine == 0:
        grid = np.linspace(-2.5, 2.5, 101)
        theory_rows = [
            {"landscape": "grf", "energy": float(u), "index_fraction": float(a)}
            for u, a in zip(grid, theory.grf_index_fraction(grid))
        ]
    elif config.landscape == "pspin":
        e0 = theory.pspin_ground_state(config.p)
        grid = np.linspace(-e0, e0, 101)
        theory_rows = [
            {"landscape": "pspin", "energy": float(u), "index_fraction": float(a)}
            for u, a in zip(grid, theory.pspin_index_fraction(grid, config.p))
        ]

    info: dict[str, Any] = {
        "landscape": land.label(),
        "finder": {"max_steps": max_steps, "patience": patience, "method": config.method, "rtol": config.rtol},
        "seconds_per_size": timings,
        "device": str(devices[0]),
        "devices": len(devices),
        "processes": jax.process_count(),
        "platform": devices[0].platform,
    }
    if config.landscape == "pspin":
        info["theory"] = {
            "threshold_energy": -theory.pspin_threshold(config.p),
            "ground_state_energy": -theory.pspin_ground_state(config.p),
            "energy_unit": "H / n (per spin)",
        }
    elif config.landscape == "grf":
        info["theory"] = {
            "critical_energy": theory.grf_critical_energy() if config.confine == 0 else None,
            "alpha": "F_semicircle(energy)" if config.confine == 0 else "none (confine > 0)",
            "energy_unit": "phi / n",
        }
    else:
        info["theory"] = {"energy_unit": "training loss (mean squared error / 2 + weight decay)"}
    tables = {"summary": summary, "descent": descent_rows, "spectrum": spectrum, "theory": theory_rows}
    return Result(rows=rows, tables=tables, info=info)
