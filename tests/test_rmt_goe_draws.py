"""Which Gaussians a GOE matrix is made of: float32 from ``sim.vectors.standard_normal`` (the fast
stream), float64 from ``jax.random.normal`` (unchanged, so float64 users such as ``hdsim spectrum`` keep
their numbers), both laid out row-major in the (n, n) draw of ``fold_in(key, i)``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sim import rmt
from sim.vectors import standard_normal


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_goe_entries_are_the_documented_draw(dtype):
    key, n = jax.random.key(11), 7
    h = np.asarray(rmt.goe(key, n, batch_shape=(3,), normalized=False, dtype=dtype))
    for i in range(3):
        k = jax.random.fold_in(key, i)
        if dtype == jnp.float32:
            a = np.asarray(standard_normal(k, (n * n,), dtype)).reshape(n, n)
        else:
            a = np.asarray(jax.random.normal(k, (n, n), dtype))
        want = (a + a.T) * np.asarray(1 / math.sqrt(2), a.dtype)
        # equal up to the rounding of the last operations (XLA may fuse the sum and the scaling): a few
        # ulps of the entries' scale (a + a^T cancels, so tiny entries are compared absolutely)
        eps = float(np.finfo(a.dtype).eps)
        np.testing.assert_allclose(h[i], want, rtol=4 * eps, atol=4 * eps * float(np.abs(a).max()))
        assert np.array_equal(h[i], h[i].T)
