"""The hand-written MLP Hessian-vector product (sim.hvp.mlp_hessian_matvec) against the dense float64 Hessian
from jax.hessian and against the autodiff matvec (float32), per vector and on blocks of vectors (vmap)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sim.hvp import hessian_matvec, mlp_hessian_matvec
from sim.models import mlp_init, mse_loss, teacher_task


def _problem(widths, samples, dtype, train=0):
    key = jax.random.key(3)
    params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=dtype)
    task = teacher_task(jax.random.fold_in(key, 1), widths, samples, noise=0.3, dtype=dtype)
    if train:  # away from initialisation: larger errors, so the second-order (tanh curvature) term matters
        from sim.experiments.spectrum.operators import _gd_chunk

        params, _ = _gd_chunk(params, task, jnp.asarray(0.3, dtype), train)
    return params, task


@jax.jit
def _columns(params, task):
    n = ravel_pytree(params)[0].size
    return jax.vmap(mlp_hessian_matvec(params, task.x, task.y))(jnp.eye(n, dtype=task.x.dtype))


@pytest.mark.parametrize(
    "widths,train",
    [((3, 5, 4, 2), 0), ((3, 5, 4, 2), 30), ((4, 6, 1), 0), ((5, 3), 0)],
    ids=["depth2-out2-init", "depth2-out2-trained", "depth1", "linear"],
)
def test_mlp_matvec_is_the_dense_hessian(widths, train):
    params, task = _problem(widths, 9, jnp.float64, train)
    flat, unravel = ravel_pytree(params)
    hess = np.asarray(jax.hessian(lambda z: mse_loss(unravel(z), task))(flat))
    cols = np.asarray(_columns(params, task)).T  # rows H e_i: H is symmetric
    np.testing.assert_allclose(cols, hess, rtol=1e-10, atol=1e-12 * np.abs(hess).max())
    assert np.abs(hess).max() > 1e-3  # a nontrivial Hessian: the test can fail


def test_mlp_matvec_blocks_match_per_vector_and_autodiff_float32():
    params, task = _problem((16, 40, 40, 1), 64, jnp.float32, train=20)
    n = ravel_pytree(params)[0].size
    vs = jax.random.normal(jax.random.key(5), (6, n), jnp.float32)

    @jax.jit
    def run(p, t, vs):
        fast = mlp_hessian_matvec(p, t.x, t.y)
        ref = hessian_matvec(lambda q: mse_loss(q, t), p)
        return jax.vmap(fast)(vs), jnp.stack([fast(v) for v in vs]), jax.vmap(ref)(vs)

    block, single, ref = (np.asarray(a, np.float64) for a in run(params, task, vs))
    scale = np.abs(ref).max()
    np.testing.assert_allclose(block, single, rtol=0, atol=1e-5 * scale)  # float32 rounding only
    np.testing.assert_allclose(block, ref, rtol=0, atol=1e-5 * scale)


def test_mlp_matvec_casts_vectors_and_validates():
    params, task = _problem((3, 4, 1), 5, jnp.float32)
    n = ravel_pytree(params)[0].size
    out = mlp_hessian_matvec(params, task.x, task.y)(jnp.ones((n,), jnp.float64))
    assert out.dtype == jnp.float32 and out.shape == (n,)
    with pytest.raises(ValueError, match="mlp_hessian_matvec"):
        mlp_hessian_matvec(params, task.x[0], task.y)
