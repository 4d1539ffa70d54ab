"""hdsim: a high-dimensional geometry simulator on JAX.

The public API is this package's submodules (``sim.rmt.goe``, ``sim.landscapes.make_landscape``, ...),
importable as attributes (``import sim; sim.rmt``: loaded on first use), plus the distance names
re-exported at the top (``from sim import Gaussian, pairwise_distances``).

Kernels (pure functions, PRNG key first, dtypes as arguments, jit/vmap-able; no I/O, no global
configuration changed on import or in a call):

* ``sim.vectors``: coordinate laws and the tile-keyed random vector stream (``sample``).
* ``sim.distances``: pairwise distance matrices streamed over the dimension, pair statistics.
* ``sim.rmt``: random-matrix ensembles, exact index counts (LDL^T inertia or eigvalsh), histograms.
* ``sim.rare``: P(GOE positive definite): de Bruijn's exact formula, thermodynamic integration.
* ``sim.landscapes``: random losses (Gaussian random field, spherical p-spin, MLP training loss).
* ``sim.critical``: critical points by damped Newton / Levenberg-Marquardt from random starts.
* ``sim.hvp``: Hessian- and Gauss-Newton-vector products of any loss.
* ``sim.lanczos``: Lanczos and stochastic Lanczos quadrature (densities, negative fractions).
* ``sim.counts``: eigenvalue counts below thresholds from matvecs, with two-sided brackets.
* ``sim.models``: small MLPs and teacher-student regression tasks.
* ``sim.learning``: data, learners and learning-curve theory (its submodules are imported explicitly).
* ``sim.fit``: power-law and theta fits with bootstrap intervals, binomial intervals.
* ``sim.theory``: closed-form results to compare with (NumPy, float64; see docs/theory.md).
* ``sim.devices``: devices, meshes and multi-process set-up; ``sim.dims``: the ``--dims`` syntax.

Differentiable (``jax.grad``, ``jax.jvp``, ``jax.hessian``): the losses of ``sim.landscapes`` and
``sim.models`` in their point / parameters, ``sim.hvp`` products (also in the point),
``sim.rmt.ldl_pivots``, ``sim.rare.tridiagonal_pivots``, ``sim.distances.cosines_from_gram``. Not
differentiable: samplers (their law parameters are static), integer counts (``sim.rmt.index``),
iterative searches (``sim.critical``: differentiate the landscape at the point it returns), and the
NumPy code in ``sim.fit`` and ``sim.theory``. ``tests/test_api.py`` checks the list.

Experiments (``sim.experiments``) turn kernels into tables; outputs (``sim.io``: atomic CSV/JSON,
``sim.plots``: figures, ``sim.gallery``: the figure gallery) write them.
"""

import importlib as _importlib

__version__ = "0.1.0"

from sim.distances import Metric, pair_stats, pairwise_distances, pairwise_matrices  # noqa: E402
from sim.vectors import (  # noqa: E402
    Cauchy,
    Gaussian,
    Init,
    LogNormal,
    PowerLaw,
    Rademacher,
    StudentT,
    Uniform,
    init_params,
    make_distribution,
    sample,
)

#: every submodule of the public API, in the layer order of the docstring (loaded on first access)
SUBMODULES = (
    "vectors",
    "distances",
    "rmt",
    "rare",
    "landscapes",
    "critical",
    "hvp",
    "lanczos",
    "counts",
    "models",
    "learning",
    "fit",
    "theory",
    "devices",
    "dims",
    "experiments",
    "io",
    "plots",
    "gallery",
)


def __getattr__(name):
    if name in SUBMODULES:
        return _importlib.import_module(f"sim.{name}")
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBMODULES))


__all__ = [
    "__version__",
    "SUBMODULES",
    *SUBMODULES,
    "Metric",
    "pair_stats",
    "pairwise_distances",
    "pairwise_matrices",
    "Cauchy",
    "Gaussian",
    "Init",
    "LogNormal",
    "PowerLaw",
    "Rademacher",
    "StudentT",
    "Uniform",
    "init_params",
    "make_distribution",
    "sample",
]
