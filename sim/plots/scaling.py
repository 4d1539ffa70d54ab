"""Learning-curve figures, drawn from the rows and info of ``sim.experiments.scaling``.

* ``fig_learning_curves``: excess risk against n on log-log axes, measured (mean ± 1 SE over seeds)
  with the spectral prediction, the fitted exponent with its 95% interval beside the theory's in the legend.
* ``fig_params``: excess risk against the number of features P, one curve per n.
* ``fig_exponent_map``: the theory exponent min(beta - 1, 2 alpha) over (alpha, beta) with the 0.095 contour
  (Kaplan et al.'s data exponent) and measured exponents marked.
* ``fig_double_descent``: ridgeless and optimally regularised risk against gamma = P/n with Hastie et al.'s
  exact finite-n and asymptotic curves.
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter

from sim.plots import COLORS, MARKERS, new_figure

__all__ = ["fig_learning_curves", "fig_params", "fig_exponent_map", "fig_double_descent", "fit_label"]


def fit_label(fit: dict | None, theory: float | None) -> str:
    """'b = 0.98 [0.94, 1.03], theory 1' for a fitted exponent dict of the experiment's info."""
    if not fit or fit.get("exponent") is None:
        return "no fit"
    txt = f"b = {fit['exponent']:.2f} [{fit['ci_low']:.2f}, {fit['ci_high']:.2f}]"
    if theory is not None:
        txt += f", theory {theory:.3g}"
    elif fit.get("theory_slope_over_range") is not None:
        txt += f", spectral prediction {fit['theory_slope_over_range']:.2f}"
    return txt


def fig_learning_curves(series, *, ylabel: str = "excess risk (test MSE against the clean target)"):
    """``series``: list of (label or None, rows, info). One colour per series and P."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    k = 0
    for label, rows, info in series:
        for p in sorted({r["params"] for r in rows}):
            rs = sorted((r for r in rows if r["params"] == p), key=lambda r: r["n"])
            n = np.array([r["n"] for r in rs], float)
            y = np.array([r["excess_risk"] for r in rs])
            se = np.array([r["excess_risk_stderr"] for r in rs])
            th = np.array([r["theory_excess_risk"] for r in rs])
            c = COLORS[k % len(COLORS)]
            fit = info["exponent_n"].get(str(p))
            name = label or (f"P = {p}" if p else rows[0]["data"])
            ax.errorbar(
                n,
                y,
                yerr=np.where(np.isfinite(se), se, 0),
                fmt=MARKERS[k % len(MARKERS)],
                color=c,
                ms=4,
                capsize=2,
                label=f"{name}: {fit_label(fit, info.get('theory_exponent_n'))}",
            )
            if np.any(np.isfinite(th)):
                ax.plot(n, th, "-", color=c, lw=1.2, alpha=0.8)
            k += 1
    ax.plot([], [], "-", color="0.3", label="lines: spectral prediction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("training samples n")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("learning curves: measured (mean ± 1 SE over seeds) and predicted", fontsize=9)
    return fig


def fig_params(rows):
    """Excess risk against P for each n (log-log)."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.0)
    ax = axes[0, 0]
    for k, n in enumerate(sorted({r["n"] for r in rows})):
        rs = sorted((r for r in rows if r["n"] == n), key=lambda r: r["params"])
        p = np.array([r["params"] for r in rs], float)
        c = COLORS[k % len(COLORS)]
        ax.errorbar(
            p,
            [r["excess_risk"] for r in rs],
            yerr=[r["excess_risk_stderr"] for r in rs],
            fmt=MARKERS[k % len(MARKERS)],
            color=c,
            ms=4,
            capsize=2,
            label=f"n = {n}",
        )
        th = np.array([r["theory_excess_risk"] for r in rs])
        if np.any(np.isfinite(th)):
            ax.plot(p, th, "-", color=c, lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("features P")
    ax.set_ylabel("excess risk")
    ax.legend(fontsize=7)
    return fig


def fig_exponent_map(alphas, betas, exponent, measured=()):
    """Theory exponent over the (alpha, beta) grid; ``measured``: (alpha, beta, b, lo, hi) points."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.4)
    ax = axes[0, 0]
    a, b = np.meshgrid(alphas, betas)
    z = np.vectorize(exponent)(a, b)
    levels = np.array([0.02, 0.05, 0.095, 0.2, 0.5, 1, 2, 4])
    cf = ax.contourf(
        a,
        b,
        np.log10(z),
        levels=np.log10(np.concatenate([[z.min()], levels[levels > z.min()], [z.max()]])),
        cmap="viridis",
    )
    cbar = fig.colorbar(cf, ax=ax)
    cbar.set_label("log10 of the theory exponent b (excess risk ~ n^-b)")
    cs = ax.contour(a, b, z, levels=[0.095], colors=[COLORS[1]], linewidths=2)
    ax.clabel(cs, fmt={0.095: "b = 0.095 (Kaplan et al. α_D)"}, fontsize=7)
    ax.plot(
        alphas,
        np.minimum(1 + 2 * np.asarray(alphas), max(betas)),
        "--",
        color="w",
        lw=1,
        label="β = 1 + 2α: above it b = 2α (saturated)",
    )
    for k, (al, be, bm, lo, hi) in enumerate(measured):
        ax.plot(
            al,
            be,
            MARKERS[k % len(MARKERS)],
            color=COLORS[(k + 2) % len(COLORS)],
            ms=7,
            mec="k",
            label=f"measured at α = {al:g}, β = {be:g}: b = {bm:.2f} [{lo:.2f}, {hi:.2f}], theory {exponent(al, be):.3g}",
        )
    ax.set_xlabel("α (covariance eigenvalues λ_i = i^-α)")
    ax.set_ylabel("β (target power per mode ∝ i^-β)")
    ax.set_yscale("log")
    ax.legend(fontsize=6.5, loc="upper left")
    return fig


def fig_double_descent(n, rows_ridgeless, rows_optimal, gamma_grid, exact, asymptotic, optimal):
    """Excess risk against gamma = P/n: measured ridgeless and optimal-ridge points with the theory curves."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    for rows, c, m, name in (
        (rows_ridgeless, COLORS[0], "o", "minimum norm (measured)"),
        (rows_optimal, COLORS[2], "s", "optimal ridge λ* = γσ²/r² (measured)"),
    ):
        g = np.array([r["params"] / n for r in rows])
        ax.errorbar(
            g,
            [r["excess_risk"] for r in rows],
            yerr=[r["excess_risk_stderr"] for r in rows],
            fmt=m,
            color=c,
            ms=4,
            capsize=2,
            label=name,
        )
    gg = np.asarray(gamma_grid)
    ax.plot(
        gg,
        np.where(np.isfinite(exact), exact, np.nan),
        "-",
        color=COLORS[0],
        lw=1.2,
        label=f"exact finite-n risk (n = {n})",
    )
    ax.plot(gg, asymptotic, "--", color=COLORS[1], lw=1.2, label="asymptotic (Hastie et al. 2019)")
    ax.plot(gg, optimal, "-", color=COLORS[2], lw=1.2, label="optimal ridge (spectral prediction)")
    ax.axhline(1.0, color="0.5", lw=0.8, ls=":", label="null risk r² = 1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.05, 30)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("γ = P/n (features per sample)")
    ax.set_ylabel("excess risk E(x·(ŵ − w))²")
    ax.legend(fontsize=7)
    return fig
