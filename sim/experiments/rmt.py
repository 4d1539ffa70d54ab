"""Random-matrix Hessians: index statistics over dimensions and shifts, and how fast minima become rare.

For every (dim, shift) the experiment streams ``samples`` matrices of the ensemble (normalised, plus
shift * I), counts every index exactly (``sim.rmt.index_histogram``) and reports the mean and spread of
the index fraction and P(index = 0). When plain Monte Carlo sees fewer than ``min_minima`` minima of a
GOE at shift 0, ``log_p_min`` comes from the rare-event method instead (``rare="ti"``: thermodynamic
integration with an error bar, ``rare="exact"``: de Bruijn's formula, see ``sim.rare``); the Monte Carlo
count is kept in ``mc_minima`` / ``mc_p_min``. ``log_p_min`` is nan (never log 0) when neither applies.

Devices: the Monte Carlo matrices (index counts and spectra) are split over ``devices`` (default: every
device JAX sees, across processes after ``jax.distributed.initialize``) in fixed-size chunks; the counts,
and so every column except ``seconds``, are bit-identical for any number of devices. The rare-event
chains run on one device.

Main table (one row per (ensemble, dim, shift)), columns in this order:
    ensemble, dim, samples, shift, mean_index_fraction, std_index_fraction,
    mean_index_fraction_stderr, var_index, p_min, p_min_stderr, log_p_min, log_p_min_stderr, method,
    mc_minima, mc_p_min, mc_p_min_upper95, theory_index_fraction, theory_index_fraction_finite_n,
    theory_index_variance, theory_log_p_min, exact_log_p_min, seconds

``info["theta_fit"]`` (GOE): -ln P(min) = theta N^2 + b N + c fitted to the rows at shift 0 with
N >= 10 (``theta_fit``), with its bootstrap interval; None with fewer than 4 such sizes.

Side tables:
    ``index_hist``: ensemble, dim, shift, index, count, fraction (non-zero counts only);
    ``spectrum``: ensemble, dim, shift, x_left, x_right, count, density, theory_density (for ``spectrum_dims``);
    ``rare``: dim, method, log_p_min, log_p_min_stderr, exact_log_p_min, chains, sweeps, seconds.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import struct
import time

import jax
import jax.numpy as jnp
import numpy as np

from sim import rare, rmt
from sim._util import fold_in_u64
from sim.devices import PLATFORMS, get_devices, make_mesh
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
)
from sim.fit import fit_theta
from sim.theory import rmt as th

__all__ = ["RmtConfig", "run", "COLUMNS", "RARE_METHODS", "MAX_DIM", "memory_estimate", "check_memory", "theta_fit"]

#: largest matrix size: dense N x N matrices, streamed at least 64 at a time
MAX_DIM = 2048

RARE_METHODS = ("ti", "exact", "none")
METHOD_NAMES = {"ti": "ti-tridiagonal-gibbs", "exact": "exact-debruijn-pfaffian"}

COLUMNS = (
    "ensemble",
    "dim",
    "samples",
    "shift",
    "mean_index_fraction",
    "std_index_fraction",
    "mean_index_fraction_stderr",
    "var_index",
    "p_min",
    "p_min_stderr",
    "log_p_min",
    "log_p_min_stderr",
    "method",
    "mc_minima",
    "mc_p_min",
    "mc_p_min_upper95",
    "theory_index_fraction",
    "theory_index_fraction_finite_n",
    "theory_index_variance",
    "theory_log_p_min",
    "exact_log_p_min",
    "seconds",
)


@dataclasses.dataclass(frozen=True)
class RmtConfig:
    """What to run.

    Attributes:
        ensemble: one of ``sim.rmt.ENSEMBLES`` (goe, wigner-rademacher, wigner-uniform, wishart).
        dims: matrix sizes.
        samples: Monte Carlo matrices per (dim, shift).
        shifts: s in H/sqrt(N) + s I.
        seed: base seed; (dim, shift) streams are ``fold_in``-derived, independent of list order.
        aspect: m/n of the Wishart ensemble.
        dtype: ``float32`` or ``float64`` for the Monte Carlo matrices.
        index_method: ``eigh``, ``ldl`` or None (ldl for continuous ensembles).
        rare: ``ti``, ``exact`` or ``none``: method for log P(min) when Monte Carlo sees too few minima.
        min_minima: fewer Monte Carlo minima than this switches to the rare-event method (GOE, shift 0).
        ti_chains, ti_sweeps: thermodynamic-integration effort (see ``rare.log_p_positive_definite_ti``).
        exact_max_dim: compute ``exact_log_p_min`` (de Bruijn) for GOE at shift 0 up to this dim.
        spectrum_dims: dims with an eigenvalue-histogram side table (only those in ``dims``).
        spectrum_samples: matrices per spectrum.
        spectrum_bins: bins per spectrum.
        devices: number of devices to split the Monte Carlo matrices over (None: all devices JAX sees).
            Results do not depend on it.
        platform: backend whose devices are used ("cpu", "gpu", "tpu"; None: JAX's default).
    """

    ensemble: str = "goe"
    dims: tuple[int, ...] = tuple(range(2, 51))
    samples: int = 100_000
    shifts: tuple[float, ...] = (0.0,)
    seed: int = 0
    aspect: float = 2.0
    dtype: str = "float32"
    index_method: str | None = None
    rare: str = "ti"
    min_minima: int = 100
    ti_chains: int = 32
    ti_sweeps: int = 400
    exact_max_dim: int = 60
    spectrum_dims: tuple[int, ...] = (4, 16, 50)
    spectrum_samples: int = 2000
    spectrum_bins: int = 50
    devices: int | None = None
    platform: str | None = None

    def __post_init__(self):
        with checking("rmt"):
            check_choice("ensemble", self.ensemble, rmt.ENSEMBLES)
            check_number("aspect", self.aspect)
            object.__setattr__(self, "dims", check_dims("dims", self.dims, 1, MAX_DIM))
            check_int("samples", self.samples, 1)
            if self.samples >= 2**32:
                raise ConfigError(f"samples must be < 2**32, got {self.samples!r}")
            shifts = tuple(self.shifts)
            if not shifts:
                raise ConfigError(f"shifts must be a non-empty list of finite numbers, got {self.shifts!r}")
            for s in shifts:
                check_number("shifts", s, least=-math.inf, strict=False)
            object.__setattr__(self, "shifts", tuple(float(s) + 0.0 for s in shifts))  # -0.0 -> 0.0
            check_int("seed", self.seed, 0)
            check_choice("rare", self.rare, RARE_METHODS)
            check_choice("dtype", self.dtype, ("float32", "float64"))
            if self.index_method is not None:
                check_choice("index_method", self.index_method, rmt.INDEX_METHODS)
            if self.index_method == "ldl" and not rmt.Ensemble.from_label(self.ensemble, aspect=self.aspect).continuous:
                raise ConfigError(
                    f"index_method 'ldl' is not valid for {self.ensemble} (discrete entries make "
                    "leading minors vanish); use eigh"
                )
            check_int("min_minima", self.min_minima, 1)
            check_int("ti_chains", self.ti_chains, 2)
            check_int("ti_sweeps", self.ti_sweeps, 1)
            check_int("exact_max_dim", self.exact_max_dim, 0)
            object.__setattr__(self, "spectrum_dims", tuple(int(d) for d in self.spectrum_dims))
            for d in self.spectrum_dims:
                check_int("spectrum_dims", d, 1)
            check_int("spectrum_samples", self.spectrum_samples, 1)
            check_int("spectrum_bins", self.spectrum_bins, 1)
            check_devices(self.devices, self.platform, PLATFORMS)

    def to_json(self) -> dict:
        """The parameters as plain JSON values (for ``run_metadata``)."""
        d = dataclasses.asdict(self)
        d["dims"], d["shifts"], d["spectrum_dims"] = list(self.dims), list(self.shifts), list(self.spectrum_dims)
        return d


def memory_estimate(config: RmtConfig) -> int:
    """Bytes of the largest chunk: 64 float64 matrices of the largest size and their workspace (6 copies)."""
    return 64 * max(config.dims) ** 2 * 8 * 6


def check_memory(config: RmtConfig, available: int) -> None:
    """Raise ValueError when a chunk needs more than half of ``available`` bytes."""
    need = memory_estimate(config)
    if need > available // 2:
        raise ValueError(
            f"dims: N = {max(config.dims)} needs about {need / 2**30:.1f} GiB per chunk, more than "
            f"half of the {available / 2**30:.1f} GiB available"
        )


def theta_fit(rows, *, min_dim: int = 10, seed: int = 0):
    """``sim.fit.fit_theta`` on the measured ln P(min) of the GOE rows at shift 0 (Monte Carlo or
    rare-event values, never the exact ones); None with fewer than 4 usable sizes."""
    rs = [r for r in rows if r["ensemble"] == "goe" and float(r["shift"]) == 0.0]
    return fit_theta(
        [r["dim"] for r in rs],
        [r["log_p_min"] for r in rs],
        [r["log_p_min_stderr"] for r in rs],
        min_dim=min_dim,
        seed=seed,
    )


def _shift_bits(s: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", float(s) + 0.0))[0]


def _key(seed: int, dim: int, shift: float, stream: int):
    k = fold_in_u64(jax.random.key(0), int(seed))
    k = fold_in_u64(k, int(dim))
    k = fold_in_u64(k, _shift_bits(shift))
    return jax.random.fold_in(k, stream)


def _theory(ens: rmt.Ensemble, n: int, s: float) -> tuple[float, float, float, float]:
    """(index fraction, finite-n index fraction, index variance, log P(min)) predicted; nan if unknown."""
    nan = float("nan")
    if ens.name == "wishart":
        q = n / ens.rows(n)
        f = float(th.marchenko_pastur_cdf(-s, q))
        return f, nan, nan, (0.0 if s > 0 or (s == 0 and q <= 1) else nan)
    f = float(th.shifted_goe_index_fraction(s))
    fn = float(th.shifted_goe_index_fraction(s, n)) if ens.name == "goe" else nan
    var = float(th.goe_index_variance(n)) if (ens.name == "goe" and s == 0 and n >= 2) else nan
    lp = float(th.log_p_positive_definite_asymptotic(n)) if s == 0 else nan
    return f, fn, var, lp


def _timed(f, *args, **kwargs):
    t0 = time.perf_counter()
    out = f(*args, **kwargs)
    return out, time.perf_counter() - t0


def run(config: RmtConfig, *, progress: Progress | None = None) -> Result:
    """Run the sweep. ``progress`` is advanced by the number of Monte Carlo matrices counted.

    The rare-event estimates (one per dim) and the exact values (one shared table) run in two worker
    threads while the main thread streams the Monte Carlo counts: they are independent computations
    with their own keys, so every number is the same as when run one after another; only the
    ``seconds`` columns and ``info["seconds_*"]`` (each the wall time of its own part, overlapping)
    depend on the scheduling.
    """
    progress = progress or no_progress
    ens = rmt.Ensemble.from_label(config.ensemble, aspect=config.aspect)
    dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
    dims = [int(d) for d in config.dims]
    shifts = [float(s) for s in config.shifts]
    hist_rows, spec_rows = [], []
    t_mc = 0.0
    mesh = make_mesh(get_devices(config.devices, platform=config.platform))
    exact_dims = [n for n in dims if ens.name == "goe" and n <= config.exact_max_dim] if 0.0 in shifts else []
    measured = []  # (n, s, counts, seconds of the Monte Carlo part, whether it needs a rare-event estimate)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="hdsim-rmt") as pool:
        exact_job = pool.submit(_timed, rare.log_p_positive_definite_exact_many, exact_dims) if exact_dims else None
        ti_jobs: dict[int, concurrent.futures.Future] = {}
        for n in dims:
            for s in shifts:
                t0 = time.perf_counter()
                counts = rmt.index_histogram(
                    _key(config.seed, n, s, 0),
                    ens,
                    n,
                    int(config.samples),
                    shift=s,
                    method=config.index_method,
                    dtype=dtype,
                    devices=mesh,
                    progress=progress,
                )
                dt = time.perf_counter() - t0
                t_mc += dt
                wants_rare = ens.name == "goe" and s == 0 and counts[0] < config.min_minima and config.rare != "none"
                measured.append((n, s, counts, dt, wants_rare))
                if wants_rare and config.rare == "ti" and n not in ti_jobs:
                    ti_jobs[n] = pool.submit(
                        _timed,
                        rare.log_p_positive_definite_ti,
                        _key(config.seed, n, 0.0, 1),
                        n,
                        chains=config.ti_chains,
                        sweeps=config.ti_sweeps,
                    )
                if n in config.spectrum_dims:
                    spec_rows += _spectrum(config, ens, n, s, dtype, mesh)
        exact_values, t_exact = exact_job.result() if exact_job is not None else ({}, 0.0)
        ti_results = {n: job.result() for n, job in ti_jobs.items()}

    def exact(n: int) -> float:
        return exact_values.get(n, float("nan"))

    rows, rare_rows = [], []
    t_rare = 0.0
    rare_done: dict[int, tuple[float, float, str]] = {}
    for n, s, counts, dt, wants_rare in measured:
        st = rmt.index_summary(counts)
        f, fn, var, lp_theory = _theory(ens, n, s)
        p, p_se = st["p_min"], st["p_min_stderr"]
        lp, lp_se, method = st["log_p_min"], st["log_p_min_stderr"], "monte-carlo"
        ex = exact(n) if s == 0 else float("nan")
        seconds = dt
        if wants_rare:
            if n not in rare_done:
                if config.rare == "exact":
                    rare_done[n], dt_rare = (exact(n), 0.0, METHOD_NAMES["exact"]), 0.0
                else:
                    r, dt_rare = ti_results[n]
                    rare_done[n] = (r.log_p, r.stderr, METHOD_NAMES["ti"])
                t_rare += dt_rare
                seconds += dt_rare
                rare_rows.append(
                    {
                        "dim": n,
                        "method": rare_done[n][2],
                        "log_p_min": rare_done[n][0],
                        "log_p_min_stderr": rare_done[n][1],
                        "exact_log_p_min": exact(n),
                        "chains": config.ti_chains if config.rare == "ti" else 0,
                        "sweeps": config.ti_sweeps if config.rare == "ti" else 0,
                        "seconds": dt_rare,
                    }
                )
            lp, lp_se, method = rare_done[n]
            p = math.exp(lp)
            p_se = p * lp_se
        rows.append(
            {
                "ensemble": ens.label,
                "dim": n,
                "samples": st["samples"],
                "shift": s,
                "mean_index_fraction": st["mean_index_fraction"],
                "std_index_fraction": st["std_index_fraction"],
                "mean_index_fraction_stderr": st["mean_index_fraction_stderr"],
                "var_index": st["var_index"],
                "p_min": p,
                "p_min_stderr": p_se,
                "log_p_min": lp,
                "log_p_min_stderr": lp_se,
                "method": method,
                "mc_minima": int(counts[0]),
                "mc_p_min": st["p_min"],
                "mc_p_min_upper95": st["p_min_upper95"],
                "theory_index_fraction": f,
                "theory_index_fraction_finite_n": fn,
                "theory_index_variance": var,
                "theory_log_p_min": lp_theory,
                "exact_log_p_min": ex,
                "seconds": seconds,
            }
        )
        for k in np.nonzero(counts)[0]:
            hist_rows.append(
                {
                    "ensemble": ens.label,
                    "dim": n,
                    "shift": s,
                    "index": int(k),
                    "count": int(counts[k]),
                    "fraction": counts[k] / st["samples"],
                }
            )
    info = {
        "device": str(mesh.devices.flat[0]),
        "devices": mesh.size,
        "platform": mesh.devices.flat[0].platform,
        "processes": jax.process_count(),
        "jax_version": jax.__version__,
        "index_method": config.index_method or ("ldl" if ens.continuous else "eigh"),
        "rare_method": METHOD_NAMES.get(config.rare, "none"),
        "seconds_monte_carlo": t_mc,
        "seconds_rare": t_rare,
        "seconds_exact": t_exact,
        "matrices_per_second": len(dims) * len(shifts) * config.samples / max(t_mc, 1e-9),
        "theta": th.THETA,
    }
    if ens.name == "goe":
        fit = theta_fit(rows, seed=config.seed)
        info["theta_fit"] = fit._asdict() if fit is not None else None
    return Result(rows=rows, tables={"index_hist": hist_rows, "spectrum": spec_rows, "rare": rare_rows}, info=info)


def _spectrum(config: RmtConfig, ens: rmt.Ensemble, n: int, s: float, dtype, mesh) -> list[dict]:
    if ens.name == "wishart":
        q = n / ens.rows(n)
        lo, hi = -0.1 + s, (1 + math.sqrt(q)) ** 2 + 0.5 + s
        dens = lambda x: th.marchenko_pastur_density(x - s, q)
    else:
        lo, hi = -2.5 + s, 2.5 + s
        dens = lambda x: th.semicircle_density(x - s)
    edges = np.linspace(lo, hi, config.spectrum_bins + 1)
    counts = rmt.eigenvalue_histogram(
        _key(config.seed, n, s, 2), ens, n, config.spectrum_samples, edges, shift=s, dtype=dtype, devices=mesh
    )
    width = np.diff(edges)
    out = []
    for i in range(edges.size - 1):
        # theory: the bin average of the density (midpoint rule on 8 sub-points)
        x = np.linspace(edges[i], edges[i + 1], 9)[:-1] + width[i] / 16
        out.append(
            {
                "ensemble": ens.label,
                "dim": n,
                "shift": s,
                "x_left": float(edges[i]),
                "x_right": float(edges[i + 1]),
                "count": int(counts[i]),
                "density": counts[i] / (config.spectrum_samples * n * width[i]),
                "theory_density": float(np.mean(dens(x))),
            }
        )
    return out
