"""MLP parameterisations (sim.learning.mlp): same function at init for standard and NTK, muP's output
variance ~ 1/width, parameter counts, and the pure optax step of sim.learning.train."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from sim.learning import mlp
from sim.learning import train as T

# one compiled program per shape instead of op-by-op dispatch
init = jax.jit(
    mlp.init, static_argnums=(1, 2, 3, 4), static_argnames=("parameterization", "sigma_w", "sigma_b", "dtype")
)


@pytest.mark.parametrize("depth", [1, 3])
def test_standard_and_ntk_are_the_same_function_at_init(depth):
    x = jax.random.normal(jax.random.key(1), (7, 5), jnp.float64)
    outs = {}
    for param in ("standard", "ntk"):
        p = init(
            jax.random.key(0), 5, 33, depth, 4, parameterization=param, sigma_w=1.3, sigma_b=0.2, dtype=jnp.float64
        )
        outs[param] = mlp.apply(p, x, parameterization=param, sigma_w=1.3, sigma_b=0.2)
        assert ravel_pytree(p)[0].shape[0] == mlp.num_params(5, 33, depth, 4)
    np.testing.assert_allclose(outs["standard"], outs["ntk"], rtol=1e-12, atol=1e-12)


def test_mup_output_variance_falls_like_one_over_width():
    # output = sum_i (1/sqrt n) a_i phi(h_i), a_i ~ N(0, 1/n): Var = E phi^2 / n, so the ratio of widths
    # 64 and 1024 is 16. Each variance is a mean over 64 networks x 10 outputs (relative SE ~ 0.06, the
    # ratio's ~ 0.08): tolerance 0.25 (3 SE); a 1/sqrt(width) scaling would give 4, none 1
    x = jax.random.normal(jax.random.key(2), (128, 16), jnp.float64)

    def var(n):
        def one(k):
            p = mlp.init(k, 16, n, 1, 10, parameterization="mup", dtype=jnp.float64)
            return jnp.mean(mlp.apply(p, x, parameterization="mup") ** 2)

        # one compiled program per width (op-by-op dispatch of the vmapped init cost ~10 CPU-s)
        return float(jax.jit(lambda ks: jnp.mean(jax.vmap(one)(ks)))(jax.random.split(jax.random.key(3), 64)))

    ratio = var(64) / var(1024)
    assert abs(ratio / 16 - 1) < 0.25, ratio


def test_step_is_optax_sgd():
    # the pure step equals one hand-computed gradient step (optax.sgd: theta - lr * grad)
    m = T.Model(3, 8, 1, 2, "ntk")
    p = m.init(jax.random.key(0), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (5, 3), jnp.float64)
    y = jax.random.normal(jax.random.key(2), (5, 2), jnp.float64)
    opt = optax.sgd(0.1)
    p1, _, loss = jax.jit(T.make_step(m, opt))(p, opt.init(p), (x, y))
    g = jax.jit(jax.grad(m.loss))(p, x, y)
    want = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert float(loss) == pytest.approx(float(m.loss(p, x, y)), rel=1e-14)


def test_train_is_the_optax_step_per_seed_whatever_the_ensemble_size():
    # train() runs the layers in its own storage layout (the last layer as (fan_out, fan_in)) one seed at
    # a time: seed s must be make_step iterated from model.init(fold_in(fold_in(key, s), 0)), to float64
    # rounding, and bitwise the same whether the ensemble has 2 or 3 seeds
    from sim.learning.data import Data

    m = T.Model(3, 8, 2, 2, "mup")  # layers 3->8 (kept), 8->8 (kept), 8->2 (transposed)
    x = jax.random.normal(jax.random.key(1), (6, 3), jnp.float64)
    y = jax.random.normal(jax.random.key(2), (6, 2), jnp.float64)
    data = Data(x, y, x, y, y)
    key = jax.random.key(5)
    r2 = T.train(key, data, m, optimizer="adam", lr=0.05, steps=7, seeds=2, checkpoints=2, dtype=jnp.float64)
    r3 = T.train(key, data, m, optimizer="adam", lr=0.05, steps=7, seeds=3, checkpoints=2, dtype=jnp.float64)
    opt = optax.adam(0.05)
    step = jax.jit(T.make_step(m, opt))
    for s in range(2):
        p = m.init(jax.random.fold_in(jax.random.fold_in(key, s), 0), jnp.float64)
        st, losses, kept = opt.init(p), [], [p]
        for t in range(7):
            p, st, v = step(p, st, (x, y))
            losses.append(float(v))
            if t + 1 in (3, 6, 7):
                kept.append(p)
        np.testing.assert_allclose(r2.losses[s], losses, rtol=1e-12)
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda a: a[s], r2.params)), jax.tree.leaves(p)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
        for j, q in enumerate(kept):
            for a, b in zip(jax.tree.leaves(jax.tree.map(lambda a: a[s, j], r2.checkpoints)), jax.tree.leaves(q)):
                np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)
        for a, b in zip(jax.tree.leaves(r2), jax.tree.leaves(r3)):
            if hasattr(a, "shape") and a.ndim:
                np.testing.assert_array_equal(a[s], b[s])
    assert r2.checkpoint_steps == (0, 3, 6, 7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_train_starts_from_model_init_bit_for_bit(dtype):
    # train() draws every initial weight and bias as the prefix of one vectorised draw per key (one
    # generator in the compiled program): the numbers must be model.init's, bit for bit
    from sim.learning.data import Data

    x = jnp.zeros((4, 5), dtype)
    y = jnp.zeros((4, 3), dtype)
    key = jax.random.key(7)
    for m in (T.Model(5, 16, 1, 3, "ntk"), T.Model(5, 6, 2, 3, "standard", sigma_b=0.5)):
        r = T.train(key, Data(x, y, x, y, y), m, steps=1, seeds=2, dtype=dtype)
        for s in range(2):
            want = m.init(jax.random.fold_in(jax.random.fold_in(key, s), 0), dtype)
            got = jax.tree.map(lambda a: a[s], r.params0)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_array_equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="parameterization"):
        mlp.init(jax.random.key(0), 3, 4, 1, 2, parameterization="lazy")
    with pytest.raises(ValueError, match="width"):
        mlp.init(jax.random.key(0), 3, 0, 1, 2)
    with pytest.raises(ValueError, match="optimizer"):
        T.make_optimizer("lbfgs", 0.1)
