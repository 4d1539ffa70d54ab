"""Hessian spectra from Hessian-vector products: SLQ density, negative fraction, extremes, eigenvalue counts.

Two experiments:

* ``run(SpectrumConfig)``: one operator — the MSE loss Hessian of an MLP (``sim.models``) on a
  teacher task or on real data (``data``: digits or MNIST-1D from ``sim.learning.data``) at
  initialisation or after ``train_steps`` of gradient descent, a (shifted) GOE matrix, or the
  (Riemannian, tangent-space) Hessian of a ``sim.landscapes`` GRF / spherical p-spin instance at a
  critical point found by ``sim.critical.find_critical_points`` or at a random point — its SLQ
  density on a grid (main table: ``eigenvalue, density``), the fraction of negative eigenvalues with
  a standard error across probes and a Chebyshev–Markov–Stieltjes bracket, the extreme Ritz values
  with residual bounds, and, where the dimension allows (``exact``), the exact eigenvalues from a dense
  Hessian + ``eigvalsh`` for comparison (smoothed density, histogram, counts, L1 distance).
* ``run_training(SpectrumTrainingConfig)``: the negative fraction of MLP losses along a
  gradient-descent run, for models of 10^3..10^6 parameters (the figure's data).

Modules: ``config`` (configurations, MLP sizes), ``operators`` (the operators: MLP + gradient descent,
GOE, landscape points; dense Hessians), ``memory`` (memory model), ``summary`` (tables and facts,
counts rows), ``single`` (``run``, ``spectrum_of_matvec``), ``training`` (``run_training``).

Counts (``eps`` given): ``sim.counts`` (deflation + Jackson KPM, a bracket covering probe noise and the
polynomial error) with ``degree / 2`` Hessian-vector products per probe; keys ``fold_in(probe key, 1)``.

Keys: model ``fold_in(key, 0)``, data ``fold_in(key, 1)``, probes ``fold_in(key, 2)``, GOE
``fold_in(key, 3)``, landscape instance ``fold_in(key, 4)``, its starts / random point
``fold_in(key, 5)``, with ``key = jax.random.key(seed)``.

Devices: the SLQ probes are split over ``devices`` (default: every device JAX sees) in whole batches of
``batch_size`` probes (``sim.lanczos.slq``): the spectrum is bit-identical for any number of devices,
and with the default batch (all probes at once) one device does the work, so give
``batch_size <= probes / devices`` to use them all. The operator (model, training, Newton search, exact
comparison) is built on one device.

Landscapes (``grf``, ``pspin``): the instance and the point are float64 (Newton searches need it);
the Hessian product is a JVP of the landscape's Euclidean gradient, mapped to the tangent space of the
sphere for p-spin (``B^T H B - (x . grad / n) I`` with ``B`` the Householder tangent basis of
``sim.landscapes.sphere_tangent_basis``, applied as a reflection, never formed). ``point="critical"``
runs ``find_critical_points`` from ``starts`` random starts and takes the first start that converged
(in start order: deterministic); no converged start raises ``RuntimeError``. Other operators plug in
through ``spectrum_of_matvec(key, matvec, dim, config)``.
"""

from sim.experiments.spectrum.config import (
    CRITICAL_MAX_DIM,
    DATA,
    MODELS,
    POINTS,
    SpectrumConfig,
    SpectrumTrainingConfig,
    mlp_widths,
    width_for_params,
)
from sim.experiments.spectrum.memory import check_memory, memory_estimate
from sim.experiments.spectrum.single import run, spectrum_of_matvec
from sim.experiments.spectrum.summary import BRACKET_Z, COUNT_COLUMNS, COUNT_Z
from sim.experiments.spectrum.training import run_training

__all__ = [
    "MODELS",
    "DATA",
    "POINTS",
    "CRITICAL_MAX_DIM",
    "BRACKET_Z",
    "COUNT_COLUMNS",
    "COUNT_Z",
    "SpectrumConfig",
    "SpectrumTrainingConfig",
    "run",
    "run_training",
    "spectrum_of_matvec",
    "mlp_widths",
    "width_for_params",
    "memory_estimate",
    "check_memory",
]
