"""The library's surface: what ``import sim`` offers, what it never changes, which kernels
``jax.grad`` goes through (the README's list), and the dependency bounds pyproject.toml states."""

import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import sim

ROOT = Path(__file__).resolve().parent.parent


# ---- one public surface ----


def test_every_public_name_resolves_and_every_submodule_is_documented():
    for name in sim.__all__:
        assert getattr(sim, name) is not None, name
    for mod in sim.SUBMODULES:
        assert importlib.import_module(f"sim.{mod}") is getattr(sim, mod)
        assert f"``sim.{mod}``" in sim.__doc__, f"sim.{mod} is not described in sim's docstring"
    kernels = [p.stem for p in (ROOT / "sim").glob("*.py") if not p.stem.startswith("_")]
    packages = [p.name for p in (ROOT / "sim").iterdir() if (p / "__init__.py").exists()]
    assert sorted(set(kernels + packages) - set(sim.SUBMODULES)) == []  # no module left out of the surface


def test_the_semicircle_cdf_has_one_definition():
    """theory.landscapes, the spectrum experiment and every other user take the one in theory.rmt (also
    with a centre and radius); tests/test_rmt.py checks it against quadrature of the density."""
    from sim.experiments.spectrum import operators
    from sim.theory import landscapes, rmt

    assert landscapes.semicircle_cdf is rmt.semicircle_cdf and operators.semicircle_cdf is rmt.semicircle_cdf
    defs = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "sim").rglob("*.py")
        if re.search(r"^def \w*semicircle_cdf\(", p.read_text(), re.M)
    ]
    assert defs == ["sim/theory/rmt.py"], defs
    x = np.array([-3.0, -2.0, -1.0, 0.0, 0.5, 2.0, 9.0])
    f = rmt.semicircle_cdf(x)
    assert f[0] == 0.0 and f[3] == 0.5 and f[-2] == 1.0 and f[-1] == 1.0
    assert f[2] == pytest.approx(1 / 3 - np.sqrt(3) / (4 * np.pi), abs=1e-15)  # closed form at x = -1
    # centre c and radius r: F((x - c) * 2 / r)
    assert rmt.semicircle_cdf(1.5, centre=1.0, radius=0.5) == pytest.approx(rmt.semicircle_cdf(2.0))
    assert rmt.semicircle_cdf(1.25, centre=1.0, radius=0.5) == pytest.approx(rmt.semicircle_cdf(1.0))


# ---- importing or calling the library changes nothing global ----


def test_import_and_calls_change_no_environment_backend_or_jax_config():
    code = textwrap.dedent("""
        import os, json
        import matplotlib, jax
        jax.config.update("jax_enable_x64", True)  # the user's choice (critical searches in float64)
        before_env = dict(os.environ)
        backend = str(dict.__getitem__(matplotlib.rcParams, "backend"))  # unresolved: the auto sentinel
        keys = ("jax_enable_x64", "jax_compilation_cache_dir", "jax_enable_compilation_cache",
                "jax_persistent_cache_min_compile_time_secs", "jax_platforms")
        before_cfg = {k: getattr(jax.config, k) for k in keys}
        import sim, sim.io, sim.plots, sim.gallery
        import sim.experiments.critical, sim.experiments.rmt, sim.experiments.distances
        from sim.plots import new_figure, save, style
        from sim.experiments import critical as exp
        cfg = exp.CriticalConfig(landscape="grf", dims=(2,), starts=4, descent=False, spectra=0)
        exp.run(cfg)
        class Out:
            def path(self, name):
                import tempfile
                return tempfile.mktemp(suffix=name)
        with style():
            fig, ax = new_figure()
            ax[0, 0].plot([0, 1], [0, 1])
            save(fig, Out(), "x")
        after_cfg = {k: getattr(jax.config, k) for k in keys}
        changed_env = sorted(k for k in set(before_env) | set(os.environ) if before_env.get(k) != os.environ.get(k))
        print(json.dumps({"env": changed_env, "backend": [backend, str(dict.__getitem__(matplotlib.rcParams, "backend"))],
                          "cfg": [str(before_cfg), str(after_cfg)]}))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MPLBACKEND")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["env"] == [], got["env"]  # e.g. OPENBLAS_NUM_THREADS is never set by the library
    assert got["backend"][0] == got["backend"][1]  # no matplotlib.use("Agg") behind the user's back
    assert got["cfg"][0] == got["cfg"][1]


# ---- differentiable kernels (README: "Use the kernels") ----


def _fd(f, x, v, h=1e-6):
    return (f(x + h * v) - f(x - h * v)) / (2 * h)


@pytest.mark.parametrize("name", ["grf", "pspin", "mlp"])
def test_grad_through_a_landscape_matches_its_gradient_and_finite_differences(name):
    from sim import landscapes

    land = landscapes.make_landscape(name, p=3)
    key = jax.random.key(3)
    params = land.sample(key, 6)
    x = land.start(jax.random.fold_in(key, 1), params)
    g = jax.grad(lambda z: land.energy(params, z))(x)
    v = jax.random.normal(jax.random.fold_in(key, 2), x.shape, x.dtype)
    assert float(g @ v) == pytest.approx(float(_fd(lambda z: land.energy(params, z), x, v)), rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(g, land.euclidean_grad(params, x), rtol=1e-10, atol=1e-12)
    # second order: jax.hessian of the energy is the family's Hessian (Euclidean part)
    np.testing.assert_allclose(
        jax.hessian(lambda z: land.energy(params, z))(x), land.euclidean_hessian(params, x), rtol=1e-9, atol=1e-10
    )


def test_grad_through_the_mlp_loss_and_its_hessian_vector_product():
    from sim import hvp, models

    key = jax.random.key(0)
    task = models.teacher_task(key, (3, 5, 2), 16, dtype=jnp.float64)
    params = models.mlp_init(jax.random.fold_in(key, 9), (3, 5, 2), dtype=jnp.float64)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    loss = lambda w: models.mse_loss(unravel(w), task)  # noqa: E731
    v = jax.random.normal(jax.random.fold_in(key, 4), flat.shape, flat.dtype)
    assert float(jax.grad(loss)(flat) @ v) == pytest.approx(float(_fd(loss, flat, v)), rel=1e-6)
    # d/dw of v . H(w) v through hvp: third derivatives, checked against finite differences of v . H v
    vhv = lambda w: jnp.vdot(v, hvp.hvp(loss, w, v))  # noqa: E731
    u = jax.random.normal(jax.random.fold_in(key, 5), flat.shape, flat.dtype)
    assert float(jax.grad(vhv)(flat) @ u) == pytest.approx(float(_fd(vhv, flat, u, 1e-5)), rel=1e-5)


def test_grad_through_ldl_and_tridiagonal_pivots():
    from sim import rare, rmt

    key = jax.random.key(1)
    h = rmt.goe(key, 5, dtype=jnp.float64) + 3.0 * jnp.eye(5)  # positive definite: pivots smooth in h
    e = jax.random.normal(jax.random.fold_in(key, 1), (5, 5), jnp.float64)
    e = e + e.T
    f = lambda m: jnp.sum(jnp.log(rmt.ldl_pivots(m)))  # = log det  # noqa: E731
    assert float(f(h)) == pytest.approx(float(jnp.linalg.slogdet(h)[1]), rel=1e-12)
    assert float(jnp.vdot(jax.grad(f)(h), e)) == pytest.approx(float(_fd(f, h, e)), rel=1e-6)
    a = jnp.array([2.0, 3.0, 2.5, 4.0])
    c = jnp.array([0.5, 0.7, 0.2])
    g = jax.grad(lambda a: jnp.sum(rare.tridiagonal_pivots(a, c)))(a)
    fd = _fd(lambda a: jnp.sum(rare.tridiagonal_pivots(a, c)), a, jnp.ones(4))
    assert float(jnp.sum(g)) == pytest.approx(float(fd), rel=1e-6)


def test_grad_through_pair_distances_of_given_vectors():
    """``cosines_from_gram`` is differentiable in the Gram matrix (the samplers have no parameter to
    differentiate: a law's parameters are static fields)."""
    from sim.distances import cosines_from_gram

    x = jax.random.normal(jax.random.key(2), (4, 7), jnp.float64)
    f = lambda x: jnp.sum(cosines_from_gram(x @ x.T) ** 2)  # noqa: E731
    v = jax.random.normal(jax.random.key(3), x.shape, x.dtype)
    assert float(jnp.vdot(jax.grad(f)(x), v)) == pytest.approx(float(_fd(f, x, v)), rel=1e-6)


# ---- dependency bounds ----


def _pyproject_bound(name):
    text = (ROOT / "pyproject.toml").read_text()
    m = re.search(rf'"{re.escape(name)}>=([0-9.]+)', text)
    assert m, f"pyproject.toml states no lower bound for {name}"
    return tuple(int(p) for p in m.group(1).split("."))


def _version(name):
    return tuple(int(p) for p in re.findall(r"\d+", importlib.metadata.version(name))[:3])


@pytest.mark.parametrize("name", ["jax", "jaxlib", "numpy", "matplotlib", "typer", "rich"])
def test_installed_versions_satisfy_the_stated_bounds(name):
    assert _version(name) >= _pyproject_bound(name)


#: public JAX APIs newer than 0.6, with the first release whose jax/__init__.py exports them (read in
#: the released wheels: shard_map is absent from 0.6.0 and present from 0.6.1; enable_x64 is absent
#: from 0.7.0 and present in 0.8.0)
JAX_API_SINCE = {"jax.shard_map(": (0, 6, 1), "jax.enable_x64(": (0, 8, 0)}


def test_the_bounds_are_the_apis_the_code_needs():
    """The stated minimum JAX is the newest of the APIs the package uses: not below it (an install
    that cannot run), not above it (a needless refusal); NumPy >= 2.0 for np.trapezoid. Beyond this
    table, the package was run with jax/jaxlib 0.6.1 and numpy 2.0.2 (tests/test_io.py, test_api.py,
    test_cli.py and every CLI command; only jax.enable_x64 was missing)."""
    src = "\n".join(p.read_text() for p in [*(ROOT / "sim").rglob("*.py"), ROOT / "cli.py"])
    need = max(v for api, v in JAX_API_SINCE.items() if api in src)
    assert _pyproject_bound("jax") == need and _pyproject_bound("jaxlib") == need
    assert _pyproject_bound("numpy") >= (2, 0) and "np.trapezoid(" in src
    assert "from rich" in (ROOT / "cli.py").read_text()


# ---- configs check themselves (the CLI has no second copy) ----


def _configs():
    from sim.experiments import critical, distances, rmt
    from sim.vectors import Gaussian, Init

    return [
        (lambda: distances.DistancesConfig(dists=(Gaussian(),), points=1), "points must be an integer >= 2, got 1"),
        (lambda: distances.DistancesConfig(dists=(Gaussian(),), chunk=5000), "got 5000"),
        (lambda: distances.DistancesConfig(dists=(Gaussian(),), dtype="float16"), "dtype: unknown value 'float16'"),
        (lambda: distances.DistancesConfig(dists=(Init(widths=(784, 1, 1, 10)),), dims=(10,)), "d=10"),
        (lambda: rmt.RmtConfig(samples=0), "samples must be an integer >= 1, got 0"),
        (lambda: rmt.RmtConfig(dims=(5000,)), "dims: 5000 exceeds the largest allowed value 2048"),
        (lambda: rmt.RmtConfig(shifts=(0.0, float("inf"))), "shifts must be a finite number"),
        (lambda: rmt.RmtConfig(ensemble="wigner-rademacher", index_method="ldl"), "use eigh"),
        (lambda: rmt.RmtConfig(ti_chains=1), "ti_chains must be an integer >= 2, got 1"),
        (lambda: critical.CriticalConfig(starts=0), "starts must be an integer >= 1, got 0"),
        (lambda: critical.CriticalConfig(method="bfgs"), "method: unknown value 'bfgs'; valid: lm, newton"),
        (lambda: critical.CriticalConfig(landscape="pspin", dims=(1,)), "got 1"),
        (lambda: critical.CriticalConfig(length_scale=-1.0), "length_scale must be a finite number > 0, got -1.0"),
    ]


@pytest.mark.parametrize("case", range(13))
def test_configs_validate_themselves_in_one_line(case):
    make, needle = _configs()[case]
    with pytest.raises(ValueError) as e:
        make()
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
