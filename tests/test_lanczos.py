"""Lanczos and stochastic Lanczos quadrature against exact eigendecompositions (numpy eigh/eigvalsh).

Exact facts checked: full-depth quadrature reproduces each probe's spectral measure; m-point Gauss
quadrature integrates polynomials of degree < 2m exactly; breakdown (few distinct eigenvalues) is
handled; Chebyshev–Markov–Stieltjes brackets contain each probe's exact count. Statistical checks
(GOE and MLP Hessians at N ~ 2000): the estimated negative fraction is within 0.01 of the exact
eigvalsh count and within Z standard errors (across probes) of it or of its bracket.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sim.hvp import hessian_matvec, num_params
from sim.lanczos import (
    extreme_eigenvalues,
    fraction_below,
    lanczos,
    probe_vector,
    slq,
    spectral_density,
    tridiagonal_quadrature,
)
from sim.models import mlp_init, mse_loss, teacher_task
from tests.stats_helpers import Z


def _goe_np(seed: int, n: int) -> np.ndarray:
    """GOE normalised to [-2, 2]: (A + A^T) / sqrt(2n) (docs/theory.md#goe-normalisation)."""
    a = np.random.default_rng(seed).standard_normal((n, n))
    return (a + a.T) / math.sqrt(2 * n)


def _probes(key, num_probes, dim, probe="rademacher"):
    """The probe vectors slq uses (fold_in(fold_in(key, i), 0))."""
    return np.stack(
        [
            np.asarray(
                probe_vector(jax.random.fold_in(jax.random.fold_in(key, i), 0), dim, probe=probe, dtype=jnp.float64)
            )
            for i in range(num_probes)
        ]
    )


def _run_slq(mat, key, **kw):
    a = jnp.asarray(mat)
    n = a.shape[0]

    @jax.jit
    def f(a, key):
        return slq(key, lambda v: a @ v, n, dtype=jnp.float64, **kw)

    return f(a, key)


# ---------------------------------------------------------------------------------------- exactness


@pytest.fixture(scope="module")
def small():
    n = 60
    a = _goe_np(1, n) + 0.2 * np.eye(n)
    evals, evecs = np.linalg.eigh(a)
    return a, evals, evecs


def test_lanczos_basis_is_orthonormal_and_tridiagonalises(small):
    a, _, _ = small
    m = 25
    v0 = jnp.asarray(np.random.default_rng(2).standard_normal(a.shape[0]))
    aj = jnp.asarray(a)
    res = jax.jit(lambda v: lanczos(lambda x: aj @ x, v, m))(v0)
    q = np.asarray(res.basis)
    np.testing.assert_allclose(q @ q.T, np.eye(m), atol=1e-12)
    t = q @ a @ q.T
    np.testing.assert_allclose(np.diag(t), res.alpha, atol=1e-12)
    np.testing.assert_allclose(np.diag(t, 1), res.beta, atol=1e-12)
    np.testing.assert_allclose(np.triu(t, 2), 0, atol=1e-12)
    np.testing.assert_allclose(q[0], np.asarray(v0) / np.linalg.norm(v0), atol=1e-14)
    assert int(res.breakdowns) == 0 and float(res.residual) > 0


def test_full_depth_quadrature_is_exact(small):
    a, evals, evecs = small
    n = a.shape[0]
    key = jax.random.key(3)
    quad = _run_slq(a, key, num_steps=n, num_probes=3)
    v = _probes(key, 3, n)
    exact_w = (v @ evecs) ** 2  # (probes, n): the spectral measure seen from each probe
    np.testing.assert_allclose(quad.nodes, np.broadcast_to(evals, quad.nodes.shape), atol=1e-12)
    np.testing.assert_allclose(quad.weights, exact_w, atol=1e-12)
    np.testing.assert_allclose(quad.residuals, 0, atol=1e-12)
    for t in (-1.0, 0.0, 0.7):
        fe = fraction_below(quad, t)
        np.testing.assert_allclose(fe.fraction, np.mean(exact_w[:, evals < t].sum(1)), atol=1e-12)
        np.testing.assert_allclose([fe.lower, fe.upper], fe.fraction, atol=1e-12)  # exact: no bracket


def test_gauss_quadrature_integrates_polynomials_below_degree_2m(small):
    a, _, _ = small
    m = 6
    key = jax.random.key(4)
    quad = _run_slq(a, key, num_steps=m, num_probes=2)
    v = _probes(key, 2, a.shape[0])
    for k in range(2 * m):
        exact = np.einsum("pi,pi->p", v, (np.linalg.matrix_power(a, k) @ v.T).T)
        got = np.sum(quad.weights * np.asarray(quad.nodes) ** k, axis=1)
        np.testing.assert_allclose(got, exact, rtol=1e-10, atol=1e-12, err_msg=f"moment {k}")
    # degree 2m is not integrated exactly (a check that the test can fail)
    exact = np.einsum("pi,pi->p", v, (np.linalg.matrix_power(a, 2 * m) @ v.T).T)
    assert np.all(np.abs(np.sum(quad.weights * np.asarray(quad.nodes) ** (2 * m), axis=1) - exact) > 1e-8)


def test_breakdown_with_few_distinct_eigenvalues_is_exact():
    # Krylov space of any probe has dimension 3: Lanczos breaks down at step 3 and must restart.
    d = np.repeat([-1.0, 0.5, 2.0], [10, 12, 18])
    n = d.size
    key = jax.random.key(5)
    quad = _run_slq(np.diag(d), key, num_steps=n, num_probes=4)
    v = _probes(key, 4, n)
    assert np.all(np.isfinite(np.asarray(quad.nodes))) and np.all(np.isfinite(np.asarray(quad.weights)))
    assert np.all(np.asarray(quad.breakdowns) >= 3)
    np.testing.assert_allclose(np.sort(np.asarray(quad.nodes[0])), np.sort(d), atol=1e-10)
    np.testing.assert_allclose(np.sum(quad.weights, axis=1), 1, atol=1e-12)
    fe = fraction_below(quad, 0.0)
    np.testing.assert_allclose(fe.fraction, np.mean((v[:, :10] ** 2).sum(1)), atol=1e-12)
    # With fewer steps than the Krylov dimension allows, still exact after the breakdown at step 3.
    quad5 = _run_slq(np.diag(d), key, num_steps=5, num_probes=4)
    np.testing.assert_allclose(fraction_below(quad5, 0.0).fraction, fe.fraction, atol=1e-12)
    # Identity: the very first step breaks down.
    quad_i = _run_slq(np.eye(7), key, num_steps=7, num_probes=2)
    np.testing.assert_allclose(quad_i.nodes, 1.0, atol=1e-12)
    np.testing.assert_allclose(fraction_below(quad_i, 1.5).fraction, 1.0, atol=1e-12)


def test_cms_bracket_contains_each_probes_exact_fraction(small):
    a, evals, evecs = small
    n = a.shape[0]
    key = jax.random.key(6)
    p, m = 5, 8
    quad = _run_slq(a, key, num_steps=m, num_probes=p)
    v = _probes(key, p, n)
    exact_w = (v @ evecs) ** 2
    widths = []
    for t in (-1.5, -0.3, 0.0, 0.4, 1.9):
        exact = exact_w[:, evals < t].sum(1)
        for i in range(p):
            one = fraction_below(quad._replace(**{f: x[i : i + 1] for f, x in quad._asdict().items()}), t)
            assert float(one.lower) - 1e-12 <= exact[i] <= float(one.upper) + 1e-12, (t, i)
            widths.append(float(one.upper - one.lower))
    assert max(widths) > 0.01  # at m = 8 the bracket is not trivial


def test_tridiagonal_quadrature_weights_sum_to_one_and_batch():
    rng = np.random.default_rng(7)
    alpha = jnp.asarray(rng.standard_normal((3, 9)))
    beta = jnp.asarray(np.abs(rng.standard_normal((3, 8))))
    nodes, weights, residuals = tridiagonal_quadrature(alpha, beta, jnp.ones((3,), jnp.float64))
    np.testing.assert_allclose(jnp.sum(weights, -1), 1.0, atol=1e-13)
    for i in range(3):
        t = np.diag(alpha[i]) + np.diag(beta[i], 1) + np.diag(beta[i], -1)
        np.testing.assert_allclose(nodes[i], np.linalg.eigvalsh(t), atol=1e-12)
    assert bool(jnp.all(residuals >= 0)) and bool(jnp.all(jnp.diff(nodes, axis=-1) >= 0))


def test_probe_does_not_depend_on_batch_size_or_count(small):
    a, _, _ = small
    key = jax.random.key(8)
    full = _run_slq(a, key, num_steps=10, num_probes=5)
    pairs = _run_slq(a, key, num_steps=10, num_probes=5, batch_size=2)  # batches of 2 plus a remainder
    fewer = _run_slq(a, key, num_steps=10, num_probes=3)
    np.testing.assert_allclose(pairs.nodes, full.nodes, atol=1e-12)
    np.testing.assert_allclose(pairs.weights, full.weights, atol=1e-12)
    np.testing.assert_allclose(fewer.nodes, full.nodes[:3], atol=1e-12)


def test_probe_vectors_are_unit_and_isotropic():
    key = jax.random.key(9)
    for probe in ("rademacher", "gaussian"):
        v = jax.vmap(lambda k, p=probe: probe_vector(k, 50, probe=p, dtype=jnp.float64))(jax.random.split(key, 4000))
        np.testing.assert_allclose(jnp.linalg.norm(v, axis=1), 1.0, atol=1e-12)
        cov = np.asarray(v.T @ v) / v.shape[0]  # E v v^T = I/n
        # entries of v_i v_j (i != j) have variance ~ 1/n^2: tolerance Z * (1/n) / sqrt(samples)
        assert np.max(np.abs(cov - np.eye(50) / 50)) <= Z * (1 / 50) / math.sqrt(v.shape[0]) * 2


def test_density_integrates_to_one_and_is_nonnegative(small):
    a, _, _ = small
    quad = _run_slq(a, jax.random.key(10), num_steps=20, num_probes=4)
    grid = jnp.linspace(-4.0, 4.0, 4001, dtype=jnp.float64)
    rho = spectral_density(quad, grid, sigma=0.05)
    assert bool(jnp.all(rho >= 0))
    np.testing.assert_allclose(jnp.trapezoid(rho, grid), 1.0, atol=1e-9)


def test_validation():
    def mv(v):
        return v

    key = jax.random.key(0)
    with pytest.raises(ValueError, match="slq: num_steps must be <= dim"):
        slq(key, mv, 5, num_steps=6, num_probes=2)
    with pytest.raises(ValueError, match="slq: num_probes must be an integer >= 1"):
        slq(key, mv, 5, num_steps=2, num_probes=0)
    with pytest.raises(ValueError, match="slq: reortho must be one of"):
        slq(key, mv, 5, num_steps=2, num_probes=2, reortho="partial")
    with pytest.raises(ValueError, match="slq: probe must be one of"):
        slq(key, mv, 5, num_steps=2, num_probes=2, probe="uniform")
    with pytest.raises(ValueError, match="lanczos: num_steps must be an integer >= 1"):
        lanczos(mv, jnp.ones(3), 0)
    with pytest.raises(ValueError, match="lanczos: v0 must be a 1-d floating array"):
        lanczos(mv, jnp.ones((3, 3)), 2)
    with pytest.raises(ValueError, match="fraction_below: method must be one of"):
        fraction_below(None, 0.0, method="midpoint")
    with pytest.raises(ValueError, match="spectral_density: sigma must be a finite number > 0"):
        spectral_density(None, jnp.zeros(3), sigma=0.0)
    # no reorthogonalisation may run longer than the dimension
    res = jax.jit(lambda v: lanczos(lambda x: 2.0 * x, v, 8, reortho="none"))(jnp.ones(4, jnp.float64))
    assert res.basis is None and np.all(np.isfinite(np.asarray(res.alpha)))


# ------------------------------------------------------------------------- GOE at N = 2000 (exact)
# The check runs at N = 2000 (slow: ~25 s here); the default run checks the same statistics at
# N = 500, where the tolerances of the density metrics are scaled by sqrt(2000 / N) (probe noise of SLQ
# falls as 1 / sqrt(N * probes)) and the absolute 0.01 bound on the fraction is not asserted (at N = 500
# with 32 probes the probe noise alone is ~0.005, so only the Z-standard-error bound is meaningful).

N_GOE = 2000
SHIFT = 0.4  # H + s I: negative fraction -> F(-s) = 0.3735 (semicircle CDF), not a symmetric 1/2


@pytest.fixture(
    scope="module",
    params=[pytest.param(N_GOE, marks=pytest.mark.slow, id="N2000"), pytest.param(500, id="N500")],
)
def goe(request):
    n = request.param
    a = _goe_np(11, n) + SHIFT * np.eye(n)
    return a, np.linalg.eigvalsh(a)


def _l1_to_exact(quad, evals, grid, sigma):
    """L1 distance on ``grid`` between the SLQ density and the exact eigenvalues smoothed by the same
    Gaussian kernel of width ``sigma``."""
    rho = np.asarray(spectral_density(quad, grid, sigma=sigma))
    z = (np.asarray(grid)[:, None] - evals[None, :]) / sigma
    rho_exact = np.exp(-0.5 * z * z).mean(1) / (sigma * math.sqrt(2 * math.pi))
    return float(np.trapezoid(np.abs(rho - rho_exact), grid))


def _semicircle_cdf(x):
    return 0.5 + (x * math.sqrt(4 - x * x) / 4 + math.asin(x / 2)) / math.pi


def test_goe_negative_fraction_density_and_extremes(goe):
    a, evals = goe
    n = a.shape[0]
    scale = math.sqrt(N_GOE / n)  # density tolerances: probe noise ~ 1 / sqrt(N * probes)
    exact = float(np.mean(evals < 0))
    assert abs(exact - _semicircle_cdf(-SHIFT)) < 0.01 * scale  # the matrix is what we think it is
    quad = _run_slq(a, jax.random.key(12), num_steps=80, num_probes=32)
    fe = fraction_below(quad, 0.0)
    diff = float(fe.fraction) - exact
    if n >= N_GOE:
        assert abs(diff) <= 0.01, f"SLQ {float(fe.fraction):.4f} vs exact {exact:.4f}"
    assert abs(diff) <= Z * float(fe.stderr), f"|diff| = {abs(diff) / float(fe.stderr):.2f} SE"
    assert float(fe.lower) - Z * float(fe.lower_stderr) <= exact <= float(fe.upper) + Z * float(fe.upper_stderr)
    # fraction below other thresholds
    for t in (-1.0, 1.0):
        fe_t = fraction_below(quad, t)
        assert abs(float(fe_t.fraction) - np.mean(evals < t)) <= max(0.01 * scale, Z * float(fe_t.stderr))

    # density against the exact spectrum smoothed with the same kernel
    sigma = 0.1
    l1 = _l1_to_exact(quad, evals, jnp.linspace(-3.0, 3.5, 651, dtype=jnp.float64), sigma)
    assert l1 < 0.05 * scale, f"L1 distance {l1:.4f}"
    # and against the exact histogram (bin width 0.25, density at bin centres from the SLQ density)
    edges = np.arange(-2.0, 2.75, 0.25) + SHIFT - 0.4
    hist, _ = np.histogram(evals, bins=edges, density=True)
    centres = 0.5 * (edges[1:] + edges[:-1])
    slq_hist = np.asarray(spectral_density(quad, jnp.asarray(centres), sigma=sigma))
    assert np.max(np.abs(slq_hist - hist)) < 0.05 * scale

    ext = extreme_eigenvalues(quad)
    assert evals[0] - 1e-10 <= float(ext.min_value) and float(ext.max_value) <= evals[-1] + 1e-10
    assert np.min(np.abs(evals - float(ext.min_value))) <= float(ext.min_residual) + 1e-10
    assert np.min(np.abs(evals - float(ext.max_value))) <= float(ext.max_residual) + 1e-10
    assert float(ext.min_value) - evals[0] < 0.05 and evals[-1] - float(ext.max_value) < 0.05


def test_no_reorthogonalisation_gives_the_same_count(goe):
    a, evals = goe
    exact = float(np.mean(evals < 0))
    quad = _run_slq(a, jax.random.key(13), num_steps=120, num_probes=16, reortho="none")
    fe = fraction_below(quad, 0.0)
    assert abs(float(fe.fraction) - exact) <= max(0.01 * math.sqrt(N_GOE / a.shape[0]), Z * float(fe.stderr))
    np.testing.assert_allclose(np.sum(quad.weights, axis=1), 1.0, atol=1e-10)


# ------------------------------------------------------------------ MLP Hessian at N ~ 2000 (exact)

MLP_WIDTHS = (64, 24, 24, 1)  # 2185 parameters
MLP_SMALL_WIDTHS = (16, 16, 12, 1)  # 489 parameters: the default-run version
MLP_SAMPLES = 256


def _mlp_problem(widths):
    key = jax.random.key(14)
    params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=jnp.float64)
    task = teacher_task(jax.random.fold_in(key, 1), widths, MLP_SAMPLES, noise=0.1, dtype=jnp.float64)
    flat, unravel = ravel_pytree(params)
    hess = jax.jit(jax.hessian(lambda x: mse_loss(unravel(x), task)))(flat)
    return params, task, np.linalg.eigvalsh(np.asarray(hess))


@pytest.fixture(scope="module")
def mlp():
    return _mlp_problem(MLP_WIDTHS)


@pytest.fixture(scope="module")
def mlp_small():
    return _mlp_problem(MLP_SMALL_WIDTHS)


def _mlp_slq(params, task, key, num_steps, num_probes):
    n = num_params(params)

    @jax.jit
    def f(params, task, key):
        mv = hessian_matvec(lambda p: mse_loss(p, task), params)
        return slq(key, mv, n, num_steps=num_steps, num_probes=num_probes, dtype=jnp.float64)

    return f(params, task, key)


def test_mlp_small_negative_fraction_density_and_extremes(mlp_small):
    # The default-run version of the N ~ 2000 check below (which is slow: ~40 s here): N = 489, 16 probes
    # x 100 steps; the estimate within Z standard errors of eigvalsh, the exact count inside the CMS
    # bracket, L1 distance to the exact density (same kernel) scaled by sqrt(2185 / 489) from the
    # N ~ 2000 bound, exact extremes.
    params, task, evals = mlp_small
    n = evals.size
    exact = float(np.mean(evals < 0))
    quad = _mlp_slq(params, task, jax.random.key(15), 100, 16)
    fe = fraction_below(quad, 0.0)
    diff = float(fe.fraction) - exact
    assert abs(diff) <= Z * float(fe.stderr), f"SLQ {float(fe.fraction):.4f} +- {float(fe.stderr):.4f} vs {exact:.4f}"
    assert float(fe.lower) - Z * float(fe.lower_stderr) <= exact <= float(fe.upper) + Z * float(fe.upper_stderr)
    sigma = 0.02
    l1 = _l1_to_exact(quad, evals, jnp.linspace(-1.0, 3.0, 801, dtype=jnp.float64), sigma)
    assert l1 < 0.1 * math.sqrt(2185 / n), f"L1 distance {l1:.4f}"
    ext = extreme_eigenvalues(quad)
    assert abs(float(ext.min_value) - evals[0]) <= 1e-6 and abs(float(ext.max_value) - evals[-1]) <= 1e-6


@pytest.mark.slow  # ~40 s: dense Hessian of 2185 parameters and 32 probes x 200 steps
def test_mlp_negative_fraction_within_001_of_eigvalsh(mlp):
    # Network Hessians have a narrow bulk of near-zero eigenvalues (here ~ 1/5 of them within 3e-3 of 0
    # on a spectrum spanning [-0.7, 2.2]) that Gauss nodes resolve slowly: at 200 steps the textbook step
    # count is still off by 0.04, the interpolated CDF (the default) by < 0.005 (0.01 at 100 steps, 0.1
    # for the step count), and the CMS bracket contains the truth.
    params, task, evals = mlp
    exact = float(np.mean(evals < 0))
    quad = _mlp_slq(params, task, jax.random.key(15), 200, 32)
    fe = fraction_below(quad, 0.0)
    diff = float(fe.fraction) - exact
    assert abs(diff) <= 0.01, f"SLQ {float(fe.fraction):.4f} +- {float(fe.stderr):.4f} vs exact {exact:.4f}"
    assert abs(diff) <= Z * float(fe.stderr), f"|diff| = {abs(diff) / float(fe.stderr):.2f} SE"
    assert float(fe.lower) - Z * float(fe.lower_stderr) <= exact <= float(fe.upper) + Z * float(fe.upper_stderr)
    assert float(fe.upper - fe.lower) > 0.1  # the bracket is wide: the bulk is not resolved
    step = fraction_below(quad, 0.0, method="step")
    assert float(step.lower) - Z * float(step.lower_stderr) <= exact <= float(step.upper) + Z * float(step.upper_stderr)
    assert abs(float(step.fraction) - exact) > 0.03  # the step count's bias, which the default avoids
    # density against the exact spectrum smoothed with the same kernel
    sigma = 0.02
    l1 = _l1_to_exact(quad, evals, jnp.linspace(-1.0, 3.0, 801, dtype=jnp.float64), sigma)
    assert l1 < 0.1, f"L1 distance {l1:.4f}"
    ext = extreme_eigenvalues(quad)
    assert abs(float(ext.min_value) - evals[0]) <= 1e-6 and abs(float(ext.max_value) - evals[-1]) <= 1e-6


# --------------------------------------------------------------------- the experiment (sim.experiments)


def test_spectrum_experiment_goe_full_depth_is_exact():
    from sim.experiments.spectrum import SpectrumConfig, run

    n = 120
    res = run(SpectrumConfig(model="goe", dim=n, shift=0.3, probes=4, steps=n, dtype="float64", seed=3))
    info = res.info
    assert info["breakdowns"] >= 4  # every probe ends in an invariant subspace at full depth
    assert abs(info["negative_fraction"] - info["exact_negative_fraction"]) <= Z * info["negative_fraction_stderr"]
    # exact quadrature per probe: the bracket is the probe noise alone (BRACKET_Z standard errors)
    from sim.experiments.spectrum import BRACKET_Z

    se = info["negative_fraction_stderr"]
    assert info["negative_fraction_lower"] == pytest.approx(info["negative_fraction"] - BRACKET_Z * se, abs=1e-12)
    assert info["negative_fraction_upper"] == pytest.approx(info["negative_fraction"] + BRACKET_Z * se, abs=1e-12)
    assert info["min_eigenvalue"] == pytest.approx(info["exact_min_eigenvalue"], abs=1e-10)
    assert info["max_eigenvalue"] == pytest.approx(info["exact_max_eigenvalue"], abs=1e-10)
    assert [list(r) for r in res.rows[:1]] == [["eigenvalue", "density"]]
    grid = np.array([r["eigenvalue"] for r in res.rows])
    rho = np.array([r["density"] for r in res.rows])
    assert np.trapezoid(rho, grid) == pytest.approx(1.0, abs=1e-3)
    # (density_l1 is not checked here: 4 probes of a 120-dim matrix are too few for a meaningful bound; the
    # GOE N500/N2000 tests check the L1 distance against the smoothed exact density)
    assert {"ritz", "exact_density", "exact_histogram"} <= set(res.tables)


@pytest.mark.slow
def test_spectrum_experiment_mlp_after_training():
    from sim.experiments.spectrum import SpectrumConfig, run

    res = run(
        SpectrumConfig(
            model="mlp",
            width=6,
            depth=2,
            input_dim=4,
            num_samples=32,
            probes=4,
            steps=20,
            train_steps=5,
            dtype="float64",
            exact="yes",
        )
    )
    info = res.info
    assert info["num_params"] == 4 * 6 + 6 + 6 * 6 + 6 + 7
    assert info["loss"] < info["loss_init"]
    lo, hi = info["negative_fraction_lower"], info["negative_fraction_upper"]
    assert lo <= info["exact_negative_fraction"] <= hi
    assert info["exact_min_eigenvalue"] - 1e-9 <= info["min_eigenvalue"]
    assert info["max_eigenvalue"] <= info["exact_max_eigenvalue"] + 1e-9
    assert set(info["seconds"]) >= {"slq_compile", "slq_run", "per_hvp", "train", "exact_hessian"}


@pytest.mark.slow
def test_spectrum_training_rows():
    from sim.experiments.spectrum import SpectrumTrainingConfig, run_training

    res = run_training(
        SpectrumTrainingConfig(
            param_counts=(60,),
            input_dim=4,
            num_samples=32,
            train_steps=10,
            checkpoints=3,
            probes=3,
            steps=10,
            dtype="float64",
        )
    )
    assert [(r["num_params"], r["step"]) for r in res.rows] == [(61, 0), (61, 5), (61, 10)]
    assert len({tuple(r) for r in res.rows}) == 1
    # at initialisation the model is rebuilt from the same keys: the bracket holds the exact fraction
    from sim.models import mlp_widths, width_for_params

    w = width_for_params(60, depth=2, input_dim=4)
    widths = mlp_widths(4, w, 2)
    key = jax.random.key(0)
    params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=jnp.float64)
    task = teacher_task(jax.random.fold_in(key, 1), widths, 32, noise=0.1, dtype=jnp.float64)
    flat, unravel = ravel_pytree(params)
    ev = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda x: mse_loss(unravel(x), task))(flat)))
    r0 = res.rows[0]
    assert r0["negative_fraction_lower"] <= np.mean(ev < 0) <= r0["negative_fraction_upper"]
    losses = [r["loss"] for r in res.rows[:3]]
    assert losses[-1] < losses[0]
