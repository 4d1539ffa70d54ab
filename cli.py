"""hdsim command line: parse and validate, run an experiment, write its outputs. Nothing else.

Every bad input ends in a one-line ``Error: ...`` on stderr and exit code 2, before anything is
computed or written; outputs are staged and renamed into place only when a run has succeeded.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

__all__ = ["app", "main"]


# typer vendors its own click: take its exception classes from the public BadParameter's ancestry.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(TyperGroup):
    """Typer group whose usage errors are one line on stderr (exit 2), never a box or a traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name or "hdsim", complete_var=complete_var,
                              standalone_mode=False, **extra)
        except _UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:  # bare `hdsim`: show help
                typer.echo(e.ctx.get_help(), err=True)
            else:
                typer.echo(f"Error: {_with_value(e, args)}", err=True)
            rv = e.exit_code
        except _ClickException as e:
            typer.echo(f"Error: {' '.join(e.format_message().split())}", err=True)
            rv = e.exit_code
        except (typer.Abort, KeyboardInterrupt):
            typer.echo("Aborted!", err=True)
            rv = 130
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _with_value(e, args) -> str:
    """One-line message; for a bad option value, name the value as given on the command line."""
    msg = " ".join(e.format_message().split())
    param = getattr(e, "param", None)
    argv = list(sys.argv[1:] if args is None else args)
    opts = getattr(param, "opts", []) if param is not None else []
    for i in reversed(range(len(argv))):  # the last occurrence wins, as in click
        a = argv[i]
        if a in opts and i + 1 < len(argv):
            return f"{msg} (got {argv[i + 1]!r})"
        for opt in opts:
            if a.startswith(opt + "="):
                return f"{msg} (got {a[len(opt) + 1:]!r})"
    return msg


app = typer.Typer(
    cls=_OneLineErrors,
    help="hdsim: high-dimensional geometry simulator (distance concentration, random-matrix Hessians, "
    "critical points of random losses).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 150, "max_content_width": 150},
)

DIMS_HELP = "Dimensions: comma list (1e3 allowed), A:B (every integer), A:B:K (K log-spaced)."


def _fail(message: str) -> None:
    raise _UsageError(message)


def _setup_jax() -> None:
    """x64 on (float64 accumulators and exact comparisons); quiet JAX's CPU-only warning."""
    import jax

    jax.config.update("jax_enable_x64", True)


def _available_memory() -> int:
    """Bytes the run may use: MemAvailable (free plus reclaimable caches), not just free pages."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 << 30


def _progress(total: int, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True,
                 disable=not sys.stderr.isatty())
    return p, p.add_task(label, total=total)


def _version(value: bool):
    if value:
        from sim import __version__

        typer.echo(f"hdsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
):
    """hdsim: high-dimensional geometry simulator."""


def _positive(name: str, value: float | None, *, strict: bool = True) -> None:
    if value is not None and (not math.isfinite(value) or value < 0 or (strict and value == 0)):
        _fail(f"{name} must be a finite number {'>' if strict else '>='} 0, got {value}")


def _parse_list(name: str, text: str, valid) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        _fail(f"{name} is empty; valid: {', '.join(valid)}")
    for s in items:
        _choice(name, s, valid)
    return list(dict.fromkeys(items))


def _choice(name: str, value, valid) -> None:
    """One value that must be among ``valid``."""
    if value not in valid:
        _fail(f"{name}: unknown value {value!r}; valid: {', '.join(valid)}")


def _parse_dims(text: str):
    from sim.dims import DimsError, parse_dims

    try:
        return parse_dims(text)
    except DimsError as e:
        _fail(str(e))


def _out_dir(out: Path):
    from sim.io import check_writable

    try:
        check_writable(out)
    except ValueError as e:
        _fail(str(e))


# options of every command that splits its work over devices and processes
PlatformOption = Annotated[Optional[str], typer.Option(help="Backend: cpu, gpu or tpu (default: JAX's choice).")]
CoordinatorOption = Annotated[Optional[str], typer.Option(
    help="Multi-process run: HOST:PORT of process 0 (jax.distributed).")]
ProcessesOption = Annotated[Optional[int], typer.Option(help="Multi-process run: number of processes P.")]
ProcessIdOption = Annotated[Optional[int], typer.Option(help="Multi-process run: this process, 0..P-1 (only 0 writes).")]


def _parse_scale(devices, platform, coordinator, num_processes, process_id):
    """Validate the device/process options (no JAX calls): returns (multi_process, primary)."""
    from sim.devices import PLATFORMS, parse_coordinator

    if devices is not None and devices < 1:
        _fail(f"--devices must be an integer >= 1, got {devices}")
    if platform is not None:
        _choice("--platform", platform, PLATFORMS)
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        _fail("--coordinator, --num-processes and --process-id go together: give all three or none")
    if coordinator is None:
        return False, True
    try:
        parse_coordinator(coordinator)
    except ValueError as e:
        _fail(f"--coordinator: {e}")
    if num_processes < 1:
        _fail(f"--num-processes must be an integer >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        _fail(f"--process-id must be in 0..{num_processes - 1} (--num-processes {num_processes}), got {process_id}")
    return True, process_id == 0


def _has_accelerator_hint() -> bool:
    """JAX_PLATFORMS names an accelerator (then --devices counts accelerators, not CPU cores)."""
    return any(p in os.environ.get("JAX_PLATFORMS", "") for p in ("cuda", "rocm", "gpu", "tpu"))


def _setup_scale(devices, platform, coordinator, num_processes, process_id) -> list:
    """Join the multi-process runtime, pick the backend and the devices, in the order JAX needs
    (both before the backend initialises). Returns the devices the run will use."""
    from sim.devices import get_devices, init_distributed, select_platform, split_host

    if coordinator is not None:
        try:
            init_distributed(coordinator, num_processes, process_id)
        except ValueError as e:
            _fail(f"--coordinator {coordinator}: {e}")
        except RuntimeError as e:  # unreachable coordinator, timeout, ...
            _fail(f"--coordinator {coordinator}: jax.distributed could not start ({' '.join(str(e).split())[:200]})")
    from sim.devices import backend_initialized

    if devices is not None and devices > 1 and platform in (None, "cpu") and not backend_initialized():
        # jaxlib's batched LAPACK kernels (eigh, Cholesky) wait on sub-tasks in XLA's intra-op pool; with
        # as many pool threads as busy CPU devices they deadlock. One more thread than devices lets
        # every device run at once (XLA sizes the pool from NPROC, else from the cores).
        os.environ.setdefault("NPROC", str(max(devices, os.cpu_count() or 1) + 1))
    try:
        if devices is not None and devices > 1 and platform in (None, "cpu") and not _has_accelerator_hint():
            split_host(min(devices, os.cpu_count() or 1))  # CPU: one device per core, up to --devices
        select_platform(platform)
        return get_devices(devices, platform=platform)
    except ValueError as e:
        _fail(f"--platform {platform}: {e}" if platform and "backend" in str(e) else f"--devices {devices}: {e}")


def _deviation(row) -> str:
    """' mean-theory=+0.53 SE': the pair mean against theory in standard errors. The SE is the theory
    std over sqrt(points // 2) (disjoint pairs; the correlated pairs of one sample carry no more)."""
    mean, th, rel = row["mean"], row["theory_mean"], row["theory_rel_std"]
    if not all(math.isfinite(v) for v in (mean, th, rel)) or rel <= 0:
        return ""
    return f" mean-theory={(mean - th) / (rel * th / math.sqrt(row['points'] // 2)):+.2f} SE"


@app.command()
def distances(
    dist: Annotated[str, typer.Option(help="Laws, comma list: gaussian uniform rademacher student-t cauchy "
                                      "lognormal powerlaw init.")] = "gaussian,uniform,cauchy",
    metric: Annotated[str, typer.Option(help="Metrics, comma list: euclidean sqeuclidean cityblock minkowski "
                                        "chebyshev cosine.")] = "euclidean",
    dims: Annotated[str, typer.Option(help=DIMS_HELP)] = "10,100,1000,10000",
    points: Annotated[int, typer.Option(min=2, help="Random vectors per (law, d), >= 2.")] = 256,
    seed: Annotated[int, typer.Option(min=0, help="Seed (integer >= 0).")] = 0,
    p: Annotated[Optional[float], typer.Option(help="Minkowski exponent, any p > 0.")] = None,
    df: Annotated[float, typer.Option(help="Student-t degrees of freedom, > 0.")] = 5.0,
    sigma: Annotated[float, typer.Option(help="Lognormal sigma, > 0.")] = 1.0,
    a: Annotated[float, typer.Option(help="powerlaw: eigenvalues i^-a, a >= 0.")] = 1.0,
    init_scheme: Annotated[str, typer.Option(help="Init scheme: he, lecun, glorot.")] = "he",
    init_io: Annotated[str, typer.Option(help="init: MLP input,output widths (2 hidden layers fitted to d).")] = "784,10",
    chunk: Annotated[Optional[int], typer.Option(help="Coordinates per chunk: 4096 x 2^k (default: auto).")] = None,
    dtype: Annotated[str, typer.Option(help="Sample dtype: float32 or float64.")] = "float32",
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/distances"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
    devices: Annotated[Optional[int], typer.Option(help="Devices to split the work over (default: all); same numbers for any count.")] = None,
    platform: PlatformOption = None,
    coordinator: CoordinatorOption = None,
    num_processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    """Pairwise distances between random vectors as the dimension grows: CSV, JSON and figures."""
    from sim.distances import METRICS
    from sim.vectors import DISTRIBUTIONS, TILE

    names = _parse_list("--dist", dist, DISTRIBUTIONS)
    metric_names = _parse_list("--metric", metric, METRICS)
    dim_list = _parse_dims(dims)
    _positive("--df", df)
    _positive("--sigma", sigma)
    _positive("--a", a, strict=False)
    if "minkowski" in metric_names:
        if p is None:
            _fail("--metric minkowski needs --p (any p > 0)")
        _positive("--p", p)
    _choice("--dtype", dtype, ("float32", "float64"))
    if chunk is not None and (chunk < TILE or chunk % TILE or (chunk // TILE) & (chunk // TILE - 1)):
        _fail(f"--chunk {chunk}: must be {TILE} times a power of two (4096, 8192, 16384, ...)")
    try:
        io_w = tuple(int(v) for v in init_io.split(","))
        assert len(io_w) == 2 and min(io_w) >= 1
    except (ValueError, AssertionError):
        _fail(f"--init-io {init_io!r}: give two positive integers 'input,output', e.g. 784,10")
    multi, primary = _parse_scale(devices, platform, coordinator, num_processes, process_id)

    from sim.distances import make_metric
    from sim.experiments import distances as exp
    from sim.vectors import Init, make_distribution

    try:
        laws = tuple(
            Init(widths=(io_w[0], 1, 1, io_w[1]), scheme=init_scheme) if n == "init"
            else make_distribution(n, df=df, sigma=sigma, a=a)
            for n in names
        )
        metrics = tuple(make_metric(m, p if m == "minkowski" else None) for m in metric_names)
        config = exp.DistancesConfig(dists=laws, metrics=metrics, dims=dim_list, points=points, seed=seed,
                                     chunk=chunk, dtype=dtype, devices=devices, platform=platform)
        for law in laws:
            for d in dim_list:
                exp.dims_for(law, d)
        exp.check_memory(config, _available_memory())
    except ValueError as e:
        _fail(str(e))
    _setup_jax()
    used = _setup_scale(devices, platform, coordinator, num_processes, process_id)
    if primary:
        _out_dir(out)

    from sim.io import Output, run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(len(laws) * len(dim_list), "distances")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    if not primary:  # every process computed its share; process 0 holds the joint result and writes it
        return
    with Output(out) as o:
        o.csv("distances.csv", result.rows)
        o.csv("distances_hist.csv", result.tables["hist"])
        if result.tables["angles"]:
            o.csv("distances_angles.csv", result.tables["angles"])
        if plots:
            _distance_plots(o, result, metrics)
        o.json("distances.json", run_metadata("hdsim distances", config.to_json(), seed=seed, wall_seconds=wall,
                                              info=result.info))
        written = o.staged_names()
    for r in result.rows:
        typer.echo(f"{r['dist_params']:>24} {r['metric']:>11} d={r['dim']:<12} mean={r['mean']:<12.6g} "
                   f"rel_std={r['rel_std']:<10.4g} theory={r['theory_rel_std']:.4g}{_deviation(r)}")
    where = f"{len(used)} {used[0].platform} device(s)" + (f" in {num_processes} processes" if multi else "")
    typer.echo(f"{result.info['coordinates_per_second']:.3g} coordinates/s on {where}; "
               f"wrote {len(written)} files to {out}")


def _distance_plots(o, result, metrics):
    from sim.experiments.distances import ANGLE_EDGES, HIST_EDGES
    from sim.plots import save, style
    from sim.plots import distances as pd

    with style():
        for m in metrics:
            if len({r["dim"] for r in result.rows}) >= 2:
                save(pd.fig_rel_std(result.rows, m.name), o, f"distances_rel_std_{m.name}")
                save(pd.fig_rel_contrast(result.rows, m.name), o, f"distances_rel_contrast_{m.name}")
            save(pd.fig_histograms(result.rows, result.tables["hist"], HIST_EDGES, m.name), o,
                 f"distances_hist_{m.name}")
        if result.tables["angles"]:
            save(pd.fig_angles(result.tables["angles"], result.tables["hist"], ANGLE_EDGES), o, "distances_angles")


@app.command()
def figures(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("figures"),
    quick: Annotated[bool, typer.Option(help="Reduced sizes (a smoke run in under 2 minutes).")] = False,
    only: Annotated[Optional[str], typer.Option(help="Comma list of figure names to regenerate (see --list).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the figures and exit.")] = False,
):
    """Regenerate the figure gallery (default: every figure, into figures/)."""
    from sim.gallery import REGISTRY

    if list_:
        for spec in REGISTRY.values():
            typer.echo(f"{spec.name:<18} {spec.description}")
        return
    names = _parse_list("--only", only, REGISTRY) if only is not None else list(REGISTRY)
    _out_dir(out)
    _setup_jax()
    from sim.gallery import make_figures

    bar, task = _progress(len(names), "figures")
    t0 = time.perf_counter()
    done = []
    with bar:
        for name in names:
            bar.update(task, description=name)
            done += make_figures(out, [name], quick=quick)
            bar.advance(task, 1)
    from sim.gallery import gallery_markdown
    from sim.io import Output

    with Output(out) as o:  # the index lists every figure present in the directory, not only this run's
        o.text("index.md", "# hdsim figure gallery\n\n" + gallery_markdown(out))
    for f in done:
        typer.echo(f"{f['name']}: {f['caption']}")
    typer.echo(f"wrote {sum(len(f['files']) for f in done)} files to {out} in {time.perf_counter() - t0:.0f} s")


# ---- hdsim rmt (random-matrix Hessians, issue 3) ----

RMT_MAX_DIM = 2048  # dense N x N matrices, streamed at least 64 at a time


def _parse_shifts(text: str) -> list[float]:
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        _fail(f"--shift {text!r}: give a comma list of numbers, e.g. -1,0,0.5")
    out = []
    for s in items:
        try:
            v = float(s)
        except ValueError:
            _fail(f"--shift: {s!r} is not a number (give a comma list of numbers, e.g. -1,0,0.5)")
        if not math.isfinite(v):
            _fail(f"--shift: {s!r} is not a finite number")
        out.append(v + 0.0)  # -0.0 -> 0.0
    return list(dict.fromkeys(out))


def _one_of(name: str, text: str, valid) -> str:
    items = _parse_list(name, text, valid)
    if len(items) != 1:
        _fail(f"{name}: give one value, got {text!r}; valid: {', '.join(valid)}")
    return items[0]


@app.command()
def rmt(
    ensemble: Annotated[str, typer.Option(help="Matrix ensemble: goe, wigner-rademacher, wigner-uniform, "
                                          "wishart.")] = "goe",
    dims: Annotated[str, typer.Option(help="Matrix sizes N <= 2048: comma list, A:B (every integer), A:B:K "
                                      "(K log-spaced).")] = "2:50",
    samples: Annotated[int, typer.Option(help="Monte Carlo matrices per (N, shift), >= 1.")] = 100_000,
    shift: Annotated[str, typer.Option(help="Shifts s of H/sqrt(N) + s I, comma list of numbers "
                                       "(e.g. -1,0,0.5).")] = "0",
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    rare: Annotated[str, typer.Option(help="log P(min) when Monte Carlo sees too few minima (GOE, s = 0): ti, exact "
                                      "or none.")] = "ti",
    min_minima: Annotated[int, typer.Option(help="Use --rare below this many Monte Carlo minima, >= 1.")] = 100,
    ti_chains: Annotated[int, typer.Option(help="Thermodynamic integration: chains per node, >= 2.")] = 32,
    ti_sweeps: Annotated[int, typer.Option(help="Thermodynamic integration: sweeps per chain, >= 1.")] = 400,
    aspect: Annotated[float, typer.Option(help="Wishart rows/columns m/N, > 0.")] = 2.0,
    index_method: Annotated[str, typer.Option(help="Index counting: auto (ldl for continuous entries), eigh, "
                                              "ldl.")] = "auto",
    dtype: Annotated[str, typer.Option(help="Matrix dtype: float32 or float64.")] = "float32",
    spectrum_dims: Annotated[str, typer.Option(help="Sizes with a spectrum table: auto (3 of --dims), none, or "
                                               "a --dims list.")] = "auto",
    spectrum_samples: Annotated[int, typer.Option(help="Matrices per spectrum, >= 1.")] = 2000,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/rmt"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
    devices: Annotated[Optional[int], typer.Option(help="Devices to split the matrices over (default: all); same numbers for any count.")] = None,
    platform: PlatformOption = None,
    coordinator: CoordinatorOption = None,
    num_processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    """Random-matrix Hessians: index statistics, P(minimum) against N and shift, spectra: CSV, JSON, figures."""
    from sim.rmt import ENSEMBLES

    ens_name = _one_of("--ensemble", ensemble, ENSEMBLES)
    dim_list = _parse_dims(dims)
    if max(dim_list) > RMT_MAX_DIM:
        _fail(f"--dims: {max(dim_list)} exceeds the largest matrix size {RMT_MAX_DIM}")
    shifts = _parse_shifts(shift)
    for name, v, lo in (("--samples", samples, 1), ("--seed", seed, 0), ("--min-minima", min_minima, 1),
                        ("--ti-chains", ti_chains, 2), ("--ti-sweeps", ti_sweeps, 1),
                        ("--spectrum-samples", spectrum_samples, 1)):
        if v < lo:
            _fail(f"{name} must be an integer >= {lo}, got {v}")
    if samples >= 2**32:
        _fail(f"--samples must be < 2**32, got {samples}")
    from sim.experiments import rmt as exp

    rare = _one_of("--rare", rare, exp.RARE_METHODS)
    index_method = _one_of("--index-method", index_method, ("auto", "eigh", "ldl"))
    dtype = _one_of("--dtype", dtype, ("float32", "float64"))
    _positive("--aspect", aspect)
    if index_method == "ldl" and ens_name == "wigner-rademacher":
        _fail("--index-method ldl is not valid for wigner-rademacher (discrete entries make minors vanish); use eigh")
    if spectrum_dims in ("auto", "none"):
        spec = () if spectrum_dims == "none" else tuple(dim_list[i] for i in sorted({0, len(dim_list) // 2,
                                                                                     len(dim_list) - 1}))
    else:
        from sim.dims import DimsError, parse_dims

        try:
            spec = parse_dims(spectrum_dims)
        except DimsError as e:
            _fail(str(e).replace("--dims", "--spectrum-dims", 1))
        missing = sorted(set(spec) - set(dim_list))
        if missing:
            _fail(f"--spectrum-dims: {missing[0]} is not among --dims")
    need = 64 * max(dim_list) ** 2 * 8 * 6  # one chunk of 64 float64 matrices and its workspace
    if need > _available_memory() // 2:
        _fail(f"--dims: N = {max(dim_list)} needs about {need / 2**30:.1f} GiB per chunk; not enough free memory")
    multi, primary = _parse_scale(devices, platform, coordinator, num_processes, process_id)
    try:
        config = exp.RmtConfig(ensemble=ens_name, dims=tuple(dim_list), samples=samples, shifts=tuple(shifts),
                               seed=seed, aspect=aspect, dtype=dtype,
                               index_method=None if index_method == "auto" else index_method,
                               rare=rare, min_minima=min_minima, ti_chains=ti_chains, ti_sweeps=ti_sweeps,
                               spectrum_dims=spec, spectrum_samples=spectrum_samples, devices=devices,
                               platform=platform)
    except ValueError as e:
        _fail(str(e))
    _setup_jax()
    used = _setup_scale(devices, platform, coordinator, num_processes, process_id)
    if primary:
        _out_dir(out)

    from sim.io import Output, run_metadata
    from sim.plots.rmt import theta_fit

    t0 = time.perf_counter()
    bar, task = _progress(len(dim_list) * len(shifts) * samples, "rmt")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    fit = theta_fit(result.rows, seed=seed) if ens_name == "goe" else None
    wall = time.perf_counter() - t0
    if not primary:  # every process counted its share; process 0 holds the joint counts and writes them
        return
    with Output(out) as o:
        o.csv("rmt.csv", result.rows)
        for name, table in result.tables.items():
            if table:
                o.csv(f"rmt_{name}.csv", table)
        if plots:
            _rmt_plots(o, result, fit)
        info = dict(result.info, theta_fit=fit._asdict() if fit else None)
        o.json("rmt.json", run_metadata("hdsim rmt", config.to_json(), seed=seed, wall_seconds=wall, info=info))
        written = o.staged_names()
    typer.echo(f"{'ensemble':>17} {'N':>5} {'shift':>6} {'index fraction':>22} {'theory':>8} "
               f"{'ln P(min)':>20} {'theory -θN²':>12} {'exact':>10}  method")
    for r in result.rows:
        typer.echo(f"{r['ensemble']:>17} {r['dim']:>5} {r['shift']:>6.3g} "
                   f"{r['mean_index_fraction']:>12.5f} ± {r['mean_index_fraction_stderr']:<7.2g} "
                   f"{_finite(r['theory_index_fraction_finite_n'], r['theory_index_fraction']):>8.5f} "
                   f"{r['log_p_min']:>10.4g} ± {r['log_p_min_stderr']:<7.2g} "
                   f"{r['theory_log_p_min']:>12.4g} {r['exact_log_p_min']:>10.4g}  {r['method']}")
    if fit is not None:
        typer.echo(f"fit -ln P = θN² + bN + c over N = {min(fit.dims)}..{max(fit.dims)}: θ = {fit.theta:.4f} "
                   f"[{fit.ci_low:.4f}, {fit.ci_high:.4f}] (95%), b = {fit.b:.3f}; theory θ = ln3/4 = 0.27465")
    where = f"{len(used)} {used[0].platform} device(s)" + (f" in {num_processes} processes" if multi else "")
    typer.echo(f"{result.info['matrices_per_second']:.3g} matrices/s on {where}; wrote {len(written)} files to "
               f"{out} in {wall:.1f} s")


def _finite(a: float, b: float) -> float:
    return a if math.isfinite(a) else b


def _rmt_plots(o, result, fit):
    from sim.plots import rmt as pr
    from sim.plots import save, style

    rows = result.rows
    shifts = sorted({r["shift"] for r in rows}, key=abs)
    with style():
        if any(r["shift"] == 0.0 for r in rows):
            save(pr.fig_minima(rows, fit=fit), o, "rmt_minima")
        save(pr.fig_shift(rows), o, "rmt_shift")
        save(pr.fig_index_distribution(rows, result.tables["index_hist"], shift=shifts[0]), o, "rmt_index_distribution")
        if result.tables["spectrum"]:
            save(pr.fig_spectra(result.tables["spectrum"]), o, "rmt_spectra")


# ---- hdsim critical (critical points of random losses, issue 4) ----

CRITICAL_POINT_COLUMNS = ("landscape", "dim", "start", "converged", "grad_norm", "energy", "index", "index_fraction",
                          "min_eig", "max_eig")
CRITICAL_SUMMARY_COLUMNS = ("landscape", "dim", "found", "converged", "unique", "minima_fraction",
                            "mean_index_fraction")


@app.command()
def critical(
    landscape: Annotated[str, typer.Option(help="Random loss: grf, pspin or mlp.")] = "grf",
    dims: Annotated[str, typer.Option(help="Sizes N (mlp: hidden widths): 2,4,8 or A:B or A:B:K (K log-spaced).")] = "2,4,8,16,32",
    starts: Annotated[int, typer.Option(help="Random starts per instance, >= 1.")] = 512,
    instances: Annotated[int, typer.Option(help="Random landscapes per size, >= 1.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    p: Annotated[int, typer.Option(help="pspin: order p >= 2 (n**p <= 2^24 couplings).")] = 3,
    features: Annotated[Optional[int], typer.Option(help="grf: random features, >= 1 (default: features-per-dim x N).")] = None,
    features_per_dim: Annotated[int, typer.Option(help="grf: random features per dimension, >= 1.")] = 16,
    length_scale: Annotated[float, typer.Option(help="grf: correlation length s > 0 (per sqrt(N)).")] = 1.0,
    confine: Annotated[float, typer.Option(help="grf: confining term (confine/2)|x|^2, >= 0 (no theory if > 0).")] = 0.0,
    d_in: Annotated[int, typer.Option(help="mlp: input dimension, >= 1.")] = 2,
    num_samples: Annotated[int, typer.Option(help="mlp: training samples, >= 1.")] = 64,
    weight_decay: Annotated[float, typer.Option(help="mlp: weight decay >= 0.")] = 1e-3,
    noise: Annotated[float, typer.Option(help="mlp: label noise std >= 0.")] = 0.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Newton iterations per start, >= 1 (default 100; mlp 300).")] = None,
    method: Annotated[str, typer.Option(help="Finder step rule: lm (Levenberg-Marquardt) or newton (uphill steps too; n <= 32).")] = "lm",
    descent: Annotated[bool, typer.Option(help="Also run gradient descent from the same starts (minima energies).")] = True,
    descent_steps: Annotated[int, typer.Option(help="Gradient-descent iteration cap, >= 1.")] = 20000,
    spectra: Annotated[int, typer.Option(help="Saddles per size whose Hessian spectrum is kept, >= 0.")] = 4,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/critical"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
    devices: Annotated[Optional[int], typer.Option(help="Devices to spread the instances over (default: all); same numbers for any count.")] = None,
    platform: PlatformOption = None,
):
    """Critical points of random losses (Newton from random starts): index against energy, minima fraction."""
    from sim.landscapes import LANDSCAPES

    from sim.critical import METHODS

    _choice("--landscape", landscape, LANDSCAPES)
    _choice("--method", method, METHODS)
    dim_list = _parse_dims(dims)
    for name, v, least in (("--starts", starts, 1), ("--instances", instances, 1), ("--seed", seed, 0),
                           ("--p", p, 2), ("--features-per-dim", features_per_dim, 1), ("--d-in", d_in, 1),
                           ("--num-samples", num_samples, 1), ("--descent-steps", descent_steps, 1),
                           ("--spectra", spectra, 0)):
        if v < least:
            _fail(f"{name} must be an integer >= {least}, got {v}")
    for name, v in (("--features", features), ("--max-steps", max_steps)):
        if v is not None and v < 1:
            _fail(f"{name} must be an integer >= 1, got {v}")
    _positive("--length-scale", length_scale)
    _positive("--confine", confine, strict=False)
    _positive("--weight-decay", weight_decay, strict=False)
    _positive("--noise", noise, strict=False)
    _parse_scale(devices, platform, None, None, None)

    from sim.experiments import critical as exp

    try:
        config = exp.CriticalConfig(
            landscape=landscape, dims=tuple(dim_list), starts=starts, seed=seed, instances=instances, p=p,
            features=features, features_per_dim=features_per_dim, length_scale=length_scale, confine=confine,
            d_in=d_in, num_samples=num_samples, weight_decay=weight_decay, noise=noise, max_steps=max_steps,
            method=method, descent=descent, descent_steps=descent_steps, spectra=spectra, devices=devices,
            platform=platform,
        )
    except ValueError as e:
        _fail(str(e))
    _setup_jax()
    used = _setup_scale(devices, platform, None, None, None)
    # the Hessians of all starts of one instance are held at once (S x dim^2 float64, a few copies); on
    # CPU devices (they share RAM) one instance per device runs at once: the largest ones count
    land = config.make_landscape()
    dmax = max(land.dim(d) for d in config.dims)
    per = sorted((3 * 8 * config.starts * (land.dim(d) ** 2 + 16 * land.dim(d)) for d in config.dims
                  for _ in range(min(config.instances, len(used)))), reverse=True)
    at_once = min(len(used), len(per)) if used[0].platform == "cpu" else 1
    need = sum(per[:at_once])
    if need > 0.5 * _available_memory():
        _fail(f"--starts {starts} at dimension {dmax} needs about {need / 2**30:.1f} GiB"
              f"{f' ({at_once} instances at once)' if at_once > 1 else ''}, more than half of the "
              f"{_available_memory() / 2**30:.1f} GiB available; use fewer starts, smaller --dims or fewer --devices")
    _out_dir(out)

    import dataclasses

    from sim.io import Output, run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(len(config.dims) * config.instances, f"critical {landscape}")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    summary = result.tables["summary"]
    for table, cols in ((result.rows, CRITICAL_POINT_COLUMNS), (summary, CRITICAL_SUMMARY_COLUMNS)):
        missing = [c for c in cols if table and c not in table[0]]
        if missing:  # pragma: no cover - guards the file format promised by the issue
            raise RuntimeError(f"critical: columns {missing} missing from the experiment's tables")
    with Output(out) as o:
        o.csv("critical_points.csv", result.rows)
        o.csv("critical_summary.csv", summary)
        if result.tables["descent"]:
            o.csv("critical_descent.csv", result.tables["descent"])
        if result.tables["spectrum"]:
            o.csv("critical_spectrum.csv", result.tables["spectrum"])
        if result.tables["theory"]:
            o.csv("critical_theory.csv", result.tables["theory"])
        if plots:
            _critical_plots(o, config, result)
        o.json("critical.json", run_metadata("hdsim critical", dataclasses.asdict(config), seed=seed,
                                             wall_seconds=wall, info=result.info))
        written = o.staged_names()
    typer.echo(f"{'landscape':>9} {'dim':>5} {'found':>6} {'converged':>9} {'not conv.':>9} {'unique':>6} "
               f"{'minima frac':>11} {'mean index frac':>15} {'spearman':>8}")
    for s in summary:
        mf = "n/a" if s["minima_fraction"] is None else f"{s['minima_fraction']:.4f}"
        mi = "n/a" if s["mean_index_fraction"] is None else f"{s['mean_index_fraction']:.4f}"
        rho = s["spearman"]
        rho = "n/a" if rho is None or not math.isfinite(rho) else f"{rho:.3f}"
        typer.echo(f"{s['landscape']:>9} {s['dim']:>5} {s['found']:>6} {s['converged']:>9} {s['not_converged']:>9} "
                   f"{s['unique']:>6} {mf:>11} {mi:>15} {rho:>8}")
    bad = sum(s["not_converged"] for s in summary)
    typer.echo(f"{bad} of {sum(s['found'] for s in summary)} starts did not converge (reported in "
               f"critical_points.csv, excluded from the statistics); wrote {len(written)} files to {out} "
               f"in {wall:.0f} s on {len(used)} {used[0].platform} device(s)")


def _critical_plots(o, config, result):
    from sim.plots import save, style
    from sim.plots import critical as pc
    from sim.theory import landscapes as th

    summary = result.tables["summary"]
    name = config.landscape
    with style():
        save(pc.fig_index_energy([(name, result.rows, result.tables["theory"], summary)]), o, "critical_index_energy")
        if len(summary) >= 2:
            save(pc.fig_minima_fraction({name: summary}), o, "critical_minima_fraction")
        if result.tables["spectrum"]:
            spec = None
            if name == "grf" and config.confine == 0:
                spec = lambda e: th.grf_hessian_semicircle(e, config.length_scale)  # noqa: E731
            elif name == "pspin":
                spec = lambda e: th.pspin_hessian_semicircle(e, config.p)  # noqa: E731
            save(pc.fig_spectra(result.tables["spectrum"], name, theory_spec=spec), o, "critical_spectra")
        if name == "pspin" and result.tables["descent"]:
            save(pc.fig_descent_energy(summary, result.tables["descent"], config.p), o, "critical_descent_energy")



# ---- hdsim spectrum (Hessian spectra from Hessian-vector products, issue 5) ----


@app.command()
def spectrum(
    model: Annotated[str, typer.Option(help="Operator: mlp (MSE loss Hessian), goe, grf or pspin (landscape Hessian at --point).")] = "mlp",
    width: Annotated[int, typer.Option(min=1, help="mlp: hidden width.")] = 64,
    depth: Annotated[int, typer.Option(min=1, help="mlp: number of hidden layers.")] = 2,
    input_dim: Annotated[int, typer.Option(min=1, help="mlp: input dimension of the teacher task.")] = 16,
    samples: Annotated[int, typer.Option(min=1, help="mlp: training samples (teacher-student regression).")] = 256,
    train_steps: Annotated[int, typer.Option(min=0, help="mlp: gradient-descent steps before the spectrum (0: at initialisation).")] = 0,
    lr: Annotated[Optional[float], typer.Option(help="mlp: GD step > 0 (default: 1 / largest Hessian eigenvalue at init).")] = None,
    dim: Annotated[Optional[int], typer.Option(help="goe: matrix size (default 1000); grf/pspin: landscape size n (default 100).")] = None,
    shift: Annotated[float, typer.Option(help="goe: spectrum of H + shift*I (negative fraction -> semicircle CDF at -shift).")] = 0.0,
    p: Annotated[int, typer.Option(min=2, help="pspin: order p >= 2 (n**p couplings are stored: p = 3 allows n <= 256).")] = 3,
    point: Annotated[str, typer.Option(help="grf/pspin: Hessian at a 'critical' point (first converged Newton start, n <= 256) or a 'random' one.")] = "critical",
    starts: Annotated[int, typer.Option(min=1, help="grf/pspin --point critical: Newton starts (float64).")] = 8,
    probes: Annotated[int, typer.Option(help="SLQ random probes, >= 2 (the error bar is their spread).")] = 16,
    steps: Annotated[int, typer.Option(help="Lanczos steps per probe, >= 1 (<= N with --reortho full).")] = 80,
    batch_size: Annotated[Optional[int], typer.Option(help="Probes run at once (default all); memory ~ batch x steps x N.")] = None,
    reortho: Annotated[str, typer.Option(help="Reorthogonalisation: full (O(steps*N) memory) or none (O(N), ghost Ritz values).")] = "full",
    probe: Annotated[str, typer.Option(help="Probe law: rademacher or gaussian.")] = "rademacher",
    threshold: Annotated[float, typer.Option(help="Also report the fraction of eigenvalues below this value.")] = 0.0,
    sigma: Annotated[Optional[float], typer.Option(help="Density kernel width > 0 (default: eigenvalue range / steps).")] = None,
    exact: Annotated[str, typer.Option(help="Exact comparison (dense Hessian + eigvalsh): auto (N <= --exact-max), yes or no.")] = "auto",
    exact_max: Annotated[int, typer.Option(min=1, help="Largest N for --exact auto.")] = 4096,
    dtype: Annotated[str, typer.Option(help="Parameters, probes and Lanczos dtype: float32 or float64.")] = "float32",
    seed: Annotated[int, typer.Option(min=0, help="Seed (integer >= 0).")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/spectrum"),
    plots: Annotated[bool, typer.Option(help="Write the density figure (PNG and SVG).")] = True,
    devices: Annotated[Optional[int], typer.Option(help="Devices to split the probe batches over (default: all; use --batch-size <= probes/devices); same numbers for any count.")] = None,
    platform: PlatformOption = None,
):
    """Hessian spectrum from Hessian-vector products (SLQ): density.csv, spectrum.json and a figure."""
    from sim.experiments import spectrum as exp
    from sim.lanczos import PROBES, REORTHO

    for name, value, valid in (("--model", model, exp.MODELS), ("--point", point, exp.POINTS), ("--reortho", reortho, REORTHO), ("--probe", probe, PROBES),
                               ("--exact", exact, ("auto", "yes", "no")), ("--dtype", dtype, ("float32", "float64"))):
        _choice(name, value, valid)
    if probes < 2:
        _fail(f"--probes {probes}: need >= 2 probes (the error bar is their spread)")
    if steps < 1:
        _fail(f"--steps {steps}: must be an integer >= 1")
    if batch_size is not None and batch_size < 1:
        _fail(f"--batch-size {batch_size}: must be an integer >= 1")
    if dim is not None and dim < (2 if model == "pspin" else 1):
        _fail(f"--dim {dim}: must be an integer >= {2 if model == 'pspin' else 1}")
    _positive("--lr", lr)
    _positive("--sigma", sigma)
    for name, value in (("--shift", shift), ("--threshold", threshold)):
        if not math.isfinite(value):
            _fail(f"{name} must be a finite number, got {value}")
    if dim is None:
        dim = 1000 if model == "goe" else 100
    _parse_scale(devices, platform, None, None, None)
    _setup_jax()  # before the config: dtype float64 needs x64 (no backend is initialised here)
    try:
        config = exp.SpectrumConfig(
            model=model, width=width, depth=depth, input_dim=input_dim, num_samples=samples, train_steps=train_steps,
            learning_rate=lr, dim=dim, shift=shift, p=p, point=point, starts=starts, probes=probes, steps=steps,
            probe=probe, reortho=reortho, batch_size=batch_size, threshold=threshold, sigma=sigma, exact=exact,
            exact_max=exact_max, dtype=dtype, seed=seed, devices=devices, platform=platform)
    except ValueError as e:
        msg = str(e).removeprefix("spectrum: ")
        _fail(f"--dim {dim} --p {p}: {msg}" if msg.startswith(f"{model}:") else msg)
    n = config.num_params
    if reortho == "full" and steps > n:
        _fail(f"--steps {steps}: must be <= N = {n:,} with --reortho full (or use --reortho none)")
    try:
        exp.check_memory(config, _available_memory())
    except ValueError as e:
        _fail(str(e))
    used = _setup_scale(devices, platform, None, None, None)
    _out_dir(out)

    from sim.io import Output, run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(2, f"spectrum ({model}, N = {n:,})")
    try:
        with bar:
            result = exp.run(config, progress=lambda k: bar.advance(task, k))
    except RuntimeError as e:  # e.g. no Newton start converged: nothing is written
        typer.echo(f"Error: {' '.join(str(e).removeprefix('spectrum: ').split())}", err=True)
        raise typer.Exit(1)
    wall = time.perf_counter() - t0
    info = result.info
    keys = ("negative_fraction", "negative_fraction_stderr", "negative_fraction_lower", "negative_fraction_upper",
            "min_eigenvalue", "min_eigenvalue_residual", "max_eigenvalue", "max_eigenvalue_residual",
            "exact_negative_fraction", "exact_min_eigenvalue", "exact_max_eigenvalue", "density_l1",
            "theory_negative_fraction")
    top = {k: info[k] for k in keys if k in info}
    with Output(out) as o:
        o.csv("density.csv", result.rows)
        o.csv("ritz.csv", result.tables["ritz"])
        if "exact_histogram" in result.tables:
            o.csv("exact_histogram.csv", result.tables["exact_histogram"])
            o.csv("exact_eigenvalues.csv", result.tables["exact_eigenvalues"])
        if plots:
            from sim.plots import save, style
            from sim.plots import spectrum as ps

            with style():
                save(ps.fig_density([(None, ps.density_series(result.rows, result.tables, info), info)]), o, "spectrum")
        meta = run_metadata("hdsim spectrum", config.to_json(), seed=seed, wall_seconds=wall, info=info)
        o.json("spectrum.json", {**top, "num_params": n, "timings": info["seconds"], **meta})
        written = o.staged_names()
    exact_txt = f" (exact {info['exact_negative_fraction']:.4f})" if "exact_negative_fraction" in info else ""
    typer.echo(f"{model} N={n:,}: negative fraction {info['negative_fraction']:.4f} +- "
               f"{info['negative_fraction_stderr']:.4f}{exact_txt}; eigenvalues in [{info['min_eigenvalue']:.5g}, "
               f"{info['max_eigenvalue']:.5g}]")
    typer.echo(f"{info['seconds'].get('slq_run', 0.0):.2f} s SLQ ({probes} probes x {steps} steps on {len(used)} "
               f"{used[0].platform} device(s)); wrote {len(written)} files to {out}")


def main() -> None:
    """Console-script entry point (``hdsim``)."""
    app()


if __name__ == "__main__":
    main()
