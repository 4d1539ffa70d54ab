"""Configurations of the spectrum experiments, their validation, and MLP sizes."""

from __future__ import annotations

import dataclasses
import math

from sim._util import float_dtype
from sim.experiments.base import check_choice, checking
from sim.lanczos import PROBES, REORTHO
from sim.models import mlp_num_params, mlp_widths, width_for_params  # noqa: F401 (re-exported)

__all__ = [
    "MODELS",
    "DATA",
    "POINTS",
    "CRITICAL_MAX_DIM",
    "SpectrumConfig",
    "SpectrumTrainingConfig",
    "mlp_widths",
    "width_for_params",
]

MODELS = ("mlp", "goe", "grf", "pspin")
#: what the MLP is fitted to: the synthetic teacher task (``sim.models.teacher_task``) or real data from the
#: project's data module (``sim.learning.data.load``: digits, MNIST-1D; one-hot targets, MSE)
DATA = ("teacher", "digits", "mnist1d")
#: input and output widths of the teacher task when not given
TEACHER_IO = (16, 1)
#: where a landscape Hessian is taken
POINTS = ("critical", "random")
#: largest landscape dimension for point="critical" (the Newton search diagonalises dense n x n Hessians)
CRITICAL_MAX_DIM = 256


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
    """One spectrum.

    Attributes:
        model: ``"mlp"`` (MSE Hessian of a tanh MLP), ``"goe"``, ``"grf"`` or ``"pspin"``.
        data: what the MLP is fitted to (``DATA``): ``"teacher"`` (Gaussian inputs labelled by a random
            teacher MLP of the same widths) or a real data set of ``sim.learning.data`` (``"digits"``:
            its fixed training pool of 1,300 images, 64 pixels, one-hot targets over 10 classes;
            ``"mnist1d"``: 4,000 signals of length 40, needs the mnist1d package).
        width, depth: MLP hidden width and number of hidden layers.
        input_dim, output_dim: MLP in/out sizes. None: 16 and 1 for the teacher, the data's for real
            data (a real data set fixes them: another value is refused). Resolved on construction.
        num_samples, noise: training samples (teacher task, or drawn without replacement from the real
            data's training pool with key ``fold_in(key, 1)``) and the teacher's label noise.
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
        eps: thresholds for the eigenvalue counts N-(eps), N0(eps), N+(eps) (``sim.counts``; empty: no
            counts). eps_rel: eps in units of the spectral norm ||H|| (largest |Ritz value|).
        degree: Chebyshev degree of the counts (degree / 2 Hessian-vector products per probe).
        count_probes: probes of the counts' stochastic trace (None: ``probes``).
    """

    model: str = "mlp"
    width: int = 64
    depth: int = 2
    input_dim: int | None = None
    output_dim: int | None = None
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
    eps: tuple[float, ...] = ()
    eps_rel: bool = False
    degree: int = 1000
    count_probes: int | None = None
    data: str = "teacher"

    def __post_init__(self):
        _check_devices("spectrum", self.devices)
        _check_counts("spectrum", self.eps, self.degree, self.count_probes)
        if self.model not in MODELS:
            raise ValueError(f"spectrum: unknown model {self.model!r}; valid: {', '.join(MODELS)}")
        with checking("spectrum"):
            check_choice("data", self.data, DATA)
        self._resolve_io()
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

    def _resolve_io(self) -> None:
        """Fill in input_dim/output_dim (None: the teacher's defaults or the data's) and check them, and
        num_samples, against a real data set (reads it: ``sim.learning.data.read_real``, cached)."""
        if self.data == "teacher":
            for name, default in zip(("input_dim", "output_dim"), TEACHER_IO):
                if getattr(self, name) is None:
                    object.__setattr__(self, name, default)
            return
        from sim.learning.data import mnist1d_unavailable, read_real

        if self.data == "mnist1d" and mnist1d_unavailable():
            raise ValueError(f"spectrum: data mnist1d: {mnist1d_unavailable()}")
        rd = read_real(self.data)
        for name, have in (("input_dim", rd.x_pool.shape[1]), ("output_dim", rd.classes)):
            given = getattr(self, name)
            if given is not None and given != have:
                raise ValueError(f"spectrum: {name} must be {have} (or None) with data {self.data}, got {given!r}")
            object.__setattr__(self, name, int(have))
        pool = rd.x_pool.shape[0]
        if isinstance(self.num_samples, int) and self.num_samples > pool:
            raise ValueError(
                f"spectrum: num_samples must be <= {pool} with data {self.data} (its training pool), "
                f"got {self.num_samples}"
            )

    @property
    def widths(self) -> tuple[int, ...]:
        d_in, d_out = self.input_dim, self.output_dim
        assert d_in is not None and d_out is not None  # resolved in __post_init__
        return mlp_widths(d_in, self.width, self.depth, d_out)

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
        eps: thresholds *relative to ||H||* for the counts at the first and last checkpoints (empty: none).
        degree, count_probes: as in ``SpectrumConfig``.
        exact_max: sizes up to this N also get the exact counts (dense Hessian + eigvalsh).
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
    eps: tuple[float, ...] = ()
    degree: int = 1000
    count_probes: int | None = None
    exact_max: int = 2500

    def __post_init__(self):
        _check_devices("spectrum-training", self.devices)
        _check_counts("spectrum-training", self.eps, self.degree, self.count_probes)
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


def _check_counts(fn: str, eps, degree, count_probes) -> None:
    for e in eps:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise ValueError(f"{fn}: every eps must be a finite number >= 0, got {e!r}")
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 2 or degree % 2:
        raise ValueError(f"{fn}: degree must be an even integer >= 2, got {degree!r}")
    if count_probes is not None and (
        isinstance(count_probes, bool) or not isinstance(count_probes, int) or count_probes < 2
    ):
        raise ValueError(f"{fn}: count_probes must be None or an integer >= 2, got {count_probes!r}")


def _check_devices(fn: str, devices) -> None:
    if devices is not None and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
        raise ValueError(f"{fn}: devices must be None or an integer >= 1, got {devices!r}")
