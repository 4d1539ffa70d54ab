"""Shared plumbing for hdsim's benchmarks: thread control, environment report, first and warm times, ratios.

Every benchmark compares hdsim with a baseline on the same workload. To make the comparison fair and
the numbers honest, each script

* runs each measurement in a **fresh worker process** (``run_worker``): the first hdsim call there pays
  tracing and XLA compilation, as a CLI user does, and is reported beside the warm time (``timed``);
* runs hdsim and the baseline **in the same worker, with the same cores and thread pools**
  (``worker_env``/``run_worker``: CPU affinity plus ``OPENBLAS_*``/``OMP_*``/``MKL_*`` and XLA's
  CPU thread flags, set before the child imports numpy or JAX, since none of them can be changed
  afterwards), for one thread and for all cores, and also quotes each side at its best setting;
* prints the BLAS/LAPACK configuration (``threadpoolctl.threadpool_info()``), the thread variables in
  force, the load average and the versions (``environment``/``format_environment``);
* prints the ratio, baseline time / hdsim time (> 1: hdsim faster; < 1: hdsim slower, said in words).

The parent (the script run without ``--worker``) never imports JAX, so it never competes with its
workers. Typical use in a benchmark script::

    import _report                       # benchmarks/ is on sys.path when the script is run directly

    def worker(args):                    # runs in a fresh process with its thread limits already set
        import jax, numpy as np          # imported here, after the parent fixed the environment
        ...
        t_hd, out_hd = _report.timed(lambda: jax.block_until_ready(hdsim_fn()), args.repeat)
        t_np, out_np = _report.timed(lambda: baseline_fn(), args.repeat)
        ...check out_hd against out_np...
        _report.emit({"env": _report.environment(), "times": {"hdsim": t_hd, "numpy": t_np}})

    def main():
        args = parser.parse_args()        # parser has _report.add_arguments(parser)
        if args.worker:
            return worker(args)
        runs = {t: _report.run_worker(_report.worker_argv(__file__), t) for t in _report.thread_counts(args.threads)}
        print(_report.format_environment(next(iter(runs.values()))["env"]))
        print(_report.format_comparison(runs, "hdsim", "numpy"))

The helper itself imports only the standard library (threadpoolctl, numpy, scipy, jax are looked up
in ``sys.modules``/imported lazily in ``environment``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: Environment variables that size BLAS/OpenMP thread pools; set for every worker.
THREAD_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: Prefixes of the variables printed as "in force" (thread pools, XLA and JAX configuration).
REPORTED_PREFIXES = ("OPENBLAS_", "GOTO", "OMP_", "MKL_", "BLIS_", "VECLIB_", "NUMEXPR_", "XLA_", "JAX_", "TF_CPP")
#: XLA CPU flags for one thread: no multithreaded Eigen kernels. CPU affinity (set as well) is what
#: actually bounds the process to one core; this keeps XLA from oversubscribing it. (TensorFlow's
#: ``intra_op_parallelism_threads`` is not an XLA flag: XLA_FLAGS ignored it, so it is not passed.)
XLA_ONE_THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)
#: Prefix of the one stdout line that carries a worker's results to its parent.
MARKER = "@@hdsim-bench-json "
#: Worker flag added by ``add_arguments`` and ``worker_argv``.
WORKER_FLAG = "--worker"


# ----------------------------------------------------------------------------- threads and workers


def available_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def thread_counts(spec: str) -> list[int]:
    """Parse a ``--threads`` value: comma-separated counts and/or ``all``, e.g. ``"1,all"`` -> ``[1, 2]``.

    Raises:
        ValueError: a count below 1 or above the number of available CPUs.
    """
    ncpu = len(available_cpus())
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip().lower()
        k = ncpu if part == "all" else int(part)
        if not 1 <= k <= ncpu:
            raise ValueError(f"--threads: {part!r} is not between 1 and the {ncpu} available CPUs (or 'all')")
        if k not in out:
            out.append(k)
    return out


def add_arguments(parser: argparse.ArgumentParser, *, repeat: int = 3) -> None:
    """Add the common options: ``--threads``, ``--repeat``, ``--json`` and the internal ``--worker``/``--worker-threads``."""
    parser.add_argument(
        "--threads",
        default="1,all",
        help="thread/core counts to run both sides with, comma-separated or 'all' (default 1,all)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=repeat,
        help=f"warm timed runs of each side after the first call; the shortest counts (default {repeat})",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="also write every worker's results (times, environment, arguments) to PATH",
    )
    parser.add_argument(WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, default=None, help=argparse.SUPPRESS)


def worker_env(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a worker limited to ``threads`` cores.

    Every BLAS/OpenMP pool variable is set to ``threads`` (also for "all cores", so that a value
    inherited from the shell cannot silently make one side single-threaded). With fewer threads than
    CPUs, XLA's CPU thread flags are appended to ``XLA_FLAGS`` for one thread; CPU affinity
    (``run_worker``) bounds every pool either way. ``JAX_PLATFORMS`` defaults to ``cpu``.
    """
    env = dict(os.environ if base is None else base)
    for var in THREAD_VARS:
        env[var] = str(threads)
    if threads == 1:
        flags = env.get("XLA_FLAGS", "").split()
        flags += [f for f in XLA_ONE_THREAD_FLAGS if f not in flags]
        env["XLA_FLAGS"] = " ".join(flags)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker_argv(script: str, argv: Iterable[str] | None = None) -> list[str]:
    """``[python, script, *argv, --worker]``: the script re-run as a worker with the parent's arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    return [sys.executable, os.path.abspath(script), *args, WORKER_FLAG]


def run_worker(argv: list[str], threads: int, *, echo: bool = True) -> dict:
    """Run ``argv`` in a fresh process on ``threads`` CPUs and return the dict the worker passed to ``emit``.

    The child gets ``worker_env(threads)``, ``--worker-threads threads`` and a CPU affinity of the
    first ``threads`` available CPUs (set by ``taskset`` before the child's interpreter starts, so before it loads any library).
    Its other stdout lines are echoed, indented, as they arrive; stderr passes through.

    Raises:
        RuntimeError: the worker failed or emitted no result.
    """
    cpus = available_cpus()[:threads]
    cmd = [*argv, "--worker-threads", str(threads)]
    result = None
    # The affinity is set by taskset before the child's Python starts (no preexec_fn: a fork hook in a
    # threaded parent, e.g. a test process that has loaded JAX, warns or deadlocks).
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("run_worker needs util-linux's taskset to pin a worker to its CPUs")
    pinned = [taskset, "--cpu-list", ",".join(str(c) for c in cpus), *cmd]
    with subprocess.Popen(pinned, env=worker_env(threads), stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(MARKER):
                result = json.loads(line[len(MARKER) :])
            elif echo:
                print(f"  [{threads} thr] {line}", end="", flush=True)
        rc = proc.wait()
    if rc != 0 or result is None:
        raise RuntimeError(f"worker on {threads} thread(s) failed (exit code {rc}): {' '.join(cmd)}")
    result["threads"] = threads
    result["cpus"] = cpus
    return result


def emit(result: Mapping[str, Any]) -> None:
    """Print a worker's result for ``run_worker`` (one JSON line; numpy scalars and arrays allowed)."""
    print(MARKER + json.dumps(result, default=_jsonable), flush=True)


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if hasattr(x, "_asdict"):
        return x._asdict()
    return str(x)


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[dict, Any]:
    """Time ``fn()`` once cold and ``repeat`` times warm; return ``({"first", "warm", "runs"}, last result)``.

    ``first`` is the first call's wall time: for a jitted hdsim function in a fresh process it includes
    tracing and compilation (what a CLI user pays). ``warm`` is the shortest of the ``repeat`` later
    calls (timing noise only ever adds), ``runs`` all of them. ``fn`` must block until its result is
    computed (wrap JAX results in ``jax.block_until_ready``). ``repeat=0``: only the first call, and
    ``warm`` is NaN.
    """
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t)
    return {"first": first, "warm": min(runs) if runs else math.nan, "runs": runs}, out


# ----------------------------------------------------------------------------- environment


def timed_cpu(fn: Callable[[], Any], repeat: int = 3) -> tuple[dict, Any]:
    """``timed`` plus the CPU time of the first call and the shortest warm one (``cpu_first``,
    ``cpu_warm``): with other jobs on the cores, CPU time is the cleaner measure of one-thread work."""
    cpu = []

    def wrapped():
        c = time.process_time()
        out = fn()
        cpu.append(time.process_time() - c)
        return out

    t, out = timed(wrapped, repeat)
    t["cpu_first"] = cpu[0]
    t["cpu_warm"] = min(cpu[1:]) if len(cpu) > 1 else cpu[0]
    return t, out


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover
        return (math.nan, math.nan, math.nan)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """What the numbers depend on: CPU, affinity, load, versions, thread variables, BLAS pools, JAX setup.

    Call it in the worker after numpy/scipy/jax are imported (``threadpool_info`` lists only the BLAS
    and OpenMP libraries already loaded). Nothing is imported that the caller has not imported, except
    threadpoolctl.
    """
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": available_cpus(),
        "load_average": load_average(),
        "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(REPORTED_PREFIXES)},
        "versions": {},
    }
    for name in ("numpy", "scipy", "jax", "jaxlib", "torch"):
        mod = sys.modules.get(name)
        if mod is not None:
            env["versions"][name] = getattr(mod, "__version__", "?")
    try:
        from threadpoolctl import threadpool_info

        env["threadpools"] = [
            {
                k: p.get(k)
                for k in (
                    "internal_api",
                    "prefix",
                    "version",
                    "num_threads",
                    "threading_layer",
                    "architecture",
                    "filepath",
                )
            }
            for p in threadpool_info()
        ]
    except ImportError:
        env["threadpools"] = "threadpoolctl not installed (python -m pip install threadpoolctl)"
    jax = sys.modules.get("jax")
    if jax is not None:
        env["jax_devices"] = [str(d) for d in jax.devices()]
        env["jax_x64"] = bool(jax.config.jax_enable_x64)
        env["jax_compilation_cache_dir"] = jax.config.jax_compilation_cache_dir
    return env


def format_load() -> str:
    one, five, fifteen = load_average()
    n = os.cpu_count()
    busy = " (other jobs share these cores)" if one > 0.5 else ""
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {n} CPUs{busy}"


def format_environment(env: Mapping[str, Any]) -> str:
    """The ``environment()`` dict as a few readable lines."""
    lines = [
        f"CPU: {env['cpu']}, {env['cpu_count']} CPUs, worker affinity {env['affinity']}; python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "load average at the worker's end: " + ", ".join(f"{x:.2f}" for x in env["load_average"]),
        "variables in force: " + (", ".join(f"{k}={v}" for k, v in env["variables"].items()) or "none"),
    ]
    pools = env.get("threadpools")
    if isinstance(pools, str):
        lines.append(f"BLAS/LAPACK: {pools}")
    elif not pools:
        lines.append("BLAS/LAPACK: threadpoolctl found no loaded BLAS/OpenMP library")
    else:
        for p in pools:
            lines.append(
                f"BLAS/LAPACK: {p['internal_api']} {p['version']} ({p.get('threading_layer')}, "
                f"{p.get('architecture')}), {p['num_threads']} threads, {p['filepath']}"
            )
    if "jax_devices" in env:
        lines.append(
            f"JAX devices {env['jax_devices']}, x64 {env['jax_x64']}, persistent compilation cache "
            f"{env['jax_compilation_cache_dir'] or 'off'}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- ratios


def speedup(baseline_s: float, hdsim_s: float) -> float:
    """Baseline time / hdsim time: > 1 means hdsim is faster."""
    return baseline_s / hdsim_s if hdsim_s > 0 else math.nan


def format_speedup(r: float) -> str:
    """``3.20x`` when hdsim is faster; ``0.50x (hdsim 2x slower)`` when it is slower."""
    if not math.isfinite(r):
        return "n/a"
    shown = f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"
    return shown if r >= 1 else f"{shown} (hdsim {1 / r:.3g}x slower)"


def format_comparison(
    runs: Mapping[int, Mapping[str, Any]], hdsim: str, baseline: str, *, key: str = "times", unit: str = "s"
) -> str:
    """Per thread count and at each side's best: warm and first-call times and both speed-ups.

    ``runs`` maps a thread count to a worker's result, whose ``[key][side]`` is a ``timed`` dict.
    The compile-inclusive speed-up compares first calls (a one-shot user of each tool).
    """
    lines = []
    best = {}
    for threads, r in runs.items():
        th, tb = r[key][hdsim], r[key][baseline]
        lines.append(
            f"{threads} thread(s): {hdsim} warm {th['warm']:.4g} {unit} (first call incl. compile {th['first']:.4g}), "
            f"{baseline} warm {tb['warm']:.4g} (first {tb['first']:.4g}); speed-up warm "
            f"{format_speedup(speedup(tb['warm'], th['warm']))}, compile-inclusive "
            f"{format_speedup(speedup(tb['first'], th['first']))}; load {_fmt_load(r)}"
        )
        for side, t in ((hdsim, th), (baseline, tb)):
            for what in ("warm", "first"):
                if (side, what) not in best or t[what] < best[side, what][0]:
                    best[side, what] = (t[what], threads)
    if len(runs) > 1:
        for what in ("warm", "first"):
            (h, ht), (b, bt) = best[hdsim, what], best[baseline, what]
            lines.append(
                f"each at its best ({what}): {hdsim} {h:.4g} {unit} on {ht} thread(s), {baseline} "
                f"{b:.4g} on {bt}: speed-up {format_speedup(speedup(b, h))}"
            )
    return "\n".join(lines)


def _fmt_load(r: Mapping[str, Any]) -> str:
    la = r.get("env", {}).get("load_average")
    return "?" if la is None else f"{la[0]:.2f}"


def save_runs(path: str | None, script: str, argv: Iterable[str] | None, runs: Mapping[int, Any]) -> None:
    """``--json PATH``: write the command line and every worker's result (keyed by thread count)."""
    if path:
        args = list(sys.argv[1:] if argv is None else argv)
        write_json(path, {"command": ["python", script, *args], "runs": {str(k): v for k, v in runs.items()}})


def write_json(path: str, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=_jsonable)
        f.write("\n")
    os.replace(tmp, path)
