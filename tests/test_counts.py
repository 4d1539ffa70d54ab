"""Eigenvalue counts with deflation and the kernel polynomial method (sim.counts) against exact eigvalsh.

Exact facts: the Jackson-damped step lies in [0, 1] and is bracketed by its shifted copies within the
kernel's tail mass (checked on a fine grid); ``jackson_tail`` is the kernel's mass; deflation finds the
outliers of a spiked matrix to their residual; moments do not depend on the probe batch. Statistical
checks (fixed seeds, a fixed set of cases): the bracket holds the exact count in >= 95% of the cases
for every eps >= 1e-3 ||H||, the point estimate is within Z standard errors of it, and where the
spectrum has a gap at 0 the index fraction is resolved to +-0.005. The default run uses N = 600 (one
compiled program for the three dense matrices); the slow versions (N = 3000, MLPs at N ~ 2000 at
initialisation and after training) also check the 0.005 absolute error of the issue.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sim.counts import counts, jackson, jackson_tail, moments, step_coefficients, weyl_shift
from sim.hvp import hessian_matvec
from sim.models import Task, mlp_init, mse_loss, teacher_task
from tests.stats_helpers import Z

REL_EPS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


# ------------------------------------------------------------------------------------- polynomials


def _cheb_eval(coef, x):
    return np.polynomial.chebyshev.chebval(x, coef)


@pytest.mark.parametrize("deg", [20, 200])
def test_damped_step_is_bracketed_by_its_shifts_within_the_tail(deg):
    g = jackson(deg)
    assert g[0] == pytest.approx(1.0, abs=1e-14) and np.all(np.diff(g) < 0) and g[-1] > 0
    psi = np.linspace(0, math.pi, 20001)
    x = np.cos(psi)
    a = math.pi / (deg + 2)
    for tau in (-0.95, -0.3, 0.0, 0.41, 0.99):
        phi = math.acos(tau)
        p = _cheb_eval(g * step_coefficients(phi, deg), x)
        assert p.min() >= -1e-12 and p.max() <= 1 + 1e-12  # a positive kernel of unit mass
        step = (x < tau).astype(float)
        assert np.max(np.abs(p - step)) > 0.3  # the polynomial is not the step (the test can fail)
        for kappa in (1.0, 3.0, 6.0):
            s = kappa * a
            tail = float(jackson_tail(s, deg))
            lo = _cheb_eval(g * step_coefficients(min(phi + s, math.pi), deg), x) - tail
            hi = _cheb_eval(g * step_coefficients(max(phi - s, 0.0), deg), x) + tail
            assert np.all(lo <= step + 1e-12) and np.all(step <= hi + 1e-12), (tau, kappa)
            # and the tail is tight: the bound is attained to within 10% near the threshold
            assert np.max(lo - step) > -1.1 * tail or phi + s >= math.pi


def test_jackson_tail_is_the_kernels_mass():
    deg = 50
    u = np.linspace(-math.pi, math.pi, 200001)
    g = jackson(deg)
    kern = (g[0] + 2 * np.sum(g[1:, None] * np.cos(np.arange(1, deg + 1)[:, None] * u[None, :]), 0)) / (2 * math.pi)
    assert kern.min() >= -1e-12
    for s in (0.0, 0.05, 0.2, 1.0):
        outside = np.trapezoid(np.where(np.abs(u) > s, kern, 0.0), u)
        # the trapezoid rule errs by about one grid cell of the kernel at the cut
        assert float(jackson_tail(s, deg)) == pytest.approx(outside, abs=2 * kern.max() * (u[1] - u[0]))
    assert float(jackson_tail(math.pi, deg)) == pytest.approx(0.0, abs=1e-12)


def test_weyl_shift_is_quadratic_with_a_gap():
    assert weyl_shift(1e-3, [10.0], -1.0, 1.0) == pytest.approx(1e-6 / 9.0, rel=1e-3)
    assert weyl_shift(1e-3, [0.5], -1.0, 1.0) == 1e-3  # inside the bulk: Weyl's rho
    assert weyl_shift(0.0, [], -1.0, 1.0) == 0.0


# ---------------------------------------------------------------------------------- dense matrices

N = 600
DEG = 600
PROBES = 24


def _goe(seed, n):
    a = np.random.default_rng(seed).standard_normal((n, n))
    return (a + a.T) / math.sqrt(2 * n)


def _cases(n):
    """Three spectra: shifted GOE; spiked GOE (outliers 100x the bulk); a GOE pushed away from 0 (gap)."""
    shifted = _goe(1, n) + 0.4 * np.eye(n)
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((n, 4)))
    spiked = _goe(3, n) + 0.2 * np.eye(n) + q @ np.diag([300.0, 200.0, -150.0, 250.0]) @ q.T
    ev, vec = np.linalg.eigh(_goe(4, n) - 0.3 * np.eye(n))
    gapped = (vec * (ev + 0.25 * np.sign(ev))) @ vec.T  # no eigenvalue in (-0.25, 0.25)
    return {"shifted": shifted, "spiked": spiked, "gapped": gapped}


_dense = jax.jit(
    lambda a, key, degree, probes, batch: moments(
        key,
        lambda v: a @ v,
        a.shape[0],
        degree=degree,
        num_probes=probes,
        lanczos_steps=60,
        bounds_steps=30,
        batch_size=batch,
    ),
    static_argnums=(2, 3, 4),
)


def _thresholds(ev):
    h = float(np.max(np.abs(ev)))
    eps = h * np.asarray(REL_EPS)
    return np.concatenate([-eps[::-1], [0.0], eps])


@pytest.fixture(
    scope="module", params=[pytest.param(N, id="N600"), pytest.param(3000, marks=pytest.mark.slow, id="N3000")]
)
def dense_runs(request):
    n = request.param
    deg, probes = (DEG, PROBES) if n == N else (3000, 64)
    out = {}
    for name, mat in _cases(n).items():
        ev = np.linalg.eigvalsh(mat)
        mom = _dense(jnp.asarray(mat, jnp.float32), jax.random.key(7), deg, probes, probes)
        out[name] = (ev, mom)
    return n, out


def test_dense_counts_against_eigvalsh(dense_runs):
    n, runs = dense_runs
    cover, cases = 0, 0
    for name, (ev, mom) in runs.items():
        th = _thresholds(ev)
        c = counts(mom, th)
        exact = np.array([np.mean(ev < t) for t in th])
        cover += int(np.sum((c.lower <= exact) & (exact <= c.upper)))
        cases += th.size
        err = c.fraction - exact
        assert np.all(np.abs(err) <= Z * c.stderr + 1e-3 + 2 * c.resolution * 0.4), (name, err, c.stderr)
        if n >= 3000:
            assert np.all(np.abs(err) <= 0.005), (name, err)
        assert np.all(c.upper - c.lower < 0.2)  # the bracket says something
    assert cover >= 0.95 * cases, f"bracket covers {cover} of {cases}"


def test_spiked_outliers_are_deflated_and_counted_exactly(dense_runs):
    n, runs = dense_runs
    ev, mom = runs["spiked"]
    k = int(mom.num_deflated)
    d = np.asarray(mom.deflated)[:k]
    outliers = np.concatenate([ev[:1], ev[-3:]])
    assert 4 <= k <= 8
    for o in outliers:  # every outlier found, to float32 accuracy of the product
        assert np.min(np.abs(d - o)) <= 1e-4 * abs(o)
    # the bulk is rescaled to its own width, not the outliers'
    assert float(mom.halfwidth) < 3.5
    c = counts(mom, [-100.0, 100.0, 1e3])
    np.testing.assert_allclose(c.fraction, [1 / n, 1 - 3 / n, 1.0], atol=1e-12)
    np.testing.assert_allclose(c.lower, c.fraction, atol=1e-12)
    np.testing.assert_allclose(c.upper, c.fraction, atol=1e-12)


def test_index_resolved_where_the_spectrum_has_a_gap(dense_runs):
    # The polynomial part of the bracket (z = 0) vanishes where the gap is many resolutions wide; what is
    # left is probe noise, which at N = 600 with 24 probes is ~0.004 (so +-0.005 is asserted at N = 3000).
    n, runs = dense_runs
    ev, mom = runs["gapped"]
    exact = float(np.mean(ev < 0))
    c = counts(mom, [0.0])
    assert c.lower[0] <= exact <= c.upper[0]
    assert abs(c.fraction[0] - exact) <= Z * c.stderr[0]
    c0 = counts(mom, [0.0], z=0.0)
    # per-probe traces of two shifted steps differ only by probe noise correlated between them
    assert c0.upper[0] - c0.lower[0] <= 2e-3
    if n >= 3000:
        assert c.upper[0] - c.lower[0] <= 0.01, (c.lower, c.upper)  # +-0.005
        assert abs(c.fraction[0] - exact) <= 0.005


def test_bracket_widens_honestly_below_the_resolution():
    # Shifted GOE at degree 40 (resolution ~0.2 on a spectrum of width 4): the bracket at eps = 0 contains
    # the truth and is wide, not a clipped point.
    mat = _cases(N)["shifted"]
    ev = np.linalg.eigvalsh(mat)
    mom = _dense(jnp.asarray(mat, jnp.float32), jax.random.key(8), 40, 8, 4)
    c = counts(mom, [0.0])
    exact = float(np.mean(ev < 0))
    assert c.lower[0] <= exact <= c.upper[0]
    assert c.upper[0] - c.lower[0] > 0.2
    assert c.resolution > 0.15


def test_moments_do_not_depend_on_the_batch():
    mat = jnp.asarray(_cases(N)["shifted"], jnp.float32)
    a = _dense(mat, jax.random.key(8), 40, 8, 4)
    b = _dense(mat, jax.random.key(8), 40, 8, 8)
    np.testing.assert_allclose(np.asarray(a.mu), np.asarray(b.mu), rtol=1e-10, atol=1e-9)


def test_interval_violation_is_refused():
    mom = _dense(jnp.asarray(_cases(N)["shifted"], jnp.float32), jax.random.key(8), 40, 8, 4)
    bad = mom._replace(halfwidth=mom.halfwidth * 0.3)  # the moments were taken on the right interval
    bad = bad._replace(interval_ok=jnp.asarray(False))
    with pytest.raises(ValueError, match="outside its estimated interval"):
        counts(bad, [0.0])


def test_validation():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="degree must be even"):
        moments(key, lambda v: v, 10, degree=5, num_probes=2, lanczos_steps=4, bounds_steps=4)
    with pytest.raises(ValueError, match="num_probes must be an integer >= 2"):
        moments(key, lambda v: v, 10, degree=4, num_probes=1, lanczos_steps=4, bounds_steps=4)
    with pytest.raises(ValueError, match="lanczos_steps and bounds_steps must be <= dim"):
        moments(key, lambda v: v, 10, degree=4, num_probes=2, lanczos_steps=40, bounds_steps=4)


# -------------------------------------------------------------------------------------- MLP Hessians


def _mlp(widths, train_steps, samples=128):
    from sim.experiments.spectrum.operators import _gd_chunk

    key = jax.random.key(21)
    params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=jnp.float32)
    task = teacher_task(jax.random.fold_in(key, 1), widths, samples, noise=0.1, dtype=jnp.float32)
    if train_steps:
        params, _ = _gd_chunk(params, task, jnp.asarray(0.5, jnp.float32), train_steps)
    p64, t64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, task))
    flat, unravel = ravel_pytree(p64)
    hess = jax.jit(jax.hessian(lambda x: mse_loss(unravel(x), t64)))(flat)
    return params, task, np.linalg.eigvalsh(np.asarray(hess))


def _mlp_counts(params, task, n, degree, probes):
    @jax.jit
    def f(params, task, key):
        mv = hessian_matvec(lambda p: mse_loss(p, task), params)
        return moments(key, mv, n, degree=degree, num_probes=probes, lanczos_steps=60, bounds_steps=30)

    return f(params, task, jax.random.key(22))


@pytest.mark.parametrize(
    "widths,train,degree,probes",
    [
        pytest.param((16, 16, 12, 1), 0, 1000, 16, id="N489-init"),
        pytest.param((16, 16, 12, 1), 300, 1000, 16, id="N489-trained"),
        pytest.param((64, 24, 24, 1), 0, 8000, 64, marks=pytest.mark.slow, id="N2185-init"),
        pytest.param((64, 24, 24, 1), 300, 8000, 64, marks=pytest.mark.slow, id="N2185-trained"),
    ],
)
def test_mlp_counts_against_eigvalsh(widths, train, degree, probes):
    params, task, ev = _mlp(widths, train)
    n = ev.size
    mom = _mlp_counts(params, task, n, degree, probes)
    th = _thresholds(ev)
    c = counts(mom, th)
    exact = np.array([np.mean(ev < t) for t in th])
    inside = (c.lower <= exact) & (exact <= c.upper)
    # The bracket is the polynomial error (rigorous) widened by COUNT_Z = 2 standard errors of the stochastic
    # trace: a 95% bar, so the issue asks for coverage in >= 95% of a fixed set of cases, not in every one.
    # At most one of the 13 thresholds may fall outside, and only by probe noise: the same bracket widened
    # by 4 standard errors holds every exact count (a polynomial failure would not be covered by it).
    # (N2185-trained misses at +0.1 ||H|| by 3.2 standard errors: 24 bulk eigenvalues lie above.)
    assert np.sum(~inside) <= 1, (th[~inside], c.lower[~inside], exact[~inside], c.upper[~inside])
    c4 = counts(mom, th, z=4.0)
    assert np.all((c4.lower <= exact) & (exact <= c4.upper)), (c4.lower, exact, c4.upper)
    assert np.all(np.abs(c.fraction - exact) <= Z * c.stderr + 0.01)
    if n > 1000:
        assert np.all(np.abs(c.fraction - exact) <= 0.005), c.fraction - exact
    # well outside the bulk the counts are resolved
    far = np.abs(th) >= 0.1 * np.max(np.abs(ev))
    assert np.all((c.upper - c.lower)[far] < 0.02)


# ------------------------------------------------------------------------ MLP on real data (digits)


@pytest.mark.parametrize(
    "width,samples,train,degree,probes",
    [
        pytest.param(8, 128, 0, 600, 16, id="N610-init"),
        pytest.param(40, 512, 0, 8000, 64, marks=pytest.mark.slow, id="N3010-init"),
        pytest.param(40, 512, 200, 8000, 64, marks=pytest.mark.slow, id="N3010-trained"),
    ],
)
def test_digits_mlp_counts_against_eigvalsh(width, samples, train, degree, probes):
    """`spectrum` with data="digits": the counts of the experiment against eigvalsh of a float64 Hessian built
    here, independently, from the same parameters and the same draw of the project's data module
    (sim.learning.data.load: images of the fixed training pool, one-hot targets). At N >= 3000 (slow) also
    the issue's 0.005 absolute error for every eps >= 1e-3 ||H||."""
    from sim.experiments import spectrum as exp
    from sim.experiments.spectrum.operators import _gd_chunk
    from sim.learning.data import load

    seed, eps = 4, (1e-3, 1e-2, 1e-1)
    config = exp.SpectrumConfig(
        model="mlp",
        data="digits",
        width=width,
        depth=1,
        num_samples=samples,
        train_steps=train,
        probes=4,
        steps=20,
        exact="no",
        eps=eps,
        eps_rel=True,
        degree=degree,
        count_probes=probes,
        seed=seed,
    )
    assert config.widths == (64, width, 10) and config.num_params == 64 * width + width + 10 * width + 10
    res = exp.run(config)
    assert res.info["data"] == "digits" and "load_digits" in res.info["data_source"]

    key = jax.random.key(seed)
    params = mlp_init(jax.random.fold_in(key, 0), config.widths, dtype=jnp.float32)
    d = load("digits", jax.random.fold_in(key, 1), samples, 1, dtype=jnp.float32)
    if train:
        lr = jnp.asarray(res.info["learning_rate"], jnp.float32)  # 1 / lambda_max at init (Lanczos)
        params, _ = _gd_chunk(params, Task(d.x_train, d.y_train), lr, train)
    p64, x64, y64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, d.x_train, d.y_train))
    n = config.num_params
    # columns of the float64 Hessian, 256 HVPs at a time
    mv = hessian_matvec(lambda p: mse_loss(p, Task(x64, y64)), p64)
    hess = jax.jit(lambda: jax.lax.map(mv, jnp.eye(n, dtype=jnp.float64), batch_size=256))()
    ev = np.linalg.eigvalsh(0.5 * (np.asarray(hess) + np.asarray(hess).T))
    norm = float(np.max(np.abs(ev)))
    assert res.info["counts_info"]["spectral_norm"] == pytest.approx(norm, rel=1e-4)  # ||H|| is an outlier

    misses = 0
    for r in res.tables["counts"]:
        e = r["eps"] * norm
        exact = {"negative": np.mean(ev < -e), "zero": np.mean(np.abs(ev) <= e), "positive": np.mean(ev > e)}
        for k, v in exact.items():
            misses += not (r[f"{k}_fraction_lower"] <= v <= r[f"{k}_fraction_upper"])
        if r["eps"] >= 1e-2:  # resolved: eps_abs is many kernel resolutions wide
            assert r["eps_abs"] > 5 * r["resolution"]
            assert abs(r["negative_fraction"] - exact["negative"]) <= Z * r["negative_fraction_stderr"] + 0.002, r
            assert abs(r["positive_fraction"] - exact["positive"]) <= Z * r["positive_fraction_stderr"] + 0.002, r
        if config.num_params >= 3000:
            assert abs(r["negative_fraction"] - exact["negative"]) <= 0.005, r
            assert abs(r["positive_fraction"] - exact["positive"]) <= 0.005, r
    assert misses == 0 if config.num_params < 3000 else misses <= 1  # 2-standard-error bars: >= 95% of cases
