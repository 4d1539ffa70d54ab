"""Distance concentration sweep: pair statistics for every (distribution, metric, dimension).

Keys: the vectors for dimension d come from ``fold_in(key(seed), d)`` (then point and tile indices),
whatever the order or the other entries of the sweep; so ``--dist gaussian`` alone and inside a longer
list give the same numbers. Different laws at the same d share their underlying random bits (common
random numbers), which makes their comparison less noisy.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import fold_in_u64
from sim.devices import PLATFORMS, get_devices, make_mesh
from sim.distances import Metric, make_metric, memory_estimate, pair_stats, pairwise_matrices, uses_packed
from sim.experiments.base import (
    ConfigError,
    Progress,
    Result,
    carried,
    check_choice,
    check_devices,
    check_dims,
    check_int,
    checking,
    no_progress,
)
from sim.theory.distances import cosine_theory, distance_theory
from sim.vectors import TILE, Distribution, Init, mlp_widths_for_dim

__all__ = ["DistancesConfig", "run", "dims_for", "HIST_EDGES", "ANGLE_EDGES", "check_memory", "mean_deviation"]

#: bins of distance / mean: width 0.0025 (fine enough for d ~ 10^4); empty bins are not stored
HIST_EDGES = tuple(np.round(np.linspace(0.0, 2.5, 1001), 6).tolist())
#: bins of the angle: 0.25 degree
ANGLE_EDGES = tuple(np.round(np.linspace(0.0, 180.0, 721), 6).tolist())


@dataclasses.dataclass(frozen=True)
class DistancesConfig:
    """Parameters of a sweep.

    Attributes:
        dists: coordinate laws. ``Init`` entries are templates: for each requested d the MLP
            (d_in, h, ..., h, d_out) with the same depth and the largest h fitting in d is used,
            and the row's ``dim`` is its exact parameter count.
        metrics: distances to compute (one pass serves all the Gram-based ones).
        dims: dimensions.
        points: number of random vectors per (law, d).
        seed: integer seed.
        chunk: coordinates generated at once (None: automatic, ~32 MB).
        dtype: sample dtype name, "float32" or "float64".
        devices: number of devices to split the tiles over (None: all devices JAX sees, across
            processes after ``jax.distributed.initialize``). Results do not depend on it.
        platform: backend whose devices are used ("cpu", "gpu", "tpu"; None: JAX's default).
    """

    dists: tuple[Distribution, ...]
    metrics: tuple[Metric, ...] = (Metric("euclidean"),)
    dims: tuple[int, ...] = (10, 100, 1000, 10000)
    points: int = 256
    seed: int = 0
    chunk: int | None = None
    dtype: str = "float32"
    devices: int | None = None
    platform: str | None = None

    def __post_init__(self):
        with checking("distances"):
            if not self.dists or not all(isinstance(d, Distribution) for d in self.dists):
                raise ConfigError(f"dists must be a non-empty tuple of sim.vectors distributions, got {self.dists!r}")
            if not self.metrics or not all(isinstance(m, Metric) for m in self.metrics):
                raise ConfigError(f"metrics must be a non-empty tuple of sim.distances.Metric, got {self.metrics!r}")
            object.__setattr__(self, "dists", tuple(self.dists))
            object.__setattr__(self, "metrics", tuple(self.metrics))
            object.__setattr__(self, "dims", check_dims("dims", self.dims))
            check_int("points", self.points, 2)
            check_int("seed", self.seed, 0)
            check_choice("dtype", self.dtype, ("float32", "float64"))
            if self.chunk is not None:
                k = self.chunk // TILE if isinstance(self.chunk, int) and self.chunk >= TILE else 0
                if self.chunk != k * TILE or k & (k - 1):
                    raise ConfigError(
                        f"chunk must be {TILE} times a power of two (4096, 8192, 16384, ...), got {self.chunk!r}"
                    )
            check_devices(self.devices, self.platform, PLATFORMS)
            for law in self.dists:
                for d in self.dims:
                    dims_for(law, d)  # an Init law needs d >= its smallest MLP

    def to_json(self) -> dict:
        return {
            "dists": [d.label() for d in self.dists],
            "metrics": [m.label() for m in self.metrics],
            "dims": list(self.dims),
            "points": self.points,
            "seed": self.seed,
            "chunk": self.chunk,
            "dtype": self.dtype,
            "devices": self.devices,
            "platform": self.platform,
        }


def dims_for(dist: Distribution, d: int) -> tuple[Distribution, int]:
    """The concrete law and dimension used for a requested d (only ``Init`` changes them)."""
    if isinstance(dist, Init):
        w = dist.widths
        concrete = Init(widths=mlp_widths_for_dim(d, d_in=w[0], d_out=w[-1], depth=len(w) - 2), scheme=dist.scheme)
        return concrete, concrete.dim
    return dist, d


def _metrics_for_pass(metrics: tuple[Metric, ...]) -> tuple[Metric, ...]:
    """Requested metrics, plus cosine whenever a Gram pass runs anyway (angles come for free)."""
    ms = list(metrics)
    if any(m.accumulator == ("gram",) for m in ms) and not any(m.name == "cosine" for m in ms):
        ms.append(make_metric("cosine"))
    return tuple(ms)


def check_memory(config: DistancesConfig, available: int) -> None:
    """Raise ValueError if the largest (law, d) of the sweep would need more than ``available`` bytes."""
    itemsize = np.dtype(config.dtype).itemsize
    need = max(
        memory_estimate(
            config.points,
            dims_for(dist, d)[1],
            _metrics_for_pass(config.metrics),
            chunk=config.chunk,
            dtype=config.dtype,
            packed=uses_packed(dist),
        )
        for dist in config.dists
        for d in config.dims
    )
    if need > available:
        raise ValueError(
            f"points {config.points} needs about {need / 2**30:.1f} GiB ({config.points}^2 pair "
            f"accumulators and {itemsize}-byte samples), more than the {available / 2**30:.1f} GiB available; "
            f"use fewer points (memory grows as points^2) or a smaller chunk"
        )


def mean_deviation(row) -> float:
    """The pair mean of a ``run`` row against the theory mean, in standard errors (nan without theory).

    The standard error is the theory's std over sqrt(points // 2): the disjoint pairs are independent,
    and the correlated pairs of one sample carry no more information than they do.
    """
    mean, th, rel = row["mean"], row["theory_mean"], row["theory_rel_std"]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, th, rel)) or rel <= 0:
        return math.nan
    return (mean - th) / (rel * th / math.sqrt(row["points"] // 2))


def run(config: DistancesConfig, *, progress: Progress | None = None) -> Result:
    """Run the sweep. Rows: one per (dist, metric, dim); tables["hist"]: histograms of distance/mean
    (every metric) and of the angle in degrees (whenever the Gram pass ran), non-empty bins only;
    tables["angles"]: cosine mean and variance and angle statistics per (dist, dim), with theory."""
    progress = progress or no_progress
    base = jax.random.key(config.seed)
    rows, hist, angles = [], [], []
    metrics = _metrics_for_pass(config.metrics)
    n = config.points
    mesh = make_mesh(get_devices(config.devices, platform=config.platform))
    coords, t_total = 0, 0.0
    for dist in config.dists:
        for d_req in config.dims:
            law, d = dims_for(dist, d_req)
            t0 = time.perf_counter()
            mats = pairwise_matrices(
                fold_in_u64(base, d),
                law,
                n,
                d,
                metrics,
                chunk=config.chunk,
                dtype=jnp.dtype(config.dtype),
                devices=mesh,
            )
            mats = jax.block_until_ready(mats)
            by_name = {m: mat for m, mat in zip(metrics, mats)}
            stats = jax.device_get([pair_stats(by_name[m], edges=HIST_EDGES) for m in config.metrics])
            dt = time.perf_counter() - t0
            dt_stat = config.dtype  # the pair values are computed in the sample dtype: they carry its digits
            coords += n * d
            t_total += dt
            for m, s in zip(config.metrics, stats):
                th = distance_theory(law, m, d)
                rows.append(
                    {
                        "dist": dist.name,
                        "dist_params": law.label(),
                        "metric": m.name,
                        "p": m.p if m.p is not None else "",
                        "dim": d,
                        "points": n,
                        "pairs": n * (n - 1) // 2,
                        "mean": carried(s.mean, dt_stat),
                        "std": carried(s.std, dt_stat),
                        "rel_std": carried(s.rel_std, dt_stat),
                        "min": carried(s.min, dt_stat),
                        "max": carried(s.max, dt_stat),
                        "rel_contrast": carried(s.rel_contrast, dt_stat),
                        "theory_mean": th.mean,
                        "theory_rel_std": th.rel_std,
                        "theory_kind": th.kind,
                    }
                )
                hist += _hist_rows(dist.name, m, d, "distance/mean", HIST_EDGES, s.hist)
            cos = next((mat for m, mat in by_name.items() if m.name == "cosine"), None)
            if cos is not None:
                iu = np.triu_indices(n, 1)
                cosv = np.clip(1 - np.asarray(cos)[iu], -1, 1)
                ang = np.degrees(np.arccos(cosv))
                counts, _ = np.histogram(ang, bins=np.asarray(ANGLE_EDGES))
                hist += _hist_rows(dist.name, make_metric("cosine"), d, "angle_deg", ANGLE_EDGES, counts)
                c_mean, c_var, kind = cosine_theory(law, d)
                angles.append(
                    {
                        "dist": dist.name,
                        "dim": d,
                        "pairs": cosv.size,
                        "cos_mean": carried(cosv.mean(), dt_stat),
                        "cos_var": carried(cosv.var(), dt_stat),
                        "theory_cos_mean": c_mean,
                        "theory_cos_var": c_var,
                        "theory_kind": kind,
                        "angle_mean_deg": carried(ang.mean(), dt_stat),
                        "angle_std_deg": carried(ang.std(), dt_stat),
                    }
                )
            progress(1)
    info = {
        "coordinates": coords,
        "compute_seconds": round(t_total, 3),
        "coordinates_per_second": coords / t_total if t_total > 0 else math.nan,
        "devices": mesh.size,
        "platform": mesh.devices.flat[0].platform,
        "processes": jax.process_count(),
        "packed_rademacher": any(uses_packed(dist) for dist in config.dists),
    }
    return Result(rows=rows, tables={"hist": hist, "angles": angles}, info=info)


def _hist_rows(dist, metric, d, quantity, edges, counts):
    return [
        {
            "dist": dist,
            "metric": metric.name,
            "p": metric.p if metric.p is not None else "",
            "dim": d,
            "quantity": quantity,
            "bin_lo": edges[i],
            "bin_hi": edges[i + 1],
            "count": int(c),
        }
        for i, c in enumerate(np.asarray(counts))
        if c
    ]
