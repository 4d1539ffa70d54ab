"""Random landscapes: derivatives against autodiff, covariances against their definitions, theory constants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sim import landscapes as L
from sim.models import Task, mlp_apply, mlp_init, mse_loss
from sim.theory import landscapes as T
from tests.stats_helpers import assert_mean

CASES = [
    (L.GRF(confine=0.3), 5),
    (L.GRF(features=7, length_scale=0.5), 3),
    (L.PSpin(p=2), 5),
    (L.PSpin(p=3), 6),
    (L.PSpin(p=4), 4),
    (L.MLP(), 3),
    (L.MLP(data="digits", num_samples=24, weight_decay=0.0), 2),
]


@pytest.mark.parametrize("land,n", CASES, ids=lambda c: getattr(c, "name", str(c)))
def test_closed_form_derivatives_match_autodiff(land, n):
    params = land.sample(jax.random.key(1), n)

    @jax.jit
    def derivatives(k):
        x = land.start(k, params)
        return (
            x,
            land.euclidean_grad(params, x),
            jax.grad(land.energy, argnums=1)(params, x),
            land.euclidean_hessian(params, x),
            jax.hessian(land.energy, argnums=1)(params, x),
            land.tangent_hessian(params, x),
            land.grad_hessian(params, x),
            land.grad(params, x),
            land.hessian(params, x),
        )

    x, g1, g, h1, h, th, (rg, rh), rg1, rh1 = jax.vmap(derivatives)(jax.random.split(jax.random.key(10), 3))
    # the shared evaluation is the separate ones (up to the rounding of differently fused sums)
    np.testing.assert_allclose(rg, rg1, rtol=1e-13, atol=1e-13 * float(jnp.abs(rg1).max()))
    np.testing.assert_allclose(rh, rh1, rtol=1e-13, atol=1e-13 * float(jnp.abs(rh1).max()))
    assert x.shape == (3, land.dim(n)) and x.dtype == jnp.float64
    np.testing.assert_allclose(g1, g, rtol=1e-11, atol=1e-11 * float(jnp.abs(g).max()))
    np.testing.assert_allclose(h1, h, rtol=1e-11, atol=1e-11 * float(jnp.abs(h).max()))
    assert th.shape == (3,) + (land.tangent_dim(n),) * 2


@pytest.mark.parametrize("p", [2, 3, 4])
def test_riemannian_gradient_and_hessian_along_geodesics(p):
    """On the sphere |x|^2 = n: d/dt H(gamma(t)) = g.v and d^2/dt^2 H(gamma(t)) = v^T Hess v at t = 0."""
    land, n = L.PSpin(p=p), 6
    params = land.sample(jax.random.key(2), n)
    x = land.start(jax.random.key(3), params)
    assert abs(float(x @ x) - n) < 1e-12
    b = L.sphere_tangent_basis(x)
    np.testing.assert_allclose(b.T @ b, np.eye(n - 1), atol=1e-13)
    np.testing.assert_allclose(b.T @ x, np.zeros(n - 1), atol=1e-12)
    g, h = land.grad(params, x), land.hessian(params, x)
    r = math.sqrt(n)

    @jax.jit
    def along(v):
        vn = jnp.linalg.norm(v)

        def f(t):
            return land.energy(params, jnp.cos(vn * t / r) * x + r * jnp.sin(vn * t / r) * v / vn)

        return jax.jacfwd(f)(0.0), jax.jacfwd(jax.jacfwd(f))(0.0)

    for s in range(3):
        v = b @ jax.random.normal(jax.random.key(20 + s), (n - 1,))
        d1, d2 = along(v)
        assert abs(float(d1 - g @ v)) < 1e-11 * (1 + abs(float(d1)))
        assert abs(float(d2 - v @ h @ v)) < 1e-10 * (1 + abs(float(d2)))
    assert abs(float(g @ x)) < 1e-11 * n  # tangent
    np.testing.assert_allclose(land.hessian(params, x) @ x, np.zeros(n), atol=1e-11)
    y = land.retract(x, 0.7 * v + 0.3 * x)  # retraction ignores the normal part, lands on the sphere
    assert abs(float(y @ y) - n) < 1e-11


def test_pspin_p2_normalisation():
    """p = 2: H(x) = x^T M x with M = (J + J^T) / (2 sqrt(n)), J the N(0, 1) draw from the key."""
    n, key = 7, jax.random.key(4)
    params = L.PSpin(p=2).sample(key, n)
    j = jax.random.normal(key, (n, n), jnp.float64)
    np.testing.assert_allclose(params.coupling, (j + j.T) / (2 * math.sqrt(n)), rtol=1e-14)


def test_pspin_p2_ground_state_is_the_top_of_the_coupling_spectrum():
    """p = 2: min H / n on |x|^2 = n is -lambda_max(M) -> -sqrt(2). At n = 1000 the top eigenvalue sits
    within its Tracy-Widom scale (~ sqrt(2) n^-2/3 = 0.014; mean shift -1.2 of it) of the edge; 0.06 is
    four such scales, while the old value 2 is 0.59 away."""
    assert T.pspin_ground_state(2) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert T.pspin_ground_state(2) == pytest.approx(T.pspin_threshold(2), rel=1e-15)
    top = [
        float(np.linalg.eigvalsh(np.asarray(L.PSpin(p=2).sample(jax.random.key(s), 1000).coupling))[-1])
        for s in range(3)
    ]
    assert all(abs(t - T.pspin_ground_state(2)) < 0.06 for t in top), top


def _covariance_samples(land, n, x, y, instances):
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(5), i))(jnp.arange(instances))

    def one(k):
        params = land.sample(k, n)
        return land.energy(params, x), land.energy(params, y)

    a, b = jax.jit(jax.vmap(one))(keys)
    return np.asarray(a), np.asarray(b)


def test_grf_covariance_is_squared_exponential():
    """E phi(x) phi(y) = n exp(-|x - y|^2 / (2 n s^2)) exactly for any number of features."""
    n, s = 4, 1.5
    land = L.GRF(features=32, length_scale=s)
    x = jnp.array([0.3, -1.0, 2.0, 0.5])
    for r in (0.0, 0.5, 2.0):  # r = |x - y|^2 / (2 n s^2)
        d = jnp.array([1.0, -2.0, 0.5, 1.0])
        y = x + d * jnp.sqrt(2 * n * s * s * r / (d @ d))
        a, b = _covariance_samples(land, n, x, y, 20000)
        assert_mean(a * b, n * math.exp(-r), what=f"grf covariance at r={r}")
        assert_mean(a, 0.0, what="grf mean")


def test_pspin_covariance():
    """E H(x) H(y) = n (x.y / n)^p (Auffinger, Ben Arous, Cerny normalisation)."""
    n = 5
    x = jnp.ones(n)
    y = jnp.array([1.0, 1.0, 1.0, -1.0, 1.0])  # x.y/n = 3/5
    for p in (2, 3):
        a, b = _covariance_samples(L.PSpin(p=p), n, x, y, 20000)
        assert_mean(a * b, n * 0.6**p, what=f"pspin covariance p={p}")
        assert_mean(a * a, n, what=f"pspin variance p={p}")


def test_mlp_layout_and_teacher():
    land, width = L.MLP(weight_decay=0.0, num_samples=20), 3
    params = land.sample(jax.random.key(6), width)
    widths = land.widths(width)
    # the flat layout is ravel_pytree's, unflatten inverts it
    tree = mlp_init(jax.random.key(7), widths, dtype=jnp.float64)
    flat = ravel_pytree(tree)[0]
    assert flat.shape == (land.dim(width),) == (4 * width + 1,)
    for (w1, b1), (w2, b2) in zip(tree, land.unflatten(flat)):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(land.start(jax.random.key(7), params), flat)
    # energy is sim.models.mse_loss; the teacher is a global minimum (zero loss, zero gradient)
    task = Task(params.inputs, params.targets)
    ref = float(mse_loss(tree, task))
    np.testing.assert_allclose(land.output(flat, params.inputs), mlp_apply(tree, params.inputs), rtol=1e-14)
    assert float(land.energy(params, flat)) == pytest.approx(ref, rel=1e-14)
    assert float(land.energy(params, params.teacher)) < 1e-28
    assert float(jnp.linalg.norm(land.grad(params, params.teacher))) < 1e-14
    assert land.hidden_width(flat) == width
    # weight decay adds wd/2 |x|^2
    wd = L.MLP(weight_decay=0.1, num_samples=20)
    assert float(wd.energy(params, flat)) == pytest.approx(ref + 0.05 * float(flat @ flat), rel=1e-13)


def test_mlp_on_digits_layout_and_data():
    """data="digits": 64 inputs and 10 one-hot outputs from sim.learning.data.load, the flat layout
    of the teacher case, and the closed-form Hessian equal to jax.hessian at a trained-looking point."""
    from sim.learning.data import load

    land, width = L.MLP(data="digits", num_samples=40), 3
    assert (land.d_in, land.d_out) == (64, 10) and land.dim(width) == 65 * 3 + 4 * 10
    params = land.sample(jax.random.key(2), width)
    d = load("digits", jax.random.fold_in(jax.random.key(2), 0), 40, 1, dtype=jnp.float64)
    np.testing.assert_array_equal(params.inputs, d.x_train)
    np.testing.assert_array_equal(params.targets, d.y_train)
    np.testing.assert_array_equal(params.targets.sum(axis=1), np.ones(40))  # one-hot
    assert land.size(params) == width
    x = 3.0 * land.start(jax.random.key(5), params)  # large weights: saturated units, big residual terms
    g, h = land.grad_hessian(params, x)
    h0 = jax.hessian(land.energy, argnums=1)(params, x)
    np.testing.assert_allclose(h, h0, rtol=1e-11, atol=1e-11 * float(jnp.abs(h0).max()))
    np.testing.assert_allclose(g, jax.grad(land.energy, argnums=1)(params, x), rtol=1e-11, atol=1e-14)
    # an explicit d_in equal to the data's is accepted; the resolved landscape is the same
    assert L.MLP(data="digits", num_samples=40, d_in=64, d_out=10) == land


def test_mlp_starts_along_training_trajectories():
    """Default starts are the LeCun initialisation; with init_scales and train_steps a start is the
    initialisation scaled by one of the scales, then that many gradient-descent steps on the loss."""
    base = L.MLP(data="digits", num_samples=64)
    params = base.sample(jax.random.key(0), 2)
    key = jax.random.key(9)
    x0 = base.start(key, params)
    np.testing.assert_array_equal(x0, ravel_pytree(mlp_init(key, base.widths(2), dtype=jnp.float64))[0])
    lr = 0.05
    for scale, steps in ((0.5, 0), (2.0, 7), (1.0, 40)):
        land = L.MLP(data="digits", num_samples=64, init_scales=(scale,), train_steps=(steps,), train_lr=lr)
        y = x0 * scale
        for _ in range(steps):
            y = y - lr * land.euclidean_grad(params, y)
        np.testing.assert_allclose(land.start(key, params), y, rtol=1e-12, atol=1e-14)
    # the choices are drawn per start from the lists, every entry turns up, and training lowers the loss
    land = L.MLP(data="digits", num_samples=64, init_scales=(0.5, 2.0), train_steps=(0, 200), train_lr=lr)
    xs = jax.vmap(lambda s: land.start(jax.random.fold_in(key, s), params))(jnp.arange(64))
    inits = jax.vmap(
        lambda s: ravel_pytree(mlp_init(jax.random.fold_in(key, s), land.widths(2), dtype=jnp.float64))[0]
    )(jnp.arange(64))
    ratio = np.asarray(jnp.linalg.norm(xs, axis=1) / jnp.linalg.norm(inits, axis=1))
    untrained = np.isclose(ratio, 0.5, rtol=1e-12) | np.isclose(ratio, 2.0, rtol=1e-12)
    assert 0 < untrained.sum() < 64  # binomial(64, 1/2): both kinds with probability 1 - 2^-63
    energy = jax.vmap(lambda x: land.energy(params, x))
    e, before = np.asarray(energy(xs)), np.minimum(np.asarray(energy(0.5 * inits)), np.asarray(energy(2.0 * inits)))
    assert np.all(e[~untrained] < before[~untrained])


def test_raw_and_typed_keys_agree():
    for land, n in CASES[:3]:
        a = land.sample(jax.random.key(3), n)
        b = land.sample(jax.random.PRNGKey(3), n)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: L.make_landscape("bowl"), "unknown landscape 'bowl'; valid: grf, pspin, mlp"),
        (lambda: L.PSpin(p=1), "p must be an integer >= 2"),
        (lambda: L.PSpin(p=2.5), "p must be an integer >= 2"),
        (lambda: L.PSpin(p=3).sample(jax.random.key(0), 1), "dimension must be an integer >= 2"),
        (lambda: L.PSpin(p=3).sample(jax.random.key(0), 300), "exceed PSPIN_MAX_COUPLINGS"),
        (lambda: L.GRF().sample(jax.random.key(0), 0), "dimension must be an integer >= 1"),
        (lambda: L.GRF(length_scale=0.0), "length_scale must be"),
        (lambda: L.GRF(features=0), "features must be"),
        (lambda: L.MLP(num_samples=0), "num_samples must be"),
        (lambda: L.MLP(weight_decay=-1.0), "weight_decay must be"),
        (lambda: L.MLP(data="cifar"), "mlp: unknown data 'cifar'; valid: teacher, digits, mnist1d"),
        (lambda: L.MLP(data="digits", d_in=5), "mlp: d_in is 64 for data 'digits' (fixed by the data), got 5"),
        (lambda: L.MLP(data="digits", noise=0.1), "noise labels the teacher's data"),
        (lambda: L.MLP(data="digits", num_samples=5000), "num_samples must be at most 1300"),
        (lambda: L.MLP(init_scales=()), "init_scales must be a non-empty list of finite numbers > 0"),
        (lambda: L.MLP(init_scales=(1.0, -2.0)), "init_scales must be"),
        (lambda: L.MLP(train_steps=(0, -1)), "train_steps must be a non-empty list of integers >= 0"),
        (lambda: L.MLP(train_steps=(1.5,)), "train_steps must be"),
        (lambda: L.MLP(train_lr=0.0), "train_lr must be a finite number > 0"),
        (lambda: L.GRF().sample(jax.random.key(0), 3, dtype=jnp.int32), "dtype must be"),
    ],
)
def test_bad_input_raises(make, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_make_landscape_passes_only_known_options():
    land = L.make_landscape("pspin", p=4, features=9, confine=None)
    assert land == L.PSpin(p=4)
    assert L.make_landscape("grf", features=9, p=3).features == 9


# ----------------------------------------------------------------------------------------------
# theory


def test_semicircle_cdf_integrates_the_density():
    x = np.linspace(-2, 2, 200001)
    rho = np.sqrt(np.maximum(4 - x * x, 0)) / (2 * np.pi)
    cdf = np.concatenate([[0.0], np.cumsum((rho[1:] + rho[:-1]) / 2 * np.diff(x))])
    np.testing.assert_allclose(T.semicircle_cdf(x), cdf, atol=1e-8)
    assert T.semicircle_cdf(-3.0) == 0.0 and T.semicircle_cdf(5.0) == 1.0


def test_pspin_constants():
    assert T.pspin_threshold(3) == pytest.approx(1.63299, abs=1e-5)
    assert T.pspin_threshold(4) == pytest.approx(1.73205, abs=1e-5)
    assert T.pspin_ground_state(3) == pytest.approx(1.65700, abs=1e-5)
    assert T.pspin_ground_state(4) == pytest.approx(1.79409, abs=1e-5)
    for p in (3, 4):
        e0, einf = T.pspin_ground_state(p), T.pspin_threshold(p)
        assert abs(float(T.pspin_complexity(-e0, p))) < 1e-12
        assert float(T.pspin_complexity(-einf, p)) > 0  # saddles and minima are exponentially many there
        assert float(T.pspin_index_fraction(-einf, p)) == 0.0  # the threshold: index fraction reaches 0
        assert float(T.pspin_index_fraction(0.0, p)) == pytest.approx(0.5)
    assert T.pspin_expected_critical_count(3, 3) == pytest.approx(10.552, abs=1e-3)
    assert T.pspin_expected_critical_count(3, 2) == pytest.approx(2 * math.sqrt(7))
    assert T.pspin_expected_critical_count(2, 9) == 18  # p = 2: every instance has exactly 2n
    assert T.pspin_expected_critical_count(2, 2) == pytest.approx(2 * math.sqrt(4))  # both formulas agree
    assert T.pspin_expected_critical_count(2, 3) == pytest.approx(6.0)
    assert [T.sphere_euler_characteristic(n) for n in (2, 3, 4)] == [0, 2, 0]
    with pytest.raises(ValueError, match="closed form only"):
        T.pspin_expected_critical_count(3, 5)
    with pytest.raises(ValueError, match="p must be an integer >= 2"):
        T.pspin_threshold(1)


def test_grf_theory():
    assert T.grf_critical_energy() == -2.0
    assert float(T.grf_index_fraction(-2.0)) == 0.0 and float(T.grf_index_fraction(0.0)) == 0.5
    # f(r) = exp(-r / s^2): f(0) = 1, f' = -1/s^2, f'' = 1/s^4 give the same alpha for every s
    s = 1.7
    e = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(T.grf_index_fraction(e, 1.0, -1 / s**2, 1 / s**4), T.grf_index_fraction(e))


def test_hessian_semicircles_match_the_index_fractions():
    """The Hessian spectra of the theory put exactly the index fraction F(.) below zero."""
    x = np.linspace(-40, 40, 800001)
    dx = x[1] - x[0]
    for s in (1.0, 1.7):
        for eps in (-2.5, -1.0, 0.0, 0.7):
            c, r = T.grf_hessian_semicircle(eps, s)
            rho = T.semicircle_density(x, c, r)
            assert np.sum(rho) * dx == pytest.approx(1.0, abs=1e-6)
            assert np.sum(rho[x < 0]) * dx == pytest.approx(float(T.grf_index_fraction(eps)), abs=1e-4)
            assert float(T.semicircle_cdf(0.0, c, r)) == pytest.approx(float(T.grf_index_fraction(eps)), abs=1e-12)
    for p in (2, 3, 4):
        for u in (-1.8, -1.0, 0.3):
            c, r = T.pspin_hessian_semicircle(u, p)
            rho = T.semicircle_density(x, c, r)
            assert np.sum(rho[x < 0]) * dx == pytest.approx(float(T.pspin_index_fraction(u, p)), abs=1e-4)
    with pytest.raises(ValueError, match="length_scale"):
        T.grf_hessian_semicircle(0.0, 0.0)


def test_grf_hessian_paths_agree(monkeypatch):
    """The packed upper-triangle table and the direct product give the same Hessian."""
    land = L.GRF(confine=0.2)
    params = land.sample(jax.random.key(4), 6)
    x = land.start(jax.random.key(5), params)
    table = np.asarray(land.euclidean_hessian(params, x))
    monkeypatch.setattr(L, "_GRF_OUTER_MAX", 0)
    direct = np.asarray(land.euclidean_hessian(params, x))
    np.testing.assert_allclose(table, direct, rtol=1e-12, atol=1e-12 * np.abs(direct).max())
    np.testing.assert_array_equal(table, table.T)


def test_sincos_matches_numpy():
    """sim._util.sincos: within 2^-52 of numpy's sin and cos for |t| <= 10^6 (quadrant boundaries,
    multiples of pi/4, +-0 included), derivatives cos and -sin, float32 falls back to jnp."""
    from sim._util import sincos

    rng = np.random.default_rng(0)
    t = np.concatenate(
        [
            rng.uniform(-1e6, 1e6, 100_000),
            rng.normal(0, 6, 100_000),
            np.arange(-4000, 4001) * np.pi / 4,
            np.nextafter(np.pi / 4, 0) * np.arange(-9, 10),
            [0.0, -0.0, 1e-300],
        ]
    )
    s, c = jax.jit(sincos)(jnp.asarray(t))
    assert np.max(np.abs(np.asarray(s) - np.sin(t))) <= 2.0**-52
    assert np.max(np.abs(np.asarray(c) - np.cos(t))) <= 2.0**-52
    ds = jax.vmap(jax.grad(lambda u: sincos(u)[0]))(jnp.asarray(t[:100]))
    dc = jax.vmap(jax.grad(lambda u: sincos(u)[1]))(jnp.asarray(t[:100]))
    np.testing.assert_allclose(ds, np.cos(t[:100]), rtol=0, atol=2.0**-52)
    np.testing.assert_allclose(dc, -np.sin(t[:100]), rtol=0, atol=2.0**-52)
    s32, c32 = sincos(jnp.float32(1.0))
    assert (
        s32.dtype == jnp.float32 and abs(float(s32) - math.sin(1.0)) < 1e-7 and abs(float(c32) - math.cos(1.0)) < 1e-7
    )
