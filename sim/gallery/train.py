"""Gallery: issue 12: networks trained on real data (scikit-learn's digits). Relative change against width
in three parameterisations, distances between trained networks against their initial distances,
straight-line barriers before and after weight matching, and the Hessian index along training."""

from __future__ import annotations

import functools
import math

import numpy as np

from sim.experiments import train as exp
from sim.gallery import register
from sim.io import Output
from sim.learning.mlp import num_params
from sim.plots import save, style
from sim.plots import train as pt

SEED = 0
#: one learning rate per parameterisation: NTK and muP train stably at one rate for every width; the
#: standard parameterisation's NTK grows with the width, so it needs a 25x smaller rate (0.05 diverged at 512)
LRS = {"ntk": 0.5, "mup": 0.5, "standard": 0.02}


def _config(param, quick, hessian=False):
    return exp.TrainConfig(
        data="digits",
        # quick: two widths (a fit of the exponent needs two); each width compiles its own training program
        widths=(32, 512) if quick else (32, 64, 128, 256, 512),
        depth=1,
        param=param,
        optimizer="gd",
        lr=LRS[param],
        steps=150 if quick else 300,
        seeds=2 if quick else 4,
        seed=SEED,
        n_train=256,
        n_test=497,
        checkpoints=3 if quick else 5,
        hessian_steps=40 if hessian else 0,
        hessian_probes=4,
    )


@functools.cache
def _run(config):
    return exp.run(config)


def _sweeps(quick):
    return [(p, _config(p, quick), _run(_config(p, quick))) for p in ("ntk", "mup", "standard")]


def _fit_txt(info):
    f, th = info["exponent"], info["theory_exponent"]
    if not f:
        return "no fit"
    inside = th is not None and f["ci_low"] <= th <= f["ci_high"]
    txt = f"b = {f['exponent']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}]"
    if th is None:
        return txt + " (no width-independent theory at a fixed learning rate)"
    return txt + f" against theory {th:g} ({'inside' if inside else 'outside'} the interval)"


@register("train_rel_change", "relative change of the parameters against width: NTK, muP, standard, with width^-1/2")
def _rel_change(out: Output, quick: bool):
    runs = _sweeps(quick)
    with style():
        save(pt.fig_rel_change([(p, r.rows, r.info) for p, _, r in runs]), out, "train_rel_change")
    out.csv("train_rel_change.csv", [row for _, _, r in runs for row in r.rows])
    cfg = runs[0][1]
    parts = [
        f"{p} (lr {c.lr:g}): {_fit_txt(r.info)}" + "".join(f" [{n}]" for n in r.info["notes"] if "diverged" in n)
        for p, c, r in runs
    ]
    caption = (
        f"One-hidden-layer ReLU networks trained by full-batch gradient descent ({cfg.steps} steps, squared loss "
        f"on one-hot labels) on {cfg.n_train} scikit-learn digits, {cfg.seeds} seeds per width "
        f"{min(cfg.widths)}-{max(cfg.widths)}: relative change ||θ_T-θ_0||/||θ_0|| ~ width^b with "
        + "; ".join(parts)
        + " (95% bootstrap intervals). NTK training is lazy (the parameters barely move "
        "relative to their size as the width grows); mean-field/muP is not."
    )
    return (
        caption,
        {"configs": [c.to_json() for _, c, _ in runs]},
        SEED,
        {
            "fits": {p: r.info["exponent"] for p, _, r in runs},
            "theory": {p: r.info["theory_exponent"] for p, _, r in runs},
            "notes": {p: r.info["notes"] for p, _, r in runs},
        },
    )


@register("train_pairs", "distance between independently trained networks against their distance at initialisation")
def _pairs(out: Output, quick: bool):
    runs = _sweeps(quick)
    with style():
        save(pt.fig_pairs([(p, r.rows, r.info) for p, _, r in runs]), out, "train_pairs")
    cols = ("param", "width", "seed", "pair_dist_init", "pair_dist_trained", "init_norm")
    out.csv("train_pairs.csv", [{k: row[k] for k in cols} for _, _, r in runs for row in r.rows])
    parts = []
    for p, _, r in runs:
        ratio = np.array([row["pair_dist_trained"] / row["pair_dist_init"] for row in r.rows])
        init = np.array([row["pair_dist_init"] / row["init_norm"] for row in r.rows])
        ratio, init = ratio[np.isfinite(ratio)], init[np.isfinite(init)]
        parts.append(
            f"{p}: trained/init {ratio.min():.3f}-{ratio.max():.3f} (at most {100 * np.max(np.abs(ratio - 1)):.0f}% "
            f"from 1), init distance / ||θ_0|| {init.mean():.3f} (sqrt 2 = {math.sqrt(2):.3f})"
        )
    caption = (
        "Distance between two independently initialised and trained networks (same digits training set) "
        "against their distance at initialisation, every (width, pair) a point: " + "; ".join(parts) + "."
    )
    return caption, {"configs": [c.to_json() for _, c, _ in runs]}, SEED, {}


@register(
    "train_barrier", "straight-line loss barrier between trained networks against width, naive and weight-matched"
)
def _barrier(out: Output, quick: bool):
    runs = _sweeps(quick)
    with style():
        save(pt.fig_barrier([(p, r.rows, r.info) for p, _, r in runs]), out, "train_barrier")
    cols = ("param", "width", "seed", "barrier", "barrier_aligned")
    out.csv("train_barrier.csv", [{k: row[k] for k in cols} for _, _, r in runs for row in r.rows])
    parts = []
    for p, c, r in runs:
        ws = [w for w in sorted(set(c.widths)) if any(np.isfinite(x["barrier"]) for x in r.rows if x["width"] == w)]
        if not ws:
            parts.append(f"{p}: no finite barrier (diverged)")
            continue
        m = {
            w: (
                np.nanmean([x["barrier"] for x in r.rows if x["width"] == w]),
                np.nanmean([x["barrier_aligned"] for x in r.rows if x["width"] == w]),
            )
            for w in ws
        }
        parts.append(
            f"{p}: naive {m[ws[0]][0]:.3g} -> {m[ws[-1]][0]:.3g}, weight-matched {m[ws[0]][1]:.3g} -> "
            f"{m[ws[-1]][1]:.3g} from width {ws[0]} to {ws[-1]}"
        )
    caption = (
        "Training-loss barrier on the straight line between two independently trained networks (mean over "
        "pairs), before and after aligning the second network's hidden units by weight matching: "
        + "; ".join(parts)
        + "."
    )
    return caption, {"configs": [c.to_json() for _, c, _ in runs]}, SEED, {}


@register("train_index", "fraction of negative Hessian eigenvalues along training (NTK and muP, digits)")
def _index(out: Output, quick: bool):
    runs = []
    for p in ("ntk", "mup"):
        c = dataclasses_replace(_config(p, quick, hessian=True), widths=(32,) if quick else (32, 128, 512), seeds=1)
        runs.append((p, c, _run(c)))
    with style():
        save(pt.fig_index([(p, r.tables["index"]) for p, _, r in runs]), out, "train_index")
    out.csv("train_index.csv", [row for _, _, r in runs for row in r.tables["index"]])
    parts = []
    for p, _, r in runs:
        for w in sorted({x["width"] for x in r.tables["index"]}):
            rs = sorted((x for x in r.tables["index"] if x["width"] == w), key=lambda x: x["step"])
            parts.append(
                f"{p} width {w}: {rs[0]['negative_fraction']:.3f} at init -> {rs[-1]['negative_fraction']:.3f} "
                f"± {rs[-1]['negative_fraction_stderr']:.3f} at step {rs[-1]['step']}"
            )
    c = runs[0][1]
    caption = (
        f"Fraction of negative eigenvalues of the training-loss Hessian (SLQ, {c.hessian_steps} Lanczos steps x "
        f"{c.hessian_probes} probes, interpolated count below 0; ± probe standard error, quadrature error not "
        f"included) along full-batch training on {c.n_train} digits: " + "; ".join(parts) + ". Most of these "
        f"eigenvalues lie in a narrow bulk around 0 (the Gauss-Newton part of the Hessian has rank at most "
        f"{c.n_train} x 10 = {c.n_train * 10}; parameter counts "
        + ", ".join(f"{num_params(64, w, 1, 10)}" for w in sorted(set(c.widths)))
        + "), and the fraction below 0 splits that bulk: it is not "
        "a count of clearly negative directions (a count below -eps is not computed here)."
    )
    return caption, {"configs": [c.to_json() for _, c, _ in runs]}, SEED, {}


def dataclasses_replace(config, **kw):
    import dataclasses

    return dataclasses.replace(config, **kw)
