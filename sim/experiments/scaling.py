"""Learning curves: test loss against the number of samples n (and features P), measured over seeds and
predicted from the spectrum (issue 11).

``run(ScalingConfig(...))`` returns a ``Result`` whose rows are one per (P, n) with the columns of
``COLUMNS``; ``info`` holds the fitted exponents (``sim.fit.fit_power_law``, residual-bootstrap interval)
beside the theory's, and says which parameters were ignored and which theory was used.

Data and what P means:

* ``powerlaw``/``isotropic`` with ``linear``: P is the data dimension (the linear model has P weights):
  lambda_i = i^-alpha (isotropic: 1) for i <= P. Theory: the spectral prediction on that spectrum; for
  isotropic ridgeless data, Hastie et al.'s exact finite-n risk.
* ``powerlaw``/``isotropic`` with ``features``: ``modes`` data dimensions, P random features. Theory: none
  implemented (NaN).
* any data with ``kernel``: P is ignored (0 in the table). Kernel ``linear`` on synthetic data (theory as for
  ``linear`` with P = ``modes``), ``rbf`` on real data (theory from the empirical kernel spectrum of
  ``SPECTRUM_POOL`` inputs of the data set).
* ``digits``/``mnist1d``: one-hot targets of 10 classes (losses summed over them), noise 0; ``linear`` has
  P = the input dimension; ``features`` P random features; theory from the empirical spectrum of the
  learner's kernel (linear or rbf; none for features).

Seeds: seed s draws its data from ``fold_in(fold_in(key(seed), s), 0)`` and its random features from
``fold_in(..., 1)``; seeds run one after another in one compiled ``lax.map`` (the kernels are vmap-able,
but batched Cholesky factorisations deadlocked XLA:CPU's thread pool on a loaded 2-core machine).
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

from sim.experiments.base import Progress, Result, check_choice, compile_ahead, no_progress

__all__ = ["ScalingConfig", "run", "COLUMNS", "LEARNERS", "DATA", "theory_exponent"]

COLUMNS = (
    "data",
    "learner",
    "alpha",
    "beta",
    "noise",
    "ridge",
    "n",
    "params",
    "seeds",
    "test_loss",
    "test_loss_stderr",
    "train_loss",
    "excess_risk",
    "excess_risk_stderr",
    "theory_test_loss",
    "theory_excess_risk",
)
LEARNERS = ("linear", "features", "kernel")
DATA = ("powerlaw", "isotropic", "digits", "mnist1d")
#: inputs whose kernel spectrum stands for the population of a real data set
SPECTRUM_POOL = 2000


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    """A learning-curve sweep. ``ns`` and ``params`` are sorted tuples; ``ridge`` is delta (added to the
    un-normalised Gram matrix); ``noise`` the label-noise variance; ``r2`` the isotropic target's |w|^2."""

    data: str = "powerlaw"
    learner: str = "linear"
    alpha: float = 1.5
    beta: float = 2.0
    noise: float = 0.0
    ridge: float = 0.0
    ns: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    params: tuple[int, ...] = (2048,)
    modes: int = 2048
    activation: str = "relu"
    kernel: str = "auto"
    seeds: int = 10
    seed: int = 0
    n_test: int = 500
    r2: float = 1.0

    def __post_init__(self):
        from sim.learning.data import read_real
        from sim.learning.features import ACTIVATIONS
        from sim.learning.kernel import KERNELS

        check_choice("--data", self.data, DATA)
        check_choice("--learner", self.learner, LEARNERS)
        check_choice("--activation", self.activation, tuple(ACTIVATIONS))
        check_choice("--kernel", self.kernel, ("auto",) + KERNELS)
        for name, v in (
            ("--alpha", self.alpha),
            ("--beta", self.beta),
            ("--noise", self.noise),
            ("--ridge", self.ridge),
        ):
            if not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v}")
        if self.data == "powerlaw" and self.alpha <= 0:
            raise ValueError(
                f"--alpha must be > 0 with --data powerlaw (alpha = 0 is --data isotropic), got {self.alpha}"
            )
        if self.data == "powerlaw" and self.beta <= 1:
            raise ValueError(f"--beta must be > 1 (a summable target power), got {self.beta}")
        if self.noise < 0:
            raise ValueError(f"--noise must be a variance >= 0, got {self.noise}")
        if self.ridge < 0:
            raise ValueError(f"--ridge must be >= 0, got {self.ridge}")
        if self.data in ("digits", "mnist1d") and self.noise != 0:
            raise ValueError(
                f"--noise must be 0 with --data {self.data} (real labels carry no added noise), got {self.noise}"
            )
        if not self.ns or min(self.ns) < 2:
            raise ValueError(f"--n: every sample size must be >= 2, got {min(self.ns) if self.ns else 'none'}")
        if not self.params or min(self.params) < 1:
            raise ValueError("--params: every feature count must be >= 1")
        for name, v, least in (
            ("--seeds", self.seeds, 1),
            ("--seed", self.seed, 0),
            ("--modes", self.modes, 1),
            ("--n-test", self.n_test, 1),
        ):
            if v < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {v}")
        if self.data in ("digits", "mnist1d"):
            if self.data == "mnist1d":
                from sim.learning.data import mnist1d_unavailable

                why = mnist1d_unavailable()
                if why:
                    raise ValueError(f"--data mnist1d: {why}")
            rd = read_real(self.data)
            if max(self.ns) > rd.x_pool.shape[0]:
                raise ValueError(
                    f"--n: {self.data} has {rd.x_pool.shape[0]} training samples, asked for {max(self.ns)}"
                )
            if self.n_test > rd.x_test.shape[0]:
                raise ValueError(
                    f"--n-test: {self.data} has {rd.x_test.shape[0]} test samples, asked for {self.n_test}"
                )
        big = max(self.ns) * max(self.params_used()) * 8 * 4
        if big > 8 << 30:
            raise ValueError(
                f"--n {max(self.ns)} with {max(self.params_used())} features needs about "
                f"{big / 2**30:.0f} GiB; use fewer samples or features"
            )

    # -- what the run actually uses --
    @property
    def synthetic(self) -> bool:
        return self.data in ("powerlaw", "isotropic")

    @property
    def kernel_used(self) -> str:
        if self.kernel != "auto":
            return self.kernel
        return "linear" if self.synthetic else "rbf"

    def data_dim(self, p: int) -> int:
        """Dimension of synthetic data at feature count P."""
        return p if self.learner == "linear" else self.modes

    def params_used(self) -> tuple[int, ...]:
        """The P values the table shows: --params for linear on synthetic data and for features; the input
        dimension for linear on real data; 0 (ignored) for kernel."""
        if self.learner == "kernel":
            return (0,)
        if self.learner == "linear" and not self.synthetic:
            from sim.learning.data import read_real

            return (read_real(self.data).x_pool.shape[1],)
        return tuple(self.params)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ns"], d["params"] = list(self.ns), list(self.params)
        d["kernel_used"] = self.kernel_used
        return d


def theory_exponent(config: ScalingConfig) -> tuple[float | None, str]:
    """(asymptotic exponent b of excess risk ~ n^-b, regime or the reason there is none)."""
    from sim.learning import theory as th

    if config.data != "powerlaw":
        return None, f"no power law in n for --data {config.data}"
    if config.learner == "features":
        return None, "no closed form implemented for random features"
    if config.noise == 0 and config.ridge == 0:
        return th.exponent(config.alpha, config.beta, "ridgeless"), "ridgeless"
    if config.noise == 0:  # a constant delta: delta/n ~ n^-1
        return th.exponent(config.alpha, config.beta, "ridge", ridge_decay=1.0), "ridge (delta constant, l = 1)"
    if config.ridge == 0:
        return 0.0, "tempered (noisy, ridgeless)"
    return None, "noisy with a constant ridge: not one of the closed-form regimes"


def _spectrum(config: ScalingConfig, p: int):
    from sim.learning import data as dm

    if config.data == "powerlaw":
        return dm.powerlaw_spectrum(config.data_dim(p), config.alpha, config.beta)
    return dm.isotropic_spectrum(config.data_dim(p), config.r2)


def _program_key(config: ScalingConfig, p: int, method: str) -> tuple:
    """What fixes the compiled program of ``_run_seeds``: shapes and code paths. The spectrum, the target
    power, the noise, the ridge, the seed and the real data's arrays are arguments, so every config that
    agrees on this key shares one program (the three learning curves of the gallery, the ridgeless and
    the optimal-ridge double descent at the same P)."""
    learner = config.learner
    return (
        config.data if not config.synthetic else "synthetic",
        learner,
        tuple(config.ns),
        config.n_test,
        config.data_dim(p) if config.synthetic else None,
        p if learner == "features" else None,
        config.activation if learner == "features" else None,
        config.kernel_used if learner == "kernel" else None,
        method,
    )


def _curve_args(config: ScalingConfig, p: int) -> tuple:
    """The run-time arguments of the program (``_program_key``) for ``config`` at feature count ``p``."""
    from sim.learning import data as dm

    if config.synthetic:
        lam, v2 = _spectrum(config, p)
        data: tuple = (jnp.asarray(lam), jnp.asarray(v2), jnp.asarray(float(config.noise), jnp.float64))
        scale = float(lam.sum())
    else:
        rd = dm.read_real(config.data)
        data = (
            jnp.asarray(rd.x_pool),
            jnp.asarray(rd.labels_pool),
            jnp.asarray(rd.x_test),
            jnp.asarray(rd.labels_test),
        )
        scale = float(rd.x_pool.shape[1])
    return data, jnp.asarray(float(config.ridge), jnp.float64), jnp.asarray(scale, jnp.float64)


@functools.lru_cache(maxsize=64)
def _seeds_program(key: tuple):
    """Jitted ``(seed keys, data, ridge, scale) -> Curve`` (leading axis: seeds) for a ``_program_key``."""
    from sim.learning import data as dm
    from sim.learning.features import features_curve
    from sim.learning.kernel import kernel_curve
    from sim.learning.linear import linear_curve

    data_name, learner, ns, n_test, _dim, p, activation, kernel, method = key
    n_max = max(ns)
    classes = None if data_name == "synthetic" else dm.read_real(data_name).classes

    def one(key, data, ridge, scale):
        k = jax.random.fold_in(key, 0)
        if data_name == "synthetic":
            lam, v2, noise = data
            d = dm._gaussian(k, lam, v2, noise, n_train=n_max, n_test=n_test, dtype=jnp.float64)
        else:
            d = dm._draw(k, *data, n_train=n_max, n_test=n_test, classes=classes, dtype=jnp.float64)
        if learner == "linear":
            return linear_curve(d, ns, ridge, method=method)
        if learner == "features":
            return features_curve(
                jax.random.fold_in(key, 1), d, ns, p, ridge, activation=activation, input_scale=scale, method=method
            )
        return kernel_curve(d, ns, ridge, kernel=kernel, bandwidth=None)

    # one seed after another inside one compiled program (lax.map): memory of one seed, and no batched
    # LAPACK calls: vmapped Cholesky factorisations (batched potrf) deadlocked XLA:CPU's intra-op thread
    # pool on a loaded 2-core machine, with or without lax.map's batch_size
    return jax.jit(lambda ks, data, ridge, scale: jax.lax.map(lambda k: one(k, data, ridge, scale), ks))


def _seed_keys(config: ScalingConfig):
    root = jax.random.key(config.seed)
    return jax.vmap(lambda s: jax.random.fold_in(root, s))(jnp.arange(config.seeds))


def _precompile(config: ScalingConfig, ps, method: str) -> dict:
    """Start compiling the programs of feature counts ``ps`` side by side, one thread per core (XLA
    compiles with the GIL released; compilation is most of a sweep over P on CPU): -> {p: Future}. The
    jitted functions and arguments are made here, so a later ``_run_seeds`` reuses each compiled program."""
    keys = _seed_keys(config)
    jobs = {}
    for p in dict.fromkeys(ps):
        program = _seeds_program(_program_key(config, p, method))
        jobs[p] = functools.partial(program.lower(keys, *_curve_args(config, p)).compile)
    return compile_ahead(jobs, "scaling")


def _run_seeds(config: ScalingConfig, p: int, method: str):
    keys = _seed_keys(config)
    out = _seeds_program(_program_key(config, p, method))(keys, *_curve_args(config, p))
    return [np.asarray(v, np.float64) for v in jax.device_get(out)]


def _theory(config: ScalingConfig, p: int):
    """(theory test loss, theory excess risk, name) per n, or NaNs with the reason."""
    from sim.learning import theory as th

    ns = np.asarray(config.ns, np.float64)
    nan = np.full(ns.shape, np.nan)
    if config.learner == "features":
        return nan, nan, "none (no closed form implemented for random features)"
    if config.synthetic:
        if config.learner == "kernel" and config.kernel_used != "linear":
            return nan, nan, "none (rbf kernel on synthetic data: spectrum not computed)"
        dim = config.data_dim(p)
        if config.data == "isotropic" and config.ridge == 0 and config.learner == "linear":
            ex = th.hmrt_finite(ns, dim, config.r2, config.noise)
            return ex + config.noise, ex, "hmrt_finite (exact finite-n risk, Hastie et al. 2019)"
        lam, v2 = _spectrum(config, p)
        pr = th.learning_curve(lam, v2, ns, ridge=config.ridge, noise=config.noise)
        return pr.test_loss, pr.excess_risk, "eigenlearning (spectral prediction on the exact spectrum)"
    lam, v2 = real_spectrum(config.data, "linear" if config.learner == "linear" else config.kernel_used)
    pr = th.learning_curve(lam, v2, ns, ridge=config.ridge, noise=0.0)
    return (
        pr.test_loss,
        pr.excess_risk,
        (
            f"eigenlearning on the empirical {config.learner if config.learner == 'linear' else config.kernel_used} "
            f"kernel spectrum of {SPECTRUM_POOL} inputs of {config.data}"
        ),
    )


def real_spectrum(name: str, kernel: str):
    """(eigenvalues, target power) of ``kernel`` over the first ``SPECTRUM_POOL`` inputs of the training pool
    followed by the test pool of a real data set (digits: all 1,797 images)."""
    from sim.learning.data import read_real
    from sim.learning.kernel import empirical_spectrum

    rd = read_real(name)
    x = np.concatenate([rd.x_pool, rd.x_test])[:SPECTRUM_POOL]
    lab = np.concatenate([rd.labels_pool, rd.labels_test])[:SPECTRUM_POOL]
    y = np.eye(rd.classes)[lab]
    lam, v2 = empirical_spectrum(jnp.asarray(x), jnp.asarray(y), kernel=kernel)
    lam = np.asarray(lam, np.float64)
    # eigenvalues at rounding level are zero modes (the linear kernel has rank <= d): dropping them is what
    # makes the theory's kappa = 0, E0 = n/(n - rank) for n above the rank
    lam = np.where(lam > lam[0] * lam.size * np.finfo(np.float64).eps, lam, 0.0)
    return lam, np.asarray(v2, np.float64)


def _fit(key, x, y):
    from sim.fit import fit_power_law

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 3:
        return None
    return fit_power_law(key, x[ok], y[ok])


def run(config: ScalingConfig, progress: Progress = no_progress) -> Result:
    """Measure the learning curves of ``config`` and their theory; see the module docstring."""
    t0 = time.perf_counter()
    rows, notes, theory_names = [], [], set()
    params_used = config.params_used()
    sweep = (
        config.params if config.learner == "features" or (config.learner == "linear" and config.synthetic) else (None,)
    )
    per_p = {}
    compiled = _precompile(config, [p or 0 for p in sweep], "cholesky") if len(sweep) > 1 else {}
    for p, p_show in zip(sweep, params_used if len(params_used) == len(sweep) else [params_used[0]] * len(sweep)):
        method = "cholesky"
        if (p or 0) in compiled:
            compiled[p or 0].result()
        test, excess, train = _run_seeds(config, p or 0, method)
        if not (np.all(np.isfinite(test)) and np.all(np.isfinite(train))):
            method = "svd"  # a singular Gram matrix (rank-deficient features): one SVD per size instead
            notes.append(f"P = {p_show}: Cholesky met a singular Gram matrix; solved by SVD (minimum norm)")
            test, excess, train = _run_seeds(config, p or 0, method)
        th_test, th_excess, th_name = _theory(config, p or 0)
        theory_names.add(th_name)
        s = config.seeds
        se = (lambda a: a.std(axis=0, ddof=1) / math.sqrt(s)) if s > 1 else (lambda a: np.full(a.shape[1], np.nan))
        for j, n in enumerate(config.ns):
            rows.append(
                {
                    "data": config.data,
                    "learner": config.learner,
                    "alpha": float(config.alpha)
                    if config.data == "powerlaw"
                    else (0.0 if config.data == "isotropic" else math.nan),
                    "beta": float(config.beta)
                    if config.data == "powerlaw"
                    else (0.0 if config.data == "isotropic" else math.nan),
                    "noise": float(config.noise),
                    "ridge": float(config.ridge),
                    "n": int(n),
                    "params": int(p_show),
                    "seeds": int(s),
                    "test_loss": float(test[:, j].mean()),
                    "test_loss_stderr": float(se(test)[j]),
                    "train_loss": float(train[:, j].mean()),
                    "excess_risk": float(excess[:, j].mean()),
                    "excess_risk_stderr": float(se(excess)[j]),
                    "theory_test_loss": float(th_test[j]),
                    "theory_excess_risk": float(th_excess[j]),
                }
            )
        per_p[p_show] = method
        progress(1)
    info = _fits(config, rows)
    ignored = []
    if config.learner == "kernel":
        ignored.append("params (kernel regression has no feature count)")
    if config.learner == "linear" and not config.synthetic:
        ignored.append(f"params (linear regression on {config.data} uses its {params_used[0]} input dimensions)")
    if config.data != "powerlaw":
        ignored += ["alpha", "beta"]
    if config.learner != "features" and not (config.synthetic and config.learner != "linear"):
        ignored.append("modes")
    if config.learner != "features":
        ignored.append("activation")
    if config.learner != "kernel":
        ignored.append("kernel")
    info.update(
        {
            "theory": sorted(theory_names),
            "ignored": ignored,
            "solver": per_p,
            "notes": notes,
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return Result(rows=rows, info=info)


def _fits(config: ScalingConfig, rows) -> dict[str, Any]:
    """Fitted exponents b (excess risk ~ n^-b, and ~ P^-b when P varies) beside the theory's."""
    key = jax.random.key(config.seed)
    out: dict[str, Any] = {}
    b_th, regime = theory_exponent(config)
    by_p: dict[int, list] = {}
    for r in rows:
        by_p.setdefault(r["params"], []).append(r)
    fits_n = {}
    for p, rs in by_p.items():
        f = _fit(jax.random.fold_in(key, p), [r["n"] for r in rs], [r["excess_risk"] for r in rs])
        ft = _fit(jax.random.fold_in(key, p), [r["n"] for r in rs], [r["theory_excess_risk"] for r in rs])
        fits_n[str(p)] = {
            "exponent": -f.exponent if f else None,
            "ci_low": -f.ci_high if f else None,
            "ci_high": -f.ci_low if f else None,
            "level": f.level if f else None,
            "theory_slope_over_range": -ft.exponent if ft else None,
        }
    out["exponent_n"] = fits_n
    out["theory_exponent_n"] = b_th
    out["theory_regime"] = regime
    if len(by_p) >= 3:
        n_big = max(config.ns)
        rs = sorted((r for r in rows if r["n"] == n_big), key=lambda r: r["params"])
        f = _fit(jax.random.fold_in(key, 10**6), [r["params"] for r in rs], [r["excess_risk"] for r in rs])
        out["exponent_params"] = {
            "n": n_big,
            "exponent": -f.exponent if f else None,
            "ci_low": -f.ci_high if f else None,
            "ci_high": -f.ci_low if f else None,
        }
    return out
