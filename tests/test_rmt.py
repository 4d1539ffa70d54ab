"""Random-matrix ensembles and index statistics against exact values and theory (docs/theory.md, random matrices)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sim import rmt
from sim.theory import rmt as th
from tests.stats_helpers import Z, assert_mean, assert_proportion, assert_variance

F64 = jnp.float64
GOE = rmt.Ensemble("goe")


# ----------------------------------------------------------------------------------------------
# ensembles


def test_goe_shape_symmetry_and_normalisation():
    h = rmt.goe(jax.random.key(0), 5, batch_shape=(3, 4), normalized=False, dtype=F64)
    assert h.shape == (3, 4, 5, 5) and h.dtype == F64
    assert np.array_equal(np.asarray(h), np.swapaxes(np.asarray(h), -1, -2))
    hn = rmt.goe(jax.random.key(0), 5, batch_shape=(3, 4), dtype=F64)
    np.testing.assert_allclose(np.asarray(hn), np.asarray(h) / math.sqrt(5), rtol=1e-15)
    assert rmt.goe(jax.random.key(0), 4).dtype == jnp.float32


def test_goe_keys_follow_the_flat_batch_index():
    a = rmt.goe(jax.random.key(3), 6, batch_shape=(12,), dtype=F64)
    b = rmt.goe(jax.random.key(3), 6, batch_shape=(3, 4), dtype=F64)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b).reshape(12, 6, 6))
    one = rmt.goe(jax.random.fold_in(jax.random.key(3), 7), 1, dtype=F64)  # raw key path ok
    assert one.shape == (1, 1)
    raw = rmt.goe(jax.random.PRNGKey(3), 6, batch_shape=(12,), dtype=F64)
    np.testing.assert_array_equal(np.asarray(raw), np.asarray(a))


def test_goe_entry_variances():
    """Off-diagonal variance 1, diagonal variance 2 (the GOE, not a matrix of i.i.d. entries)."""
    h = np.asarray(rmt.goe(jax.random.key(1), 6, batch_shape=(20000,), normalized=False, dtype=F64))
    assert_variance(h[:, 0, 1], 1.0, what="off-diagonal")
    assert_variance(h[:, 2, 4], 1.0, what="off-diagonal")
    assert_variance(h[:, 3, 3], 2.0, what="diagonal")
    assert_mean(h[:, 0, 0], 0.0)
    # E tr H^2 = n * 2 + n (n - 1) * 1 = n (n + 1)
    assert_mean(np.einsum("bij,bij->b", h, h), 6 * 7, what="tr H^2")


@pytest.mark.parametrize("law", ["rademacher", "uniform", "gaussian"])
def test_wigner_laws(law):
    h = np.asarray(rmt.wigner(jax.random.key(2), 5, law=law, batch_shape=(20000,), normalized=False, dtype=F64))
    assert np.array_equal(h, np.swapaxes(h, -1, -2))
    off, diag = h[:, 0, 3], h[:, 2, 2]
    if law == "rademacher":  # variances are exactly 1 and 2: check the values and the sign balance
        assert set(np.unique(off)) == {-1.0, 1.0}
        np.testing.assert_allclose(np.unique(np.abs(diag)), [math.sqrt(2)])
        assert_proportion(int(np.sum(off > 0)), off.size, 0.5, what="rademacher sign")
        return
    if law == "uniform":
        assert np.abs(off).max() <= math.sqrt(3)
    assert_variance(off, 1.0, what=f"{law} off-diagonal")
    assert_variance(diag, 2.0, what=f"{law} diagonal")


def test_wishart_moments():
    """W = X^T X / m: E tr W / n = 1 and E tr W^2 / n = (m + n + 1)/m exactly."""
    n, aspect = 6, 1.5
    m = math.ceil(aspect * n)
    w = np.asarray(rmt.wishart(jax.random.key(4), n, aspect=aspect, batch_shape=(20000,), dtype=F64))
    assert np.array_equal(w, np.swapaxes(w, -1, -2))
    assert_mean(np.trace(w, axis1=1, axis2=2) / n, 1.0, what="tr W / n")
    assert_mean(np.einsum("bij,bij->b", w, w) / n, (m + n + 1) / m, what="tr W^2 / n")
    assert np.all(np.linalg.eigvalsh(w) > 0)


def test_shifted_goe_is_goe_plus_shift():
    a = rmt.shifted_goe(jax.random.key(5), 7, 0.75, batch_shape=(4,), dtype=F64)
    b = rmt.goe(jax.random.key(5), 7, batch_shape=(4,), dtype=F64)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b) + 0.75 * np.eye(7), rtol=0, atol=1e-15)


def test_validation_messages():
    with pytest.raises(ValueError, match="goe: n must be"):
        rmt.goe(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="wigner: unknown law"):
        rmt.wigner(jax.random.key(0), 3, law="cauchy")
    with pytest.raises(ValueError, match="index: unknown method"):
        rmt.index(jnp.eye(3), method="qr")
    with pytest.raises(ValueError, match="float64"):
        rmt.goe(jax.random.key(0), 3, dtype=jnp.int32)
    with pytest.raises(ValueError, match="unknown ensemble"):
        rmt.Ensemble.from_label("gue")


# ----------------------------------------------------------------------------------------------
# index


@pytest.mark.parametrize("n", [1, 8, 24, pytest.param(64, marks=pytest.mark.slow)])
def test_ldl_inertia_matches_eigvalsh(n):
    """Sylvester: the signs of the LDL^T pivots count the negative eigenvalues (float64 and float32)."""
    # float64 matrices at shift 0 and float32 matrices at shift 0.3, both eliminated in float64
    for dtype, shift in ((F64, 0.0), (jnp.float32, 0.3)):
        h = rmt.sample_ensemble(jax.random.key(n), GOE, n, batch_shape=(3000,), shift=shift, dtype=dtype)
        k_eig = np.asarray(rmt.index(h))
        k_ldl = np.asarray(rmt.index(h, method="ldl"))
        assert np.array_equal(k_eig, k_ldl), f"n={n} {dtype}: {np.sum(k_eig != k_ldl)} mismatches"
    # pivots are ratios of leading minors: their product is det H
    h = rmt.goe(jax.random.key(9), 6, batch_shape=(50,), dtype=F64)
    np.testing.assert_allclose(np.prod(np.asarray(rmt.ldl_pivots(h)), -1), np.linalg.det(np.asarray(h)), rtol=1e-9)


def test_index_kernels_work_under_a_callers_jit_and_refuse_float64_without_x64():
    """``index`` and ``ldl_pivots`` trace inside a caller's jit/vmap (no global switch inside); without x64
    the float64 elimination is refused with a message naming the way out, and nothing turns x64 on."""
    key = jax.random.key(21)
    h = rmt.goe(key, 6, batch_shape=(300,), dtype=jnp.float32)
    ref = np.sum(np.linalg.eigvalsh(np.asarray(h, np.float64)) < 0, axis=-1)
    jitted = jax.jit(lambda k: rmt.index(rmt.goe(k, 6, batch_shape=(300,)), method="ldl"))
    np.testing.assert_array_equal(np.asarray(jitted(key)), ref)
    per_matrix = jax.jit(jax.vmap(lambda a: jnp.sum(rmt.ldl_pivots(a, dtype=F64) < 0)))
    np.testing.assert_array_equal(np.asarray(per_matrix(h)), ref)
    assert rmt.ldl_pivots(h, dtype=F64).dtype == F64 and rmt.ldl_pivots(h).dtype == jnp.float32
    with jax.enable_x64(False):
        h32 = jnp.asarray(np.asarray(h))
        with pytest.raises(ValueError, match=r"index: dtype float64 needs .*jax_enable_x64.*pivot_dtype=jnp.float32"):
            rmt.index(h32, method="ldl")
        with pytest.raises(ValueError, match=r"index_histogram: dtype float64 needs"):
            rmt.index_histogram(key, GOE, 6, 10)
        with pytest.raises(ValueError, match=r"ldl_pivots: dtype float64 needs"):
            rmt.ldl_pivots(h32, dtype=np.float64)
        np.testing.assert_array_equal(np.asarray(rmt.index(h32, method="ldl", pivot_dtype=jnp.float32)), ref)
        np.testing.assert_array_equal(np.asarray(rmt.index(h32)), ref)
        assert not jax.config.jax_enable_x64
    assert jax.config.jax_enable_x64


def test_index_histogram_independent_of_chunk_and_equal_to_dense():
    key = jax.random.key(11)
    c1 = rmt.index_histogram(key, GOE, 9, 1000, shift=0.2, chunk=1000, dtype=F64)
    c2 = rmt.index_histogram(key, GOE, 9, 1000, shift=0.2, chunk=137, dtype=F64)
    c3 = rmt.index_histogram(key, GOE, 9, 1000, shift=0.2, chunk=137, method="eigh", dtype=F64)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(c1, c3)
    h = rmt.shifted_goe(key, 9, 0.2, batch_shape=(1000,), dtype=F64)
    np.testing.assert_array_equal(c1, np.bincount(np.asarray(rmt.index(h)), minlength=10))
    assert c1.dtype == np.int64 and c1.sum() == 1000


@pytest.mark.parametrize("n, leaf", [(8, 8), (23, 8), (40, 8), (45, 16)])
def test_ldl_recursive_pivots_match_the_blocked_elimination(n, leaf):
    """The row-recursive elimination (used above LDL_RECURSIVE_ABOVE) gives the pivots of the column-panel
    one (same LDL^T, other summation order) on small sizes, leaves and splits that do not divide n, and
    its signs count the negative eigenvalues."""
    h = rmt.sample_ensemble(jax.random.key(n), GOE, n, batch_shape=(2, 150), shift=0.2, dtype=F64)
    rec = np.asarray(jax.jit(rmt._ldl_pivots_recursive, static_argnums=1)(h, leaf))
    blocked = np.asarray(jax.jit(rmt._ldl_pivots_blocked, static_argnums=1)(h, 16))
    assert rec.shape == (2, 150, n)
    np.testing.assert_allclose(rec, blocked, rtol=1e-6)  # rounding only: growth after a small pivot
    np.testing.assert_array_equal(np.sum(rec < 0, -1), np.sum(np.linalg.eigvalsh(np.asarray(h)) < 0, -1))


def test_ldl_above_the_recursive_threshold_matches_eigvalsh():
    """n > LDL_RECURSIVE_ABOVE (the recursive elimination, sub-batches padded with identities): index
    counts equal eigvalsh's, and the pivots multiply to det H."""
    n = rmt.LDL_RECURSIVE_ABOVE + 8
    h = rmt.sample_ensemble(jax.random.key(3), GOE, n, batch_shape=(203,), shift=0.1, dtype=F64)
    k_ldl = np.asarray(rmt.index(h, method="ldl"))
    np.testing.assert_array_equal(k_ldl, np.sum(np.linalg.eigvalsh(np.asarray(h)) < 0, -1))
    assert 0 < k_ldl.min() < k_ldl.max() < n
    piv = np.asarray(rmt.ldl_pivots(h[:20]))
    sign, logdet = np.linalg.slogdet(np.asarray(h[:20]))
    np.testing.assert_allclose(np.sum(np.log(np.abs(piv)), -1), logdet, rtol=1e-9)
    np.testing.assert_array_equal(np.prod(np.sign(piv), -1), sign)


def test_ldl_counts_share_one_program_per_bucket_and_match_dense():
    """Every n of a bucket runs the same compiled counter (n is a runtime value inside [[H, 0], [0, I]]),
    and its counts are those of the dense eigenvalues of ``sample_ensemble``'s matrices."""
    assert [rmt.ldl_bucket(n) for n in (1, 8, 9, 50, 64, 65, 128, 129, 2048)] == [8, 8, 16, 56, 64, 80, 128, 160, 2048]
    assert len({rmt.ldl_bucket(n) for n in range(2, 51)}) == 7
    key = jax.random.key(13)
    before = rmt._counter.cache_info().misses
    for n in (10, 13, 16):
        c = rmt.index_histogram(key, GOE, n, 700, shift=0.1, chunk=128, dtype=F64)
        h = np.asarray(rmt.shifted_goe(key, n, 0.1, batch_shape=(700,), dtype=F64))
        np.testing.assert_array_equal(c, np.bincount(np.sum(np.linalg.eigvalsh(h) < 0, -1), minlength=n + 1))
    assert rmt._counter.cache_info().misses - before == 1
    uni = rmt.Ensemble("wigner", law="uniform")
    c = rmt.index_histogram(key, uni, 11, 700, shift=0.1, chunk=128, dtype=jnp.float32)
    h = np.asarray(rmt.sample_ensemble(key, uni, 11, batch_shape=(700,), shift=0.1, dtype=jnp.float32), np.float64)
    np.testing.assert_array_equal(c, np.bincount(np.sum(np.linalg.eigvalsh(h) < 0, -1), minlength=12))


def test_batch_index_stats():
    h = rmt.shifted_goe(jax.random.key(12), 9, 0.2, batch_shape=(500,), dtype=F64)
    st = rmt.batch_index_stats(h)
    ev = np.linalg.eigvalsh(np.asarray(h))
    np.testing.assert_array_equal(st["index"], np.sum(ev < 0, 1))
    # chunk=137: the shape compiled by the test above
    counts = rmt.index_histogram(jax.random.key(12), GOE, 9, 500, shift=0.2, chunk=137, dtype=F64)
    np.testing.assert_array_equal(st["counts"], counts)
    np.testing.assert_allclose(st["eigenvalues"], ev, atol=1e-12)
    assert st["p_min"] == np.mean(st["index"] == 0)
    assert st["mean_index_fraction"] == pytest.approx(np.mean(st["index_fraction"]))
    np.testing.assert_array_equal(rmt.batch_index_stats(h, method="ldl")["index"], st["index"])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_p_min_exact_small_n(n):
    """Plain Monte Carlo P(index = 0) against the exact values 1/2, (2 - sqrt 2)/4, (pi - 2 sqrt 2)/(4 pi)."""
    total = 400_000
    c = rmt.index_histogram(jax.random.key(100 + n), GOE, n, total)
    assert_proportion(int(c[0]), total, th.EXACT_P_POSITIVE_DEFINITE[n], what=f"P(min) n={n}")
    s = rmt.index_summary(c)
    assert s["log_p_min"] == pytest.approx(math.log(c[0] / total))


def _p_positive_definite_2x2(diag_var):
    """P([[a, b], [b, c]] > 0) for a, c ~ N(0, diag_var), b ~ N(0, 1): the double integral over a, c > 0 of
    phi(a) phi(c) P(b^2 < ac), P(b^2 < ac) = erf(sqrt(ac / 2)) (two-dimensional quadrature, ~1 s)."""
    from scipy import integrate

    k = 1 / (2 * math.pi * diag_var)

    def f(c, a):
        return k * math.exp(-(a * a + c * c) / (2 * diag_var)) * math.erf(math.sqrt(a * c / 2))

    return integrate.dblquad(f, 0, np.inf, 0, np.inf, epsabs=1e-12, epsrel=1e-12)[0]


def test_iid_symmetric_matrix_is_not_goe():
    """With diagonal variance 1 instead of 2 (docs/theory.md#goe-normalisation), P(positive definite) at
    n = 2 is 0.11585 (quadrature), not the GOE's (2 - sqrt 2)/4 = 0.14645; the quadrature reproduces the
    GOE value."""
    p_iid, p_goe = _p_positive_definite_2x2(1.0), _p_positive_definite_2x2(2.0)
    assert p_goe == pytest.approx(th.EXACT_P_POSITIVE_DEFINITE[2], abs=1e-10)
    assert p_iid == pytest.approx(0.1158522491, abs=1e-9)
    total = 400_000
    h = np.asarray(rmt.goe(jax.random.key(7), 2, batch_shape=(total,), normalized=False, dtype=F64))
    h = h.copy()
    h[:, 0, 0] /= math.sqrt(2)
    h[:, 1, 1] /= math.sqrt(2)
    pd = int(np.sum(np.asarray(rmt.index(jnp.asarray(h))) == 0))
    assert_proportion(pd, total, p_iid, what="P(PD), i.i.d. diagonal")
    assert abs(pd / total - p_goe) > 20 * math.sqrt(p_goe * (1 - p_goe) / total)


@pytest.mark.parametrize("shift", [-1.0, 0.5])  # (s = 1 mirrors s = -1: index fraction(s) = 1 - index fraction(-s))
def test_shifted_goe_index_fraction_semicircle(shift):
    """Mean index fraction of GOE/sqrt(n) + s I vs F(-s) + arcsin(s/2)/(2 pi n), within Z standard errors;
    and the plain semicircle value F(-s) is approached like 1/n (the gap halves from n = 32 to 64)."""
    gaps = {}
    for n, total in ((32, 8000), (64, 8000)):
        s = rmt.index_summary(rmt.index_histogram(jax.random.key(200), GOE, n, total, shift=shift, method="eigh"))
        m, se = s["mean_index_fraction"], s["mean_index_fraction_stderr"]
        expected = float(th.shifted_goe_index_fraction(shift, n))
        assert abs(m - expected) <= Z * se, f"n={n} s={shift}: {m:.5f} vs {expected:.5f} ({(m - expected) / se:.1f} SE)"
        gaps[n] = (m - float(th.shifted_goe_index_fraction(shift)), se)
    ratio_se = math.hypot(gaps[32][1] / gaps[64][0], gaps[32][0] * gaps[64][1] / gaps[64][0] ** 2)
    assert abs(gaps[32][0] / gaps[64][0] - 2.0) <= Z * ratio_se + 0.1


def test_goe_index_mean_and_variance():
    """At s = 0 the mean index is n/2 exactly (symmetry); Var(index) = ln(n)/pi^2 + 0.24 (the constant is a
    simulation value, so 0.04 of systematic slack is added to the statistical tolerance)."""
    n, total = 32, 8000
    c = rmt.index_histogram(jax.random.key(300), GOE, n, total, method="eigh")
    k = np.repeat(np.arange(n + 1), c)
    assert_mean(k, n / 2, what="index")
    s = rmt.index_summary(c)
    se_var = s["var_index"] * math.sqrt(2 / total) * 1.2
    assert abs(s["var_index"] - th.goe_index_variance(n)) <= Z * se_var + 0.04
    # far below the binomial n/4 = 12
    assert s["var_index"] < 1.0


@pytest.mark.parametrize("label", ["wigner-rademacher", "wigner-uniform"])
def test_wigner_universality_of_index_fraction(label):
    ens = rmt.Ensemble.from_label(label)
    n, total, shift = 48, 4000, 1.0
    s = rmt.index_summary(rmt.index_histogram(jax.random.key(400), ens, n, total, shift=shift, method="eigh"))
    # The 1/n term depends on the entries' fourth cumulant k4 (-2 for +-1, -1.2 for uniform entries):
    # F_n(x) = F_GOE,n(x) + (k4 / n) G(x) + O(n^-2), G(x) = -sin(4 arccos(x/2)) / (4 pi), the integral of
    # k4's density correction (x^4 - 4x^2 + 2) / (2 pi sqrt(4 - x^2)) (Khorunzhy, Khoruzhenko & Pastur,
    # J. Math. Phys. 37, 5033 (1996)). At x = -1, n = 48 the k4 term is +0.0029 for +-1 entries, 12 standard
    # errors: the tolerance is Z standard errors plus 1/n^2 for the next order (2/n = 0.042 before).
    k4 = {"wigner-rademacher": -2.0, "wigner-uniform": -1.2}[label]
    goe_n = float(th.shifted_goe_index_fraction(shift, n))
    expected = goe_n + k4 / n * (-math.sin(4 * math.acos(-shift / 2)) / (4 * math.pi))
    diff = s["mean_index_fraction"] - expected
    assert abs(diff) <= Z * s["mean_index_fraction_stderr"] + 1 / n**2, (diff, s["mean_index_fraction_stderr"])
    # and the k4 term is needed: without it the rademacher mean misses the GOE value by more than Z SE
    if label == "wigner-rademacher":
        assert abs(s["mean_index_fraction"] - goe_n) > Z * s["mean_index_fraction_stderr"] + 1 / n**2


def test_wishart_shifted_index_marchenko_pastur():
    """W - 1.0 I: the index fraction is the Marchenko–Pastur CDF at 1.0 up to a 1/n term (about 0.001 at
    n = 48, m = 2n, measured). Richardson extrapolation 2 f(48) - f(24) removes the 1/n term; what is left is O(1/n^2)
    (allowed: 1/n^2 = 0.0004) and sampling noise (Z standard errors of the extrapolated value), so the
    tolerance comes from the sample size instead of a 2/n = 0.042 slack 25 times the effect."""
    ens = rmt.Ensemble("wishart", aspect=2.0)
    total = 8000
    est = {}
    for n in (24, 48):
        s = rmt.index_summary(rmt.index_histogram(jax.random.key(500 + n), ens, n, total, shift=-1.0, method="eigh"))
        est[n] = (s["mean_index_fraction"], s["mean_index_fraction_stderr"])
    # (m = 2n: q = n/m = 1/2 at both sizes, the same Marchenko–Pastur law)
    expected = float(th.marchenko_pastur_cdf(1.0, 0.5))
    extrapolated = 2 * est[48][0] - est[24][0]
    se = math.hypot(2 * est[48][1], est[24][1])
    assert abs(extrapolated - expected) <= Z * se + 1 / 48**2, (extrapolated, expected, se)
    assert rmt.index_histogram(jax.random.key(0), ens, 10, 500, method="eigh")[0] == 500  # W > 0


EIGHT_DEVICES = """
import sys
import jax
import numpy as np
from sim import rmt

jax.config.update("jax_enable_x64", True)
assert len(jax.devices()) == 8, jax.devices()
key = jax.random.key(77)
out = {}
for d in (1, 8):
    # n = 3 and 8 share the padded bucket-8 LDL program, n = 11 runs in bucket 16; 1000 matrices in chunks of
    # 96: 11 chunks, so 8 devices take two rounds, the second one partial
    for n in (3, 8, 11):
        out[f"ldl_{n}_{d}"] = rmt.index_histogram(key, rmt.Ensemble("goe"), n, 1000, shift=0.1, chunk=96, devices=d)
    out[f"wishart_{d}"] = rmt.index_histogram(
        key, rmt.Ensemble("wishart"), 6, 1000, shift=-1.0, method="eigh", chunk=96, devices=d
    )
np.savez(sys.argv[1], **out)
"""


def test_streamed_counts_bit_identical_on_8_devices(tmp_path):
    """Index counts of padded-bucket LDL programs (several n per program) and of Wishart eigh counts are
    the same integers on 1 and 8 (forced host) devices, and equal to this process's single device."""

    from tests.processes import run_on_devices

    path = tmp_path / "counts.npz"
    run_on_devices(EIGHT_DEVICES, str(path))
    got = dict(np.load(path))
    for name in ("ldl_3", "ldl_8", "ldl_11", "wishart"):
        np.testing.assert_array_equal(got[f"{name}_1"], got[f"{name}_8"], err_msg=name)
    key = jax.random.key(77)
    np.testing.assert_array_equal(rmt.index_histogram(key, GOE, 11, 1000, shift=0.1, chunk=96), got["ldl_11_8"])
    assert got["ldl_11_8"].sum() == 1000 and np.count_nonzero(got["ldl_11_8"]) > 3


def test_eigenvalue_histogram_matches_dense_and_semicircle_moments():
    n, total = 16, 600
    edges = np.linspace(-2.5, 2.5, 26)
    counts = rmt.eigenvalue_histogram(jax.random.key(600), GOE, n, total, edges, chunk=250, dtype=F64)
    ev = np.linalg.eigvalsh(np.asarray(rmt.goe(jax.random.key(600), n, batch_shape=(total,), dtype=F64)))
    np.testing.assert_array_equal(counts, np.histogram(ev.ravel(), edges)[0])
    # E (1/n) tr H^2 = (n + 1)/n for the normalised GOE (semicircle second moment 1 as n -> inf)
    assert_mean(np.mean(ev**2, axis=1), (n + 1) / n, what="second moment")


# ----------------------------------------------------------------------------------------------
# theory helpers


def test_semicircle_and_marchenko_pastur_theory():
    x = np.linspace(-2, 2, 20001)
    dens = th.semicircle_density(x)
    cdf_num = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(x))])
    np.testing.assert_allclose(th.semicircle_cdf(x), cdf_num, atol=1e-6)
    assert th.semicircle_cdf(-3) == 0 and th.semicircle_cdf(3) == 1 and th.semicircle_cdf(0) == 0.5
    assert th.THETA == pytest.approx(0.27465, abs=1e-5)
    for q in (0.25, 0.5):  # (q = 1: the density diverges at 0 and the trapezoid check is too coarse)
        a, b = th.marchenko_pastur_edges(q)
        t = np.linspace(a, b, 200001)
        d = th.marchenko_pastur_density(t, q)
        mid = (a + b) / 2
        num = np.sum(((d[1:] + d[:-1]) / 2 * np.diff(t))[t[1:] <= mid])
        assert th.marchenko_pastur_cdf(b, q) == pytest.approx(1.0, abs=1e-10)
        assert th.marchenko_pastur_cdf(mid, q) == pytest.approx(num, abs=2e-4)
    assert th.marchenko_pastur_cdf(0.0, 2.0) == pytest.approx(0.5)  # atom 1 - 1/q at 0
