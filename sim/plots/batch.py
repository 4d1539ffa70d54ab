"""Figures of the batch-size sweep, drawn from the rows of ``sim.experiments.batch``.

* ``fig_steps``: steps to the target loss against the batch size (log-log), mean-curve crossing ± 1
  bootstrap SE, with the fitted trade-off ``S = S_min (1 + B_crit/B)``, its two asymptotes (linear
  speed-up ``E_min/B`` and saturation ``S_min``), the theory curve where there is one, B_crit and the
  run-averaged B_simple; batch sizes that never reached the target are drawn at the step cap.
* ``fig_noise``: the noise scales B_simple and B_noise along training (against the loss ratio), ± 1
  bootstrap SE over seeds, one colour per batch size, with d + 1 where that is the theory.
"""

from __future__ import annotations

import math

import numpy as np

from sim.plots import COLORS, MARKERS, new_figure

__all__ = ["fig_steps", "fig_noise"]


def _theory_curve(b, dim, target):
    return math.log(1 / target) / np.log1p(b / (dim + 1))


def fig_steps(rows, info, *, target_loss: float, note: str = ""):
    """``rows``: the sweep's rows; ``info``: its info (``fit``, ``dim``, ``theory_b_noise``)."""
    fig, axes = new_figure(1, 1, width=6.4, height=4.4)
    ax = axes[0, 0]
    b = np.array([r["batch_size"] for r in rows], float)
    ok = np.array([r["steps_fractional"] is not None for r in rows])
    s = np.array([r["steps_fractional"] if r["steps_fractional"] is not None else np.nan for r in rows], float)
    se = np.array([r["steps_stderr"] if r["steps_stderr"] is not None else 0.0 for r in rows], float)
    grid = np.geomspace(b.min() / 2, b.max() * 2, 200)
    if ok.any():
        ax.errorbar(
            b[ok], s[ok], yerr=se[ok], fmt="o", color=COLORS[0], ms=5, capsize=2, label="measured (mean-curve crossing)"
        )
    if (~ok).any():
        cap = np.array([r["max_steps"] for r in rows], float)[~ok]
        ax.plot(b[~ok], cap, "^", mfc="none", color=COLORS[1], ms=7, label="target not reached (at the step cap)")
    if info.get("theory_b_noise") is not None:
        ax.plot(
            grid,
            _theory_curve(grid, info["dim"], target_loss),
            "-",
            color=COLORS[6],
            lw=1,
            label=r"theory $\ln F / \ln(1 + B/(d+1))$",
        )
    fit = info.get("fit")
    if fit:
        s_min, e_min, b_crit = fit["s_min"], fit["e_min"], fit["b_crit"]
        ax.plot(grid, s_min * (1 + b_crit / grid), "--", color=COLORS[2], lw=1.2, label="fit $S_{min}(1 + B_{crit}/B)$")
        ax.plot(grid, e_min / grid, ":", color=COLORS[2], lw=1, label="linear speed-up $E_{min}/B$")
        ax.axhline(s_min, ls=":", color=COLORS[4], lw=1, label="saturation $S_{min}$")
        lo, hi = fit["b_crit_ci"]
        ci = f" [{lo:.3g}, {hi:.3g}]" if lo is not None else ""
        ax.axvline(b_crit, color=COLORS[2], lw=0.8, alpha=0.6)
        ax.text(b_crit, s_min, f" $B_{{crit}}$ = {b_crit:.3g}{ci}", fontsize=7, va="bottom")
    bs = info.get("run_averaged_b_simple")
    if bs is not None and math.isfinite(bs):
        ax.axvline(bs, color=COLORS[3], lw=0.8, ls="-.", label=f"run-averaged $B_{{simple}}$ = {bs:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B (examples per step)")
    ax.set_ylabel(f"steps S to loss ratio {target_loss:g}")
    if note:
        ax.set_title(note, fontsize=8)
    ax.legend(fontsize=7)
    return fig


def fig_noise(noise_rows, info, *, note: str = ""):
    """``noise_rows``: the sweep's ``noise`` table."""
    fig, axes = new_figure(2, 1, width=8.0, height=3.6, sharey=True)
    sizes = sorted({r["batch_size"] for r in noise_rows})
    for ax, key, label in ((axes[0, 0], "b_simple", r"$B_{simple}$"), (axes[0, 1], "b_noise", r"$B_{noise}$")):
        for k, bsz in enumerate(sizes):
            rr = [r for r in noise_rows if r["batch_size"] == bsz]
            x = np.array([r["loss_ratio"] for r in rr], float)
            y = np.array([r[key] for r in rr], float)
            e = np.nan_to_num(np.array([r[key + "_stderr"] for r in rr], float))
            ax.errorbar(
                x,
                y,
                yerr=e,
                fmt=MARKERS[k % len(MARKERS)] + "-",
                color=COLORS[k % len(COLORS)],
                ms=4,
                lw=0.8,
                capsize=2,
                label=f"B = {bsz}",
            )
        th = info.get("theory_b_noise")
        if th is not None:
            ax.axhline(th, color=COLORS[6], lw=1, ls="--", label=f"theory d + 1 = {th}")
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_yscale("log")
        ax.set_xlabel("loss ratio $L_t/L_0$ along training (training runs left to right)")
        ax.set_ylabel(f"{label} (examples)")
    axes[0, 0].legend(fontsize=6, ncol=2)
    if note:
        fig.suptitle(note, fontsize=8)
    return fig
