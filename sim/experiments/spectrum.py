"""Hessian spectra from Hessian-vector products: SLQ density, negative fraction, extremes.

Two experiments:

* ``run(SpectrumConfig)``: one operator — the MSE loss Hessian of an MLP (``sim.models``) at
  initialisation or after ``train_steps`` of gradient descent, a (shifted) GOE matrix, or the
  (Riemannian, tangent-space) Hessian of a ``sim.landscapes`` GRF / spherical p-spin instance at a
  critical point found by ``sim.critical.find_critical_points`` or at a random point — its SLQ
  density on a grid (main table: ``eigenvalue, density``), the fraction of negative eigenvalues with
  a standard error across probes and a Chebyshev–Markov–Stieltjes bracket, the extreme Ritz values
  with residual bounds, and, where the dimension allows (``exact``), the exact eigenvalues from a dense
  Hessian + ``eigvalsh`` for comparison (smoothed density, histogram, counts, L1 distance).
* ``run_training(SpectrumTrainingConfig)``: the negative fraction of MLP losses along a
  gradient-descent run, for models of 10^3..10^6 parameters (the figure's data).

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

from __future__ import annotations

import dataclasses
import math
import resource
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sim._util import float_dtype
from sim.devices import get_devices, make_mesh
from sim.experiments.base import Progress, Result, no_progress
from sim.hvp import hessian_matvec, landscape_matvec, num_params  # landscape_matvec: re-exported
from sim.lanczos import PROBES, REORTHO, extreme_eigenvalues, fraction_below, slq, spectral_density
from sim.models import mlp_init, mlp_num_params, mse_loss, teacher_task
from sim.theory.rmt import semicircle_cdf  # re-exported: the one definition

__all__ = [
    "MODELS",
    "SpectrumConfig",
    "SpectrumTrainingConfig",
    "run",
    "run_training",
    "spectrum_of_matvec",
    "mlp_widths",
    "width_for_params",
    "memory_estimate",
    "check_memory",
    "landscape_matvec",
    "semicircle_cdf",
    "POINTS",
    "CRITICAL_MAX_DIM",
]

MODELS = ("mlp", "goe", "grf", "pspin")
#: where a landscape Hessian is taken
POINTS = ("critical", "random")
#: largest landscape dimension for point="critical" (the Newton search diagonalises dense n x n Hessians)
CRITICAL_MAX_DIM = 256


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
    """One spectrum.

    Attributes:
        model: ``"mlp"`` (MSE Hessian of a tanh MLP on a teacher task) or ``"goe"``.
        width, depth, input_dim, output_dim: MLP hidden width, number of hidden layers, in/out sizes.
        num_samples, noise: teacher-task size and label noise.
        train_steps: full-batch gradient-descent steps before the spectrum (0: at initialisation).
        learning_rate: GD step; None: ``1 / lambda_max`` at initialisation (estimated by Lanczos).
        dim, shift: GOE dimension and shift (``H + shift * I``, spectrum ~ [-2, 2] + shift); for grf and
            pspin the landscape size n (the Hessian acts on n, resp. n - 1 tangent, directions).
        p: p-spin order. point: ``"critical"`` or ``"random"`` (landscapes). starts: Newton starts.
        probes, steps: SLQ probes and Lanczos steps per probe.
        probe, reortho, batch_size: see ``sim.lanczos.slq``.
        threshold: also report the fraction of eigenvalues below this value.
        sigma: Gaussian kernel width of the density; None: ``(max - min eigenvalue) / steps``, about the
            spacing of the Gauss nodes (smaller kernels show the nodes, not the density).
        grid_points: points of the density grid.
        exact: ``"auto"`` (dense eigvalsh when N <= exact_max), ``"yes"`` or ``"no"``.
        exact_max: largest N for ``"auto"``.
        dtype: ``"float32"`` or ``"float64"`` (needs x64) for parameters, probes and Lanczos.
        seed: PRNG seed.
        devices: number of devices to split the probe batches over (None: all devices JAX sees).
            Results do not depend on it (they depend on ``batch_size``).
        platform: backend whose devices are used ("cpu", "gpu", "tpu"; None: JAX's default).
    """

    model: str = "mlp"
    width: int = 64
    depth: int = 2
    input_dim: int = 16
    output_dim: int = 1
    num_samples: int = 256
    noise: float = 0.1
    train_steps: int = 0
    learning_rate: float | None = None
    dim: int = 1000
    shift: float = 0.0
    p: int = 3
    point: str = "critical"
    starts: int = 8
    probes: int = 16
    steps: int = 80
    probe: str = "rademacher"
    reortho: str = "full"
    batch_size: int | None = None
    threshold: float = 0.0
    sigma: float | None = None
    grid_points: int = 401
    exact: str = "auto"
    exact_max: int = 4096
    dtype: str = "float32"
    seed: int = 0
    devices: int | None = None
    platform: str | None = None

    def __post_init__(self):
        _check_devices("spectrum", self.devices)
        if self.model not in MODELS:
            raise ValueError(f"spectrum: unknown model {self.model!r}; valid: {', '.join(MODELS)}")
        for name in ("width", "depth", "input_dim", "output_dim", "num_samples", "dim", "probes", "steps", "starts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"spectrum: {name} must be an integer >= 1, got {v!r}")
        if self.point not in POINTS:
            raise ValueError(f"spectrum: point must be one of {', '.join(POINTS)}, got {self.point!r}")
        if self.model in ("grf", "pspin"):
            self.landscape().check_size(self.dim)
            if self.point == "critical" and self.dim > CRITICAL_MAX_DIM:
                raise ValueError(
                    f"spectrum: dim {self.dim} > {CRITICAL_MAX_DIM} with point=critical (the Newton search "
                    f"diagonalises dense Hessians); use a smaller dim or point=random"
                )
        if self.train_steps < 0:
            raise ValueError(f"spectrum: train_steps must be >= 0, got {self.train_steps!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"spectrum: learning_rate must be > 0, got {self.learning_rate!r}")
        if self.probe not in PROBES:
            raise ValueError(f"spectrum: probe must be one of {', '.join(PROBES)}, got {self.probe!r}")
        if self.reortho not in REORTHO:
            raise ValueError(f"spectrum: reortho must be one of {', '.join(REORTHO)}, got {self.reortho!r}")
        if self.exact not in ("auto", "yes", "no"):
            raise ValueError(f"spectrum: exact must be auto, yes or no, got {self.exact!r}")
        if self.sigma is not None and not self.sigma > 0:
            raise ValueError(f"spectrum: sigma must be > 0, got {self.sigma!r}")
        if self.grid_points < 2:
            raise ValueError(f"spectrum: grid_points must be >= 2, got {self.grid_points!r}")
        float_dtype(self.dtype, fn="spectrum")

    @property
    def widths(self) -> tuple[int, ...]:
        return mlp_widths(self.input_dim, self.width, self.depth, self.output_dim)

    @property
    def num_params(self) -> int:
        """N, the dimension of the operator (parameters, GOE size, or landscape tangent dimension)."""
        if self.model == "mlp":
            return mlp_num_params(self.widths)
        if self.model == "pspin":
            return self.dim - 1
        return self.dim

    def landscape(self):
        """The ``sim.landscapes`` family of a grf/pspin config."""
        from sim.landscapes import make_landscape

        return make_landscape(self.model, p=self.p)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SpectrumTrainingConfig:
    """Negative fraction along gradient descent, for MLPs of several sizes (same data, same depth).

    Attributes:
        param_counts: target parameter counts; the hidden width is chosen to come closest.
        depth, input_dim, output_dim, num_samples, noise: as in ``SpectrumConfig``.
        train_steps: GD steps; spectra at ``checkpoints`` evenly spaced steps from 0 to train_steps.
        learning_rate: GD step; None: ``1 / lambda_max`` at initialisation, per model.
        probes, steps, probe, reortho, batch_size, dtype, seed, devices, platform: as in ``SpectrumConfig``.
    """

    param_counts: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    depth: int = 2
    input_dim: int = 16
    output_dim: int = 1
    num_samples: int = 256
    noise: float = 0.1
    train_steps: int = 200
    checkpoints: int = 5
    learning_rate: float | None = None
    probes: int = 8
    steps: int = 60
    probe: str = "rademacher"
    reortho: str = "full"
    batch_size: int | None = 2
    dtype: str = "float32"
    seed: int = 0
    devices: int | None = None
    platform: str | None = None

    def __post_init__(self):
        _check_devices("spectrum-training", self.devices)
        if not self.param_counts or any(int(p) < 10 for p in self.param_counts):
            raise ValueError(f"spectrum-training: param_counts must be integers >= 10, got {self.param_counts!r}")
        for name in ("depth", "input_dim", "output_dim", "num_samples", "probes", "steps", "checkpoints"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"spectrum-training: {name} must be an integer >= 1, got {v!r}")
        if self.train_steps < 0:
            raise ValueError(f"spectrum-training: train_steps must be >= 0, got {self.train_steps!r}")
        if self.checkpoints > 1 and self.train_steps % (self.checkpoints - 1):
            raise ValueError(
                f"spectrum-training: train_steps ({self.train_steps}) must be a multiple of checkpoints - 1"
                f" ({self.checkpoints - 1})"
            )
        if self.probe not in PROBES or self.reortho not in REORTHO:
            raise ValueError(f"spectrum-training: bad probe/reortho {self.probe!r}/{self.reortho!r}")
        float_dtype(self.dtype, fn="spectrum-training")


def _check_devices(fn: str, devices) -> None:
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(f"{fn}: devices must be None or an integer >= 1, got {devices!r}")


def _mesh(config):
    """The 1-D mesh the probes of ``config`` run on."""
    return make_mesh(get_devices(config.devices, platform=config.platform))


def _mesh_info(mesh) -> dict:
    return {"devices": mesh.size, "platform": mesh.devices.flat[0].platform}


# ------------------------------------------------------------------------------------------ models


def mlp_widths(input_dim: int, width: int, depth: int, output_dim: int = 1) -> tuple[int, ...]:
    """Layer widths (input first) of an MLP with ``depth`` hidden layers of ``width``."""
    return (input_dim,) + (width,) * depth + (output_dim,)


def width_for_params(target: int, *, depth: int, input_dim: int, output_dim: int = 1) -> int:
    """The hidden width whose MLP parameter count is closest to ``target``."""
    best, best_err = 1, math.inf
    w = 1
    while True:
        n = mlp_num_params(mlp_widths(input_dim, w, depth, output_dim))
        if abs(n - target) < best_err:
            best, best_err = w, abs(n - target)
        if n > target:
            return best
        w += 1


def _goe(key, n: int, dtype) -> jax.Array:
    """GOE normalised to [-2, 2], ``(A + A^T) / sqrt(2n)`` (private: sim.rmt.goe was not yet available)."""
    a = jax.random.normal(key, (n, n), dtype)
    return (a + a.T) / jnp.sqrt(jnp.asarray(2 * n, dtype))


def _goe_matrix(key, n: int, dtype) -> jax.Array:
    try:
        from sim.rmt import goe  # the shared implementation, when present
    except ImportError:
        return _goe(key, n, dtype)
    return goe(key, n, dtype=dtype)


def _loss(params, task):
    with jax.numpy_rank_promotion("allow"):  # sim.models adds biases with implicit broadcasting
        return mse_loss(params, task)


@jax.jit
def _gd_chunk(params, task, lr, num):
    """``num`` (traced) full-batch GD steps; returns new params and the loss before each step."""

    def body(_, carry):
        p, _loss_prev = carry
        value, g = jax.value_and_grad(_loss)(p, task)
        return jax.tree_util.tree_map(lambda a, b: a - lr.astype(a.dtype) * b, p, g), value

    return jax.lax.fori_loop(0, num, body, (params, jnp.zeros((), lr.dtype)))


def _make_slq(num_steps, num_probes, probe, reortho, batch_size, dtype, threshold, mesh=None):
    """A jitted ``(params, task, key) -> summary`` for the MLP Hessian (compiled once per shape);
    the probe batches are split over ``mesh`` (None: every device)."""

    def f(params, task, key):
        n = num_params(params)
        mv = hessian_matvec(lambda p: _loss(p, task), params)
        quad = slq(
            key,
            mv,
            n,
            num_steps=num_steps,
            num_probes=num_probes,
            probe=probe,
            reortho=reortho,
            batch_size=batch_size,
            dtype=dtype,
            devices=mesh,
        )
        return quad, fraction_below(quad, 0.0), fraction_below(quad, threshold), extreme_eigenvalues(quad)

    return jax.jit(f)


def _lambda_max(params, task, dtype, mesh=None) -> float:
    """Largest Hessian eigenvalue at ``params`` (Lanczos, 30 steps, one probe): for the GD step size."""
    n = num_params(params)
    steps = min(30, n)
    f = jax.jit(
        lambda p, t: (
            extreme_eigenvalues(
                slq(
                    jax.random.key(0),
                    hessian_matvec(lambda q: _loss(q, t), p),
                    n,
                    num_steps=steps,
                    num_probes=1,
                    dtype=dtype,
                    devices=mesh,
                )
            ).max_value
        )
    )
    return float(f(params, task))


#: standard errors (across probes) by which the quadrature bracket is widened in the reports
BRACKET_Z = 2.0


def _bracket(fr) -> tuple[float, float]:
    """The Chebyshev-Markov-Stieltjes bracket of a ``FractionEstimate`` widened by ``BRACKET_Z`` standard
    errors across probes: it covers the quadrature error (rigorously, per probe) and the probe noise.
    Never clipped to [0, 1]."""
    return (float(fr.lower - BRACKET_Z * fr.lower_stderr), float(fr.upper + BRACKET_Z * fr.upper_stderr))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def memory_estimate(config: SpectrumConfig) -> int:
    """Rough upper estimate (bytes) of the peak memory of ``run(config)``.

    Lanczos bases ``batch x steps x N`` (full reorthogonalisation) or a few vectors per probe (none),
    the operator (GOE matrix N^2, p-spin couplings n^p, GRF features 16 n^2, MLP parameters and
    activations), and the dense Hessian plus ``eigvalsh`` workspace (float64) when the exact comparison
    is on; for point=critical, the Newton search's dense Hessians for every start; plus 512 MiB for the
    runtime. Measured at N = 1,000,911 (MLP, 2 probes x 80 steps at once, float32): estimate 1.2 GB,
    peak resident memory 1.25 GB.
    """
    item = 8 if config.dtype == "float64" else 4
    n = config.num_params
    bs = min(config.batch_size or config.probes, config.probes)
    bs *= max(1, min(config.devices or 1, config.probes // bs))  # host-split CPU devices share the memory
    lanczos = bs * (config.steps if config.reortho == "full" else 0) * n * item + bs * 8 * n * item
    exact = config.exact == "yes" or (config.exact == "auto" and n <= config.exact_max)
    dense = 5 * 8 * n * n  # float64 Hessian, its transpose/symmetrisation and the eigvalsh workspace
    if config.model == "goe":
        op = 3 * n * n * item
    elif config.model == "mlp":
        acts = config.num_samples * (config.width * config.depth + config.input_dim + config.output_dim)
        op = 6 * n * item + 8 * acts * item
        if exact:
            dense += n * n * item + 256 * n * 8  # the HVP columns in the parameter dtype, one lax.map batch
    elif config.model == "grf":
        feats = config.landscape().num_features(config.dim)
        op = 3 * feats * config.dim * 8 + min(feats * config.dim**2, 1 << 24) * 8
    else:  # pspin
        op = 3 * config.dim**config.p * 8
    critical = 6 * config.starts * config.dim**2 * 8 if config.model in ("grf", "pspin") and config.point == "critical" else 0
    runtime = 512 << 20  # the JAX/XLA runtime and compiled code (~300 MB measured) plus XLA temporaries
    return int(lanczos + op + (dense if exact else 0) + critical + runtime)


def check_memory(config: SpectrumConfig, available: int) -> None:
    """Raise ValueError when ``memory_estimate(config)`` exceeds ``available`` bytes."""
    need = memory_estimate(config)
    if need > available:
        n = config.num_params
        exact = config.exact == "yes" or (config.exact == "auto" and n <= config.exact_max)
        raise ValueError(
            f"N = {n:,} with {config.steps} steps x {min(config.batch_size or config.probes, config.probes)} probes "
            f"at once{' and the exact dense Hessian' if exact else ''} needs about {need / 2**30:.1f} GiB, more than "
            f"the {available / 2**30:.1f} GiB available; use fewer --steps, a smaller --batch-size, "
            f"--reortho none{', --exact no' if exact else ''} or a smaller model"
        )


def _landscape_point(config: SpectrumConfig, key):
    """(landscape, params, x, extra info) for a grf/pspin config (float64)."""
    from sim.critical import find_critical_points

    land = config.landscape()
    params = land.sample(jax.random.fold_in(key, 4), config.dim, dtype=jnp.float64)
    extra = {"landscape": land.label(), "dim": config.dim, "point": config.point}
    if config.point == "random":
        x = land.start(jax.random.fold_in(key, 5), params)
    else:
        cp = find_critical_points(jax.random.fold_in(key, 5), land, params, config.starts)
        conv = np.asarray(cp.converged)
        extra.update(starts=config.starts, converged_starts=int(conv.sum()), stalled_starts=int(np.asarray(cp.stalled).sum()))
        if not conv.any():
            raise RuntimeError(
                f"spectrum: none of the {config.starts} Newton starts converged to a critical point of "
                f"{land.label()} at n = {config.dim}; use more starts or point=random"
            )
        i = int(np.argmax(conv))
        x = cp.x[i]
        extra.update(start=i, grad_norm=float(cp.grad_norm[i]), gtol=float(cp.gtol),
                     critical_index=int(cp.index[i]), critical_zero_modes=int(cp.n_zero[i]))
    u = float(land.energy_density(params, x))
    extra["energy_density"] = u
    # Semicircle theory at this energy (valid at any point: docs/theory.md#grf-bray-dean and #pspin)
    if config.model == "pspin":
        extra["theory_negative_fraction"] = float(semicircle_cdf(u * math.sqrt(config.p / (config.p - 1))))
    elif land.confine == 0:
        extra["theory_negative_fraction"] = float(semicircle_cdf(u))
    return land, params, x, extra


# ------------------------------------------------------------------------------------- one spectrum


def _smoothed(evals: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    out = np.zeros_like(grid)
    for chunk in np.array_split(evals, max(1, evals.size // 2048)):
        z = (grid[:, None] - chunk[None, :]) / sigma
        out += np.exp(-0.5 * z * z).sum(1)
    return out / (evals.size * sigma * math.sqrt(2 * math.pi))


def _summarise(quad, frac0, frac_t, ext, config, n, timings, exact_evals, extra_info) -> Result:
    nodes = np.asarray(quad.nodes, np.float64)
    lo, hi = float(nodes.min()), float(nodes.max())
    if exact_evals is not None:
        lo, hi = min(lo, float(exact_evals[0])), max(hi, float(exact_evals[-1]))
    width = hi - lo if hi > lo else 1.0
    sigma = config.sigma if config.sigma is not None else width / config.steps
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, config.grid_points)
    rho = np.asarray(spectral_density(quad, jnp.asarray(grid, quad.nodes.dtype), sigma=sigma), np.float64)
    rows = [{"eigenvalue": float(x), "density": float(r)} for x, r in zip(grid, rho)]

    info = {
        "model": config.model,
        "num_params": n,
        "probes": config.probes,
        "steps": config.steps,
        "probe": config.probe,
        "reortho": config.reortho,
        "dtype": config.dtype,
        "seed": config.seed,
        "negative_fraction": float(frac0.fraction),
        "negative_fraction_stderr": float(frac0.stderr),
        "negative_fraction_lower": _bracket(frac0)[0],
        "negative_fraction_upper": _bracket(frac0)[1],
        "negative_fraction_method": "interpolate",
        "threshold": config.threshold,
        "fraction_below_threshold": float(frac_t.fraction),
        "fraction_below_threshold_stderr": float(frac_t.stderr),
        "min_eigenvalue": float(ext.min_value),
        "min_eigenvalue_residual": float(ext.min_residual),
        "max_eigenvalue": float(ext.max_value),
        "max_eigenvalue_residual": float(ext.max_residual),
        "breakdowns": int(np.sum(np.asarray(quad.breakdowns))),
        "sigma": sigma,
        **extra_info,
    }
    tables = {
        "ritz": [
            {"probe": int(p), "node": float(t), "weight": float(w), "residual": float(r)}
            for p in range(nodes.shape[0])
            for t, w, r in zip(nodes[p], np.asarray(quad.weights[p]), np.asarray(quad.residuals[p]))
        ]
    }
    if exact_evals is not None:
        ex = np.asarray(exact_evals, np.float64)
        exact_rho = _smoothed(ex, grid, sigma)
        info.update(
            exact_negative_fraction=float(np.mean(ex < 0)),
            exact_fraction_below_threshold=float(np.mean(ex < config.threshold)),
            exact_min_eigenvalue=float(ex[0]),
            exact_max_eigenvalue=float(ex[-1]),
            density_l1=float(np.trapezoid(np.abs(rho - exact_rho), grid)),
        )
        tables["exact_density"] = [{"eigenvalue": float(x), "density": float(r)} for x, r in zip(grid, exact_rho)]
        tables["exact_eigenvalues"] = [{"eigenvalue": float(v)} for v in ex]
        bins = max(10, min(200, int(math.sqrt(ex.size))))
        hist, edges = np.histogram(ex, bins=bins, range=(float(ex[0]), float(ex[-1])), density=True)
        tables["exact_histogram"] = [
            {"left": float(a), "right": float(b), "density": float(h)} for a, b, h in zip(edges[:-1], edges[1:], hist)
        ]
    info["seconds"] = timings
    info["peak_rss_mb"] = _peak_rss_mb()
    return Result(rows=rows, tables=tables, info=info)


def _timed_slq(f, *args):
    """Compile and run ``f`` separately; returns (outputs, compile seconds, run seconds)."""
    t0 = time.perf_counter()
    compiled = f.lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1


def spectrum_of_matvec(key, matvec: Callable, dim: int, config: SpectrumConfig, *, exact_matrix=None) -> Result:
    """SLQ spectrum of any symmetric operator given as a matvec (closure over concrete arrays).

    ``exact_matrix`` (optional, (dim, dim)): the dense matrix, for the exact comparison. The SLQ
    options (probes, steps, probe, reortho, batch_size, threshold, sigma, grid_points, dtype) come from
    ``config``; ``config.model`` is only reported. The probe batches run on ``config.devices``.
    """
    dt = float_dtype(config.dtype, fn="spectrum_of_matvec")
    mesh = _mesh(config)

    def f(key):
        quad = slq(
            key,
            matvec,
            dim,
            num_steps=config.steps,
            num_probes=config.probes,
            probe=config.probe,
            reortho=config.reortho,
            batch_size=config.batch_size,
            dtype=dt,
            devices=mesh,
        )
        return quad, fraction_below(quad, 0.0), fraction_below(quad, config.threshold), extreme_eigenvalues(quad)

    (quad, f0, ft, ext), t_compile, t_run = _timed_slq(jax.jit(f), key)
    timings = {"slq_compile": t_compile, "slq_run": t_run}
    evals = None
    if exact_matrix is not None:
        t = time.perf_counter()
        evals = np.linalg.eigvalsh(np.asarray(exact_matrix, np.float64))
        timings["exact_eigvalsh"] = time.perf_counter() - t
    return _summarise(quad, f0, ft, ext, config, int(dim), timings, evals, _mesh_info(mesh))


def _dense_hessian(params, task) -> np.ndarray:
    flat, _ = ravel_pytree(params)
    mv = jax.jit(lambda p, vs: jax.lax.map(hessian_matvec(lambda q: _loss(q, task), p), vs, batch_size=256))
    h = np.asarray(mv(params, jnp.eye(flat.size, dtype=flat.dtype)), np.float64)
    return 0.5 * (h + h.T)


def run(config: SpectrumConfig, *, progress: Progress | None = None) -> Result:
    """One spectrum (see ``SpectrumConfig``). Rows: ``eigenvalue, density`` on a grid.

    Tables: ``ritz`` (probe, node, weight, residual); with the exact comparison also
    ``exact_density`` (exact eigenvalues smoothed with the same kernel), ``exact_histogram``
    (left, right, density) and ``exact_eigenvalues`` (ascending). Info: negative fraction (+ stderr, CMS bracket), fraction below the
    threshold, extremes with residual bounds, exact counterparts and ``density_l1``, timings,
    ``peak_rss_mb`` (process peak resident memory).
    """
    progress = progress or no_progress
    dt = float_dtype(config.dtype, fn="spectrum")
    key = jax.random.key(config.seed)
    n = config.num_params
    do_exact = config.exact == "yes" or (config.exact == "auto" and n <= config.exact_max)
    if config.reortho == "full" and config.steps > n:
        raise ValueError(f"spectrum: steps ({config.steps}) must be <= N ({n}) with full reorthogonalisation")

    if config.model in ("grf", "pspin"):
        t = time.perf_counter()
        land, params, x, extra = _landscape_point(config, key)
        t_build = time.perf_counter() - t
        progress(1)
        mv = landscape_matvec(land, params, x, dt)
        exact_matrix = land.tangent_hessian(params, x) if do_exact else None
        res = spectrum_of_matvec(jax.random.fold_in(key, 2), mv, n, config, exact_matrix=exact_matrix)
        res.info["seconds"]["build"] = t_build
        res.info.update(extra)
        progress(1)
        return res

    if config.model == "goe":
        t = time.perf_counter()
        h = _goe_matrix(jax.random.fold_in(key, 3), n, dt) + config.shift * jnp.eye(n, dtype=dt)
        h = jax.block_until_ready(h)
        t_build = time.perf_counter() - t
        progress(1)
        res = spectrum_of_matvec(
            jax.random.fold_in(key, 2), lambda v: h @ v, n, config, exact_matrix=h if do_exact else None
        )
        res.info["seconds"]["build"] = t_build
        res.info["shift"] = config.shift
        progress(1)
        return res

    widths = config.widths
    mesh = _mesh(config)
    t = time.perf_counter()
    params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=dt)
    with jax.numpy_rank_promotion("allow"):
        task = teacher_task(jax.random.fold_in(key, 1), widths, config.num_samples, noise=config.noise, dtype=dt)
    timings = {"build": time.perf_counter() - t}
    extra = {"widths": list(widths), "num_samples": config.num_samples, "train_steps": config.train_steps,
             **_mesh_info(mesh)}
    loss0 = float(_loss(params, task))
    extra["loss_init"] = loss0
    if config.train_steps:
        t = time.perf_counter()
        lr = config.learning_rate if config.learning_rate is not None else 1.0 / _lambda_max(params, task, dt, mesh)
        params, _ = _gd_chunk(params, task, jnp.asarray(lr, dt), config.train_steps)
        params = jax.block_until_ready(params)
        timings["train"] = time.perf_counter() - t
        extra["learning_rate"] = lr
    extra["loss"] = float(_loss(params, task))
    progress(1)

    f = _make_slq(config.steps, config.probes, config.probe, config.reortho, config.batch_size, dt, config.threshold,
                  mesh)
    (quad, f0, ft, ext), t_compile, t_run = _timed_slq(f, params, task, jax.random.fold_in(key, 2))
    timings.update(slq_compile=t_compile, slq_run=t_run, per_hvp=t_run / (config.steps * config.probes))
    evals = None
    if do_exact:
        t = time.perf_counter()
        h = _dense_hessian(params, task)
        timings["exact_hessian"] = time.perf_counter() - t
        t = time.perf_counter()
        evals = np.linalg.eigvalsh(h)
        timings["exact_eigvalsh"] = time.perf_counter() - t
    progress(1)
    return _summarise(quad, f0, ft, ext, config, n, timings, evals, extra)


# -------------------------------------------------------------------------------- along training


def run_training(config: SpectrumTrainingConfig, *, progress: Progress | None = None) -> Result:
    """Negative fraction of MLP Hessians along gradient descent, for several model sizes.

    Rows (one per model size and checkpoint): num_params, width, step, loss, negative_fraction,
    negative_fraction_stderr, negative_fraction_lower, negative_fraction_upper, min_eigenvalue,
    max_eigenvalue, learning_rate, seconds (SLQ run time at that checkpoint, compile excluded).
    Info: per-size compile times and peak resident memory.
    """
    progress = progress or no_progress
    dt = float_dtype(config.dtype, fn="spectrum-training")
    key = jax.random.key(config.seed)
    mesh = _mesh(config)
    rows, info = [], {"compile_seconds": {}, "dtype": config.dtype, "probes": config.probes, "steps": config.steps,
                      **_mesh_info(mesh)}
    every = config.train_steps // (config.checkpoints - 1) if config.checkpoints > 1 else 0
    for target in config.param_counts:
        w = width_for_params(int(target), depth=config.depth, input_dim=config.input_dim, output_dim=config.output_dim)
        widths = mlp_widths(config.input_dim, w, config.depth, config.output_dim)
        n = mlp_num_params(widths)
        steps = min(config.steps, n)
        params = mlp_init(jax.random.fold_in(key, 0), widths, dtype=dt)
        with jax.numpy_rank_promotion("allow"):
            task = teacher_task(jax.random.fold_in(key, 1), widths, config.num_samples, noise=config.noise, dtype=dt)
        lr = config.learning_rate if config.learning_rate is not None else 1.0 / _lambda_max(params, task, dt, mesh)
        f = _make_slq(steps, config.probes, config.probe, config.reortho, config.batch_size, dt, 0.0, mesh)
        t = time.perf_counter()
        f_c = f.lower(params, task, jax.random.fold_in(key, 2)).compile()
        info["compile_seconds"][str(n)] = time.perf_counter() - t
        step = 0
        for c in range(config.checkpoints):
            if c > 0:
                params, _ = _gd_chunk(params, task, jnp.asarray(lr, dt), every)
                step += every
            t = time.perf_counter()
            _, fr, _, ext = jax.block_until_ready(f_c(params, task, jax.random.fold_in(key, 2)))
            secs = time.perf_counter() - t
            rows.append(
                {
                    "num_params": n,
                    "width": w,
                    "step": step,
                    "loss": float(_loss(params, task)),
                    "negative_fraction": float(fr.fraction),
                    "negative_fraction_stderr": float(fr.stderr),
                    "negative_fraction_lower": _bracket(fr)[0],
                    "negative_fraction_upper": _bracket(fr)[1],
                    "min_eigenvalue": float(ext.min_value),
                    "max_eigenvalue": float(ext.max_value),
                    "learning_rate": float(lr),
                    "seconds": secs,
                }
            )
            progress(1)
    info["peak_rss_mb"] = _peak_rss_mb()
    return Result(rows=rows, info=info)
