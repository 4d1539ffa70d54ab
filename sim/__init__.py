"""hdsim: a high-dimensional geometry simulator on JAX.

Kernels for researchers (pure, key first, jit/vmap-able):

* ``sim.vectors``: coordinate laws and the tile-keyed random vector stream (``sample``).
* ``sim.distances``: pairwise distance matrices streamed over the dimension, pair statistics.
* ``sim.theory``: closed-form results to compare with.
* ``sim.fit``: power-law fits with bootstrap intervals.

Experiments (``sim.experiments``) turn kernels into tables; ``sim.io`` and ``sim.plots`` write them.
"""

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

__all__ = [
    "__version__",
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
