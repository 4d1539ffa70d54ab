"""benchmarks/_report.py: workers really run on the requested cores with the requested BLAS pools."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _report  # noqa: E402

CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {bench!r})
    import numpy  # loads OpenBLAS, sized by the environment the parent chose
    import _report
    from threadpoolctl import threadpool_info
    _report.emit({{"affinity": sorted(os.sched_getaffinity(0)), "openblas": os.environ["OPENBLAS_NUM_THREADS"],
                  "xla": os.environ.get("XLA_FLAGS", ""), "pools": [p["num_threads"] for p in threadpool_info()],
                  "argv": sys.argv[1:]}})
    """
)


@pytest.mark.parametrize("threads", [1, len(_report.available_cpus())])
def test_worker_runs_on_the_requested_cores_and_pools(threads):
    pytest.importorskip("threadpoolctl")
    code = CHILD.format(bench=str(Path(_report.__file__).parent))
    r = _report.run_worker([sys.executable, "-c", code], threads, echo=False)
    assert r["affinity"] == _report.available_cpus()[:threads]
    assert r["openblas"] == str(threads)
    assert r["pools"] and all(n == threads for n in r["pools"])
    assert r["argv"] == ["--worker-threads", str(threads)]
    assert ("--xla_cpu_multi_thread_eigen=false" in r["xla"].split()) == (threads == 1)


def test_worker_env_overrides_an_inherited_thread_variable():
    env = _report.worker_env(2, {"OPENBLAS_NUM_THREADS": "1", "XLA_FLAGS": "--xla_foo=1"})
    assert env["OPENBLAS_NUM_THREADS"] == "2" and env["OMP_NUM_THREADS"] == "2"
    assert env["XLA_FLAGS"] == "--xla_foo=1"
    one = _report.worker_env(1, {"XLA_FLAGS": "--xla_foo=1"})
    assert one["XLA_FLAGS"].split() == ["--xla_foo=1", *_report.XLA_ONE_THREAD_FLAGS]


def test_failed_worker_raises():
    with pytest.raises(RuntimeError, match="exit code 3"):
        _report.run_worker([sys.executable, "-c", "raise SystemExit(3)"], 1, echo=False)


def test_thread_counts():
    n = len(_report.available_cpus())
    assert _report.thread_counts("1,all") == ([1] if n == 1 else [1, n])
    with pytest.raises(ValueError, match="between 1 and"):
        _report.thread_counts(str(n + 1))


def test_timed_separates_the_first_call():
    calls = []

    def fn():
        calls.append(len(calls))
        return len(calls)

    t, out = _report.timed(fn, repeat=3)
    assert calls == [0, 1, 2, 3] and out == 4
    assert len(t["runs"]) == 3 and t["warm"] == min(t["runs"])
    t0, _ = _report.timed(fn, repeat=0)
    assert math.isnan(t0["warm"])


def test_speedup_wording():
    assert _report.format_speedup(_report.speedup(4.0, 2.0)) == "2.00x"
    assert _report.format_speedup(_report.speedup(1.0, 4.0)) == "0.25x (hdsim 4x slower)"


def test_comparison_quotes_each_side_at_its_best():
    runs = {
        1: {"times": {"hdsim": {"warm": 2.0, "first": 5.0}, "np": {"warm": 1.0, "first": 1.0}}},
        2: {"times": {"hdsim": {"warm": 1.0, "first": 4.0}, "np": {"warm": 3.0, "first": 3.0}}},
    }
    text = _report.format_comparison(runs, "hdsim", "np")
    assert "each at its best (warm): hdsim 1 s on 2 thread(s), np 1 on 1: speed-up 1.00x" in text
    assert "compile-inclusive 0.20x (hdsim 5x slower)" in text


def test_small_speedups_keep_their_digits():
    assert _report.format_speedup(0.0123) == "0.012x (hdsim 81.3x slower)"


def test_save_runs_writes_command_and_results(tmp_path):
    out = tmp_path / "runs.json"
    _report.save_runs(str(out), "benchmarks/bench_x.py", ["--quick"], {1: {"times": {"hdsim": {"warm": 1.0}}}})
    import json

    assert json.loads(out.read_text()) == {
        "command": ["python", "benchmarks/bench_x.py", "--quick"],
        "runs": {"1": {"times": {"hdsim": {"warm": 1.0}}}},
    }
    _report.save_runs(None, "x", [], {})  # no --json: nothing written, no error
