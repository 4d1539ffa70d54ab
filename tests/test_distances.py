"""Distance kernels: exactness against scipy on the same vectors, chunk invariance, and statistics
against closed-form theory with tolerances from the sample size."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from stats_helpers import assert_mean, assert_variance

from sim.distances import pair_stats, pairwise_distances, pairwise_matrices
from sim.theory.distances import chi_mean, chi_rel_std, cosine_theory, sqdist_moments
from sim.vectors import (
    TILE,
    Cauchy,
    Gaussian,
    Init,
    LogNormal,
    PowerLaw,
    Rademacher,
    StudentT,
    Uniform,
    init_params,
    sample,
    sample_tiles,
)

KEY = jax.random.key(20261123)

SCIPY = [  # (metric, p, scipy name)
    ("euclidean", None, "euclidean"),
    ("sqeuclidean", None, "sqeuclidean"),
    ("cityblock", None, "cityblock"),
    ("minkowski", 0.5, "minkowski"),
    ("minkowski", 3.0, "minkowski"),
    ("chebyshev", None, "chebyshev"),
    ("cosine", None, "cosine"),
]


@pytest.fixture(scope="module")
def small_sets():
    """Materialised vectors (float64 copies of the float32 samples) for each law."""
    laws = [Gaussian(), Uniform(), Cauchy(), PowerLaw(a=1.0), Init(widths=(20, 30, 5))]
    return {law: (law, law.dim if isinstance(law, Init) else 9000) for law in laws}


@pytest.mark.parametrize("metric,p,name", SCIPY)
def test_matches_scipy_on_the_same_vectors(small_sets, metric, p, name):
    """Streamed float32 tiles with tree accumulation agree with scipy's float64 pdist to 1e-5."""
    for law, d in small_sets.values():
        x = np.asarray(sample(KEY, law, 12, d), dtype=np.float64)
        ref = squareform(pdist(x, name, p=p) if p else pdist(x, name))
        got = np.asarray(pairwise_distances(KEY, law, 12, d, metric=metric, p=p))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0, err_msg=f"{law.label()} {metric}")


def test_float64_samples_are_exact():
    x = np.asarray(sample(KEY, Gaussian(), 6, 5000, dtype=jnp.float64))
    got = pairwise_distances(KEY, Gaussian(), 6, 5000, metric="cityblock", dtype=jnp.float64)
    np.testing.assert_allclose(np.asarray(got), squareform(pdist(x, "cityblock")), rtol=1e-12)


CHUNK_TILES = (1, 2, 4, 16)


@pytest.mark.parametrize("metrics", [("euclidean", "cosine"), ("cityblock",), ("chebyshev",)])
def test_bit_identical_for_every_chunk_size(metrics):
    d = 9 * TILE + 123  # a partial last tile, several chunks for the small chunk sizes
    results = [pairwise_matrices(KEY, StudentT(df=5.0), 10, d, metrics, chunk=TILE * k) for k in CHUNK_TILES]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(np.asarray(a), np.asarray(b))


def _dot_instructions(n, d, chunk):
    """The dot instructions of the compiled program, each with the parameters (shapes and layouts) of
    the computation that holds it, names and metadata stripped: what the backend's GEMM is asked to do."""
    from sim.distances import _program

    run, args, _, _ = _program(KEY, StudentT(df=5.0), n, d, ["euclidean"], chunk, jnp.float32, None, None)
    lines = run.lower(*args).compile().as_text().splitlines()
    found = []
    for i, line in enumerate(lines):
        if " dot(" in line:
            start = max(j for j in range(i) if re.match(r"^(ENTRY )?%\S+ \(", lines[j]))
            params = [p for p in lines[start:i] if " parameter(" in p]
            text = " ".join(re.sub(r"%[\w.\-]+|, metadata=\{.*", "", x) for x in params + [line])
            found.append(" ".join(text.split()))
    return sorted(found)


@pytest.mark.parametrize("prefix", [False, True])
def test_gram_is_one_fixed_shape_dot_for_every_chunk(prefix, monkeypatch):
    """The cause of chunk-dependent Gram sums on some CPUs was a dot whose shape changed with the chunk
    (a batched dot over the chunk's tiles, summed in an ISA- and cache-dependent order). The compiled
    program must hold only fixed-shape dots (n, w) x (n, w) contracted over the tile, the same instructions
    with the same operand layouts for every chunk size (XLA neither batches nor merges them): one of
    width TILE in the loop over tiles, and (from GRAM_PREFIX_MIN_POINTS points on, lowered here to 10 with
    ``prefix``) one per width of TILE and the narrower GRAM_PREFIX_WIDTHS in the single-tile branch (the
    width chosen from d alone)."""
    from sim import distances
    from sim.distances import GRAM_PREFIX_WIDTHS

    n, d = 10, 9 * TILE + 123
    if not prefix:
        assert n < distances.GRAM_PREFIX_MIN_POINTS
        (dot,) = _dot_instructions(n, d, TILE)
        assert f"= f32[{n},{TILE}]{{1,0}} parameter(0) ROOT = f32[{n},{n}]{{1,0}} dot(, )" in dot, dot
        assert _dot_instructions(n, d, 4 * TILE) == [dot]
        return
    monkeypatch.setattr(distances, "GRAM_PREFIX_MIN_POINTS", n)
    dots = {k: _dot_instructions(n, d, k * TILE) for k in CHUNK_TILES}
    assert len(dots[1]) == len(GRAM_PREFIX_WIDTHS) + 2, dots[1]
    for w in (*GRAM_PREFIX_WIDTHS, TILE):
        found = [s for s in dots[1] if f"= f32[{n},{w}]{{1,0}} parameter(0) ROOT = f32[{n},{n}]{{1,0}} dot(, )" in s]
        assert len(found) == (2 if w == TILE else 1), (w, dots[1])
        assert all("contracting_dims={1}" in s and "batch_dims" not in s for s in found), found
    for k in CHUNK_TILES[1:]:
        assert dots[k] == dots[1], (k, dots[k], dots[1])


# 600 points: slow (~25 s, one more 600-point program), run by .ci/run as a claim test
@pytest.mark.parametrize("n", [10, pytest.param(600, marks=pytest.mark.slow)])
def test_short_tiles_give_the_full_tiles_gram_bit_for_bit(n, monkeypatch):
    """A tile with few valid coordinates (d < TILE, or the last tile) is drawn and multiplied at the
    narrowest of GRAM_PREFIX_WIDTHS that holds them (from GRAM_PREFIX_MIN_POINTS points on, lowered here to
    10): its coordinates are a prefix of the full tile's and the rest are zeros, so the Gram sums equal
    those of full (n, TILE) tiles bit for bit (on this machine: the scope of every bit-identity promise
    here, see sim.distances), and those of the program without short tiles."""
    from sim import distances
    from sim._util import acc_dtype
    from sim.distances import _gram_tile, _program

    law = StudentT(df=5.0)
    if n < distances.GRAM_PREFIX_MIN_POINTS:  # the same sums without the short tiles
        run, args, _, _ = _program(KEY, law, n, 100, ["euclidean"], None, jnp.float32, None, None)
        without = np.asarray(run(*args)[0])
        monkeypatch.setattr(distances, "GRAM_PREFIX_MIN_POINTS", n)
        run, args, _, _ = _program(KEY, law, n, 100, ["euclidean"], None, jnp.float32, None, None)
        assert np.array_equal(np.asarray(run(*args)[0]), without)
    keys = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(n, dtype=jnp.uint32))
    full = jax.jit(
        lambda t, d: _gram_tile(sample_tiles(keys, law, t[None], d, jnp.float32, TILE)[0]).astype(acc_dtype())
    )
    zero = jnp.zeros((n, n), acc_dtype())
    for d in (100, 1000, TILE + 700):
        run, args, _, _ = _program(KEY, law, n, d, ["euclidean"], None, jnp.float32, None, None)
        (got,) = run(*args)
        tiles = [full(jnp.int32(t), d) for t in range(-(-d // TILE))]
        ref = tiles[0] + zero if len(tiles) == 1 else (tiles[0] + tiles[1]) + zero
        assert np.array_equal(np.asarray(got), np.asarray(ref)), d


@pytest.mark.slow  # ~28 s idle (513-point programs for two chunk sizes); run by .ci/run as a claim test
def test_symmetric_blocks_for_many_points():
    """From SYMMETRIC_MIN_POINTS on, a tile's Gram product is three dots of one shape (h, TILE) x (h, TILE),
    h = ceil(n/2) (the upper blocks; the lower is their transpose): the same three for every chunk,
    bit-identical results for every chunk, an exactly symmetric matrix, and the distances of scipy on
    the same vectors (n odd: the padding row is cut off)."""
    from sim.distances import GRAM_PREFIX_WIDTHS, SYMMETRIC_MIN_POINTS

    n, d = SYMMETRIC_MIN_POINTS + 1, 2 * TILE + 5
    h = -(-n // 2)
    dots = {k: _dot_instructions(n, d, k * TILE) for k in (1, 4)}
    for w in (*GRAM_PREFIX_WIDTHS, TILE):  # three per tile width (TILE: in the loop and the single tile)
        found = [s for s in dots[1] if f"f32[{h},{h}]{{1,0}} dot(" in s and f"f32[{h},{w}]{{1,0}}" in s]
        assert len(found) == (6 if w == TILE else 3), (w, dots[1])
    assert len(dots[1]) == 3 * (len(GRAM_PREFIX_WIDTHS) + 2), dots[1]
    assert dots[4] == dots[1]
    law = StudentT(df=5.0)
    a, b = (np.asarray(pairwise_distances(KEY, law, n, d, chunk=k * TILE)) for k in (1, 4))
    assert np.array_equal(a, b) and np.array_equal(a, a.T)
    ref = squareform(pdist(np.asarray(sample(KEY, law, n, d), dtype=np.float64)))
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=0)


@pytest.mark.slow  # ~9 s idle (a 1030-point Gram product compiled twice); run by .ci/run as a claim test
def test_four_by_four_symmetric_blocks_give_the_two_by_two_sums():
    """Above 2 * SYMMETRIC_MIN_POINTS points a tile's Gram product takes 4 x 4 blocks (5/8 of the flops): the
    same sums as the 2 x 2 form bit for bit (the block size does not change any entry's dot), symmetric,
    n not a multiple of 4 included (padding rows cut off)."""
    from sim.distances import SYMMETRIC_MIN_POINTS, _gram_tile, symmetric_blocks

    n = 2 * SYMMETRIC_MIN_POINTS + 6
    assert symmetric_blocks(n) == 4 and symmetric_blocks(n - 6) == 2
    keys = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(n, dtype=jnp.uint32))
    x = sample_tiles(keys, StudentT(df=5.0), jnp.arange(1, dtype=jnp.int32), TILE + 300, jnp.float32, TILE)[0]
    four, two = (np.asarray(jax.jit(_gram_tile, static_argnums=1)(x, q)) for q in (4, 2))
    assert four.shape == (n, n) and np.array_equal(four, two) and np.array_equal(four, four.T)


def test_fold_in_is_jax_fold_in_bit_for_bit():
    """``sim.vectors.fold_in`` (the unrolled Threefry, cheaper to compile) gives jax.random.fold_in's keys,
    for scalar and vmapped keys, int32 and uint32 data up to 2**32 - 1; rbg keys fall back to JAX's."""
    from sim.vectors import fold_in

    data = np.asarray([0, 1, 7, 2**31 - 1, 2**31 + 5, 2**32 - 1], np.uint64).astype(np.uint32)
    keys = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(4, dtype=jnp.uint32))
    for v in data:
        got = jax.jit(lambda k, v: jax.vmap(lambda kk: fold_in(kk, v))(k))(keys, v)  # noqa: B023
        want = jax.vmap(lambda kk: jax.random.fold_in(kk, v))(keys)  # noqa: B023
        assert np.array_equal(jax.random.key_data(got), jax.random.key_data(want)), v
    t = jnp.int32(2**31 - 3)
    assert np.array_equal(jax.random.key_data(fold_in(KEY, t)), jax.random.key_data(jax.random.fold_in(KEY, t)))
    rbg = jax.random.key(3, impl="rbg")
    assert np.array_equal(jax.random.key_data(fold_in(rbg, 5)), jax.random.key_data(jax.random.fold_in(rbg, 5)))


def test_split_is_jax_split_bit_for_bit():
    """``sim.vectors.split`` (the unrolled Threefry) gives jax.random.split's keys, scalar and vmapped."""
    from sim.vectors import split

    keys = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(3, dtype=jnp.uint32))
    for num in (1, 2, 4, 7):
        got = jax.jit(jax.vmap(lambda k: split(k, num)))(keys)  # noqa: B023
        want = jax.vmap(lambda k: jax.random.split(k, num))(keys)  # noqa: B023
        assert np.array_equal(jax.random.key_data(got), jax.random.key_data(want)), num
    assert np.array_equal(jax.random.key_data(split(KEY, 2)), jax.random.key_data(jax.random.split(KEY)))


def test_scale_parameters_are_run_time_arguments():
    """A power law's exponent and an MLP's layer table are arguments of the compiled kernels
    (``Distribution.runtime_form``): one distance program serves every exponent, one every MLP of one
    depth, and the coordinates are those of the law with its parameters compiled in, bit for bit."""
    from sim.distances import _program
    from sim.vectors import kernel_jit

    def prog(law, d):
        return _program(KEY, law, 12, d, ["euclidean"], None, jnp.float32, None, None)[0]

    assert prog(PowerLaw(a=0.5), 5000) is prog(PowerLaw(a=2.0), 7000)
    assert prog(Init(widths=(20, 30, 5)), 785) is prog(Init(widths=(9, 4, 3)), 55)
    keys = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(3, dtype=jnp.uint32))
    for law, d in ((PowerLaw(a=0.5), 5000), (PowerLaw(a=1.0), 5000), (PowerLaw(a=2.0), 5000), (Init((20, 30, 5)), 785)):
        tiles = jnp.arange(-(-d // TILE), dtype=jnp.int32)
        static = kernel_jit(lambda k: sample_tiles(k, law, tiles, d, jnp.float32), platform="cpu")(keys)  # noqa: B023
        want = np.moveaxis(np.asarray(static), 0, 1).reshape(3, -1)[:, :d]
        assert np.array_equal(np.asarray(sample(KEY, law, 3, d)), want), law.label()


def test_vectors_are_nested_in_d_and_n():
    big = np.asarray(sample(KEY, Uniform(), 5, 3 * TILE + 7))
    small = np.asarray(sample(KEY, Uniform(), 3, TILE + 1))
    assert np.array_equal(big[:3, : TILE + 1], small)


def test_coordinates_beyond_int32_come_from_their_tile_key():
    """Coordinates past 2**31 (here past 2**32) need only their tile's key: tiles t - 1, t, t + 1 with
    t = 2**20 + 3, sampled alone for d = t * TILE + 100, are the law's draws from
    fold_in(fold_in(key, i), tile) (tile t cut after 100 coordinates, tile t + 1 beyond d: zero), and the
    power law scales coordinate j by (j + 1)^(-a/2) with j's true 64-bit index (an int32 index would
    have wrapped negative)."""
    t = 2**20 + 3
    d = t * TILE + 100
    assert d > 2**32
    point_keys = jax.vmap(lambda i: jax.random.fold_in(KEY, i))(jnp.arange(2, dtype=jnp.uint32))
    tiles = jnp.asarray([t - 1, t, t + 1], jnp.int32)
    for law in (Gaussian(), PowerLaw(a=1.0)):
        x = np.asarray(sample_tiles(point_keys, law, tiles, jnp.asarray(d, jnp.int64), jnp.float32))
        for i in range(2):
            for j, tile in enumerate((t - 1, t)):
                z = np.asarray(Gaussian().draw(jax.random.fold_in(point_keys[i], tile), (TILE,), jnp.float32))
                want = z.astype(np.float64)
                if isinstance(law, PowerLaw):
                    want = want * (tile * TILE + np.arange(TILE, dtype=np.float64) + 1) ** (-law.a / 2)
                valid = TILE if tile < t else 100
                np.testing.assert_allclose(
                    x[j, i, :valid], want[:valid], rtol=2e-6, atol=0, err_msg=f"{law.label()} point {i} tile {tile}"
                )
                assert not x[j, i, valid:].any()
            assert not x[2, i].any()


# ---------------------------------------------------------------------------------------------
# statistics: R independent pairs of vectors (n = 2, keys fold_in(key, r))


@functools.cache
def _pair_sampler(law, d, metric):
    def one(k):
        return pairwise_distances(k, law, 2, d, metric=metric, chunk=TILE)[0, 1]

    return jax.jit(lambda keys: jax.vmap(one)(keys))


def pair_values(law, d, metric, reps, salt=0):
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(KEY, salt), i))(jnp.arange(reps))
    return np.asarray(_pair_sampler(law, d, metric)(keys))


@pytest.mark.parametrize("law", [Gaussian(), Uniform(), Rademacher(), StudentT(df=10.0), PowerLaw(a=1.0)])
def test_squared_distance_mean_and_variance(law):
    """E S and Var S of S = |x - y|^2 (docs/theory.md#distances-moments) within 4.5 standard errors."""
    d = 64
    s = pair_values(law, d, "sqeuclidean", 20000)
    mean, var = sqdist_moments(law, d)
    assert_mean(s, mean, what=f"{law.label()} E S")
    assert_variance(s, var, what=f"{law.label()} Var S")


def test_theory_table_values():
    """The per-coordinate constants of the table in docs/theory.md#distances-moments."""
    assert sqdist_moments(Gaussian(), 1) == pytest.approx((2, 8))
    assert sqdist_moments(Uniform(), 1) == pytest.approx((1 / 6, 1 / 15 - 1 / 36))
    assert sqdist_moments(Rademacher(), 1) == pytest.approx((2, 4))
    nu = 7.0
    assert sqdist_moments(StudentT(df=nu), 1) == pytest.approx(
        (2 * nu / (nu - 2), 6 * nu**2 / ((nu - 2) * (nu - 4)) + 2 * nu**2 / (nu - 2) ** 2)
    )
    assert all(math.isnan(v) for v in sqdist_moments(Cauchy(), 10))
    mean3, var3 = sqdist_moments(StudentT(df=3.0), 10)  # finite variance, infinite fourth moment
    assert mean3 == pytest.approx(10 * 2 * 3.0) and math.isnan(var3)


def test_chi_law_moments_are_accurate_at_every_dimension():
    """Against 50-digit values (mpmath): the series branch above d = 1000 keeps full precision where
    2d - mean^2 cancels (at d = 1e8 it went negative in float64)."""
    import mpmath as mp

    mp.mp.dps = 50
    for d in (2, 10, 999, 1000, 1001, 10**4, 10**8, 10**9, 175 * 10**9):
        m = 2 * mp.exp(mp.loggamma(mp.mpf(d + 1) / 2) - mp.loggamma(mp.mpf(d) / 2))
        rel = mp.sqrt(2 * d - m * m) / m
        assert chi_mean(d) == pytest.approx(float(m), rel=1e-12), d  # lgamma differences: ~3e-13 at d = 1000
        assert chi_rel_std(d) == pytest.approx(float(rel), rel=1e-9), d


def test_chi_law_mean_of_gaussian_distance():
    d = 10
    dist = pair_values(Gaussian(), d, "euclidean", 20000, salt=1)
    assert_mean(dist, chi_mean(d), what="E|x - y|")
    assert chi_mean(d) == pytest.approx(2 * math.gamma(5.5) / math.gamma(5))


@pytest.mark.parametrize("law,d", [(Gaussian(), 32), (Rademacher(), 32), (Uniform(), 4096)])
def test_cosine_variance(law, d):
    """Var(cos) = 1/d exactly for Gaussian and Rademacher vectors; the delta-method variance for
    uniform vectors (O(1/d) relative bias, far below the 4.5-SE tolerance of 20000 samples)."""
    cos = 1 - pair_values(law, d, "cosine", 20000, salt=2)
    mean, var, _ = cosine_theory(law, d)
    assert_variance(cos, var, what=f"{law.label()} Var cos")
    if law.symmetric:
        assert_mean(cos, mean, what=f"{law.label()} E cos")


def test_cauchy_does_not_concentrate():
    """IQR/median of Cauchy distances tends to 1.530, not 0 (docs/theory.md#distances-heavy-tails); rel_std is O(1)."""
    d = 4096
    dist = pair_values(Cauchy(), d, "euclidean", 8000, salt=3)

    def iqr_med(v):
        q1, q2, q3 = np.quantile(v, [0.25, 0.5, 0.75])
        return (q3 - q1) / q2

    stat = iqr_med(dist)
    boot = np.random.default_rng(0).choice(dist, size=(400, dist.size))
    se = np.std([iqr_med(b) for b in boot])
    assert abs(stat - 1.530) <= 4.5 * se + 0.01, (stat, se)  # 0.01: finite-d bias bound (measured 0.003 at d=4096)
    gauss = pair_stats(pairwise_distances(KEY, Gaussian(), 64, 100_000))
    cauchy = pair_stats(pairwise_distances(KEY, Cauchy(), 64, 100_000))
    assert float(gauss.rel_std) < 0.005
    assert float(cauchy.rel_std) > 0.3  # 60x the Gaussian value


def test_init_params_layer_variances():
    widths = (300, 200, 10)
    w = np.asarray(init_params(KEY, widths, scheme="he"))
    assert w.shape == (300 * 200 + 200 + 200 * 10 + 10,)
    w1, b1 = w[: 300 * 200], w[300 * 200 : 300 * 200 + 200]
    w2 = w[300 * 200 + 200 : 300 * 200 + 200 + 2000]
    assert not b1.any()
    assert_variance(w1, 2 / 300, what="He layer 1")
    assert_variance(w2, 2 / 200, what="He layer 2")


def test_pair_stats_against_numpy():
    m = np.asarray(pairwise_distances(KEY, Gaussian(), 40, 300))
    v = m[np.triu_indices(40, 1)]
    s = pair_stats(m)
    assert float(s.mean) == pytest.approx(v.mean(), rel=1e-12)
    assert float(s.std) == pytest.approx(v.std(), rel=1e-10)
    assert float(s.rel_contrast) == pytest.approx((v.max() - v.min()) / v.min(), rel=1e-12)
    assert int(s.hist.sum()) == v.size


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n": 1}, "n \\(number of points\\)"),
        ({"d": 0}, "d \\(dimension\\)"),
        ({"d": 2**43 + 1}, "above 8796093022208 = 2\\*\\*31 tiles"),
        ({"chunk": 3 * TILE}, "power of two"),
        ({"metric": "manhattan"}, "unknown metric 'manhattan'"),
        ({"metric": "minkowski", "p": 0.0}, "p must be"),
        ({"dist": "gaussian"}, "Distribution"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"dist": Gaussian(), "n": 4, "d": 10} | kwargs
    with pytest.raises(ValueError, match=match):
        pairwise_distances(KEY, args.pop("dist"), args.pop("n"), args.pop("d"), **args)


def test_bad_distribution_parameters():
    with pytest.raises(ValueError, match="df must be"):
        StudentT(df=0.0)
    with pytest.raises(ValueError, match="sigma must be"):
        LogNormal(sigma=-1.0)
    with pytest.raises(ValueError, match="unknown scheme"):
        Init(scheme="xavier-ish")
    with pytest.raises(ValueError, match="has 135 parameters, not d=10"):
        sample(KEY, Init(widths=(20, 5, 5)), 2, 10)


def test_standard_normal_uses_both_halves_of_each_block():
    """float32 Gaussians: value j is sqrt(2) erfinv of a uniform made from sign_words(key)[j] (both
    halves of every Threefry block), short draws are prefixes of long ones, and the moments up to the
    fourth and the tail P(|z| > 3) match N(0, 1) within 4.5 SE over 2^21 draws."""
    from scipy.special import erfinv
    from stats_helpers import assert_proportion

    from sim.vectors import sign_words, standard_normal

    z = np.asarray(standard_normal(KEY, (1 << 21,), jnp.float32))
    assert z.dtype == np.float32
    w = np.asarray(sign_words(KEY, 1000))
    f = ((w >> 9) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1)  # the same float32 steps
    lo = np.nextafter(np.float32(-1), np.float32(0))
    u = np.maximum(lo, f * (np.float32(1) - lo) + lo).astype(np.float64)
    np.testing.assert_allclose(z[:1000], math.sqrt(2) * erfinv(u), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(standard_normal(KEY, (4, 250), jnp.float32)).ravel(), z[:1000])
    x = z.astype(np.float64)
    assert_mean(x, 0.0)
    assert_variance(x, 1.0)
    assert_mean(x**3, 0.0, what="third moment")
    assert_mean(x**4, 3.0, what="fourth moment")
    assert_proportion(int(np.sum(np.abs(x) > 3)), x.size, math.erfc(3 / math.sqrt(2)), what="P(|z| > 3)")
    f64 = standard_normal(KEY, (8,), jnp.float64)  # other dtypes: jax.random.normal
    np.testing.assert_array_equal(f64, jax.random.normal(KEY, (8,), jnp.float64))


def test_erfinv32_is_within_4_ulp_over_the_whole_interval():
    """erfinv32 (Giles' float32 approximation behind the float32 Gaussians) against scipy's float64
    erfinv: at most 4 ulp (of the float32 result) on all 2^23 uniforms the stream makes, on a
    uniform grid of (-1, 1), on the 2^16 float32 values nearest each end, and on 10^-k near 0; the
    ends map to +-inf and |x| > 1 to nan. jax.lax.erf_inv's error is printed beside it (with jaxlib
    0.10.2 up to 65 ulp near |x| = 1: it would fail this bound)."""
    from scipy.special import erfinv

    from sim.vectors import erfinv32

    f = (np.arange(1 << 23, dtype=np.uint32) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1)
    lo = np.nextafter(np.float32(-1), np.float32(0))
    stream = np.maximum(lo, f * (np.float32(1) - lo) + lo)  # every uniform of standard_normal
    ends = np.float32(1) - np.arange(1, 1 << 16, dtype=np.float32) * np.float32(2**-24)
    tiny = np.float32(10.0) ** -np.arange(1, 38, dtype=np.float32)
    grid = np.linspace(-1, 1, (1 << 20) + 1, dtype=np.float32)[1:-1]
    x = np.concatenate([stream, grid, ends, -ends, tiny, -tiny])
    ref = erfinv(x.astype(np.float64))
    spacing = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    ulp = np.abs(np.asarray(erfinv32(x), np.float64) - ref) / spacing
    xla = np.abs(np.asarray(jax.lax.erf_inv(x), np.float64) - ref) / spacing
    print(f"erfinv32 max {ulp.max():.2f} ulp, jax.lax.erf_inv max {xla.max():.2f} ulp")
    assert ulp.max() <= 4.0, (ulp.max(), x[ulp.argmax()])
    np.testing.assert_array_equal(np.asarray(erfinv32(np.float32([1, -1, 1.5, 0]))), [np.inf, -np.inf, np.nan, 0])


def test_unrolled_threefry_is_jax_threefry_bit_for_bit():
    """sim.vectors.threefry2x32 (written out so that XLA fuses it) equals JAX's threefry2x32_p on
    random keys and counters, with per-row key arrays broadcasting against the counters, and
    sign_words equals jax.random.bits(key, uint64)'s words (tests/test_scale.py) through it."""
    from jax.extend.random import threefry2x32_p

    from sim.vectors import threefry2x32

    r = np.random.default_rng(5)
    k = r.integers(0, 2**32, (2, 7, 1), dtype=np.uint32)
    x = r.integers(0, 2**32, (2, 7, 300), dtype=np.uint32)
    k1, k2 = jnp.asarray(k[0]), jnp.asarray(k[1])
    want = threefry2x32_p.bind(*jnp.broadcast_arrays(k1, k2, jnp.asarray(x[0]), jnp.asarray(x[1])))
    got = jax.jit(threefry2x32)(k1, k2, jnp.asarray(x[0]), jnp.asarray(x[1]))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_few_points_sum_a_chunk_at_once_and_stay_chunk_invariant():
    """Up to ELEMENTWISE_GRAM_MAX_POINTS points every tile's contribution (Gram too) is computed for a
    chunk at once and the chunk enters the tree as one aligned block: bit-identical for chunks of 1 and
    16 tiles (16 > the 10 tiles of d: a padded chunk; one tile is where jaxlib 0.10.2 miscompiled a
    broadcast Gram), and scipy's distances on the same vectors."""
    from sim.distances import ELEMENTWISE_GRAM_MAX_POINTS

    n, d = ELEMENTWISE_GRAM_MAX_POINTS, 9 * TILE + 123
    metrics = ("euclidean", "cosine", "cityblock", "chebyshev")
    results = [pairwise_matrices(KEY, StudentT(df=5.0), n, d, metrics, chunk=TILE * k) for k in (1, 16)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(np.asarray(a), np.asarray(b))
    x = np.asarray(sample(KEY, StudentT(df=5.0), n, d), dtype=np.float64)
    for name, got in zip(metrics, results[0]):
        np.testing.assert_allclose(np.asarray(got), squareform(pdist(x, name)), rtol=1e-5, atol=0, err_msg=name)


@pytest.mark.parametrize("edges", [None, (0.0, 0.5, 0.97, 1.0, 1.01, 1.3, 3.0)])
def test_pair_stats_histogram_is_numpys_at_the_edges(edges):
    """The histogram counts as numpy's over the masked entries, also for values exactly on bin edges,
    on the last edge (closed), outside (dropped) and NaN, for even (the fast binning) and uneven edges;
    and pair_stats bins value/mean over the pairs i < j as numpy does."""
    from sim.distances import HIST_EDGES, _histogram

    edges = HIST_EDGES if edges is None else edges
    r = np.random.default_rng(3)
    v = r.uniform(-0.2, 2.8, (60, 60))
    v = np.where(r.random(v.shape) < 0.4, np.asarray(edges)[r.integers(0, len(edges), v.shape)], v)
    v[0, :3] = (np.nan, edges[-1], np.nextafter(edges[-1], 9))
    mask = r.random(v.shape) < 0.7
    got = np.asarray(_histogram(jnp.asarray(v), jnp.asarray(mask), tuple(edges)))
    want, _ = np.histogram(v[mask & ~np.isnan(v)], bins=np.asarray(edges))
    np.testing.assert_array_equal(got, want)
    m = np.asarray(pairwise_distances(KEY, Gaussian(), 50, 40))
    iu = np.triu_indices(50, 1)
    s = pair_stats(jnp.asarray(m), edges=tuple(edges))
    assert float(s.mean) == pytest.approx(m[iu].mean(), rel=1e-12)
    np.testing.assert_array_equal(np.asarray(s.hist), np.histogram(m[iu] / float(s.mean), bins=np.asarray(edges))[0])


def test_kernels_run_inside_a_callers_jit():
    """The kernels' own top-level jits carry CPU compiler options, which XLA refuses on a nested jit:
    traced inside a caller's jit they compile without them, and give the same distances (to rounding)
    and the same samples."""
    from sim.vectors import kernel_jit

    f = kernel_jit(lambda x: x + 1, platform="cpu")
    picked = []
    assert f.pick() is f.tuned and float(jax.jit(lambda x: picked.append(f.pick()) or f(x))(1.0)) == 2.0
    assert picked == [f.plain]
    top = np.asarray(pairwise_distances(KEY, Gaussian(), 12, 5000))
    inner = np.asarray(jax.jit(lambda k: pairwise_distances(k, Gaussian(), 12, 5000))(KEY))
    np.testing.assert_allclose(inner, top, rtol=1e-6)
    x = np.asarray(sample(KEY, Gaussian(), 3, 50))
    np.testing.assert_allclose(np.asarray(jax.jit(lambda k: sample(k, Gaussian(), 3, 50))(KEY)), x, rtol=1e-6)


def test_finalise_compiled_is_the_op_by_op_evaluation():
    """``pairwise_matrices`` finishes each metric with the jitted ``_finalise`` (one fused pass): the same
    bits as evaluating its operations one by one, for every metric."""
    from sim.distances import _finalise, _finalise_jit, _program, make_metric

    for metric, p, _ in SCIPY:
        m = make_metric(metric, p)
        run, args, _, _ = _program(KEY, Gaussian(), 12, 500, [m], None, jnp.float32, None, None)
        (s,) = run(*args)
        assert np.array_equal(np.asarray(_finalise_jit(m, s)), np.asarray(_finalise(m, s))), m.label()
