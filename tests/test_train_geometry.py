"""Where training takes an MLP: the lazy-training exponent (NTK: width^-1/2; muP: width^0), trained
pairs as far apart as their initialisations, barriers before/after weight matching, exact recovery of a
known permutation, the Hessian index against an exact eigendecomposition (docs/theory.md, "Training").

One ensemble per (parameterisation, width) is trained once (module fixture) on a small teacher task
(d_in = 8, 64 samples) so that widths up to 4096 stay cheap; every test reads from it.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sim.fit import fit_power_law
from sim.learning import geometry as G
from sim.learning import mlp
from sim.learning import train as T
from sim.learning.data import Data
from sim.models import teacher_task

WIDTHS = (64, 256, 1024, 4096)
SEEDS = 6
STEPS = 200

# compiled once and shared (op-by-op dispatch of these small programs cost most of this file's CPU time)
changes = jax.jit(jax.vmap(G.change))
pair_distances = jax.jit(G.pair_distances)
change = jax.jit(G.change)


@functools.cache
def _barrier(model):
    return jax.jit(lambda a, b, x, y: G.barrier(lambda p: model.loss(p, x, y), a, b))


@pytest.fixture(scope="module")
def task():
    t = teacher_task(jax.random.key(0), (8, 16, 1), 64)
    return Data(t.x, t.y, t.x, t.y, t.y)


@pytest.fixture(scope="module")
def runs(task):
    out = {}
    for param in ("ntk", "mup"):
        for w in WIDTHS:
            m = T.Model(8, w, 1, 1, param)
            out[param, w] = (m, T.train(jax.random.key(1), task, m, optimizer="gd", lr=1.0, steps=STEPS, seeds=SEEDS))
    return out


def _rel(runs, param):
    x, y = [], []
    for w in WIDTHS:
        _, run = runs[param, w]
        rc = np.asarray(changes(run.params0, run.params)["rel_change"], np.float64)
        x += [w] * SEEDS
        y += list(rc)
    return fit_power_law(jax.random.key(3), np.array(x, float), np.array(y))


def test_trained(runs, task):
    # every network fitted the teacher (final loss < 20% of the zero predictor's; measured <= 12%): the laws below are
    # about trained networks
    zero = 0.5 * float(jnp.mean(task.y_train**2))
    for (param, w), (_, run) in runs.items():
        assert float(jnp.max(run.losses[:, -1])) < 0.2 * zero, (param, w, zero)


def test_lazy_exponent_ntk(runs):
    # NTK: ||theta_T - theta_0|| = O(1), ||theta_0|| ~ sqrt(P): rel_change ~ width^-1/2 (measured -0.49)
    fit = _rel(runs, "ntk")
    assert fit.ci_low <= -0.5 <= fit.ci_high, fit.label()


def test_not_lazy_mup(runs):
    # muP / mean field: every parameter moves O(1) of its size: exponent 0. Finite-width corrections are
    # O(1/width) (measured -0.015, interval half-width 0.011): 0 lies within 3 half-widths, and the
    # exponent is 30 half-widths away from the lazy -1/2.
    fit = _rel(runs, "mup")
    half = (fit.ci_high - fit.ci_low) / 2
    assert abs(fit.exponent) < 3 * half, fit.label()
    assert fit.exponent - (-0.5) > 30 * half, fit.label()


@pytest.mark.parametrize("param", ["ntk", "mup"])
def test_pairs_as_far_apart_as_init(runs, param):
    # two independently trained networks: ||A_T - B_T|| / ||A_0 - B_0|| -> 1 as width grows, and the
    # initial distance is sqrt(2) ||theta_0|| (concentration). Pairs (0,1), (2,3), (4,5) at width 4096.
    _, run = runs[param, 4096]
    take = lambda tree, i: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
    ratios, init_ratio = [], []
    for s in range(0, SEEDS, 2):
        pd = pair_distances(
            take(run.params0, s), take(run.params0, s + 1), take(run.params, s), take(run.params, s + 1)
        )
        ch = change(take(run.params0, s), take(run.params, s))
        ratios.append(float(pd["trained"] / pd["init"]))
        init_ratio.append(float(pd["init"] / ch["init_norm"]))
    # tolerance: the spread of the ratio over pairs and its distance from 1 are both set by the
    # relative change (rel ~ 0.017 for NTK, 0.6 for muP): |ratio - 1| <= rel^2 + 3 * spread
    rel = float(jnp.mean(changes(run.params0, run.params)["rel_change"]))
    spread = float(np.std(ratios, ddof=1))
    assert abs(np.mean(ratios) - 1) <= rel**2 + 3 * spread + 1e-3, (ratios, rel)
    # ||A_0 - B_0|| / ||A_0|| = sqrt(2) up to the CLT fluctuation ~ 1/sqrt(#params)
    p = run.params0[0]["w"].shape[1] * 10 + 1
    assert abs(np.mean(init_ratio) - math.sqrt(2)) < 5 / math.sqrt(p), init_ratio


def test_barrier_aligned_not_above_naive(runs, task):
    # weight matching can only lower the straight-line barrier here: aligned <= naive for every pair,
    # strictly lower on average at small width (mean field, width 64: units move, permutations matter)
    for param in ("ntk", "mup"):
        m, run = runs[param, 64]
        bar = _barrier(m)
        take = lambda tree, i: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
        naive, aligned = [], []
        for s in range(0, SEEDS, 2):
            a, b = take(run.params, s), take(run.params, s + 1)
            scales = [(mw, mb) for mw, _, mb, _ in mlp.multipliers((8, 64, 1), param)]
            perms, _, conv = G.weight_matching(a, b, scales=scales)
            assert conv
            naive.append(float(bar(a, b, task.x_train, task.y_train)))
            aligned.append(float(bar(a, G.permute(b, perms), task.x_train, task.y_train)))
        assert all(al <= nv + 1e-6 for al, nv in zip(aligned, naive)), (param, naive, aligned)
        if param == "mup":
            assert np.mean(aligned) < 0.5 * np.mean(naive), (naive, aligned)


def test_weight_matching_recovers_a_known_permutation():
    # a depth-2 network and a copy with its hidden units shuffled: matching finds the shuffle exactly,
    # the aligned copy is bitwise the original, the function is unchanged, and the barrier is 0
    key = jax.random.key(7)
    a = mlp.init(key, 5, 40, 2, 3, parameterization="standard", sigma_b=0.5, dtype=jnp.float64)
    rng = np.random.default_rng(0)
    shuffle = [rng.permutation(40), rng.permutation(40)]
    b = G.permute(a, shuffle)  # b's unit i is a's unit shuffle[i]
    x = jax.random.normal(jax.random.key(8), (16, 5), jnp.float64)
    np.testing.assert_allclose(
        mlp.apply(b, x, parameterization="standard", sigma_b=0.5),
        mlp.apply(a, x, parameterization="standard", sigma_b=0.5),
        rtol=1e-12,
        atol=1e-12,
    )
    perms, sweeps, conv = G.weight_matching(a, b)
    assert conv
    inverse = [np.argsort(s) for s in shuffle]
    for p, inv in zip(perms, inverse):
        np.testing.assert_array_equal(p, inv)
    aligned = G.permute(b, perms)
    for la, lb in zip(a, aligned):
        np.testing.assert_array_equal(np.asarray(la["w"]), np.asarray(lb["w"]))
        np.testing.assert_array_equal(np.asarray(la["b"]), np.asarray(lb["b"]))
    y = jax.random.normal(jax.random.key(9), (16, 3), jnp.float64)
    bar = jax.jit(lambda u, v: G.barrier(lambda p: mlp.loss(p, x, y, parameterization="standard", sigma_b=0.5), u, v))
    assert abs(float(bar(a, aligned))) < 1e-12  # (1-t) a + t a rounds at 1e-16
    assert float(bar(a, b)) > 1e-3  # the shuffled copy is not linearly connected to a


def test_negative_fraction_matches_exact_eigenvalues():
    # full-depth Lanczos on a small network: each probe's quadrature is its exact spectral measure, so
    # the SLQ fraction is the exact count from eigvalsh up to probe noise (its standard error)
    from jax.flatten_util import ravel_pytree

    key = jax.random.key(11)
    p = mlp.init(key, 3, 6, 1, 2, parameterization="ntk", dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(12), (20, 3), jnp.float64)
    y = jax.random.normal(jax.random.key(13), (20, 2), jnp.float64)
    loss = lambda q: mlp.loss(q, x, y, parameterization="ntk", activation="tanh")  # noqa: E731
    flat, unravel = ravel_pytree(p)
    h = jax.jit(jax.hessian(lambda v: loss(unravel(v))))(flat)
    exact = float(np.mean(np.linalg.eigvalsh(np.asarray(h)) < 0))
    nf = jax.jit(lambda k, q: G.negative_fraction(k, loss, q, num_steps=flat.shape[0], num_probes=32))
    frac, se = nf(jax.random.key(14), p)
    assert 0 < exact < 1
    assert 0 < float(se) < 0.1
    assert abs(float(frac) - exact) < 4 * float(se), (float(frac), float(se), exact)
