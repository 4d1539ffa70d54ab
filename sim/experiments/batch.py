"""Steps and examples to a target loss against the batch size, the gradient noise scale along training,
and the critical batch size (issue 15).

``run(BatchConfig(...))`` trains ``seeds`` models at once for every batch size B (data-parallel SGD over
``devices``, ``sim.learning.parallel.run_to_target``: one compiled program serves every B, a while loop
on the device) until the seed-averaged loss ratio ``mean_s L_t / L_0`` first falls to ``target_loss`` or
``max_steps`` is reached, and returns one row per B with the columns of ``COLUMNS``:

* ``steps``: that first step t (empty if the target was not reached within ``max_steps``; the row stays,
  with ``reached_seeds`` saying how many seeds' own curves reached it); ``examples`` = B steps;
  ``steps_fractional``: the crossing interpolated log-linearly between steps t - 1 and t (an integer count
  cannot resolve less than one step); ``steps_stderr``: its bootstrap standard error over seeds (the
  crossing of the mean curve of resampled seeds);
* ``b_simple``/``b_noise`` (± ``*_stderr``): the noise scales tr(Sigma)/|G|^2 and tr(H Sigma)/(G^T H G)
  averaged over the run (the mean over the measurement points, from step 0 to the target step, of the
  ratio of seed-averaged unbiased estimates; ``sim.learning.noise``); stderr by bootstrap over seeds;
* ``theory_steps``: for isotropic noiseless data with the per-step optimal rate,
  ``ceil(ln F / ln(1 + B/(d + 1)))`` with F = 1/target_loss (docs/theory.md#gradient-noise-scale); else empty.

A second table (``noise``) holds the noise scales (± bootstrap SE) at each measurement point. ``info["fit"]`` is the fit of
``S = S_min (1 + B_crit / B)`` (McCandlish's ``(S/S_min - 1)(E/E_min - 1) = 1`` with ``E_min = B_crit
S_min``) to the fractional steps of the reached rows by least squares in log S, with 95% bootstrap intervals over seeds, beside the
run-averaged B_simple.

Data: ``isotropic``/``powerlaw`` with the linear model are streams (a fresh Gaussian sample per index, the
population loss is exact); with the MLP, a pool of ``n_train`` Gaussian samples; ``digits``/``mnist1d``
are pools (``sim.learning.data.load``). Keys: data ``fold_in(key(seed), 0)``; model seed s initialises
from ``fold_in(fold_in(key(seed), 1), s)`` and draws batches from ``fold_in(fold_in(fold_in(key(seed), 1),
s), 1)``; noise batches from ``fold_in(key(seed), 2)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sim.experiments.base import (
    ConfigError,
    Progress,
    Result,
    check_choice,
    check_int,
    check_number,
    no_progress,
)

__all__ = ["BatchConfig", "run", "COLUMNS", "DATA", "MODELS", "theory_steps", "fit_tradeoff"]

COLUMNS = (
    "data",
    "model",
    "batch_size",
    "seeds",
    "steps",
    "steps_stderr",
    "examples",
    "b_simple",
    "b_noise",
    "theory_steps",
    "reached_seeds",
    "b_simple_stderr",
    "b_noise_stderr",
    "lr",
    "max_steps",
    "steps_fractional",
)
DATA = ("isotropic", "powerlaw", "digits", "mnist1d")
MODELS = ("linear", "mlp")
#: default fixed learning rate where no per-step optimum is available (MLP; linear on a pool)
DEFAULT_LR = 0.5


def theory_steps(batch_size: int, dim: int, target_loss: float) -> float:
    """``ln F / ln(1 + B/(d + 1))`` (continuous), F = 1/target_loss: isotropic noiseless linear regression
    with the per-step optimal rate (docs/theory.md#gradient-noise-scale)."""
    return math.log(1.0 / target_loss) / math.log1p(batch_size / (dim + 1))


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """A batch-size sweep (see the module docstring)."""

    data: str = "isotropic"
    model: str = "linear"
    dim: int = 100
    batch_sizes: tuple[int, ...] = (1, 10, 101, 1010)
    target_loss: float = 0.01
    seeds: int = 8
    devices: int = 1
    seed: int = 0
    lr: float | str | None = None
    max_steps: int = 2000
    chunk: int = 32  # parameters are kept every chunk steps: the points where the noise scales are measured
    alpha: float = 1.5
    beta: float = 2.0
    noise: float = 0.0
    width: int = 64
    n_train: int = 4096
    noise_batches: tuple[int, int] = (8, 1024)
    noise_reps: int = 8
    noise_points: int = 8
    bootstrap: int = 400

    def __post_init__(self):
        from sim.learning.parallel import check_batch

        check_choice("data", self.data, DATA)
        check_choice("model", self.model, MODELS)
        check_int("dim", self.dim, 1)
        check_int("seeds", self.seeds, 1)
        check_int("devices", self.devices, 1)
        check_int("seed", self.seed, 0)
        check_int("max_steps", self.max_steps, 1)
        check_int("chunk", self.chunk, 1)
        check_int("width", self.width, 1)
        check_int("n_train", self.n_train, 2)
        check_int("noise_reps", self.noise_reps, 1)
        check_int("noise_points", self.noise_points, 1)
        check_int("bootstrap", self.bootstrap, 10)
        check_number("target_loss", self.target_loss)
        if self.target_loss >= 1:
            raise ConfigError(f"target_loss must be < 1 (a fraction of the loss at the start), got {self.target_loss}")
        check_number("noise", self.noise, strict=False)
        if self.data == "powerlaw":
            check_number("alpha", self.alpha)
            check_number("beta", self.beta, least=1.0)
        nb = tuple(self.noise_batches)
        if len(nb) != 2 or not all(isinstance(b, int) and b >= 1 for b in nb) or nb[0] >= nb[1]:
            raise ConfigError(f"noise_batches must be two integers 1 <= small < big, got {self.noise_batches!r}")
        if self.lr == "optimal":
            if not self.stream:
                raise ConfigError(
                    "lr optimal is the closed-form per-step optimum of the linear model on isotropic or powerlaw "
                    f"data; give a number for --data {self.data} --model {self.model}"
                )
        elif self.lr is not None:
            check_number("lr", self.lr)
        sizes = tuple(self.batch_sizes)
        if not sizes:
            raise ConfigError("batch_sizes must be a non-empty list of integers >= 1")
        for b in sizes:
            check_int("batch_sizes", b, 1)
        if len(set(sizes)) != len(sizes):
            raise ConfigError(f"batch_sizes has repeated values: {sizes!r}")
        pool = self.pool_size
        if pool is not None and max(sizes) > pool:
            raise ConfigError(
                f"batch_sizes: {max(sizes)} is larger than the data set ({self.data}: {pool} training samples)"
            )
        try:  # any batch size >= 1 splits over 1, 2, 4 or 8 devices (sim.learning.parallel.check_batch)
            check_batch(1, self.devices)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.data == "mnist1d":
            from sim.learning.data import mnist1d_unavailable

            if mnist1d_unavailable():
                raise ConfigError(f"data mnist1d: {mnist1d_unavailable()}")

    @property
    def stream(self) -> bool:
        """Whether training streams fresh Gaussian samples (linear model on synthetic data)."""
        return self.model == "linear" and self.data in ("isotropic", "powerlaw")

    @property
    def pool_size(self) -> int | None:
        """Training samples of the data set (None: a stream, unlimited)."""
        if self.stream:
            return None
        if self.data in ("digits", "mnist1d"):
            from sim.learning.data import TEST_POOL

            if self.data == "digits":
                return 1797 - TEST_POOL["digits"]
            return 4000
        return self.n_train

    @property
    def learning_rate(self) -> float | str:
        """The rate used: the given one, else ``optimal`` for a stream and ``DEFAULT_LR`` otherwise."""
        if self.lr is None:
            return "optimal" if self.stream else DEFAULT_LR
        return self.lr if self.lr == "optimal" else float(self.lr)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        d["noise_batches"] = list(self.noise_batches)
        d["learning_rate"] = self.learning_rate
        return d


def _problem(config: BatchConfig):
    """(Problem, Arrays, dim) of the config."""
    from sim.learning import data as D
    from sim.learning import parallel as P
    from sim.learning.train import Model

    dt = jnp.float64 if config.model == "linear" else jnp.float32
    key = jax.random.fold_in(jax.random.key(config.seed), 0)
    if config.data in ("isotropic", "powerlaw"):
        if config.data == "isotropic":
            lam, v2 = D.isotropic_spectrum(config.dim)
        else:
            lam, v2 = D.powerlaw_spectrum(config.dim, config.alpha, config.beta)
        if config.stream:
            prob = P.Problem("stream", None, config.dim, 1, np.dtype(dt).name)
            return prob, P.stream_arrays(lam, np.sqrt(v2 / lam), config.noise, dtype=dt), config.dim
        data = D.gaussian(key, config.n_train, 1, lam, v2, noise=config.noise, dtype=dt)
    else:
        data = D.load(config.data, key, int(config.pool_size or 0), dtype=dt)
    d_in, d_out = int(data.x_train.shape[1]), int(data.y_train.shape[1])
    model = None if config.model == "linear" else Model(d_in, config.width, 1, d_out)
    prob = P.Problem("pool", model, d_in, d_out, np.dtype(dt).name)
    return prob, P.pool_arrays(data.x_train, data.y_train, dtype=dt), d_in


@functools.cache
def _noise_fn(prob, noise_batches, reps):
    from sim.learning import noise as NS

    def one(arrays, p, k):
        return NS.estimates(prob, arrays, p, k, b_small=noise_batches[0], b_big=noise_batches[1], reps=reps)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


def _first(curve: np.ndarray, target: float) -> int | None:
    """First index t >= 1 with curve[t] <= target (curve[0] is the start), or None."""
    hit = np.flatnonzero(curve[1:] <= target)
    return int(hit[0]) + 1 if hit.size else None


def _crossing(curve: np.ndarray, target: float) -> float | None:
    """The first crossing of ``target`` by ``curve`` as a fractional step: log-linear interpolation between
    the last step above and the first step at or below it (exact for a geometric decay), or None."""
    t = _first(curve, target)
    if t is None:
        return None
    a, b = curve[t - 1], curve[t]
    if not (a > 0 and b > 0 and a > b):
        return float(t)
    return float(t - 1 + (math.log(a) - math.log(target)) / (math.log(a) - math.log(b)))


def fit_tradeoff(batch_sizes, steps) -> tuple[float, float]:
    """Least-squares fit of ``log S = log S_min + log(1 + B_crit / B)``: returns (S_min, B_crit).

    B_crit is found by golden-section search in log B_crit over [1e-3 min B, 1e3 max B]; S_min in closed form.
    """
    b = np.asarray(batch_sizes, float)
    ls = np.log(np.asarray(steps, float))

    def sse(lc):
        r = ls - np.log1p(math.exp(lc) / b)
        return float(np.sum((r - r.mean()) ** 2)), float(r.mean())

    lo, hi = math.log(1e-3 * b.min()), math.log(1e3 * b.max())
    grid = np.linspace(lo, hi, 200)
    k = int(np.argmin([sse(g)[0] for g in grid]))
    a, c = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        x1, x2 = c - g * (c - a), a + g * (c - a)
        if sse(x1)[0] < sse(x2)[0]:
            c = x2
        else:
            a = x1
    lc = 0.5 * (a + c)
    return math.exp(sse(lc)[1]), math.exp(lc)


def _ratio_curve(est, idx):
    """Per measurement point, the ratio of seed means of (tr_sigma / g2) and (tr_h_sigma / ghg) over seeds
    ``idx``; est: (S, M, 4)."""
    m = est[idx].mean(axis=0)  # (M, 4)
    with np.errstate(divide="ignore", invalid="ignore"):
        return m[:, 1] / m[:, 0], m[:, 3] / m[:, 2]


def run(config: BatchConfig, progress: Progress = no_progress) -> Result:
    """The sweep (see the module docstring). ``progress(1)`` after each batch size."""
    from sim.devices import make_mesh
    from sim.learning import parallel as P

    prob, arrays, dim = _problem(config)
    mesh = make_mesh(config.devices)
    S, lr = config.seeds, config.learning_rate
    key = jax.random.key(config.seed)
    k_model, k_noise = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    keys = P.seed_keys(k_model, S)
    rng = np.random.default_rng(config.seed)
    boot = rng.integers(0, S, size=(config.bootstrap, S))
    noise_fn = _noise_fn(prob, tuple(config.noise_batches), config.noise_reps)
    rows: list[dict[str, Any]] = []
    noise_rows: list[dict[str, Any]] = []
    curves: dict[int, np.ndarray] = {}
    notes: list[str] = []
    seconds = {"train": 0.0, "noise": 0.0}
    isotropic_theory = config.data == "isotropic" and config.stream and config.noise == 0 and lr == "optimal"
    for B in config.batch_sizes:
        t_start = time.perf_counter()
        params = P.init_params(prob, k_model, S)
        res = P.run_to_target(
            prob,
            arrays,
            params,
            keys,
            batch_size=B,
            max_steps=config.max_steps,
            target=config.target_loss,
            every=config.chunk,
            lr=lr,
            devices=mesh,
        )
        t = int(res.steps)
        hit = t if bool(res.reached) else None
        l0 = np.asarray(res.loss0, float)
        curve = np.concatenate([np.ones((S, 1)), np.asarray(res.losses, float)[:, :t] / l0[:, None]], axis=1)
        ck = jax.tree.map(np.asarray, res.checkpoints)
        checkpoints = {q * config.chunk: jax.tree.map(lambda a, q=q: a[q], ck) for q in range(t // config.chunk + 1)}
        seconds["train"] += time.perf_counter() - t_start
        curves[B] = curve
        reached = sum(_first(c, config.target_loss) is not None for c in curve)
        frac = _crossing(curve.mean(axis=0), config.target_loss)
        bs = [_crossing(curve[i].mean(axis=0), config.target_loss) for i in boot]
        bs_ok = np.array([x for x in bs if x is not None], float)
        # noise scales at up to noise_points checkpoints from step 0 to the target step (or the cap)
        t_noise = time.perf_counter()
        last = hit if hit is not None else t
        marks = [m for m in sorted(checkpoints) if m < last] or [0]
        if len(marks) > config.noise_points:
            marks = [
                marks[i] for i in np.unique(np.round(np.linspace(0, len(marks) - 1, config.noise_points)).astype(int))
            ]
        est = []
        for m in marks:
            nk = jax.vmap(lambda s, m=m: jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(k_noise, B), m), s))(
                jnp.arange(S)
            )
            e = noise_fn(arrays, checkpoints[m], nk)
            est.append(np.stack([np.asarray(x, float) for x in e], axis=-1))  # (S, 4)
        est_a = np.stack(est, axis=1)  # (S, M, 4)
        seconds["noise"] += time.perf_counter() - t_noise
        simple, noisy = _ratio_curve(est_a, np.arange(S))
        b_simple, b_noise = float(np.mean(simple)), float(np.mean(noisy))
        curves_b = np.array([_ratio_curve(est_a, i) for i in boot])  # (n_boot, 2, M)
        with np.errstate(invalid="ignore"):
            se = np.nanstd(curves_b.mean(axis=2), axis=0, ddof=1) if S > 1 else np.full(2, math.nan)
            se_t = np.nanstd(curves_b, axis=0, ddof=1) if S > 1 else np.full((2, len(marks)), math.nan)
        for j, m in enumerate(marks):
            noise_rows.append(
                {
                    "data": config.data,
                    "model": config.model,
                    "batch_size": B,
                    "step": m,
                    "loss_ratio": float(curve[:, m].mean()),
                    "b_simple": float(simple[j]),
                    "b_noise": float(noisy[j]),
                    "b_simple_stderr": float(se_t[0, j]),
                    "b_noise_stderr": float(se_t[1, j]),
                }
            )
        th = None
        if isotropic_theory:
            th = math.ceil(theory_steps(B, dim, config.target_loss) - 1e-9)
        rows.append(
            {
                "data": config.data,
                "model": config.model,
                "batch_size": B,
                "seeds": S,
                "steps": hit,
                "steps_stderr": float(bs_ok.std(ddof=1)) if hit is not None and S > 1 and bs_ok.size > 1 else None,
                "examples": hit * B if hit is not None else None,
                "b_simple": b_simple,
                "b_noise": b_noise,
                "theory_steps": th,
                "reached_seeds": reached,
                "b_simple_stderr": float(se[0]),
                "b_noise_stderr": float(se[1]),
                "lr": lr,
                "max_steps": config.max_steps,
                "steps_fractional": frac,
            }
        )
        if hit is None:
            notes.append(
                f"batch size {B}: the mean loss ratio did not reach {config.target_loss:g} within {config.max_steps} "
                f"steps ({reached} of {S} seeds reached it on their own); the row is kept with steps empty"
            )
        progress(1)
    info: dict[str, Any] = {"notes": notes, "seconds": seconds, "dim": dim, "learning_rate": lr}
    info["fit"] = _fit(config, rows, curves, boot, notes)
    info["run_averaged_b_simple"] = float(np.mean([r["b_simple"] for r in rows]))
    info["theory_b_noise"] = dim + 1 if isotropic_theory else None
    return Result(rows, {"noise": noise_rows}, info)


def _fit(config, rows, curves, boot, notes):
    ok = [r for r in rows if r["steps_fractional"] is not None]
    if len(ok) < 3:
        notes.append("no S-E trade-off fitted: fewer than three batch sizes reached the target")
        return None
    b = [r["batch_size"] for r in ok]
    s_min, b_crit = fit_tradeoff(b, [r["steps_fractional"] for r in ok])
    reps = []
    for i in boot:
        st = [_crossing(curves[B][i].mean(axis=0), config.target_loss) for B in b]
        if all(x is not None for x in st):
            reps.append(fit_tradeoff(b, st))
    reps_a = np.array(reps)

    def ci(col):
        if len(reps_a) < 10:
            return None, None
        lo, hi = np.percentile(reps_a[:, col], [2.5, 97.5])
        return float(lo), float(hi)

    s_ci, b_ci = ci(0), ci(1)
    e_ci = (
        (None, None)
        if len(reps_a) < 10
        else tuple(float(x) for x in np.percentile(reps_a[:, 0] * reps_a[:, 1], [2.5, 97.5]))
    )
    return {
        "s_min": s_min,
        "s_min_ci": list(s_ci),
        "e_min": s_min * b_crit,
        "e_min_ci": list(e_ci),
        "b_crit": b_crit,
        "b_crit_ci": list(b_ci),
        "level": 0.95,
        "batch_sizes_fitted": b,
        "bootstrap_fits": int(len(reps_a)),
    }
