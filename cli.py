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
from typing import Annotated, NoReturn

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
            rv = super().main(
                args=args, prog_name=prog_name or "hdsim", complete_var=complete_var, standalone_mode=False, **extra
            )
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
                return f"{msg} (got {a[len(opt) + 1 :]!r})"
    return msg


app = typer.Typer(
    cls=_OneLineErrors,
    help="hdsim: high-dimensional geometry simulator (distance concentration, random-matrix Hessians, "
    "critical points of random losses, networks that learn).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 150, "max_content_width": 150},
)

DIMS_HELP = "Dimensions: comma list (1e3 allowed), A:B (every integer), A:B:K (K log-spaced)."


def _fail(message: str) -> NoReturn:
    raise _UsageError(message)


#: turned off by ``hdsim --no-compile-cache`` or HDSIM_NO_COMPILE_CACHE=1 (reset on every invocation)
_OPTIONS = {"compile_cache": True}


def compile_cache_dir() -> Path:
    """Where the CLI keeps JAX's persistent compilation cache: $HDSIM_CACHE_DIR if set, else
    $XDG_CACHE_HOME/hdsim/jax, else ~/.cache/hdsim/jax."""
    if os.environ.get("HDSIM_CACHE_DIR"):
        return Path(os.environ["HDSIM_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hdsim" / "jax"


def _compile_cache_enabled() -> bool:
    off = os.environ.get("HDSIM_NO_COMPILE_CACHE", "").strip().lower() not in ("", "0", "false", "no")
    return _OPTIONS["compile_cache"] and not off


def _setup_jax() -> None:
    """x64 on (float64 accumulators and exact comparisons), and JAX's persistent compilation cache.

    The cache (``compile_cache_dir()``) lets a second run of the same command load its compiled
    programs instead of recompiling them. JAX caches only programs that took >= 1 s to compile and
    lets the file system decide a minimum entry size by default; both thresholds are lowered here
    (``jax_persistent_cache_min_compile_time_secs = 0``, ``jax_persistent_cache_min_entry_size_bytes
    = -1``) because hdsim's many small programs add up. Only the CLI sets this: importing or calling
    ``sim`` never changes JAX's configuration. An unusable cache directory only turns the cache off.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    if not _compile_cache_enabled():
        jax.config.update("jax_enable_compilation_cache", False)
        return
    path = compile_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        jax.config.update("jax_enable_compilation_cache", False)
        return
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


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

    p = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    return p, p.add_task(label, total=total)


def _version(value: bool):
    if value:
        from sim import __version__

        typer.echo(f"hdsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    compile_cache: Annotated[
        bool,
        typer.Option(
            help="Keep compiled programs in ~/.cache/hdsim/jax (or "
            "$HDSIM_CACHE_DIR) so the next run skips compilation; also "
            "HDSIM_NO_COMPILE_CACHE=1."
        ),
    ] = True,
):
    """hdsim: high-dimensional geometry simulator."""
    _OPTIONS["compile_cache"] = compile_cache


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


class _ConfigErrors:
    """``with _ConfigErrors(aliases):`` turns a ValueError of a config or kernel into the one-line
    exit-2 message, with the field it names spelled as the command's option (``starts`` ->
    ``--starts``; ``aliases`` maps other names, e.g. ``{"shifts": "--shift"}``)."""

    def __init__(self, aliases: dict[str, str] | None = None):
        self.aliases = aliases or {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, ValueError):
            _fail(_as_option(" ".join(str(exc).split()), self.aliases))
        return False


def _as_option(msg: str, aliases: dict[str, str]) -> str:
    """'critical: starts must be ...' -> '--starts must be ...'; 'dims: 5000 exceeds' -> '--dims: 5000 exceeds'."""
    import re

    m = re.match(r"^([\w-]+): (.*)$", msg)
    prefix, rest = (m.group(1), m.group(2)) if m else (None, msg)

    def option(name):
        return aliases.get(name) or "--" + name.replace("_", "-")

    if prefix is not None and (prefix in aliases or prefix in _FIELD_NAMES):
        return f"{option(prefix)}: {rest}"
    for key in sorted(set(aliases) | _FIELD_NAMES, key=len, reverse=True):
        if rest.startswith(key + " ") or rest.startswith(key + ":"):
            return option(key) + rest[len(key) :]
    return msg


#: field names of the experiment configs and laws that are spelled as options (see ``_as_option``)
_FIELD_NAMES = {
    "dims",
    "points",
    "seed",
    "chunk",
    "dtype",
    "devices",
    "platform",
    "samples",
    "shifts",
    "ensemble",
    "aspect",
    "rare",
    "index_method",
    "min_minima",
    "ti_chains",
    "ti_sweeps",
    "spectrum_samples",
    "spectrum_dims",
    "landscape",
    "starts",
    "instances",
    "p",
    "features",
    "features_per_dim",
    "length_scale",
    "confine",
    "d_in",
    "num_samples",
    "weight_decay",
    "max_steps",
    "method",
    "descent_steps",
    "spectra",
    "df",
}


def _previous_files(meta: Path) -> set[str]:
    """The files the previous run listed in its JSON (empty if none or unreadable)."""
    import json

    try:
        files = json.loads(meta.read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {f for f in files if isinstance(f, str)}


def _write_run(out: Path, json_name: str, tables: dict, meta: dict, plot=None) -> tuple[list[str], str | None]:
    """Write a run's outputs: the tables and the JSON first, in one commit, then the figures in a second.

    A failure (or a crash) while plotting therefore never loses the tables. Files the previous run of
    this command listed in its JSON and this run does not write (e.g. its figures) are removed in the
    first commit, so the directory never mixes this run's tables with another run's figures. The JSON
    lists this run's ``files`` and says whether the ``figures`` were written. Returns (files, error):
    error is a one-line description of a plotting failure, else None.
    """
    from sim.io import Output

    stale = _previous_files(out / json_name)
    with Output(out) as o:
        for name, rows in tables.items():
            o.csv(name, rows)
        files = o.staged_names() + [json_name]
        for name in sorted(stale - set(files)):
            try:
                o.remove(name)
            except ValueError:  # not a plain relative name: never touch it
                pass
        o.json(json_name, {**meta, "files": files, "figures": "pending" if plot else "not requested"})
    if plot is None:
        return files, None
    try:
        with Output(out) as o:
            plot(o)
            figures = o.staged_names()
            o.json(json_name, {**meta, "files": files + figures, "figures": "written"})
        return files + figures, None
    except Exception as e:  # noqa: BLE001 - any plotting failure: keep the tables, report it
        error = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
        with Output(out) as o:
            o.json(json_name, {**meta, "files": files, "figures": f"failed: {error}"})
        return files, error


def _report_plot_error(error: str | None, out: Path) -> None:
    if error is not None:
        typer.echo(f"Error: the figures failed ({error}); the tables and the JSON are written to {out}", err=True)
        raise typer.Exit(1)


# options of every command that splits its work over devices and processes
PlatformOption = Annotated[str | None, typer.Option(help="Backend: cpu, gpu or tpu (default: JAX's choice).")]
CoordinatorOption = Annotated[
    str | None, typer.Option(help="Multi-process run: HOST:PORT of process 0 (jax.distributed).")
]
ProcessesOption = Annotated[int | None, typer.Option(help="Multi-process run: number of processes P.")]
ProcessIdOption = Annotated[int | None, typer.Option(help="Multi-process run: this process, 0..P-1 (only 0 writes).")]


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
    """' mean-theory=+0.53 SE' (see ``sim.experiments.distances.mean_deviation``), or ''."""
    from sim.experiments.distances import mean_deviation

    z = mean_deviation(row)
    return f" mean-theory={z:+.2f} SE" if math.isfinite(z) else ""


@app.command()
def distances(
    dist: Annotated[
        str,
        typer.Option(help="Laws, comma list: gaussian uniform rademacher student-t cauchy lognormal powerlaw init."),
    ] = "gaussian,uniform,cauchy",
    metric: Annotated[
        str, typer.Option(help="Metrics, comma list: euclidean sqeuclidean cityblock minkowski chebyshev cosine.")
    ] = "euclidean",
    dims: Annotated[str, typer.Option(help=DIMS_HELP)] = "10,100,1000,10000",
    points: Annotated[int, typer.Option(help="Random vectors per (law, d), >= 2.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    minkowski_p: Annotated[float | None, typer.Option(help="Exponent p > 0 of --metric minkowski.")] = None,
    df: Annotated[float, typer.Option(help="Student-t degrees of freedom, > 0.")] = 5.0,
    lognormal_sigma: Annotated[float, typer.Option(help="Lognormal sigma, > 0.")] = 1.0,
    a: Annotated[float, typer.Option(help="powerlaw: eigenvalues i^-a, a >= 0.")] = 1.0,
    init_scheme: Annotated[str, typer.Option(help="Init scheme: he, lecun, glorot.")] = "he",
    init_io: Annotated[
        str, typer.Option(help="init: MLP input,output widths (2 hidden layers fitted to d).")
    ] = "784,10",
    chunk: Annotated[int | None, typer.Option(help="Coordinates per chunk: 4096 x 2^k (default: auto).")] = None,
    dtype: Annotated[str, typer.Option(help="Sample dtype: float32 or float64.")] = "float32",
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/distances"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
    devices: Annotated[
        int | None, typer.Option(help="Devices to split the work over (default: all); same numbers for any count.")
    ] = None,
    platform: PlatformOption = None,
    coordinator: CoordinatorOption = None,
    num_processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    """Pairwise distances between random vectors as the dimension grows: CSV, JSON and figures."""
    from sim.distances import METRICS
    from sim.vectors import DISTRIBUTIONS

    names = _parse_list("--dist", dist, DISTRIBUTIONS)
    metric_names = _parse_list("--metric", metric, METRICS)
    dim_list = _parse_dims(dims)
    if "minkowski" in metric_names and minkowski_p is None:
        _fail("--metric minkowski needs --minkowski-p (any p > 0)")
    io_w = _parse_init_io(init_io)
    multi, primary = _parse_scale(devices, platform, coordinator, num_processes, process_id)

    from sim.distances import make_metric
    from sim.experiments import distances as exp
    from sim.vectors import Init, make_distribution

    aliases = {"sigma": "--lognormal-sigma", "exponent a": "--a", "p": "--minkowski-p"}
    with _ConfigErrors(aliases):
        for law in ("student-t", "lognormal", "powerlaw"):  # every law option is checked, used or not
            make_distribution(law, df=df, sigma=lognormal_sigma, a=a)
        laws = tuple(
            Init(widths=(io_w[0], 1, 1, io_w[1]), scheme=init_scheme)
            if n == "init"
            else make_distribution(n, df=df, sigma=lognormal_sigma, a=a)
            for n in names
        )
        metrics = tuple(make_metric(m, minkowski_p if m == "minkowski" else None) for m in metric_names)
        config = exp.DistancesConfig(
            dists=laws,
            metrics=metrics,
            dims=tuple(dim_list),
            points=points,
            seed=seed,
            chunk=chunk,
            dtype=dtype,
            devices=devices,
            platform=platform,
        )
        exp.check_memory(config, _available_memory())
    _setup_jax()
    used = _setup_scale(devices, platform, coordinator, num_processes, process_id)
    if primary:
        _out_dir(out)

    from sim.io import run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(len(laws) * len(dim_list), "distances")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    if not primary:  # every process computed its share; process 0 holds the joint result and writes it
        return
    tables = {"distances.csv": result.rows, "distances_hist.csv": result.tables["hist"]}
    if result.tables["angles"]:
        tables["distances_angles.csv"] = result.tables["angles"]
    meta = run_metadata("hdsim distances", config.to_json(), seed=seed, wall_seconds=wall, info=result.info)
    written, error = _write_run(
        out, "distances.json", tables, meta, (lambda o: _distance_plots(o, result, metrics)) if plots else None
    )
    for r in result.rows:
        typer.echo(
            f"{r['dist_params']:>24} {r['metric']:>11} d={r['dim']:<12} mean={r['mean']:<12.6g} "
            f"rel_std={r['rel_std']:<10.4g} theory={r['theory_rel_std']:.4g}{_deviation(r)}"
        )
    where = f"{len(used)} {used[0].platform} device(s)" + (f" in {num_processes} processes" if multi else "")
    typer.echo(
        f"{result.info['coordinates_per_second']:.3g} coordinates/s on {where}; wrote {len(written)} files to {out}"
    )
    _report_plot_error(error, out)


def _parse_init_io(text: str) -> tuple[int, int]:
    """--init-io 'input,output': two integers >= 1."""
    parts = text.split(",")
    try:
        widths = tuple(int(v) for v in parts)
    except ValueError:
        widths = ()
    if len(widths) != 2 or min(widths) < 1:
        _fail(f"--init-io {text!r}: give two positive integers 'input,output', e.g. 784,10")
    return widths[0], widths[1]


def _distance_plots(o, result, metrics):
    from sim.experiments.distances import ANGLE_EDGES, HIST_EDGES
    from sim.plots import distances as pd
    from sim.plots import save, style

    with style():
        for m in metrics:
            if len({r["dim"] for r in result.rows}) >= 2:
                save(pd.fig_rel_std(result.rows, m.name), o, f"distances_rel_std_{m.name}")
                save(pd.fig_rel_contrast(result.rows, m.name), o, f"distances_rel_contrast_{m.name}")
            save(
                pd.fig_histograms(result.rows, result.tables["hist"], HIST_EDGES, m.name), o, f"distances_hist_{m.name}"
            )
        if result.tables["angles"]:
            save(pd.fig_angles(result.tables["angles"], result.tables["hist"], ANGLE_EDGES), o, "distances_angles")


@app.command()
def figures(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("figures"),
    quick: Annotated[
        bool,
        typer.Option(
            help="Reduced sizes: a smoke run of every entry (measured 123 s wall, 166 CPU-s on 2 idle cores with an "
            "empty compilation cache; mostly compilation)."
        ),
    ] = False,
    only: Annotated[str | None, typer.Option(help="Comma list of figure names to regenerate (see --list).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the figures and exit.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes running the topics side by side (default 1); the files are the same for any number."
        ),
    ] = None,
):
    """Regenerate the figure gallery (default: every figure, into figures/)."""
    from sim.gallery import REGISTRY

    if list_:
        for spec in REGISTRY.values():
            typer.echo(f"{spec.name:<18} {spec.description}")
        return
    names = _parse_list("--only", only, REGISTRY) if only is not None else list(REGISTRY)
    if workers is not None and workers < 1:
        _fail(f"--workers must be an integer >= 1, got {workers}")
    _out_dir(out)
    _setup_jax()
    from sim.gallery import make_figures

    if workers is None:
        workers = 1
    bar, task = _progress(len(names), "figures")
    t0 = time.perf_counter()
    with bar:

        def show(name):
            bar.update(task, description=name, completed=names.index(name))

        done = make_figures(out, names, quick=quick, progress=show, workers=workers)
        bar.update(task, completed=len(names))
    from sim.gallery import gallery_markdown
    from sim.io import Output

    with Output(out) as o:  # the index lists every figure present in the directory, not only this run's
        o.text("index.md", "# hdsim figure gallery\n\n" + gallery_markdown(out))
    for f in done:
        typer.echo(f"{f['name']}: {f['caption']}")
    typer.echo(f"wrote {sum(len(f['files']) for f in done)} files to {out} in {time.perf_counter() - t0:.0f} s")


# ---- hdsim rmt (random-matrix Hessians, issue 3) ----


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


@app.command()
def rmt(
    ensemble: Annotated[
        str, typer.Option(help="Matrix ensemble: goe, wigner-rademacher, wigner-uniform, wishart.")
    ] = "goe",
    dims: Annotated[
        str, typer.Option(help="Matrix sizes N <= 2048: comma list, A:B (every integer), A:B:K (K log-spaced).")
    ] = "2:50",
    samples: Annotated[int, typer.Option(help="Monte Carlo matrices per (N, shift), >= 1.")] = 100_000,
    shift: Annotated[
        str, typer.Option(help="Shifts s of H/sqrt(N) + s I, comma list of numbers (e.g. -1,0,0.5).")
    ] = "0",
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    rare: Annotated[
        str, typer.Option(help="log P(min) when Monte Carlo sees too few minima (GOE, s = 0): ti, exact or none.")
    ] = "ti",
    min_minima: Annotated[int, typer.Option(help="Use --rare below this many Monte Carlo minima, >= 1.")] = 100,
    ti_chains: Annotated[int, typer.Option(help="Thermodynamic integration: chains per node, >= 2.")] = 32,
    ti_sweeps: Annotated[int, typer.Option(help="Thermodynamic integration: sweeps per chain, >= 1.")] = 400,
    aspect: Annotated[float, typer.Option(help="Wishart rows/columns m/N, > 0.")] = 2.0,
    index_method: Annotated[
        str, typer.Option(help="Index counting: auto (ldl for continuous entries), eigh, ldl.")
    ] = "auto",
    dtype: Annotated[str, typer.Option(help="Matrix dtype: float32 or float64.")] = "float32",
    spectrum_dims: Annotated[
        str, typer.Option(help="Sizes with a spectrum table: auto (3 of --dims), none, or a --dims list.")
    ] = "auto",
    spectrum_samples: Annotated[int, typer.Option(help="Matrices per spectrum, >= 1.")] = 2000,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/rmt"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
    devices: Annotated[
        int | None,
        typer.Option(help="Devices to split the matrices over (default: all); same numbers for any count."),
    ] = None,
    platform: PlatformOption = None,
    coordinator: CoordinatorOption = None,
    num_processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    """Random-matrix Hessians: index statistics, P(minimum) against N and shift, spectra: CSV, JSON, figures."""
    dim_list = _parse_dims(dims)
    shifts = _parse_shifts(shift)
    if spectrum_dims in ("auto", "none"):
        spec = (
            ()
            if spectrum_dims == "none"
            else tuple(dim_list[i] for i in sorted({0, len(dim_list) // 2, len(dim_list) - 1}))
        )
    else:
        from sim.dims import DimsError, parse_dims

        try:
            spec = parse_dims(spectrum_dims)
        except DimsError as e:
            _fail(str(e).replace("--dims", "--spectrum-dims", 1))
        missing = sorted(set(spec) - set(dim_list))
        if missing:
            _fail(f"--spectrum-dims: {missing[0]} is not among --dims")
    multi, primary = _parse_scale(devices, platform, coordinator, num_processes, process_id)
    from sim.experiments import rmt as exp

    with _ConfigErrors({"shifts": "--shift"}):
        config = exp.RmtConfig(
            ensemble=ensemble,
            dims=tuple(dim_list),
            samples=samples,
            shifts=tuple(shifts),
            seed=seed,
            aspect=aspect,
            dtype=dtype,
            index_method=None if index_method == "auto" else index_method,
            rare=rare,
            min_minima=min_minima,
            ti_chains=ti_chains,
            ti_sweeps=ti_sweeps,
            spectrum_dims=spec,
            spectrum_samples=spectrum_samples,
            devices=devices,
            platform=platform,
        )
        exp.check_memory(config, _available_memory())
    _setup_jax()
    used = _setup_scale(devices, platform, coordinator, num_processes, process_id)
    if primary:
        _out_dir(out)

    from sim.io import run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(len(dim_list) * len(shifts) * samples, "rmt")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    if not primary:  # every process counted its share; process 0 holds the joint counts and writes them
        return
    tables = {"rmt.csv": result.rows, **{f"rmt_{name}.csv": t for name, t in result.tables.items() if t}}
    meta = run_metadata("hdsim rmt", config.to_json(), seed=seed, wall_seconds=wall, info=result.info)
    written, error = _write_run(out, "rmt.json", tables, meta, (lambda o: _rmt_plots(o, result)) if plots else None)
    typer.echo(
        f"{'ensemble':>17} {'N':>5} {'shift':>6} {'index fraction':>22} {'theory':>8} "
        f"{'ln P(min)':>20} {'theory -θN²':>12} {'exact':>10}  method"
    )
    for r in result.rows:
        typer.echo(
            f"{r['ensemble']:>17} {r['dim']:>5} {r['shift']:>6.3g} "
            f"{r['mean_index_fraction']:>12.5f} ± {r['mean_index_fraction_stderr']:<7.2g} "
            f"{_finite(r['theory_index_fraction_finite_n'], r['theory_index_fraction']):>8.5f} "
            f"{r['log_p_min']:>10.4g} ± {r['log_p_min_stderr']:<7.2g} "
            f"{r['theory_log_p_min']:>12.4g} {r['exact_log_p_min']:>10.4g}  {r['method']}"
        )
    fit = result.info.get("theta_fit")
    if fit is not None:
        typer.echo(
            f"fit -ln P = θN² + bN + c over N = {min(fit['dims'])}..{max(fit['dims'])}: θ = {fit['theta']:.4f} "
            f"[{fit['ci_low']:.4f}, {fit['ci_high']:.4f}] (95%), b = {fit['b']:.3f}; theory θ = ln3/4 = 0.27465"
        )
    where = f"{len(used)} {used[0].platform} device(s)" + (f" in {num_processes} processes" if multi else "")
    typer.echo(
        f"{result.info['matrices_per_second']:.3g} matrices/s on {where}; wrote {len(written)} files to "
        f"{out} in {wall:.1f} s"
    )
    _report_plot_error(error, out)


def _finite(a: float, b: float) -> float:
    return a if math.isfinite(a) else b


def _rmt_plots(o, result):
    from sim.fit import ThetaFit
    from sim.plots import rmt as pr
    from sim.plots import save, style

    fit = result.info.get("theta_fit")
    fit = ThetaFit(**{**fit, "dims": tuple(fit["dims"])}) if fit else None

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

CRITICAL_POINT_COLUMNS = (
    "landscape",
    "dim",
    "start",
    "converged",
    "grad_norm",
    "energy",
    "index",
    "index_fraction",
    "min_eig",
    "max_eig",
)
CRITICAL_SUMMARY_COLUMNS = (
    "landscape",
    "dim",
    "found",
    "converged",
    "unique",
    "minima_fraction",
    "mean_index_fraction",
)


def _parse_numbers(name: str, text: str, kind) -> list:
    """A comma list of ints or floats (format only; the config checks the values)."""
    items = [t.strip() for t in text.split(",")]
    what = "integers" if kind is int else "numbers"
    if not text.strip() or any(not t for t in items):
        _fail(f"{name} {text!r}: give a comma list of {what}, e.g. {'0,100' if kind is int else '0.5,1'}")
    try:
        return [kind(t) for t in items]
    except ValueError:
        _fail(f"{name} {text!r}: give a comma list of {what}, e.g. {'0,100' if kind is int else '0.5,1'}")


@app.command()
def critical(
    landscape: Annotated[str, typer.Option(help="Random loss: grf, pspin or mlp.")] = "grf",
    dims: Annotated[
        str, typer.Option(help="Sizes N (mlp: hidden widths): 2,4,8 or A:B or A:B:K (K log-spaced).")
    ] = "2,4,8,16,32",
    starts: Annotated[int, typer.Option(help="Random starts per instance, >= 1.")] = 512,
    instances: Annotated[int, typer.Option(help="Random landscapes per size, >= 1.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    p: Annotated[int, typer.Option(help="pspin: order p >= 2 (n**p <= 2^24 couplings).")] = 3,
    features: Annotated[
        int | None, typer.Option(help="grf: random features, >= 1 (default: features-per-dim x N).")
    ] = None,
    features_per_dim: Annotated[int, typer.Option(help="grf: random features per dimension, >= 1.")] = 16,
    length_scale: Annotated[float, typer.Option(help="grf: correlation length s > 0 (per sqrt(N)).")] = 1.0,
    confine: Annotated[
        float, typer.Option(help="grf: confining term (confine/2)|x|^2, >= 0 (no theory if > 0).")
    ] = 0.0,
    data: Annotated[
        str, typer.Option(help="mlp: data set: teacher (synthetic), digits or mnist1d (real, shipped in packages).")
    ] = "teacher",
    d_in: Annotated[
        int | None, typer.Option(help="mlp: input dimension, >= 1 (default 2; real data: its own).")
    ] = None,
    num_samples: Annotated[int, typer.Option(help="mlp: training samples, >= 1.")] = 64,
    weight_decay: Annotated[float, typer.Option(help="mlp: weight decay >= 0.")] = 1e-3,
    noise: Annotated[float, typer.Option("--noise-std", help="mlp: label noise standard deviation >= 0.")] = 0.0,
    start_scales: Annotated[
        str, typer.Option(help="mlp starts: init scales, comma list of numbers > 0 (one drawn per start).")
    ] = "1",
    start_steps: Annotated[
        str, typer.Option(help="mlp starts: gradient-descent steps before the search, comma list (one drawn).")
    ] = "0",
    start_lr: Annotated[float, typer.Option(help="mlp starts: gradient-descent learning rate, > 0.")] = 0.05,
    max_steps: Annotated[
        int | None, typer.Option(help="Newton iterations per start, >= 1 (default 100; mlp 300).")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help="Finder: lm, newton or subnet (mlp: silent-unit saddles); default subnet on real data."),
    ] = None,
    descent: Annotated[
        bool, typer.Option(help="Also run gradient descent from the same starts (minima energies).")
    ] = True,
    descent_steps: Annotated[int, typer.Option(help="Gradient-descent iteration cap, >= 1.")] = 20000,
    spectra: Annotated[int, typer.Option(help="Saddles per size whose Hessian spectrum is kept, >= 0.")] = 4,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/critical"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
    devices: Annotated[
        int | None,
        typer.Option(help="Devices to spread the instances over (default: all); same numbers for any count."),
    ] = None,
    platform: PlatformOption = None,
    coordinator: CoordinatorOption = None,
    num_processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    """Critical points of random losses (Newton from random starts): index against energy, minima fraction."""
    dim_list = _parse_dims(dims)
    scales = tuple(_parse_numbers("--start-scales", start_scales, float))
    steps = tuple(_parse_numbers("--start-steps", start_steps, int))
    multi, primary = _parse_scale(devices, platform, coordinator, num_processes, process_id)

    from sim.experiments import critical as exp

    aliases = {
        "noise": "--noise-std",
        "data": "--data",
        "init_scales": "--start-scales",
        "start_scales": "--start-scales",
        "train_steps": "--start-steps",
        "start_steps": "--start-steps",
        "train_lr": "--start-lr",
        "start_lr": "--start-lr",
    }
    with _ConfigErrors(aliases):
        config = exp.CriticalConfig(
            landscape=landscape,
            dims=tuple(dim_list),
            starts=starts,
            seed=seed,
            instances=instances,
            p=p,
            features=features,
            features_per_dim=features_per_dim,
            length_scale=length_scale,
            confine=confine,
            data=data,
            d_in=d_in,
            num_samples=num_samples,
            weight_decay=weight_decay,
            noise=noise,
            start_scales=scales,
            start_steps=steps,
            start_lr=start_lr,
            max_steps=max_steps,
            method=method,
            descent=descent,
            descent_steps=descent_steps,
            spectra=spectra,
            devices=devices,
            platform=platform,
        )
    _setup_jax()
    used = _setup_scale(devices, platform, coordinator, num_processes, process_id)
    with _ConfigErrors():
        exp.check_memory(config, used, _available_memory())
    if primary:
        _out_dir(out)

    import dataclasses

    from sim.io import run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(len(config.dims) * config.instances, f"critical {landscape}")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    if not primary:  # every process searched its share of the instances; process 0 holds them all and writes
        return
    summary = result.tables["summary"]
    for table, cols in ((result.rows, CRITICAL_POINT_COLUMNS), (summary, CRITICAL_SUMMARY_COLUMNS)):
        missing = [c for c in cols if table and c not in table[0]]
        if missing:  # pragma: no cover - guards the file format promised by the issue
            raise RuntimeError(f"critical: columns {missing} missing from the experiment's tables")
    tables = {"critical_points.csv": result.rows, "critical_summary.csv": summary}
    for name in ("descent", "spectrum", "theory"):
        if result.tables[name]:
            tables[f"critical_{name}.csv"] = result.tables[name]
    meta = run_metadata("hdsim critical", dataclasses.asdict(config), seed=seed, wall_seconds=wall, info=result.info)
    written, error = _write_run(
        out, "critical.json", tables, meta, (lambda o: _critical_plots(o, config, result)) if plots else None
    )
    typer.echo(
        f"{'landscape':>9} {'dim':>5} {'found':>6} {'converged':>9} {'not conv.':>9} {'unique':>6} "
        f"{'minima frac':>11} {'mean index frac':>15} {'spearman':>8}"
    )
    for s in summary:
        mf = "n/a" if s["minima_fraction"] is None else f"{s['minima_fraction']:.4f}"
        mi = "n/a" if s["mean_index_fraction"] is None else f"{s['mean_index_fraction']:.4f}"
        rho = s["spearman"]
        rho = "n/a" if rho is None or not math.isfinite(rho) else f"{rho:.3f}"
        typer.echo(
            f"{s['landscape']:>9} {s['dim']:>5} {s['found']:>6} {s['converged']:>9} {s['not_converged']:>9} "
            f"{s['unique']:>6} {mf:>11} {mi:>15} {rho:>8}"
        )
    bad = sum(s["not_converged"] for s in summary)
    typer.echo(
        f"{bad} of {sum(s['found'] for s in summary)} starts did not converge (reported in "
        f"critical_points.csv, excluded from the statistics); wrote {len(written)} files to {out} "
        f"in {wall:.0f} s on {len(used)} {used[0].platform} device(s)"
        + (f" in {num_processes} processes" if multi else "")
    )
    _report_plot_error(error, out)


def _critical_plots(o, config, result):
    from sim.plots import critical as pc
    from sim.plots import save, style
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
        if config.data != "teacher":  # an MLP on real data: Dauphin et al.'s index against training loss
            save(pc.fig_dauphin(result.rows), o, "critical_dauphin")


# ---- hdsim spectrum (Hessian spectra from Hessian-vector products, issue 5) ----


#: config fields of `hdsim spectrum` named by their options in error messages (see ``_as_option``)
_SPECTRUM_FIELDS = {"data": "--data", "input_dim": "--input-dim", "num_samples": "--num-samples"}


@app.command()
def spectrum(
    model: Annotated[
        str, typer.Option(help="Operator: mlp (MSE loss Hessian), goe, grf or pspin (landscape Hessian at --point).")
    ] = "mlp",
    width: Annotated[int, typer.Option(min=1, help="mlp: hidden width.")] = 64,
    depth: Annotated[int, typer.Option(min=1, help="mlp: number of hidden layers.")] = 2,
    data: Annotated[
        str,
        typer.Option(
            help="mlp: fitted to 'teacher' (random teacher MLP), 'digits' (scikit-learn's 8x8 digits) or 'mnist1d' (one-hot MSE)."
        ),
    ] = "teacher",
    input_dim: Annotated[
        int | None, typer.Option(min=1, help="mlp --data teacher: input dimension (default 16; real data fix it).")
    ] = None,
    samples: Annotated[
        int, typer.Option("--num-samples", min=1, help="mlp: training samples (teacher task, or drawn from the data).")
    ] = 256,
    train_steps: Annotated[
        int, typer.Option(min=0, help="mlp: gradient-descent steps before the spectrum (0: at initialisation).")
    ] = 0,
    lr: Annotated[
        float | None, typer.Option(help="mlp: GD step > 0 (default: 1 / largest Hessian eigenvalue at init).")
    ] = None,
    dim: Annotated[
        int | None, typer.Option(help="goe: matrix size (default 1000); grf/pspin: landscape size n (default 100).")
    ] = None,
    shift: Annotated[
        float, typer.Option(help="goe: spectrum of H + shift*I (negative fraction -> semicircle CDF at -shift).")
    ] = 0.0,
    p: Annotated[
        int, typer.Option(min=2, help="pspin: order p >= 2 (n**p couplings are stored: p = 3 allows n <= 256).")
    ] = 3,
    point: Annotated[
        str,
        typer.Option(
            help="grf/pspin: Hessian at a 'critical' point (first converged Newton start, n <= 256) or a 'random' one."
        ),
    ] = "critical",
    starts: Annotated[int, typer.Option(min=1, help="grf/pspin --point critical: Newton starts (float64).")] = 8,
    probes: Annotated[int, typer.Option(help="SLQ random probes, >= 2 (the error bar is their spread).")] = 16,
    steps: Annotated[
        int, typer.Option("--lanczos-steps", help="Lanczos steps per probe, >= 1 (<= N with --reortho full).")
    ] = 80,
    batch_size: Annotated[
        int | None,
        typer.Option("--probe-batch", help="Probes run at once (default all); memory ~ batch x steps x N."),
    ] = None,
    reortho: Annotated[
        str, typer.Option(help="Reorthogonalisation: full (O(steps*N) memory) or none (O(N), ghost Ritz values).")
    ] = "full",
    probe: Annotated[str, typer.Option(help="Probe law: rademacher or gaussian.")] = "rademacher",
    threshold: Annotated[float, typer.Option(help="Also report the fraction of eigenvalues below this value.")] = 0.0,
    sigma: Annotated[
        float | None, typer.Option(help="Density kernel width > 0 (default: eigenvalue range / steps).")
    ] = None,
    exact: Annotated[
        str, typer.Option(help="Exact comparison (dense Hessian + eigvalsh): auto (N <= --exact-max), yes or no.")
    ] = "auto",
    exact_max: Annotated[int, typer.Option(min=1, help="Largest N for --exact auto.")] = 4096,
    dtype: Annotated[str, typer.Option(help="Parameters, probes and Lanczos dtype: float32 or float64.")] = "float32",
    seed: Annotated[int, typer.Option(min=0, help="Seed (integer >= 0).")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/spectrum"),
    plots: Annotated[bool, typer.Option(help="Write the density figure (PNG and SVG).")] = True,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Devices to split the probe batches over (default: all; use --probe-batch <= probes/devices); same numbers for any count."
        ),
    ] = None,
    platform: PlatformOption = None,
    coordinator: CoordinatorOption = None,
    num_processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
    eps: Annotated[
        str | None,
        typer.Option(
            help="Counts N-(eps), N0(eps), N+(eps) at these thresholds >= 0 (comma list, e.g. 0.1,0.01,0.001): counts.csv, with brackets."
        ),
    ] = None,
    eps_rel: Annotated[bool, typer.Option("--eps-rel", help="--eps in units of the spectral norm ||H||.")] = False,
    degree: Annotated[
        int,
        typer.Option(
            help="Counts: Chebyshev degree, even >= 2 (degree/2 products per probe; resolution ~ bulk half-width * pi / degree)."
        ),
    ] = 1000,
    count_probes: Annotated[
        int | None, typer.Option(help="Counts: probes of the stochastic trace, >= 2 (default: --probes).")
    ] = None,
):
    """Hessian spectrum from Hessian-vector products (SLQ): density.csv, spectrum.json and a figure;
    with --eps, eigenvalue counts with error brackets (counts.csv)."""
    from sim.experiments import spectrum as exp
    from sim.lanczos import PROBES, REORTHO

    eps_list: list[float] = []
    if eps is not None:
        items = [x.strip() for x in eps.split(",")]
        if not eps.strip() or any(not x for x in items):
            _fail(f"--eps {eps!r}: give a comma list of numbers >= 0, e.g. 0.1,0.01,0.001")
        for x in items:
            try:
                v = float(x)
            except ValueError:
                _fail(f"--eps: {x!r} is not a number (give a comma list of numbers >= 0, e.g. 0.1,0.01)")
            if not (math.isfinite(v) and v >= 0):
                _fail(f"--eps: {x!r} must be a finite number >= 0")
            eps_list.append(v + 0.0)
    if eps_rel and eps is None:
        _fail("--eps-rel needs --eps")
    if degree < 2 or degree % 2:
        _fail(f"--degree {degree}: must be an even integer >= 2")
    if count_probes is not None and count_probes < 2:
        _fail(f"--count-probes {count_probes}: need >= 2 probes (the error bar is their spread)")

    for name, value, valid in (
        ("--model", model, exp.MODELS),
        ("--point", point, exp.POINTS),
        ("--reortho", reortho, REORTHO),
        ("--probe", probe, PROBES),
        ("--exact", exact, ("auto", "yes", "no")),
        ("--dtype", dtype, ("float32", "float64")),
    ):
        _choice(name, value, valid)
    if probes < 2:
        _fail(f"--probes {probes}: need >= 2 probes (the error bar is their spread)")
    if steps < 1:
        _fail(f"--lanczos-steps {steps}: must be an integer >= 1")
    if batch_size is not None and batch_size < 1:
        _fail(f"--probe-batch {batch_size}: must be an integer >= 1")
    if dim is not None and dim < (2 if model == "pspin" else 1):
        _fail(f"--dim {dim}: must be an integer >= {2 if model == 'pspin' else 1}")
    _positive("--lr", lr)
    _positive("--sigma", sigma)
    for option, number in (("--shift", shift), ("--threshold", threshold)):
        if not math.isfinite(number):
            _fail(f"{option} must be a finite number, got {number}")
    if dim is None:
        dim = 1000 if model == "goe" else 100
    multi, primary = _parse_scale(devices, platform, coordinator, num_processes, process_id)
    _setup_jax()  # before the config: dtype float64 needs x64 (no backend is initialised here)
    try:
        config = exp.SpectrumConfig(
            model=model,
            data=data,
            width=width,
            depth=depth,
            input_dim=input_dim,
            num_samples=samples,
            train_steps=train_steps,
            learning_rate=lr,
            dim=dim,
            shift=shift,
            p=p,
            point=point,
            starts=starts,
            probes=probes,
            steps=steps,
            probe=probe,
            reortho=reortho,
            batch_size=batch_size,
            threshold=threshold,
            sigma=sigma,
            exact=exact,
            exact_max=exact_max,
            dtype=dtype,
            seed=seed,
            devices=devices,
            platform=platform,
            eps=tuple(eps_list),
            eps_rel=eps_rel,
            degree=degree,
            count_probes=count_probes,
        )
    except ValueError as e:
        msg = str(e).removeprefix("spectrum: ")
        _fail(f"--dim {dim} --p {p}: {msg}" if msg.startswith(f"{model}:") else _as_option(msg, _SPECTRUM_FIELDS))
    n = config.num_params
    if reortho == "full" and steps > n:
        _fail(f"--lanczos-steps {steps}: must be <= N = {n:,} with --reortho full (or use --reortho none)")
    try:
        exp.check_memory(config, _available_memory())
    except ValueError as e:
        _fail(str(e))
    used = _setup_scale(devices, platform, coordinator, num_processes, process_id)
    if primary:
        _out_dir(out)

    from sim.io import Output, run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(2, f"spectrum ({model}, N = {n:,})")
    try:
        with bar:
            result = exp.run(config, progress=lambda k: bar.advance(task, k))
    except RuntimeError as e:  # e.g. no Newton start converged: nothing is written
        typer.echo(f"Error: {' '.join(str(e).removeprefix('spectrum: ').split())}", err=True)
        raise typer.Exit(1) from None
    wall = time.perf_counter() - t0
    if not primary:  # every process ran its share of the probes; process 0 holds the joint result and writes it
        return
    info = result.info
    keys = (
        "negative_fraction",
        "negative_fraction_stderr",
        "negative_fraction_lower",
        "negative_fraction_upper",
        "min_eigenvalue",
        "min_eigenvalue_residual",
        "max_eigenvalue",
        "max_eigenvalue_residual",
        "exact_negative_fraction",
        "exact_min_eigenvalue",
        "exact_max_eigenvalue",
        "density_l1",
        "theory_negative_fraction",
    )
    top = {k: info[k] for k in keys if k in info}
    with Output(out) as o:
        o.csv("density.csv", result.rows)
        o.csv("ritz.csv", result.tables["ritz"])
        if "exact_histogram" in result.tables:
            o.csv("exact_histogram.csv", result.tables["exact_histogram"])
            o.csv("exact_eigenvalues.csv", result.tables["exact_eigenvalues"])
        if "counts" in result.tables:
            o.csv("counts.csv", result.tables["counts"])
            top["counts"] = result.tables["counts"]
            top["counts_info"] = info["counts_info"]
        if plots:
            from sim.plots import save, style
            from sim.plots import spectrum as ps

            with style():
                save(ps.fig_density([(None, ps.density_series(result.rows, result.tables, info), info)]), o, "spectrum")
        meta = run_metadata("hdsim spectrum", config.to_json(), seed=seed, wall_seconds=wall, info=info)
        o.json("spectrum.json", {**top, "num_params": n, "timings": info["seconds"], **meta})
        written = o.staged_names()
    exact_txt = f" (exact {info['exact_negative_fraction']:.4f})" if "exact_negative_fraction" in info else ""
    typer.echo(
        f"{model} N={n:,}: negative fraction {info['negative_fraction']:.4f} +- "
        f"{info['negative_fraction_stderr']:.4f}{exact_txt}; eigenvalues in [{info['min_eigenvalue']:.5g}, "
        f"{info['max_eigenvalue']:.5g}]"
    )
    for r in result.tables.get("counts", []):
        typer.echo(
            f"eps {r['eps']:.3g}{' ||H||' if eps_rel else ''}: N- {r['negative_fraction']:.4f} "
            f"[{r['negative_fraction_lower']:.4f}, {r['negative_fraction_upper']:.4f}], N0 {r['zero_fraction']:.4f} "
            f"[{r['zero_fraction_lower']:.4f}, {r['zero_fraction_upper']:.4f}], N+ {r['positive_fraction']:.4f}"
        )
    typer.echo(
        f"{info['seconds'].get('slq_run', 0.0):.2f} s SLQ ({probes} probes x {steps} steps on {len(used)} "
        f"{used[0].platform} device(s){f' in {num_processes} processes' if multi else ''}); wrote {len(written)} "
        f"files to {out}"
    )


# ---- hdsim scaling (learning curves and power laws, issue 11) ----


def _parse_sizes(name: str, text: str):
    """A --dims-style list (N, A:B, A:B:K log-spaced) for --n / --params."""
    from sim.dims import DimsError, parse_dims

    try:
        return parse_dims(text)
    except DimsError as e:
        _fail(str(e).replace("--dims", name, 1).replace("dimensions", "values"))


@app.command()
def scaling(
    data: Annotated[
        str,
        typer.Option(
            help="Data: powerlaw (lambda_i = i^-alpha, target power i^-beta), isotropic "
            "(alpha = 0, |w|^2 = 1), digits (scikit-learn's), mnist1d (pip install mnist1d)."
        ),
    ] = "powerlaw",
    learner: Annotated[
        str,
        typer.Option(
            help="Learner: linear (ridge / min-norm least squares), features (P random "
            "features), kernel (kernel ridge regression)."
        ),
    ] = "linear",
    alpha: Annotated[float, typer.Option(help="powerlaw: covariance eigenvalues i^-alpha, alpha > 0.")] = 1.5,
    beta: Annotated[float, typer.Option(help="powerlaw: target power per mode i^-beta, beta > 1.")] = 2.0,
    noise: Annotated[float, typer.Option(help="Label-noise variance sigma^2 >= 0 (synthetic data only).")] = 0.0,
    ridge: Annotated[float, typer.Option(help="Ridge delta >= 0 added to the Gram matrix (0: minimum norm).")] = 0.0,
    n: Annotated[
        str, typer.Option("--n", help="Training-set sizes >= 2: comma list, A:B, A:B:K (K log-spaced).")
    ] = "16:1024:7",
    params: Annotated[
        str,
        typer.Option(
            help="Features P (linear on synthetic data: the data dimension; features: "
            "random features; ignored by kernel and by linear on real data)."
        ),
    ] = "4096",
    seeds: Annotated[int, typer.Option(help="Independent draws per point, >= 1 (>= 2 for error bars).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    modes: Annotated[
        int, typer.Option(help="powerlaw/isotropic with features or kernel: data dimension, >= 1.")
    ] = 2048,
    activation: Annotated[str, typer.Option(help="features: relu, tanh or linear (random projections).")] = "relu",
    kernel: Annotated[
        str, typer.Option(help="kernel: auto (linear on synthetic data, rbf on real data), linear, rbf.")
    ] = "auto",
    n_test: Annotated[int, typer.Option(help="Test samples per draw, >= 1.")] = 500,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/scaling"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
):
    """Learning curves: test loss against n (and P), measured over seeds and predicted from the spectrum."""
    from sim.experiments import scaling as exp

    _choice("--data", data, exp.DATA)
    _choice("--learner", learner, exp.LEARNERS)
    ns = _parse_sizes("--n", n)
    ps = _parse_sizes("--params", params)
    try:
        config = exp.ScalingConfig(
            data=data,
            learner=learner,
            alpha=alpha,
            beta=beta,
            noise=noise,
            ridge=ridge,
            ns=tuple(ns),
            params=tuple(ps),
            modes=modes,
            activation=activation,
            kernel=kernel,
            seeds=seeds,
            seed=seed,
            n_test=n_test,
        )
    except ValueError as e:
        _fail(str(e))
    _setup_jax()
    _out_dir(out)

    from sim.io import Output, run_metadata

    t0 = time.perf_counter()
    sweep = len(ps) if learner == "features" or (learner == "linear" and data in ("powerlaw", "isotropic")) else 1
    bar, task = _progress(sweep, f"scaling {data} {learner}")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    info = result.info
    with Output(out) as o:
        o.csv("scaling.csv", result.rows)
        if plots:
            from sim.plots import save, style
            from sim.plots import scaling as psc

            with style():
                save(psc.fig_learning_curves([(None, result.rows, info)]), o, "scaling_learning_curve")
                if len({r["params"] for r in result.rows}) >= 2:
                    save(psc.fig_params(result.rows), o, "scaling_params")
        meta = run_metadata("hdsim scaling", config.to_json(), seed=seed, wall_seconds=wall, info=info)
        o.json(
            "scaling.json",
            {
                "exponent_n": info["exponent_n"],
                "theory_exponent_n": info["theory_exponent_n"],
                "exponent_params": info.get("exponent_params"),
                **meta,
            },
        )
        written = o.staged_names()
    typer.echo(f"{'P':>6} {'n':>7} {'excess risk':>24} {'theory':>10} {'test loss':>10} {'train loss':>10}")
    for r in result.rows:
        typer.echo(
            f"{r['params']:>6} {r['n']:>7} {r['excess_risk']:>12.5g} ± {r['excess_risk_stderr']:<9.2g} "
            f"{r['theory_excess_risk']:>10.5g} {r['test_loss']:>10.5g} {r['train_loss']:>10.3g}"
        )
    b_th = info["theory_exponent_n"]
    for p, f in info["exponent_n"].items():
        if f["exponent"] is not None:
            typer.echo(
                f"P = {p}: excess risk ~ n^-b, b = {f['exponent']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}] (95%); "
                f"theory {'n/a' if b_th is None else f'{b_th:.3f}'} ({info['theory_regime']})"
                + (
                    f", theory's slope over these n {f['theory_slope_over_range']:.3f}"
                    if f["theory_slope_over_range"] is not None
                    else ""
                )
            )
    for note in info["notes"]:
        typer.echo(note)
    typer.echo(f"wrote {len(written)} files to {out} in {wall:.1f} s")


# ---- hdsim train (networks trained on real data, issue 12) ----


@app.command()
def train(
    data: Annotated[
        str,
        typer.Option(
            help="Data: digits (scikit-learn's), mnist1d (pip install mnist1d), teacher "
            "(Gaussian inputs labelled by a random tanh MLP)."
        ),
    ] = "digits",
    widths: Annotated[
        str, typer.Option(help="Hidden widths: comma list, A:B, A:B:K (K log-spaced).")
    ] = "32,64,128,256",
    depth: Annotated[int, typer.Option(help="Hidden layers, >= 1.")] = 1,
    param: Annotated[str, typer.Option(help="Parameterisation: standard, ntk or mup (mean field).")] = "ntk",
    optimizer: Annotated[str, typer.Option(help="gd (full batch), sgd or adam (optax).")] = "gd",
    lr: Annotated[float, typer.Option(help="Learning rate, > 0.")] = 0.5,
    steps: Annotated[int, typer.Option(help="Optimisation steps, >= 1.")] = 500,
    seeds: Annotated[int, typer.Option(help="Networks per width (trained at once), >= 1 (>= 2 for pairs).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    n_train: Annotated[int, typer.Option(help="Training samples, >= 2.")] = 256,
    n_test: Annotated[int, typer.Option(help="Test samples, >= 1.")] = 497,
    batch_size: Annotated[int, typer.Option(help="sgd/adam mini-batch size, >= 1.")] = 64,
    checkpoints: Annotated[int, typer.Option(help="Hessian index along training at this many + 1 steps.")] = 5,
    hessian_steps: Annotated[int, typer.Option(help="Lanczos steps per probe (0: no Hessian index).")] = 60,
    hessian_probes: Annotated[int, typer.Option(help="SLQ probes, >= 1.")] = 6,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/train"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
):
    """Train MLP ensembles across widths: relative change, pair distances, barriers, Hessian index."""
    from sim.experiments import train as exp

    _choice("--data", data, exp.DATA)
    ws = _parse_sizes("--widths", widths)
    names = (
        "data",
        "widths",
        "depth",
        "param",
        "optimizer",
        "lr",
        "steps",
        "seeds",
        "seed",
        "n_train",
        "n_test",
        "batch_size",
        "checkpoints",
        "hessian_steps",
        "hessian_probes",
    )
    with _ConfigErrors({n: "--" + n.replace("_", "-") for n in names}):
        config = exp.TrainConfig(
            data=data,
            widths=tuple(ws),
            depth=depth,
            param=param,
            optimizer=optimizer,
            lr=lr,
            steps=steps,
            seeds=seeds,
            seed=seed,
            n_train=n_train,
            n_test=n_test,
            batch_size=batch_size,
            checkpoints=checkpoints,
            hessian_steps=hessian_steps,
            hessian_probes=hessian_probes,
        )
    _setup_jax()
    _out_dir(out)

    from sim.io import run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(len(set(ws)), f"train {data} {param}")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    info = result.info

    def plot(o):
        from sim.plots import save, style
        from sim.plots import train as pt

        with style():
            series = [(param, result.rows, info)]
            save(pt.fig_rel_change(series), o, "train_rel_change")
            if seeds >= 2:
                save(pt.fig_pairs(series), o, "train_pairs")
                save(pt.fig_barrier(series), o, "train_barrier")
            if result.tables["index"]:
                save(pt.fig_index([(param, result.tables["index"])]), o, "train_index")

    meta = run_metadata("hdsim train", config.to_json(), seed=seed, wall_seconds=wall, info=info)
    tables = {"train.csv": result.rows}
    if result.tables["index"]:
        tables["train_index.csv"] = result.tables["index"]
    written, error = _write_run(
        out,
        "train.json",
        tables,
        {"exponent": info["exponent"], "theory_exponent": info["theory_exponent"], **meta},
        plot if plots else None,
    )
    typer.echo(
        f"{'width':>6} {'params':>8} {'train':>9} {'test':>9} {'error':>6} {'rel.change':>10} "
        f"{'pair T/0':>8} {'barrier':>9} {'aligned':>9} {'neg.frac':>14}"
    )
    for r in result.rows:
        ratio = r["pair_dist_trained"] / r["pair_dist_init"] if r["pair_dist_init"] == r["pair_dist_init"] else math.nan
        typer.echo(
            f"{r['width']:>6} {r['params']:>8} {r['train_loss']:>9.4g} {r['test_loss']:>9.4g} "
            f"{r['test_error']:>6.3f} {r['rel_change']:>10.4g} {ratio:>8.4f} {r['barrier']:>9.3g} "
            f"{r['barrier_aligned']:>9.3g} {r['negative_fraction']:>7.3f} ± {r['negative_fraction_stderr']:<5.2g}"
        )
    f, th = info["exponent"], info["theory_exponent"]
    if f:
        typer.echo(
            f"rel_change ~ width^b: b = {f['exponent']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}] (95%); "
            f"theory {'none' if th is None else f'{th:g}'}"
        )
    for note in info["notes"]:
        typer.echo(note)
    _report_plot_error(error, out)
    typer.echo(f"wrote {len(written)} files to {out} in {wall:.1f} s")


# ---- hdsim batch (data-parallel training and the critical batch size, issue 15) ----


def _parse_lr(text: str | None):
    if text is None or text == "optimal":
        return text
    try:
        value = float(text)
    except ValueError:
        _fail(f"--lr {text!r}: give 'optimal' or a number > 0")
    if not (math.isfinite(value) and value > 0):
        _fail(f"--lr {text!r}: give 'optimal' or a finite number > 0")
    return value


def _batch_plots(o, config, result):
    from sim.plots import batch as pb
    from sim.plots import save, style

    note = f"{config.data}, {config.model}, {config.seeds} seeds"
    with style():
        save(pb.fig_steps(result.rows, result.info, target_loss=config.target_loss, note=note), o, "batch_steps")
        save(pb.fig_noise(result.tables["noise"], result.info, note=note), o, "batch_noise")


@app.command()
def batch(
    data: Annotated[
        str, typer.Option(help="Data: isotropic, powerlaw (Gaussian streams for --model linear), digits, mnist1d.")
    ] = "isotropic",
    model: Annotated[str, typer.Option(help="Model: linear or mlp (one hidden layer of --width units).")] = "linear",
    dim: Annotated[int, typer.Option(help="Features of the synthetic data, >= 1.")] = 100,
    batch_sizes: Annotated[
        str, typer.Option(help="Batch sizes: comma list, A:B, A:B:K (K log-spaced).")
    ] = "1,10,101,1010",
    target_loss: Annotated[
        float, typer.Option(help="Target loss as a fraction of the loss at the start, in (0, 1).")
    ] = 0.01,
    seeds: Annotated[int, typer.Option(help="Independent runs per batch size (trained at once), >= 1.")] = 8,
    lr: Annotated[
        str | None,
        typer.Option(
            help="'optimal' (per-step optimum; linear model on synthetic data, its default) or a fixed rate (default 0.5 elsewhere)."
        ),
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Step cap per batch size (an unreached target is reported).")] = 2000,
    width: Annotated[int, typer.Option(help="mlp: hidden units, >= 1.")] = 64,
    n_train: Annotated[int, typer.Option(help="mlp on synthetic data: training samples, >= 2.")] = 4096,
    alpha: Annotated[float, typer.Option(help="powerlaw: covariance eigenvalues i^-alpha, alpha > 0.")] = 1.5,
    beta: Annotated[float, typer.Option(help="powerlaw: target power per mode i^-beta, beta > 1.")] = 2.0,
    noise: Annotated[float, typer.Option(help="Label-noise variance sigma^2 >= 0 (synthetic data only).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed (integer >= 0).")] = 0,
    out: Annotated[Path, typer.Option(help="Output directory (created if needed).")] = Path("out/batch"),
    plots: Annotated[bool, typer.Option(help="Write the figures (PNG and SVG).")] = True,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Devices the batch is split over (1, 2, 4 or 8; default 1, or one per process); same numbers for any count."
        ),
    ] = None,
    coordinator: CoordinatorOption = None,
    num_processes: ProcessesOption = None,
    process_id: ProcessIdOption = None,
):
    """Steps and examples to a target loss against the batch size, the gradient noise scale, B_crit."""
    from sim.experiments import batch as exp

    _choice("--data", data, exp.DATA)
    _choice("--model", model, exp.MODELS)
    sizes = _parse_sizes("--batch-sizes", batch_sizes)
    rate = _parse_lr(lr)
    multi, primary = _parse_scale(devices, None, coordinator, num_processes, process_id)
    n_dev: int = devices if devices is not None else (num_processes or 1)
    names = ("data", "model", "dim", "batch_sizes", "target_loss", "seeds", "lr", "max_steps", "width", "n_train")
    with _ConfigErrors({n: "--" + n.replace("_", "-") for n in names}):
        config = exp.BatchConfig(
            data=data,
            model=model,
            dim=dim,
            batch_sizes=tuple(sizes),
            target_loss=target_loss,
            seeds=seeds,
            devices=n_dev,
            seed=seed,
            lr=rate,
            max_steps=max_steps,
            alpha=alpha,
            beta=beta,
            noise=noise,
            width=width,
            n_train=n_train,
        )
    _setup_jax()
    # multi-process: each process brings its own device(s); one process: split the CPU into n_dev devices
    used = _setup_scale(None if multi or n_dev == 1 else n_dev, None, coordinator, num_processes, process_id)
    if len(used) < n_dev:
        _fail(f"--devices {n_dev}: only {len(used)} device(s) available")
    if primary:
        _out_dir(out)

    from sim.io import run_metadata

    t0 = time.perf_counter()
    bar, task = _progress(len(sizes), f"batch {data} {model}")
    with bar:
        result = exp.run(config, progress=lambda k: bar.advance(task, k))
    wall = time.perf_counter() - t0
    if not primary:  # every process trained its share; process 0 writes
        return
    info = result.info
    meta = run_metadata("hdsim batch", config.to_json(), seed=seed, wall_seconds=wall, info=info)
    written, error = _write_run(
        out,
        "batch.json",
        {"batch.csv": result.rows, "batch_noise.csv": result.tables["noise"]},
        {"fit": info["fit"], "run_averaged_b_simple": info["run_averaged_b_simple"], **meta},
        (lambda o: _batch_plots(o, config, result)) if plots else None,
    )
    typer.echo(
        f"{'B':>6} {'steps':>6} {'± SE':>6} {'theory':>6} {'examples':>9} {'reached':>7} {'B_simple':>16} {'B_noise':>16}"
    )
    for r in result.rows:
        st = "-" if r["steps"] is None else str(r["steps"])
        se = "" if r["steps_stderr"] is None else f"{r['steps_stderr']:.2g}"
        th = "" if r["theory_steps"] is None else str(r["theory_steps"])
        ex = "-" if r["examples"] is None else str(r["examples"])
        typer.echo(
            f"{r['batch_size']:>6} {st:>6} {se:>6} {th:>6} {ex:>9} {r['reached_seeds']:>3}/{r['seeds']:<3} "
            f"{r['b_simple']:>8.4g} ± {r['b_simple_stderr']:<5.2g} {r['b_noise']:>8.4g} ± {r['b_noise_stderr']:<5.2g}"
        )
    f = info["fit"]
    if f:
        lo, hi = f["b_crit_ci"]
        ci = f" [{lo:.4g}, {hi:.4g}] (95%)" if lo is not None else ""
        typer.echo(
            f"fit (S/S_min - 1)(E/E_min - 1) = 1: S_min = {f['s_min']:.4g}, E_min = {f['e_min']:.4g}, "
            f"B_crit = {f['b_crit']:.4g}{ci}; run-averaged B_simple = {info['run_averaged_b_simple']:.4g}"
        )
    for n in info["notes"]:
        typer.echo(n)
    where = f"{len(used)} {used[0].platform} device(s)" + (f" in {num_processes} processes" if multi else "")
    _report_plot_error(error, out)
    typer.echo(f"wrote {len(written)} files to {out} in {wall:.1f} s on {where}")


def main() -> None:
    """Console-script entry point (``hdsim``)."""
    app()


if __name__ == "__main__":
    main()
