"""Small helpers shared by the kernels: keys, dtypes, validation.

Nothing here does I/O. Every kernel derives the random numbers of a sample from the sample's *index*
(``jax.random.fold_in``), never from loop order, so results do not depend on chunking or device count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["fold_in_u64", "float_dtype", "acc_dtype", "x64_enabled", "make_named"]


def x64_enabled() -> bool:
    """Whether ``jax_enable_x64`` is on (float64 arrays are then really float64)."""
    return bool(jax.config.jax_enable_x64)


def float_dtype(dtype, *, fn: str) -> np.dtype:
    """Canonicalise a floating dtype; raise a ValueError naming ``fn`` for anything else.

    float64 without ``jax_enable_x64`` is refused rather than silently truncated to float32.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"{fn}: dtype must be a floating dtype, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{fn}: dtype must be float32 or float64, got {dt}")
    if dt == np.float64 and not x64_enabled():
        raise ValueError(f"{fn}: dtype float64 needs jax.config.update('jax_enable_x64', True)")
    return dt


def acc_dtype() -> np.dtype:
    """The widest float JAX will really give: float64 under x64, else float32."""
    return jax.dtypes.canonicalize_dtype(np.float64)


def fold_in_u64(key: jax.Array, value) -> jax.Array:
    """``fold_in`` for non-negative integers up to 2**64 - 1 (fold_in itself takes 32 bits).

    Values below 2**32 are folded once, so ``fold_in_u64(k, v) == fold_in(k, v)`` there; larger values
    fold the high word and then the low word. Python ints only (used for dimensions and seeds).
    """
    value = int(value)
    if value < 0 or value >= 2**64:
        raise ValueError(f"fold_in_u64: value must be in [0, 2**64), got {value}")
    if value < 2**32:
        return jax.random.fold_in(key, np.uint32(value))
    key = jax.random.fold_in(key, np.uint32(value >> 32))
    return jax.random.fold_in(key, np.uint32(value & 0xFFFFFFFF))


def as_key(key) -> jax.Array:
    """Accept a typed key (``jax.random.key``) or a raw uint32[2] key (``PRNGKey``)."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, dtype=jnp.uint32))


def make_named(registry: dict, kind: str, name: str, options: dict):
    """Build ``registry[name]`` (a dataclass) from the ``options`` it takes; ``None`` values are ignored.

    Raises:
        ValueError: unknown name (the message lists the valid ones), or whatever the class raises.
    """
    import dataclasses

    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(registry)}")
    cls = registry[name]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in options.items() if k in names and v is not None})
