"""Networks trained on real data: where training takes them (issue 12).

``run(TrainConfig(...))`` trains, for each width, an ensemble of ``seeds`` MLPs on one training set and
returns one row per (width, seed) with the columns of ``COLUMNS``:

* ``train_loss``/``test_loss``: mean squared loss on one-hot targets (``sim.learning.mlp.mse``),
  ``test_error`` the arg-max error rate (nan for ``teacher``, a regression task);
* ``init_norm`` = ||theta_0||, ``rel_change`` = ||theta_T - theta_0|| / ||theta_0||, ``cos_init_final``;
* ``pair_dist_trained``/``pair_dist_init``: distance from seed s to its partner ``(s + 1) mod S`` after
  and before training (nan for one seed);
* ``barrier``/``barrier_aligned``: the training-loss barrier on the straight line from seed s to its
  partner, before and after weight matching the partner's hidden units to s (matching on effective
  weights, the multipliers included; see ``sim.learning.geometry``);
* ``negative_fraction`` ± ``negative_fraction_stderr``: fraction of negative Hessian eigenvalues of
  the training loss at the end (SLQ, ``sim.lanczos.fraction_below``; the stderr is probe noise only).

A second table (``index``) holds the negative fraction along training for seed 0 of every width at
``checkpoints + 1`` steps. ``info["exponent"]`` is the fitted exponent of rel_change in width (power
law, residual-bootstrap 95% interval, ``sim.fit.fit_power_law``) beside ``info["theory_exponent"]``:
NTK -1/2 for one hidden layer (||theta_T - theta_0|| = O(1), ||theta_0|| ~ sqrt(P) ~ width^1/2) and -1
for two or more (P ~ width^2); muP 0; standard: none (with one learning rate for every width, there is
no width-independent limit).

Data: ``digits`` and ``mnist1d`` from ``sim.learning.data.load`` (key ``fold_in(key(seed), 0)``);
``teacher``: Gaussian inputs (d = ``TEACHER_WIDTHS[0]``) labelled by a random tanh teacher
(``sim.models.teacher_task``, key ``fold_in(key(seed), 0)``), the first ``n_train`` samples for training
and the next ``n_test`` for testing. Networks: seed s initialises from ``fold_in(fold_in(key(seed), 1), s)``.
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
    Progress,
    Result,
    carried,
    check_choice,
    check_int,
    check_number,
    compile_ahead,
    no_progress,
)

__all__ = ["TrainConfig", "run", "COLUMNS", "DATA", "theory_exponent", "TEACHER_WIDTHS"]

COLUMNS = (
    "data",
    "param",
    "width",
    "depth",
    "params",
    "seed",
    "steps",
    "train_loss",
    "test_loss",
    "test_error",
    "init_norm",
    "rel_change",
    "cos_init_final",
    "pair_dist_trained",
    "pair_dist_init",
    "barrier",
    "barrier_aligned",
    "negative_fraction",
    "negative_fraction_stderr",
)
DATA = ("digits", "mnist1d", "teacher")
#: the teacher of ``--data teacher``: (inputs, hidden, outputs), tanh
TEACHER_WIDTHS = (16, 32, 1)


def theory_exponent(param: str, depth: int) -> float | None:
    """Exponent of rel_change in width that the theory predicts (None: no prediction)."""
    if param == "ntk":
        return -0.5 if depth == 1 else -1.0
    if param == "mup":
        return 0.0
    return None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training sweep over widths (see the module docstring)."""

    data: str = "digits"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    depth: int = 1
    param: str = "ntk"
    optimizer: str = "gd"
    lr: float = 0.5
    steps: int = 500
    seeds: int = 4
    seed: int = 0
    n_train: int = 256
    n_test: int = 497
    batch_size: int = 64
    activation: str = "relu"
    checkpoints: int = 5
    hessian_steps: int = 60
    hessian_probes: int = 6
    barrier_points: int = 25

    def __post_init__(self):
        from sim.learning.mlp import ACTIVATIONS, PARAMETERIZATIONS
        from sim.learning.train import OPTIMIZERS

        check_choice("data", self.data, DATA)
        check_choice("param", self.param, PARAMETERIZATIONS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        widths = tuple(self.widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1 for w in widths):
            raise ValueError(f"widths must be integers >= 1, got {self.widths!r}")
        if max(widths) > 16384:
            raise ValueError(f"widths: {max(widths)} exceeds the largest allowed width 16384")
        check_int("depth", self.depth, 1)
        if self.depth > 16:
            raise ValueError(f"depth must be <= 16, got {self.depth}")
        check_number("lr", self.lr)
        check_int("steps", self.steps, 1)
        check_int("seeds", self.seeds, 1)
        check_int("seed", self.seed, 0)
        check_int("n_train", self.n_train, 2)
        check_int("n_test", self.n_test, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("checkpoints", self.checkpoints, 1)
        if self.checkpoints > self.steps:
            raise ValueError(f"checkpoints must be <= steps ({self.steps}), got {self.checkpoints}")
        check_int("hessian_steps", self.hessian_steps, 0)
        check_int("hessian_probes", self.hessian_probes, 1)
        check_int("barrier_points", self.barrier_points, 2)
        if self.data in ("digits", "mnist1d"):
            from sim.learning.data import mnist1d_unavailable, read_real

            if self.data == "mnist1d" and mnist1d_unavailable():
                raise ValueError(f"data mnist1d: {mnist1d_unavailable()}")
            rd = read_real(self.data)
            if self.n_train > rd.x_pool.shape[0]:
                raise ValueError(
                    f"n_train: {self.data} has {rd.x_pool.shape[0]} training samples, asked for {self.n_train}"
                )
            if self.n_test > rd.x_test.shape[0]:
                raise ValueError(f"n_test: {self.data} has {rd.x_test.shape[0]} test samples, asked for {self.n_test}")
        big = (
            self.seeds * max(widths) ** 2 * max(self.depth - 1, 0) * 4 * 8
            + self.seeds * self.n_train * max(widths) * 4 * 8
        )
        if big > 8 << 30:
            raise ValueError(
                f"widths {max(widths)} with {self.seeds} seeds needs about {big / 2**30:.0f} GiB; "
                "use fewer seeds or smaller widths"
            )

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d


def _data(config: TrainConfig, dtype):
    key = jax.random.fold_in(jax.random.key(config.seed), 0)
    if config.data == "teacher":
        from sim.learning.data import Data
        from sim.models import teacher_task

        t = teacher_task(key, TEACHER_WIDTHS, config.n_train + config.n_test, dtype=dtype)
        n = config.n_train
        return Data(t.x[:n], t.y[:n], t.x[n:], t.y[n:], t.y[n:], None, None)
    from sim.learning.data import load

    return load(config.data, key, config.n_train, config.n_test, dtype=dtype)


# The jitted measurements take the parameterisation's multipliers as data (``T.hyper_loss``): one
# program per architecture serves the three parameterisations of a gallery sweep.
@functools.cache
def _negfrac_fn(loss, num_steps, num_probes):
    from sim.learning import geometry as G

    @jax.jit
    def f(mult, key, params, x, y):
        return G.negative_fraction(
            key, lambda p: loss(mult, p, x, y), params, num_steps=num_steps, num_probes=num_probes
        )

    return f


@functools.cache
def _barrier_fn(loss, num):
    from sim.learning import geometry as G

    @jax.jit
    def f(mult, a, b, x, y):
        return G.barrier(lambda p: loss(mult, p, x, y), a, b, num)

    return f


@functools.cache
def _geometry_fns():
    """Jitted ``vmap(change)``, ``pair_distances`` (compiled once per shape instead of op by op)."""
    from sim.learning import geometry as G

    return jax.jit(jax.vmap(G.change)), jax.jit(G.pair_distances)


@functools.cache
def _loss_fn(loss):
    return jax.jit(loss)


@jax.jit
def _take(tree, i):
    """Entry ``i`` (traced) of every leaf: one compiled program per tree of shapes, not one per leaf."""
    return jax.tree.map(lambda a: a[i], tree)


def run(config: TrainConfig, progress: Progress = no_progress) -> Result:
    """Train and measure (see the module docstring). ``progress(1)`` after each width."""
    from sim.fit import fit_power_law
    from sim.learning import geometry as G
    from sim.learning import mlp
    from sim.learning import train as T

    dtype = jnp.float32
    data = _data(config, dtype)
    d_in, d_out = int(data.x_train.shape[1]), int(data.y_train.shape[1])
    labels = data.labels_test
    key = jax.random.key(config.seed)
    k_train, k_hess = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    rows: list[dict[str, Any]] = []
    index_rows: list[dict[str, Any]] = []
    notes: list[str] = []
    seconds = {"train": 0.0, "measure": 0.0}
    S = config.seeds
    widths = sorted(set(int(w) for w in config.widths))
    models = {w: T.Model(d_in, w, config.depth, d_out, config.param, config.activation) for w in widths}
    options = dict(
        optimizer=config.optimizer,
        lr=config.lr,
        steps=config.steps,
        seeds=S,
        batch_size=config.batch_size,
        checkpoints=config.checkpoints,
        dtype=dtype,
    )
    # each width's training program is compiled ahead, side by side in one thread per core (compilation is
    # most of a gallery sweep's cost); a width waits for its own program, which ``train`` then reuses
    compiled = compile_ahead(
        {w: functools.partial(T.compile_train, k_train, data, models[w], **options) for w in widths}, "train"
    )
    for width in widths:
        model = models[width]
        compiled[width].result()
        t0 = time.perf_counter()
        run_ = T.train(k_train, data, model, **options)
        jax.block_until_ready(run_.params)
        seconds["train"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        tr_loss, _ = T.evaluate(
            model, run_.params, data.x_train, data.y_train, jnp.zeros(data.x_train.shape[0], jnp.int32)
        )
        te_loss, te_err = T.evaluate(
            model,
            run_.params,
            data.x_test,
            data.y_test,
            labels if labels is not None else jnp.zeros(data.x_test.shape[0], jnp.int32),
        )
        changes, pair_distances = _geometry_fns()
        ch = changes(run_.params0, run_.params)
        finite = np.isfinite(np.asarray(tr_loss))
        if not finite.all():
            notes.append(
                f"width {width}: {int((~finite).sum())} of {S} seeds diverged (non-finite loss; "
                f"lr {config.lr} too large for this width and parameterisation)"
            )
        scales = [
            (mw, mb) for mw, _, mb, _ in mlp.multipliers(mlp.widths_of(d_in, width, config.depth, d_out), config.param)
        ]
        loss_fn, mult = T.hyper_loss(model, dtype)
        bar = functools.partial(_barrier_fn(loss_fn, config.barrier_points), mult)
        hess = (
            functools.partial(_negfrac_fn(loss_fn, config.hessian_steps, config.hessian_probes), mult)
            if config.hessian_steps
            else None
        )
        unconverged = 0
        for s in range(S):
            a0, a = _take(run_.params0, s), _take(run_.params, s)
            pd = {"trained": math.nan, "init": math.nan}
            b_naive = b_al = math.nan
            if S >= 2 and finite[s] and finite[(s + 1) % S]:
                t = (s + 1) % S
                b0, b = _take(run_.params0, t), _take(run_.params, t)
                pd = pair_distances(a0, b0, a, b)
                perms, _, conv = G.weight_matching(a, b, scales=scales)
                unconverged += not conv
                b_naive = bar(a, b, data.x_train, data.y_train)
                b_al = bar(a, G.permute(b, perms), data.x_train, data.y_train)
            nf = se = math.nan
            if hess is not None and finite[s]:
                nf, se = hess(jax.random.fold_in(k_hess, s), a, data.x_train, data.y_train)
            rows.append(
                {
                    "data": config.data,
                    "param": config.param,
                    "width": width,
                    "depth": config.depth,
                    "params": model.num_params,
                    "seed": s,
                    "steps": config.steps,
                    "train_loss": carried(tr_loss[s], dtype),
                    "test_loss": carried(te_loss[s], dtype),
                    "test_error": carried(te_err[s], dtype) if labels is not None else math.nan,
                    "init_norm": carried(ch["init_norm"][s], dtype),
                    "rel_change": carried(ch["rel_change"][s], dtype),
                    "cos_init_final": carried(ch["cos"][s], dtype),
                    "pair_dist_trained": carried(pd["trained"], dtype),
                    "pair_dist_init": carried(pd["init"], dtype),
                    "barrier": carried(b_naive, dtype),
                    "barrier_aligned": carried(b_al, dtype),
                    "negative_fraction": carried(nf, dtype),
                    "negative_fraction_stderr": carried(se, dtype),
                }
            )
        if unconverged:
            notes.append(
                f"width {width}: weight matching did not converge in 100 sweeps for {unconverged} pairs "
                "(their aligned barrier uses the last permutations)"
            )
        if hess is not None and finite[0]:
            for j, step in enumerate(run_.checkpoint_steps):
                p = _take(_take(run_.checkpoints, 0), j)
                nf, se = hess(jax.random.fold_in(k_hess, 10_000 + j), p, data.x_train, data.y_train)
                loss = _loss_fn(loss_fn)(mult, p, data.x_train.astype(dtype), data.y_train.astype(dtype))
                index_rows.append(
                    {
                        "data": config.data,
                        "param": config.param,
                        "width": width,
                        "seed": 0,
                        "step": step,
                        "train_loss": carried(loss, dtype),
                        "negative_fraction": carried(nf, dtype),
                        "negative_fraction_stderr": carried(se, dtype),
                    }
                )
        seconds["measure"] += time.perf_counter() - t0
        progress(1)
    info: dict[str, Any] = {
        "theory_exponent": theory_exponent(config.param, config.depth),
        "exponent": None,
        "notes": notes,
        "seconds": seconds,
        "d_in": d_in,
        "d_out": d_out,
    }
    ok = [r for r in rows if math.isfinite(r["rel_change"]) and r["rel_change"] > 0]
    if len({r["width"] for r in ok}) >= 2 and len(ok) >= 3:
        f = fit_power_law(
            jax.random.fold_in(key, 3),
            np.array([r["width"] for r in ok], float),
            np.array([r["rel_change"] for r in ok], float),
        )
        info["exponent"] = {
            "exponent": f.exponent,
            "ci_low": f.ci_low,
            "ci_high": f.ci_high,
            "level": f.level,
            "prefactor": f.prefactor,
            "stderr": f.stderr,
        }
        th = info["theory_exponent"]
        if th is not None and not f.ci_low <= th <= f.ci_high:
            notes.append(
                f"the theory's exponent {th:g} lies outside the fitted interval "
                f"[{f.ci_low:.3f}, {f.ci_high:.3f}] (finite widths / finite training time)"
            )
    else:
        notes.append("no exponent fitted: at least two widths with finite relative changes are needed")
    return Result(rows, {"index": index_rows}, info)
