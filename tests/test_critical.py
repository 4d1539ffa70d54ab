"""Critical-point finder, index and minimiser against exact answers (p = 2), topology (Euler
characteristic), Kac-Rice counts, the p-spin threshold and the energy-index correlation."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sim import critical as C
from sim import landscapes as L
from sim.experiments import critical as E
from sim.theory import landscapes as T
from tests.stats_helpers import Z

#: one-sided level of "the minima fraction falls": a finder whose fraction did not fall passes with
#: probability below this (Fisher's exact test: the counts are small, normal error bars would not hold).
#: Measured p-values: 7e-5 (GRF, N = 2 against 8), 2e-3 (MLP, P = 9 against 17).
DROP_LEVEL = 0.01


def _drop_p_value(hi, lo):
    """One-sided Fisher exact p-value of minima_fraction(hi) > minima_fraction(lo) (summary rows: minima
    among unique critical points)."""
    from scipy.stats import fisher_exact

    table = [[hi["minima"], hi["unique"] - hi["minima"]], [lo["minima"], lo["unique"] - lo["minima"]]]
    return fisher_exact(table, alternative="greater").pvalue


def _batched_search(land, n, instances, starts, seed=5, **kw):
    """The finder on ``instances`` random landscapes at once (vmap over instances)."""
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(instances))
    params = jax.vmap(lambda k: land.sample(k, n))(keys)
    cp = jax.vmap(lambda pr: C.find_critical_points(jax.random.key(0), land, pr, starts, **kw))(params)
    return jax.tree.map(np.asarray, cp)


def test_pspin_p2_critical_points_are_the_eigenvectors():
    """p = 2, exact: the critical points are +-sqrt(n) v_k, energy lambda_k, index k, all 2n found."""
    n, land = 8, L.PSpin(p=2)
    params = land.sample(jax.random.key(11), n)
    cp = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(1), land, params, 256))
    lam, vec = np.linalg.eigh(np.asarray(params.coupling))
    conv = cp.converged
    assert conv.sum() >= 200  # the search converges almost always here (no stalls expected)
    assert np.all(cp.grad_norm[conv] <= cp.gtol) and np.all(cp.grad_norm[~conv] > cp.gtol)
    for s in np.flatnonzero(conv):
        overlap = vec.T @ cp.x[s] / math.sqrt(n)
        k = int(np.argmax(np.abs(overlap)))
        assert abs(abs(overlap[k]) - 1) < 1e-12, overlap
        assert abs(cp.energy[s] - lam[k]) < 1e-12
        assert cp.index[s] == k  # the number of eigenvalues below lambda_k
        # the Riemannian Hessian is 2 (M - lambda_k I) on the tangent space
        np.testing.assert_allclose(cp.eigenvalues[s], np.sort(2 * (np.delete(lam, k) - lam[k])), atol=1e-11)
    # every +-v_k found exactly once among the unique points, and nothing else
    u = cp.unique
    assert u.sum() == 2 * n
    signs = {
        (int(np.argmax(np.abs(vec.T @ x))), float(np.sign((vec.T @ x)[np.argmax(np.abs(vec.T @ x))]))) for x in cp.x[u]
    }
    assert len(signs) == 2 * n
    assert np.sum((-1.0) ** cp.index[u]) == T.sphere_euler_characteristic(n)
    # duplicates point to a unique start that found the same point
    dup = cp.duplicate_of[conv]
    assert np.all(u[dup]) and np.all(np.linalg.norm(cp.x[conv] - cp.x[dup], axis=1) <= 1e-6 * math.sqrt(n))


@pytest.mark.parametrize("n,starts", [(2, 64), (3, 256)])
def test_pspin_small_n_euler_and_kac_rice(n, starts):
    """p = 3: every instance satisfies sum_k (-1)^k #crit_k = chi(S^(n-1)) (the search found all), and
    the mean number of critical points matches the Kac-Rice value."""
    p, instances = 3, 200
    cp = _batched_search(L.PSpin(p=p), n, instances, starts)
    u = cp.unique
    euler = np.sum(np.where(u, (-1.0) ** cp.index, 0.0), axis=1)
    assert np.all(euler == T.sphere_euler_characteristic(n)), np.flatnonzero(euler != T.sphere_euler_characteristic(n))
    assert np.all(cp.n_zero[u] == 0)
    counts = u.sum(axis=1)
    expected = T.pspin_expected_critical_count(p, n)
    se = counts.std(ddof=1) / math.sqrt(instances)
    assert abs(counts.mean() - expected) <= Z * se, (counts.mean(), expected, se)
    # odd p: H(-x) = -H(x), so critical points pair up as x, -x with energies u, -u, indices k, n-1-k
    for i in range(instances):
        e = np.sort(cp.energy[i][u[i]])
        np.testing.assert_allclose(e, -e[::-1], atol=1e-9)
        k = np.sort(cp.index[i][u[i]])
        np.testing.assert_array_equal(k, (n - 1) - k[::-1])


@pytest.mark.slow
def test_pspin_p4_small_n_euler_and_kac_rice():
    cp = _batched_search(L.PSpin(p=4), 3, 300, 256, seed=6)
    u = cp.unique
    euler = np.sum(np.where(u, (-1.0) ** cp.index, 0.0), axis=1)
    assert np.all(euler == 2)
    counts = u.sum(axis=1)
    expected = T.pspin_expected_critical_count(4, 3)
    assert abs(counts.mean() - expected) <= Z * counts.std(ddof=1) / math.sqrt(counts.size)


def _descent_gap(n, instances, starts, p=3):
    """Mean energy per spin of the minima reached by descent, per instance."""
    land = L.PSpin(p=p)
    means = []
    for i in range(instances):
        params = land.sample(jax.random.fold_in(jax.random.key(7), 1000 * n + i), n)
        cp = jax.tree.map(np.asarray, C.minimise(jax.random.key(i), land, params, starts))
        minima = cp.converged & (cp.index == 0)
        assert minima.mean() >= 0.9  # descent + polish ends at minima, reported
        means.append(cp.energy[minima].mean())
    means = np.array(means)
    return means.mean(), means.std(ddof=1) / math.sqrt(instances)


def test_pspin_descent_approaches_threshold():
    """p = 3: minima reached by descent drift down toward -E_inf = -1.633 as n grows, and stay above
    the ground state -E_0 = -1.657 (Auffinger, Ben Arous, Cerny; finite-n corrections are large)."""
    einf = T.pspin_threshold(3)
    gaps = []
    for n, instances, starts in [(8, 8, 16), (16, 6, 16), (32, 4, 16)]:
        m, se = _descent_gap(n, instances, starts)
        gaps.append((m + einf, se))
    for (g1, s1), (g2, s2) in zip(gaps[:-1], gaps[1:]):
        assert g2 < g1 - Z * math.hypot(s1, s2) / 1.5, gaps  # the gap shrinks (3 SE)
    assert all(g > -T.pspin_ground_state(3) + einf for g, _ in gaps)


@pytest.mark.slow
def test_pspin_descent_approaches_threshold_large_n():
    einf = T.pspin_threshold(3)
    m32, s32 = _descent_gap(32, 8, 32)
    m96, s96 = _descent_gap(96, 4, 32)
    assert (m96 + einf) < (m32 + einf) - 3 * math.hypot(s32, s96)
    assert abs(m96 + einf) < 0.1


def test_grf_index_rises_with_energy_and_follows_semicircle():
    """GRF at n = 16: Spearman(index fraction, energy) > 0.5; the index fraction agrees with the
    Bray-Dean curve F(eps) on average (allowance: 4.5 SE + half an index step 1/(2n))."""
    n, land = 16, L.GRF()
    params = land.sample(jax.random.key(3), n)
    cp = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(4), land, params, 256))
    u = cp.unique
    assert u.sum() >= 80
    fr, e = cp.index[u] / n, cp.energy[u]
    assert E.spearman(fr, e) > 0.5
    diff = fr - T.grf_index_fraction(e)
    assert abs(diff.mean()) <= Z * diff.std(ddof=1) / math.sqrt(diff.size) + 0.5 / n


def test_experiment_grf_minima_fraction_falls_with_n():
    """Through the experiment: the fraction of minima among unique critical points falls with n."""
    cfg = E.CriticalConfig(landscape="grf", dims=(2, 8), starts=64, instances=3, descent=False, spectra=2)
    res = E.run(cfg)
    assert len(res.rows) == 2 * 3 * 64
    keys = list(res.rows[0])
    assert keys[:10] == [
        "landscape",
        "dim",
        "start",
        "converged",
        "grad_norm",
        "energy",
        "index",
        "index_fraction",
        "min_eig",
        "max_eig",
    ]
    assert all(list(r) == keys for r in res.rows)
    for r in res.rows:
        assert (r["index"] is None) == (not r["converged"])
    s2, s8 = res.tables["summary"]
    assert list(s2)[:7] == [
        "landscape",
        "dim",
        "found",
        "converged",
        "unique",
        "minima_fraction",
        "mean_index_fraction",
    ]
    assert s2["found"] == s8["found"] == 192
    # a significant drop, not just any drop (6/26 minima at N = 2 against 1/134 at N = 8: p = 7e-5)
    assert _drop_p_value(s2, s8) < DROP_LEVEL, (s2["minima"], s2["unique"], s8["minima"], s8["unique"])
    # no theory-free claim: the mean index fraction is near the theory at the same energies
    assert abs(s8["mean_index_fraction"] - s8["theory_mean_index_fraction"]) < 0.1
    assert {r["dim"] for r in res.tables["spectrum"]} == {2, 8}  # (a subset check passes on an empty table)
    assert res.tables["theory"][0]["index_fraction"] == 0.0


def _mlp_summary(dims, starts):
    cfg = E.CriticalConfig(landscape="mlp", dims=dims, starts=starts, descent=False, spectra=0)
    return {r["dim"]: r for r in E.run(cfg).tables["summary"]}


def test_mlp_index_rises_with_loss_and_minima_become_rare():
    """MLP teacher-student, hidden widths 2 and 4 (P = 9 and 17 parameters): the index fraction is
    correlated with the loss at P >= 16, and minima are a smaller fraction of the critical points at
    P = 17 than at P = 9."""
    s = _mlp_summary((2, 4), 128)
    assert set(s) == {9, 17}
    assert s[17]["unique"] >= 15
    assert s[17]["spearman"] > 0.5, s[17]
    assert _drop_p_value(s[9], s[17]) < DROP_LEVEL, (s[9]["minima"], s[9]["unique"], s[17]["minima"], s[17]["unique"])


@pytest.mark.slow
def test_mlp_index_energy_larger_networks():
    s = _mlp_summary((2, 4, 8), 256)
    for dim in (17, 33):
        assert s[dim]["unique"] >= 20 and s[dim]["spearman"] > 0.5, s[dim]
    for hi, lo in ((9, 17), (17, 33)):
        assert _drop_p_value(s[hi], s[lo]) < DROP_LEVEL, (
            hi,
            lo,
            s[hi]["minima"],
            s[hi]["unique"],
            s[lo]["minima"],
            s[lo]["unique"],
        )


# ----------------------------------------------------------------------------------------------
# pieces


@dataclasses.dataclass(frozen=True)
class _Quadratic(L.Landscape):
    """Energy sum_i c_i x_i^2 / 2 with c = (-2, 0, 0, 3, 1e-9): index 1, three zero modes at 1e-6."""

    name = "quadratic"

    def sample(self, key, n, *, dtype=jnp.float64):
        return (jnp.array([-2.0, 0.0, 0.0, 3.0, 1e-9]),)

    def size(self, params):
        return 5

    def energy(self, params, x):
        return 0.5 * jnp.sum(params[0] * x * x)

    def start(self, key, params):
        return jax.random.normal(key, (5,))

    def grad_scale(self, params):
        return jnp.asarray(1.0)

    def distance_scale(self, params):
        return 1.0


def test_index_zero_modes_and_quadratic_convergence():
    land = _Quadratic()
    params = land.sample(None, 5)
    index, n_zero, ev = C.hessian_index(land, params, jnp.zeros(5), zero_tol=1e-6)
    assert int(index) == 1 and int(n_zero) == 3
    np.testing.assert_allclose(ev, [-2, 0, 0, 1e-9, 3])
    index, n_zero, _ = C.hessian_index(land, params, jnp.zeros(5), zero_tol=1e-12)
    assert int(index) == 1 and int(n_zero) == 2
    # Newton on a quadratic: steps capped at 0.5 reach the saddle at 0 along the curved directions (an exact
    # Newton step once within reach); the flat directions keep their start values, "lm" gets there too
    x0 = np.asarray(C.starts(jax.random.key(0), land, params, 4))
    for method in C.METHODS:
        cp = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(0), land, params, 4, method=method))
        assert np.all(cp.converged) and np.all(cp.steps <= 12), (method, cp.steps)
        np.testing.assert_allclose(cp.x[:, 1:3], x0[:, 1:3], rtol=1e-12)
        assert np.all(np.abs(cp.x[:, [0, 3]]) < 1e-8) and np.all(cp.index == 1)
    with pytest.raises(ValueError, match="method must be one of lm, newton, subnet"):
        C.find_critical_points(jax.random.key(0), land, params, 4, method="bfgs")


def _trajectory(land, params, x0, method, steps=25):
    """|grad| after each of ``steps`` kernel iterations from each start (no stopping), shape (steps, S)."""
    gtol = 0.0  # never converged: every iteration runs
    kernel = jax.jit(jax.vmap(C.build_newton_kernel(land, method=method, patience=10**6), in_axes=(None, 0, None)))
    state = jax.vmap(lambda x: C.newton_init(land, params, x, gtol, method=method))(x0)
    out = []
    for _ in range(steps):
        state, info = kernel(params, state, gtol)
        out.append(np.asarray(info.grad_norm))
    return np.array(out), state


def test_lm_is_monotone_and_newton_converges_quadratically():
    """ "lm" never raises |grad|; "newton" from near a critical point converges quadratically
    (|g_{k+1}| <= C |g_k|^2 until rounding)."""
    land = L.GRF()
    params = land.sample(jax.random.key(3), 6)
    x0 = C.starts(jax.random.key(1), land, params, 16)
    g, _ = _trajectory(land, params, x0, "lm")
    assert np.all(np.diff(g, axis=0) <= 1e-14)  # rounding only, once at a critical point (|g| ~ 1e-16)
    assert np.mean(g[-1] < 1e-8) > 0.5
    cp = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(1), land, params, 16))
    s = int(np.flatnonzero(cp.converged)[0])
    near = jnp.asarray(cp.x[s] + 1e-3 * np.random.default_rng(0).standard_normal(6))[None]
    g, state = _trajectory(land, params, near, "newton", steps=6)
    g = g[:, 0]
    assert g[0] < 1e-3 and g[3] < 1e-12, g
    ratios = g[1:4] / g[:3] ** 2
    assert np.all(ratios[g[1:4] > 1e-13] < 10), g
    np.testing.assert_allclose(np.asarray(state.x[0]), cp.x[s], atol=1e-12)


def test_starts_do_not_depend_on_the_number_of_starts():
    land = L.GRF()
    params = land.sample(jax.random.key(0), 4)
    a = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(2), land, params, 8))
    b = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(2), land, params, 16))
    np.testing.assert_array_equal(
        C.starts(jax.random.key(2), land, params, 8), C.starts(jax.random.key(2), land, params, 16)[:8]
    )
    np.testing.assert_allclose(a.x, b.x[:8], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(a.converged, b.converged[:8])


def test_queue_gives_every_start_its_own_run():
    """The on-device queue (``search``) with 3, 5 or 16 slots returns, for every start, the run of
    ``newton_solve`` from that start (same steps and flags; points equal up to the rounding of batched
    products), and the same slots give bit-identical results."""
    land = L.GRF()  # the same instance and starts as test_starts_do_not_depend_on_the_number_of_starts
    params = land.sample(jax.random.key(0), 4)
    x0 = C.starts(jax.random.key(2), land, params, 16)
    gtol = 1e-8 * land.grad_scale(params)
    for method in C.METHODS:
        ref = jax.tree.map(np.asarray, jax.vmap(lambda x: C.newton_solve(land, params, x, gtol, method=method))(x0))
        c = ref.converged
        for slots in (3, 5, 16):
            runs = jax.tree.map(np.asarray, C.search(land, params, x0, gtol, slots=slots, method=method))
            np.testing.assert_array_equal(runs.converged, ref.converged)
            np.testing.assert_array_equal(runs.stalled, ref.stalled)
            np.testing.assert_array_equal(runs.steps, ref.steps)
            np.testing.assert_allclose(runs.x[c], ref.x[c], rtol=1e-10, atol=1e-10)
    a = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(2), land, params, 16, slots=5))
    b = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(2), land, params, 16, slots=5))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="slots must be"):
        C.find_critical_points(jax.random.key(1), land, params, 4, slots=0)


def test_queue_tail_batch():
    """With 64 slots the last runs move to a batch of 16: still every start's own run (the rounding of
    the batched products may tip an acceptance test, so the step counts of a few runs may differ)."""
    land = L.GRF()
    params = land.sample(jax.random.key(0), 4)
    x0 = C.starts(jax.random.key(2), land, params, 96)
    gtol = 1e-8 * land.grad_scale(params)
    ref = jax.tree.map(np.asarray, jax.vmap(lambda x: C.newton_solve(land, params, x, gtol))(x0))
    runs = jax.tree.map(np.asarray, C.search(land, params, x0, gtol, slots=64))
    assert np.mean(runs.steps == ref.steps) >= 0.9
    assert np.mean(runs.converged == ref.converged) >= 0.95
    both = runs.converged & ref.converged
    np.testing.assert_allclose(runs.x[both], ref.x[both], rtol=1e-10, atol=1e-10)


def test_escapes_raise_the_converged_fraction_on_an_untuned_problem():
    """The escape steps were chosen on the GRF (n = 32, 64) and the p = 3 p-spin at n = 32; on the p = 4
    p-spin at n = 20 they raise the converged starts from 82/128 (plain LM, ``escapes=0``) to 103/128.
    Every converged point is a critical point (|grad| recomputed <= gtol); every other start is reported
    (flagged, gradient above gtol, no index), none dropped."""
    land, n, starts = L.PSpin(p=4), 20, 128
    params = land.sample(jax.random.key(9), n)
    plain = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(2), land, params, starts, escapes=0))
    cp = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(2), land, params, starts))
    assert plain.converged.sum() < 0.7 * starts <= 0.75 * starts <= cp.converged.sum(), (
        plain.converged.sum(),
        cp.converged.sum(),
    )
    for r in (plain, cp):
        assert r.x.shape == (starts, n) and np.all(r.steps <= 100)
        g = np.linalg.norm(np.asarray(jax.vmap(lambda x: land.grad(params, x))(jnp.asarray(r.x))), axis=1)
        assert np.all(g[r.converged] <= r.gtol) and np.all(r.grad_norm[~r.converged] > r.gtol)
        assert np.all(r.index[~r.converged] == -1) and np.all(r.index[r.converged] >= 0)
        assert np.all(r.converged | r.stalled | (r.steps == 100))  # every start ends for a stated reason
    with pytest.raises(ValueError, match="escapes must be an integer >= 0"):
        C.find_critical_points(jax.random.key(2), land, params, 4, escapes=-1)


def test_merge_duplicates():
    x = jnp.array([[0.0, 0.0], [1.0, 0.0], [1e-9, 0.0], [1.0, 1e-9], [5.0, 5.0], [0.0, 0.0]])
    valid = jnp.array([True, True, True, True, True, False])
    unique, dup = C.merge_duplicates(x, valid, 1e-6)
    np.testing.assert_array_equal(unique, [True, True, False, False, True, False])
    np.testing.assert_array_equal(dup, [0, 1, 0, 1, 4, -1])


def test_nonconverged_runs_are_flagged_not_dropped():
    land = L.GRF()
    params = land.sample(jax.random.key(0), 8)
    cp = jax.tree.map(np.asarray, C.find_critical_points(jax.random.key(0), land, params, 64, max_steps=3))
    assert cp.x.shape == (64, 8)
    assert (~cp.converged).sum() > 0
    assert np.all(cp.grad_norm[~cp.converged] > cp.gtol)
    assert not np.any(cp.unique[~cp.converged]) and np.all(cp.duplicate_of[~cp.converged] == -1)
    assert np.all(cp.steps <= 3)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda land, pr: C.find_critical_points(0, land, pr, 0), "n_starts must be an integer >= 1"),
        (lambda land, pr: C.find_critical_points(0, land, pr, 4, rtol=-1.0), "rtol must be"),
        (lambda land, pr: C.find_critical_points(0, land, pr, 4, max_steps=0), "max_steps must be"),
        (lambda land, pr: C.minimise(0, land, pr, 4, descent_steps=0), "descent_steps must be"),
        (lambda land, pr: C.find_critical_points(0, "grf", pr, 4), "landscape must be"),
    ],
)
def test_bad_solver_input(call, match):
    land = L.GRF()
    with pytest.raises(ValueError, match=match):
        call(land, land.sample(jax.random.key(0), 2))


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"landscape": "bowl"}, "landscape: unknown value 'bowl'; valid: grf, pspin, mlp"),
        ({"landscape": "pspin", "p": 1}, "p must be an integer >= 2"),
        ({"dims": (4, 0)}, "dims must be"),
        ({"dims": ()}, "dims must be"),
        ({"starts": 0}, "starts must be an integer >= 1"),
        ({"landscape": "pspin", "dims": (1,)}, "dimension must be an integer >= 2"),
        ({"landscape": "pspin", "p": 4, "dims": (100,)}, "PSPIN_MAX_COUPLINGS"),
        ({"method": "bfgs"}, "method: unknown value 'bfgs'; valid: lm, newton, subnet"),
        ({"landscape": "mlp", "data": "cifar"}, "data: unknown value 'cifar'; valid: teacher, digits, mnist1d"),
        ({"landscape": "grf", "data": "digits"}, "data 'digits' applies to landscape mlp only"),
        ({"landscape": "mlp", "data": "digits", "d_in": 3}, "d_in is 64 for data 'digits'"),
        ({"landscape": "mlp", "start_scales": (0.0,)}, "init_scales must be"),
        ({"landscape": "mlp", "start_steps": (-2,)}, "train_steps must be"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ValueError, match=match):
        E.CriticalConfig(**kw)


def test_spearman():
    assert E.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert E.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert E.spearman([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.8944271909999159)  # ties: average ranks
    assert math.isnan(E.spearman([1, 1, 1], [1, 2, 3]))


# ----------------------------------------------------------------------------------------------
# minima fraction against N and the index-energy correlation at larger N (slow: ~1 min each)


def _decay(summary):
    from sim.fit import fit_minima_decay

    return fit_minima_decay([s["dim"] for s in summary], [s["minima"] for s in summary], [s["unique"] for s in summary])


def test_minima_decay_fit_recovers_a_known_rate():
    """The logistic fit used for the minima-fraction law recovers the rate of simulated binomial counts
    within its own interval (Wald SE; 4.5 SE)."""
    from sim.fit import fit_minima_decay

    rng = np.random.default_rng(0)
    dims = np.arange(2, 12)
    n = np.full(dims.size, 4000)
    p = 1 / (1 + np.exp(-(1.0 - 0.4 * dims)))
    k = rng.binomial(n, p)
    f = fit_minima_decay(dims, k, n)
    assert abs(f.rate - 0.4) <= Z * f.se and f.se < 0.02
    assert fit_minima_decay(dims, np.zeros_like(k), n) is None  # no minima: no fit


@pytest.mark.slow
def test_grf_minima_fraction_decays_and_index_tracks_energy_larger_n():
    """GRF, N = 2..8 (4 instances): the fitted decay rate of the minima fraction is > 0 by 4.5 SE;
    N = 16, 32: Spearman(index fraction, energy) > 0.5."""
    small = E.run(
        E.CriticalConfig(landscape="grf", dims=(2, 3, 4, 5, 6, 8), starts=256, instances=4, descent=False, spectra=0)
    ).tables["summary"]
    f = _decay(small)
    assert f.rate > Z * f.se, f
    large = E.run(E.CriticalConfig(landscape="grf", dims=(16, 32), starts=256, descent=False, spectra=0)).tables[
        "summary"
    ]
    for s in large:
        assert s["unique"] >= 80 and s["spearman"] > 0.5, s


@pytest.mark.slow
def test_mlp_minima_fraction_decays_with_p():
    """MLP, hidden widths 1..8 (P = 5..33): the fitted decay rate of the minima fraction is > 0 by
    4.5 SE, and Spearman > 0.5 at every P >= 16."""
    s = E.run(E.CriticalConfig(landscape="mlp", dims=(1, 2, 3, 4, 6, 8), starts=256, descent=False, spectra=0)).tables[
        "summary"
    ]
    f = _decay(s)
    assert f.rate > Z * f.se, f
    for r in s:
        if r["dim"] >= 16:
            assert r["unique"] >= 20 and r["spearman"] > 0.5, r


# ---- the Dauphin relation on real data (MLP on scikit-learn's digits) ----

DIGITS = L.MLP(
    data="digits",
    num_samples=32,
    weight_decay=1e-2,
    init_scales=(0.5, 1.0),
    train_steps=(0, 30, 100, 300, 1000, 3000),
    train_lr=0.5,
)


@pytest.fixture(scope="module")
def digits_points():
    """The finder on a (64, 2, 10) MLP (P = 160) trained on 32 digits images, 24 starts along gradient-
    descent trajectories (the sizes of the experiment's `--data digits` runs, scaled down)."""
    params = DIGITS.sample(jax.random.key(0), 2)
    cp = C.find_critical_points(jax.random.key(1), DIGITS, params, 24, max_steps=300, patience=50)
    return params, jax.tree.map(np.asarray, cp)


@pytest.mark.slow  # ~60 s CPU (400 s wall at load 14): 24 searches of up to 300 iterations at P = 160
def test_digits_critical_points_are_critical_and_their_index_is_exact(digits_points):
    """Every converged point: |grad| <= gtol by autodiff (not the closed form the finder used), and the
    reported index and zero-mode count equal numpy's eigvalsh of the autodiff Hessian there."""
    params, cp = digits_points
    conv = np.flatnonzero(cp.converged)
    assert conv.size >= 3, cp.grad_norm  # measured: 3 of 24 (the finder stalls or hits the cap on the rest)
    grad = jax.jit(jax.grad(DIGITS.energy, argnums=1))
    hess = jax.jit(jax.hessian(DIGITS.energy, argnums=1))
    for s in conv:
        assert float(jnp.linalg.norm(grad(params, cp.x[s]))) <= cp.gtol * (1 + 1e-6)
        ev = np.linalg.eigvalsh(np.asarray(hess(params, cp.x[s])))
        cut = 1e-6 * np.abs(ev).max()
        assert int(np.sum(ev < -cut)) == cp.index[s] and int(np.sum(np.abs(ev) <= cut)) == cp.n_zero[s]
    # the others are reported as not converged, with |grad| above the tolerance
    assert np.all(cp.grad_norm[~cp.converged] > cp.gtol) and np.all(cp.index[~cp.converged] == -1)


def test_compile_search_is_the_program_a_call_runs(caplog):
    """``compile_search`` (what the experiment's compile-ahead threads call) compiles the very program
    that a later ``find_critical_points`` call with the same arguments runs: the call compiles nothing
    (a second compilation would cost the time it was meant to save) and returns the same bits."""
    import logging

    land = L.GRF()
    params = land.sample(jax.random.key(0), 4)
    compiled = C.compile_search("find", jax.random.key(3), land, params, 12, slots=5)
    with jax.log_compiles(True), caplog.at_level(logging.DEBUG):
        cp = C.find_critical_points(jax.random.key(3), land, params, 12, slots=5)
        jax.block_until_ready(cp)
    assert not [r for r in caplog.records if "Finished XLA compilation of jit(_find)" in r.getMessage()]
    for u, v in zip(cp, compiled(jax.random.key(3), params)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    with pytest.raises(ValueError, match="kind must be"):
        C.compile_search("bfgs", jax.random.key(3), land, params, 12)
