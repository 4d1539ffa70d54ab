"""Figures of trained networks, drawn from the rows of ``sim.experiments.train``.

* ``fig_rel_change``: relative change against width (log-log), one series per parameterisation, mean ±
  1 SE over seeds, with the width^-1/2 line and the fitted exponents in the legend.
* ``fig_pairs``: distance between trained partners against the distance between their initialisations,
  with the line y = x.
* ``fig_barrier``: straight-line barrier against width, naive and after weight matching.
* ``fig_index``: negative-eigenvalue fraction of the Hessian along training.
"""

from __future__ import annotations

import numpy as np

from sim.plots import COLORS, MARKERS, new_figure

__all__ = ["fig_rel_change", "fig_pairs", "fig_barrier", "fig_index"]


def _by_width(rows, key):
    ws = sorted({r["width"] for r in rows})
    mean, se = [], []
    for w in ws:
        v = np.array([r[key] for r in rows if r["width"] == w], float)
        v = v[np.isfinite(v)]
        mean.append(v.mean() if v.size else np.nan)
        se.append(v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0)
    return np.array(ws, float), np.array(mean), np.array(se)


def _fit_text(fit, theory):
    if not fit:
        return "no fit"
    t = f"b = {fit['exponent']:.3f} [{fit['ci_low']:.3f}, {fit['ci_high']:.3f}]"
    return t + (f", theory {theory:g}" if theory is not None else ", no theory")


def fig_rel_change(series):
    """``series``: list of (label, rows, info)."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    all_w = []
    for k, (label, rows, info) in enumerate(series):
        w, m, se = _by_width(rows, "rel_change")
        all_w += list(w)
        ax.errorbar(
            w,
            m,
            yerr=se,
            fmt=MARKERS[k % len(MARKERS)] + "-",
            color=COLORS[k % len(COLORS)],
            ms=5,
            capsize=2,
            lw=1,
            label=f"{label}: {_fit_text(info.get('exponent'), info.get('theory_exponent'))}",
        )
        if label.startswith("ntk") and np.isfinite(m[0]):
            ax.plot(
                w,
                m[0] * (w / w[0]) ** -0.5,
                "--",
                color=COLORS[k % len(COLORS)],
                lw=1,
                label="width$^{-1/2}$ (NTK theory, through the first point)",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width n (units)")
    ax.set_ylabel(r"relative change $\|\theta_T-\theta_0\| / \|\theta_0\|$")
    ax.legend(fontsize=7)
    return fig


def fig_pairs(series):
    """Pair distances trained against init, every (width, seed) a point; ``series`` as above."""
    fig, axes = new_figure(1, 1, width=5.0, height=4.2)
    ax = axes[0, 0]
    lo, hi = np.inf, 0.0
    for k, (label, rows, _) in enumerate(series):
        x = np.array([r["pair_dist_init"] for r in rows], float)
        y = np.array([r["pair_dist_trained"] for r in rows], float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            ratio = y[ok] / x[ok]
            ax.plot(
                x[ok],
                y[ok],
                MARKERS[k % len(MARKERS)],
                color=COLORS[k % len(COLORS)],
                ms=4,
                alpha=0.8,
                label=f"{label}: trained/init = {ratio.mean():.3f} (range {ratio.min():.3f}-{ratio.max():.3f})",
            )
            lo, hi = min(lo, x[ok].min(), y[ok].min()), max(hi, x[ok].max(), y[ok].max())
    if hi > 0:
        ax.plot([lo, hi], [lo, hi], "-", color="0.4", lw=1, label="trained = init")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"distance at initialisation $\|\theta_0^A-\theta_0^B\|$")
    ax.set_ylabel(r"distance after training $\|\theta_T^A-\theta_T^B\|$")
    ax.legend(fontsize=7)
    return fig


def fig_barrier(series):
    """Barrier against width, naive (filled) and aligned (open); ``series`` as above."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    for k, (label, rows, _) in enumerate(series):
        c = COLORS[k % len(COLORS)]
        for key, fill, name in (("barrier", c, "naive"), ("barrier_aligned", "none", "weight-matched")):
            w, m, se = _by_width(rows, key)
            ax.errorbar(
                w,
                m,
                yerr=se,
                fmt=MARKERS[k % len(MARKERS)] + ("-" if fill != "none" else "--"),
                color=c,
                mfc=fill,
                ms=5,
                capsize=2,
                lw=1,
                label=f"{label}, {name}",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden width n (units)")
    ax.set_ylabel("training-loss barrier on the straight line")
    ax.legend(fontsize=7)
    return fig


def fig_index(series):
    """``series``: list of (label, index rows); negative fraction ± 1 SE against step, one line per width."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    k = 0
    for label, rows in series:
        for w in sorted({r["width"] for r in rows}):
            rs = sorted((r for r in rows if r["width"] == w), key=lambda r: r["step"])
            st = np.array([r["step"] for r in rs], float)
            f = np.array([r["negative_fraction"] for r in rs], float)
            se = np.array([r["negative_fraction_stderr"] for r in rs], float)
            ax.errorbar(
                st,
                f,
                yerr=np.where(np.isfinite(se), se, 0),
                fmt=MARKERS[k % len(MARKERS)] + "-",
                color=COLORS[k % len(COLORS)],
                ms=4,
                capsize=2,
                lw=1,
                label=f"{label}, width {w}",
            )
            k += 1
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction of negative Hessian eigenvalues")
    ax.legend(fontsize=7)
    return fig
