"""Helpers for tests that start fresh Python processes: forced CPU device counts, jax.distributed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240  # seconds for any subprocess: a hung collective fails the test instead of the suite


def fresh_env(**extra) -> dict:
    """This process's environment for a child that picks its own backend, devices and thread pool."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for k in ("JAX_PLATFORMS", "XLA_FLAGS", "NPROC"):
        env.pop(k, None)
    env.update(extra)
    return env


def run_on_devices(code: str, *args: str, devices: int = 8) -> subprocess.CompletedProcess:
    """``python -c code *args`` in a fresh process whose CPU is split into ``devices`` virtual devices;
    asserts it exits 0 (a hung collective fails after TIMEOUT) and returns the completed process."""
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=fresh_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def stderr_of(result) -> str:
    """A CliRunner result's stderr (older click mixes it into the output)."""
    try:
        return result.stderr
    except (ValueError, AttributeError):
        return result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(args: list[str], out_dirs: list[Path]) -> list[str]:
    """``python cli.py *args`` as processes 0 and 1 of one jax.distributed run on 127.0.0.1, writing to
    ``out_dirs[i]``; asserts both exit 0 and returns their stdouts."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "cli.py",
                *args,
                "--out",
                str(out_dirs[i]),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=ROOT,
            env=fresh_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


def run_two_processes_and_one(args: list[str], tmp_path: Path, *, silent: str | None = None) -> tuple[Path, Path]:
    """``hdsim *args`` twice: as processes 0 and 1 of one jax.distributed run (``tmp_path/p0``, ``p1``) and
    in this process (``tmp_path/single``). Asserts that the two-process run says so, that only process 0
    writes (process 1 makes no directory and prints no ``silent`` line) and that the single run exits 0;
    returns ``(p0, single)`` for the caller to compare their files."""
    from typer.testing import CliRunner

    from cli import app

    outs = run_two_processes(args, [tmp_path / "p0", tmp_path / "p1"])
    assert "on 2 cpu device(s) in 2 processes" in outs[0]
    assert not (tmp_path / "p1").exists()  # only process 0 writes
    if silent is not None:
        assert silent not in outs[1]
    single = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "single")])
    assert single.exit_code == 0, stderr_of(single)
    return tmp_path / "p0", tmp_path / "single"


def assert_missing_backend_fails(args: list[str], out: Path, platform: str = "tpu") -> None:
    """``cli.py *args --platform <platform>`` in a fresh process (the platform is applied before JAX
    initialises its backends) fails with one line naming the missing backend, exit 2, nothing written."""
    r = subprocess.run(
        [sys.executable, "cli.py", *args, "--platform", platform, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=fresh_env(),
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"Error: --platform {platform}: no {platform} backend available (have: cpu"), r.stderr
    assert not out.exists()
