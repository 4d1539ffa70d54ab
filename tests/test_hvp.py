"""Hessian- and Gauss–Newton-vector products against dense matrices formed with jax.hessian/jacfwd."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sim.hvp import gauss_newton_matvec, gnvp, hessian_matvec, hvp, num_params
from sim.models import mlp_apply, mlp_init, mse_loss, teacher_task

WIDTHS = (3, 5, 4, 2)


@pytest.fixture(scope="module")
def problem():
    key = jax.random.key(0)
    params = mlp_init(jax.random.fold_in(key, 0), WIDTHS, dtype=jnp.float64)
    task = teacher_task(jax.random.fold_in(key, 1), WIDTHS, 7, noise=0.3, dtype=jnp.float64)
    flat, unravel = ravel_pytree(params)

    def flat_loss(x):
        return mse_loss(unravel(x), task)

    def flat_predict(x):
        return mlp_apply(unravel(x), task.x)

    hess = np.asarray(jax.jit(jax.hessian(flat_loss))(flat))
    jac = np.asarray(jax.jit(jax.jacfwd(flat_predict))(flat)).reshape(-1, flat.size)  # (m * d_out, n)
    # output loss 1/(2m) sum r^2 has Hessian I/m in the flattened outputs
    gn = jac.T @ jac / task.x.shape[0]
    return params, task, flat, unravel, hess, gn


def _tangent(key, flat, unravel):
    v = jax.random.normal(key, flat.shape, flat.dtype)
    return v, unravel(v)


def test_num_params():
    params = mlp_init(jax.random.key(0), WIDTHS)
    assert num_params(params) == ravel_pytree(params)[0].size == 3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2


def test_hvp_matches_dense_hessian(problem):
    params, task, flat, unravel, hess, _ = problem
    v, v_tree = _tangent(jax.random.key(1), flat, unravel)
    out = jax.jit(lambda p, t: hvp(lambda q: mse_loss(q, task), p, t))(params, v_tree)
    np.testing.assert_allclose(ravel_pytree(out)[0], hess @ np.asarray(v), rtol=1e-10, atol=1e-12)


def test_hessian_matvec_flat_matches_dense_and_is_symmetric(problem):
    params, task, flat, _, hess, _ = problem
    mv = jax.jit(lambda v: hessian_matvec(lambda p: mse_loss(p, task), params)(v))
    u = jax.random.normal(jax.random.key(2), flat.shape, flat.dtype)
    v = jax.random.normal(jax.random.key(3), flat.shape, flat.dtype)
    np.testing.assert_allclose(mv(v), hess @ np.asarray(v), rtol=1e-10, atol=1e-12)
    assert abs(float(u @ mv(v) - v @ mv(u))) <= 1e-12 * float(jnp.linalg.norm(u) * jnp.linalg.norm(v))
    # linear: H(a u + b v) = a H u + b H v
    np.testing.assert_allclose(mv(2.0 * u - 3.0 * v), 2.0 * mv(u) - 3.0 * mv(v), rtol=1e-10, atol=1e-12)


def test_quadratic_loss_of_a_dict_pytree_gives_its_matrix():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 7))
    a = jnp.asarray(a + a.T)
    params = {"x": jnp.ones((3,), jnp.float64), "y": jnp.ones((2, 2), jnp.float64)}
    _, unravel = ravel_pytree(params)

    def loss(p):
        x = ravel_pytree(p)[0]
        return 0.5 * x @ a @ x

    v = jnp.arange(7.0, dtype=jnp.float64)
    np.testing.assert_allclose(hessian_matvec(loss, params)(v), a @ v, rtol=1e-12)
    tree = hvp(loss, params, unravel(v))
    assert jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(params)
    np.testing.assert_allclose(ravel_pytree(tree)[0], a @ v, rtol=1e-12)


def test_gauss_newton_matches_dense_and_is_psd(problem):
    params, task, flat, unravel, _, gn = problem
    v, v_tree = _tangent(jax.random.key(4), flat, unravel)

    def predict(p):
        return mlp_apply(p, task.x)

    def output_loss(out):
        r = out - task.y
        return 0.5 * jnp.mean(jnp.sum(r * r, axis=-1))

    expected = gn @ np.asarray(v)
    out = jax.jit(lambda p, t: gnvp(predict, output_loss, p, t))(params, v_tree)
    np.testing.assert_allclose(ravel_pytree(out)[0], expected, rtol=1e-10)

    def mv(x):
        return gauss_newton_matvec(predict, output_loss, params)(x)

    np.testing.assert_allclose(jax.jit(mv)(v), expected, rtol=1e-10, atol=1e-13)
    # PSD for a convex output loss: v^T G v = |J v|^2 / m >= 0 for many v
    vs = jax.random.normal(jax.random.key(5), (20, flat.size), flat.dtype)
    quad = jax.jit(jax.vmap(lambda x: x @ mv(x)))(vs)
    assert bool(jnp.all(quad >= -1e-12))


def test_gauss_newton_equals_hessian_for_a_model_linear_in_its_parameters():
    key = jax.random.key(6)
    x = jax.random.normal(key, (9, 4), jnp.float64)
    y = jax.random.normal(jax.random.fold_in(key, 1), (9,), jnp.float64)
    params = {"w": jnp.full((4,), 0.3, jnp.float64), "b": jnp.zeros((), jnp.float64)}

    def predict(p):
        return x @ p["w"] + p["b"]

    def output_loss(out):  # a convex, non-quadratic output loss: softplus
        return jnp.mean(jax.nn.softplus(out * y))

    v = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float64)
    h = hessian_matvec(lambda p: output_loss(predict(p)), params)(v)
    g = gauss_newton_matvec(predict, output_loss, params)(v)
    np.testing.assert_allclose(g, h, rtol=1e-12, atol=1e-15)


def test_hessian_equals_gauss_newton_at_zero_residual():
    # student == teacher and no noise: the residual term of the MSE Hessian vanishes, so H = G.
    widths = (3, 4, 1)
    key = jax.random.key(7)
    task = teacher_task(key, widths, 6, dtype=jnp.float64)
    teacher = mlp_init(jax.random.fold_in(key, 1), widths, dtype=jnp.float64)
    v = jax.random.normal(jax.random.key(8), (num_params(teacher),), jnp.float64)
    h = jax.jit(lambda p, x: hessian_matvec(lambda q: mse_loss(q, task), p)(x))(teacher, v)
    g = jax.jit(
        lambda p, x: gauss_newton_matvec(
            lambda q: mlp_apply(q, task.x), lambda out: 0.5 * jnp.mean(jnp.sum((out - task.y) ** 2, -1)), p
        )(x)
    )(teacher, v)
    np.testing.assert_allclose(h, g, rtol=1e-10, atol=1e-13)


def test_float32_params_accept_float64_vectors():
    params = mlp_init(jax.random.key(0), (2, 3, 1))
    task = teacher_task(jax.random.key(1), (2, 3, 1), 4)
    out = jax.jit(lambda p, x: hessian_matvec(lambda q: mse_loss(q, task), p)(x))(
        params, jnp.ones((num_params(params),), jnp.float64)
    )
    assert out.dtype == jnp.float32 and out.shape == (num_params(params),)


def test_validation():
    params = mlp_init(jax.random.key(0), (2, 3, 1))
    with pytest.raises(ValueError, match="hessian_matvec: loss must be callable"):
        hessian_matvec(3, params)
    with pytest.raises(ValueError, match="hvp: every leaf of params must be floating"):
        hvp(lambda p: 0.0, {"a": jnp.ones(2, jnp.int32)}, {"a": jnp.ones(2, jnp.int32)})
    with pytest.raises(ValueError, match="gauss_newton_matvec: params has no array leaves"):
        gauss_newton_matvec(lambda p: p, lambda o: 0.0, {})


@pytest.mark.parametrize("name", ["grf", "pspin"])
def test_landscape_hessian_matvec_is_the_tangent_hessian(name):
    # sim.hvp.landscape_hessian_matvec (HVP; Householder tangent basis applied, never formed)
    # against the dense landscape.tangent_hessian at a random point.
    from sim.hvp import landscape_hessian_matvec
    from sim.landscapes import make_landscape

    land = make_landscape(name, p=3)
    params = land.sample(jax.random.key(3), 9, dtype=jnp.float64)
    x = land.start(jax.random.key(4), params)
    dense = np.asarray(land.tangent_hessian(params, x))
    mv = jax.jit(jax.vmap(landscape_hessian_matvec(land, params, x, jnp.float64)))
    cols = np.asarray(mv(jnp.eye(dense.shape[0], dtype=jnp.float64))).T
    assert dense.shape == ((8, 8) if name == "pspin" else (9, 9))
    np.testing.assert_allclose(cols, dense, rtol=1e-10, atol=1e-10 * np.abs(dense).max())
