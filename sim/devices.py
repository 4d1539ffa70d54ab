"""Devices, meshes and processes: where the Monte Carlo work of a kernel runs.

A kernel that splits its sample axis over devices takes ``devices=`` (``None``: every device JAX
sees; an int N: the first N of them; a sequence of devices; or a ready 1-D ``Mesh``) and turns it
into a 1-D mesh with ``make_mesh``. Work is split into *aligned power-of-two blocks* (``block_size``;
``cyclic_blocks`` deals several smaller ones to each device in turn, so that shares stay balanced) and
the per-device partial results are combined with ``ordered_reduce`` (``ordered_reduce_blocks``) in a
fixed binary tree over the blocks, so
with counter-based keys (``fold_in`` of the sample index) a result is bit-identical for 1, 2, 8 ...
devices and for any number of processes.

Backends and processes must be chosen before JAX initialises its backends (the first array or
device query): ``select_platform`` and ``init_distributed`` check that and say so.

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "PLATFORMS",
    "AXIS",
    "backend_initialized",
    "select_platform",
    "split_host",
    "get_devices",
    "make_mesh",
    "replicated",
    "block_size",
    "cyclic_blocks",
    "ordered_reduce",
    "ordered_reduce_blocks",
    "parse_coordinator",
    "init_distributed",
    "is_primary",
]

#: backends ``select_platform`` accepts
PLATFORMS = ("cpu", "gpu", "tpu")
#: name of the mesh axis the sample axis is split along
AXIS = "samples"


def backend_initialized() -> bool:
    """Whether JAX has already initialised its backends (then the platform can no longer change)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):  # pragma: no cover - private layout changed: assume yes
        return True


def select_platform(platform: str | None) -> list:
    """Use backend ``platform`` ("cpu", "gpu", "tpu"; None: JAX's default) and return its devices.

    Before backend initialisation this restricts JAX to that backend (``jax_platforms``), so an
    unavailable accelerator is never initialised; afterwards it only checks availability.

    Raises:
        ValueError: unknown platform name, or the backend is not available here (the message says
            which platforms are).
    """
    if platform is None:
        return jax.devices()
    if platform not in PLATFORMS:
        raise ValueError(f"select_platform: unknown platform {platform!r}; valid: {', '.join(PLATFORMS)}")
    if not backend_initialized():
        jax.config.update("jax_platforms", {"gpu": "cuda,rocm"}.get(platform, platform))
    try:
        return jax.devices(platform)
    except RuntimeError:
        if not backend_initialized() or jax.config.jax_platforms:  # type: ignore[attr-defined]  # JAX's flags are dynamic attributes
            jax.config.update("jax_platforms", None)  # let the message list what does work
        try:
            have = sorted({d.platform for d in jax.devices()})
        except RuntimeError:  # pragma: no cover - nothing at all
            have = []
        raise ValueError(f"no {platform} backend available (have: {', '.join(have) or 'none'})") from None


def split_host(count: int) -> bool:
    """Make the CPU backend present ``count`` devices (one per core, say) so that CPU runs can be
    split like accelerator runs. Only possible before backend initialisation; returns whether it
    took effect (False afterwards, or when XLA_FLAGS already fixes the CPU device count).

    Raises:
        ValueError: count < 1 or more than the machine's cores.
    """
    import os

    cores = os.cpu_count() or 1
    if int(count) != count or not 1 <= count <= cores:
        raise ValueError(f"split_host: count must be in 1..{cores} (the CPU cores), got {count!r}")
    if backend_initialized() or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    if "jax_num_cpu_devices" not in jax.config.values:  # pragma: no cover - older JAX
        return False
    jax.config.update("jax_num_cpu_devices", int(count))
    return True


def get_devices(count: int | None = None, *, platform: str | None = None, local: bool = False) -> list:
    """The first ``count`` devices of ``platform`` (None: all of them); ``local``: only those this
    process drives (for work placed device by device rather than through a global mesh).

    Raises:
        ValueError: count < 1, or more devices requested than there are.
    """
    devs = jax.devices(platform) if platform else jax.devices()
    if local:
        devs = [d for d in devs if d.process_index == jax.process_index()]
    if count is None:
        return list(devs)
    if int(count) != count or count < 1:
        raise ValueError(f"get_devices: count must be an integer >= 1, got {count!r}")
    if count > len(devs):
        raise ValueError(f"{count} devices requested but only {len(devs)} {devs[0].platform} device(s) available")
    return list(devs[: int(count)])


def make_mesh(devices=None, *, axis: str = AXIS) -> Mesh:
    """A 1-D mesh over ``devices`` (None: all; int N: the first N; a sequence; or a 1-D Mesh as is)."""
    if isinstance(devices, Mesh):
        if devices.devices.ndim != 1:
            raise ValueError(f"make_mesh: need a 1-D mesh, got axes {devices.axis_names}")
        return devices
    if devices is None or isinstance(devices, (int, np.integer)):
        devs = get_devices(None if devices is None else int(devices))
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("make_mesh: empty device list")
    return Mesh(np.array(devs, dtype=object), (axis,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that puts a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def block_size(n_items: int, n_parts: int) -> int:
    """Smallest power of two B with n_parts * B >= n_items (>= 1): part k takes items [kB, (k+1)B).

    Aligned power-of-two blocks are what make a pairwise tree over items independent of n_parts.
    """
    per = max(1, -(-int(n_items) // int(n_parts)))
    return 1 << (per - 1).bit_length()


def cyclic_blocks(n_items: int, n_parts: int, rounds: int) -> int:
    """Block size B for ``rounds`` rounds of aligned power-of-two blocks dealt out cyclically: part k takes
    blocks k, k + n_parts, k + 2 n_parts, ... (``rounds`` of them), block b holding items [bB, (b+1)B).

    With one block per part (rounds = 1, ``block_size``) the parts' shares can be as unequal as 86% / 14%
    (n_items just above a power of two times n_parts); with r rounds the last part is short by at most
    one block of the r its neighbours hold. The blocks are still aligned powers of two, so the pairwise
    tree over items is the same for any n_parts and rounds (``ordered_reduce_blocks``).
    """
    return block_size(n_items, int(n_parts) * int(rounds))


def ordered_reduce_blocks(x: jax.Array, axis_name: str, combine: Callable = jnp.add) -> jax.Array:
    """Inside ``shard_map``: x (rounds, ...) holds this device's roots of the blocks r * n_dev + k
    (``cyclic_blocks``); combine every device's roots in block order in a fixed pairwise tree (padded with
    zeros to a power of two), the same on every device. With one round this is ``ordered_reduce``.
    ``combine(a, 0)`` must return ``a`` exactly (sums; max of non-negative values)."""
    if jax.lax.axis_size(axis_name) == 1:  # one device holds every block, already in block order
        return _tree(x, combine)
    g = jax.lax.all_gather(x, axis_name)  # (n_dev, rounds, ...)
    g = jnp.swapaxes(g, 0, 1).reshape((-1,) + x.shape[1:])  # block order: r * n_dev + k
    return _tree(g, combine)


def _tree(g: jax.Array, combine: Callable) -> jax.Array:
    """Pairwise tree over the leading axis, zero-padded to a power of two."""
    size = g.shape[0]
    p2 = 1 << (size - 1).bit_length()
    if p2 != size:
        g = jnp.concatenate([g, jnp.zeros((p2 - size,) + g.shape[1:], g.dtype)])
    while g.shape[0] > 1:
        g = g.reshape((g.shape[0] // 2, 2) + g.shape[1:])
        g = combine(g[:, 0], g[:, 1])
    return g[0]


def ordered_reduce(x: jax.Array, axis_name: str, combine: Callable = jnp.add) -> jax.Array:
    """Inside ``shard_map``: combine the per-device values ``x`` in a fixed pairwise tree over the
    device index (padded with zeros to a power of two), the same on every device.

    Unlike ``psum`` (whose order is up to the backend) the result is bit-identical to the tree a
    single device computes over the same aligned blocks. ``combine(a, 0)`` must return ``a`` exactly
    (sums; max of non-negative values). On one device the tree of one value is ``x`` itself, returned
    without the all-gather (a copy per call inside training loops).
    """
    if jax.lax.axis_size(axis_name) == 1:
        return x
    return _tree(jax.lax.all_gather(x, axis_name), combine)  # (n_dev, ...)


def parse_coordinator(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port). Raises ValueError unless the port is an integer in 1..65535."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"coordinator must be HOST:PORT with a port in 1..65535, got {text!r}")
    return host, int(port)


def init_distributed(coordinator: str, num_processes: int, process_id: int, *, timeout_seconds: int = 300) -> None:
    """Join JAX's multi-process runtime (``jax.distributed.initialize``); CPU collectives use gloo.

    Call once per process, before anything touches a device. Afterwards ``jax.devices()`` lists the
    devices of every process and meshes over them split work across processes.

    Raises:
        ValueError: bad arguments, or the backend is already initialised.
    """
    parse_coordinator(coordinator)
    if int(num_processes) != num_processes or num_processes < 1:
        raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if int(process_id) != process_id or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be an integer in [0, {num_processes}), got {process_id!r}")
    if backend_initialized():
        raise ValueError("init_distributed: JAX's backend is already initialised; call it first")
    if "jax_cpu_collectives_implementation" in jax.config.values:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=int(num_processes),
        process_id=int(process_id),
        initialization_timeout=int(timeout_seconds),
    )


def is_primary() -> bool:
    """True in process 0 (the one that writes outputs), and in a single-process run."""
    return jax.process_index() == 0
