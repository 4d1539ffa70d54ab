"""Defaults tuned on one problem, tested on problems they were not tuned on.

* The critical-point finder's budget and tolerances (``max_steps = 100``, ``patience = 10``,
  ``rtol = 1e-8``, ``zero_tol``, ``dedup_tol``, ``max_step``: set on the GRF and the p-spin) on a coupled
  sum of double wells whose critical points and their indices are known exactly.
* SLQ at the spectrum experiment's defaults (``steps = 80``, ``probes = 16``, the ``interpolate``
  count, set on GOE and MLP Hessians) on a shifted Marchenko-Pastur (Wishart) spectrum, against the
  exact count.
"""

import dataclasses
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from stats_helpers import Z

from sim import critical
from sim.experiments.spectrum import SpectrumConfig
from sim.lanczos import fraction_below, slq
from sim.landscapes import Landscape


class WellsParams(NamedTuple):
    coupling: jax.Array  # (n, n) symmetric, zero diagonal


@dataclasses.dataclass(frozen=True)
class DoubleWells(Landscape):
    """f(x) = sum_i (x_i^4/4 - x_i^2/2) + (eps/2) x^T C x on R^n, C symmetric with zero diagonal.

    At eps = 0 the critical points are the 3^n points with x_i in {-1, 0, 1}, and the index of one is
    its number of zeros (f'' = 3x^2 - 1 is -1 at 0 and 2 at +-1). A small coupling eps moves each
    point by O(eps) and keeps its index (the Hessian's eigenvalues stay near -1 and 2), so the finder
    must find points near the lattice, with those indices, at zero gradient, on a landscape it was not
    tuned on (its steps are in units of distance_scale = 1 here, its gradients of grad_scale = 1)."""

    name = "double-wells"
    eps: float = 0.05

    def sample(self, key, n, *, dtype=jnp.float64):
        c = jax.random.normal(key, (n, n), dtype)
        c = (c + c.T) / 2
        return WellsParams(c - jnp.diag(jnp.diag(c)))

    def size(self, params):
        return params.coupling.shape[0]

    def energy(self, params, x):
        return jnp.sum(x**4 / 4 - x**2 / 2) + 0.5 * self.eps * x @ params.coupling @ x

    def start(self, key, params):
        return jax.random.uniform(key, (self.size(params),), params.coupling.dtype, -1.6, 1.6)

    def grad_scale(self, params):
        return jnp.asarray(1.0, params.coupling.dtype)

    def distance_scale(self, params):
        return 1.0


def test_finder_defaults_on_double_wells():
    n, starts = 3, 256
    land = DoubleWells()
    params = land.sample(jax.random.key(0), n)
    cp = jax.device_get(critical.find_critical_points(jax.random.key(1), land, params, starts))
    conv = np.asarray(cp.converged)
    x = np.asarray(cp.x)
    grad = np.array([np.linalg.norm(np.asarray(land.grad(params, jnp.asarray(xi)))) for xi in x])
    assert np.all(grad[conv] <= 1e-8), grad[conv].max()  # converged means |grad| <= rtol * grad_scale
    lattice = np.round(x[conv])
    assert np.max(np.abs(x[conv] - lattice)) < 0.2  # O(eps) from its lattice point
    index = np.asarray(cp.index)[conv]
    np.testing.assert_array_equal(index, np.sum(lattice == 0, axis=1))  # the index is the number of zeros
    # 256 starts spread over [-1.6, 1.6]^3 reach every one of the 27 critical points
    unique = {tuple(p) for p in lattice.astype(int)}
    assert unique == set(itertools.product((-1, 0, 1), repeat=n)), sorted(
        set(itertools.product((-1, 0, 1), repeat=n)) - unique
    )
    assert conv.mean() >= 0.9, conv.mean()  # a smooth landscape: (almost) every start converges


def test_slq_defaults_on_marchenko_pastur():
    """W = X X^T / m (n = 800, m = 1600: Marchenko-Pastur with ratio 1/2, support [0.086, 2.91]) minus 0.5 I:
    the fraction of negative eigenvalues by SLQ at the spectrum experiment's default steps and probes,
    within Z of its standard error from the exact count (eigvalsh)."""
    defaults = SpectrumConfig()
    steps, probes = defaults.steps, defaults.probes
    rng = np.random.default_rng(3)
    n, m = 800, 1600
    x = rng.standard_normal((n, m))
    a = x @ x.T / m - 0.5 * np.eye(n)
    exact = float(np.mean(np.linalg.eigvalsh(a) < 0))
    mat = jnp.asarray(a, jnp.float32)
    quad = slq(jax.random.key(0), lambda v: mat @ v, n, num_steps=steps, num_probes=probes, dtype=jnp.float32)
    est = fraction_below(quad, 0.0)
    f, se = float(est.fraction), float(est.stderr)
    assert 0.25 < exact < 0.4  # 0 inside the bulk, near its dense left part: a count that depends on resolution
    assert abs(f - exact) <= Z * se, (f, exact, (f - exact) / se)
    assert se < 0.02  # and the standard error is small enough for the check to mean something
