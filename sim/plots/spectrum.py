"""Hessian-spectrum figures, drawn from the rows/tables/info of ``sim.experiments.spectrum``.

``fig_density``: per spectrum, the SLQ density (Gaussian-smoothed Gauss quadrature) over the exact
eigenvalue histogram where it was computed, and below it the cumulative fraction of eigenvalues (SLQ
mean over probes with a +-2 standard-error band, exact staircase) around the bulk, where the negative
fraction is read at 0. ``fig_training``: the eigenvalue counts N-(eps), N0(eps), N+(eps) with their
brackets at initialisation and after training, and the loss along gradient descent, for MLPs of
several sizes (without counts: the negative fraction along training).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from sim.plots import COLORS, MARKERS, new_figure

__all__ = ["slq_cdf", "exact_cdf", "cdf_window", "density_series", "fig_density", "fig_training", "MODEL_NAMES"]

MODEL_NAMES = {
    "mlp": "MLP loss Hessian",
    "goe": "GOE matrix",
    "grf": "Gaussian random field Hessian",
    "pspin": "p-spin Riemannian Hessian",
}


def _ritz(ritz_rows):
    """(nodes, weights) arrays (probes, m) from the ``ritz`` table (rows in probe order)."""
    by = defaultdict(lambda: ([], []))
    for r in ritz_rows:
        by[r["probe"]][0].append(r["node"])
        by[r["probe"]][1].append(r["weight"])
    probes = sorted(by)
    return np.array([by[p][0] for p in probes], float), np.array([by[p][1] for p in probes], float)


def slq_cdf(ritz_rows, x):
    """SLQ estimate of the fraction of eigenvalues below each ``x``: (mean, stderr) over probes.

    Per probe the staircase of its Gauss quadrature interpolated through the midpoints of its jumps
    (``sim.lanczos.fraction_below(method="interpolate")`` before clipping to the CMS bracket).
    """
    nodes, weights = _ritz(ritz_rows)
    x = np.asarray(x, float)
    order = np.argsort(nodes, axis=1)
    nodes = np.take_along_axis(nodes, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    mid = np.cumsum(weights, axis=1) - 0.5 * weights
    f = np.stack([np.interp(x, nd, md, left=0.0, right=1.0) for nd, md in zip(nodes, mid)])
    se = f.std(axis=0, ddof=1) / math.sqrt(f.shape[0]) if f.shape[0] > 1 else np.zeros_like(x)
    return f.mean(axis=0), se


def exact_cdf(eig_rows, x):
    """Fraction of exact eigenvalues strictly below each ``x`` (``exact_eigenvalues`` table)."""
    ev = np.sort(np.array([r["eigenvalue"] for r in eig_rows], float))
    return np.searchsorted(ev, np.asarray(x, float), side="left") / ev.size


def cdf_window(ritz_rows, grid, lo_q=0.03, hi_q=0.97):
    """x-range holding the SLQ quantiles lo_q..hi_q and 0, padded by 10%: where the bulk and 0 are."""
    grid = np.asarray(grid, float)
    f, _ = slq_cdf(ritz_rows, grid)
    a = grid[max(0, np.searchsorted(f, lo_q) - 1)]
    b = grid[min(grid.size - 1, np.searchsorted(f, hi_q))]
    a, b = min(a, 0.0), max(b, 0.0)
    pad = 0.1 * (b - a) if b > a else 1.0
    return a - pad, b + pad


def density_series(rows, tables, info):
    """The data ``fig_density`` draws for one spectrum, as long-format rows: series, x, x_right, y.

    Series: ``slq_density`` (grid), ``exact_histogram`` (bins: x = left, x_right = right edge; only with
    the exact comparison), ``slq_cdf`` and ``slq_cdf_stderr`` and ``exact_cdf`` (on 401 points of the CDF
    window).
    """
    grid = np.array([r["eigenvalue"] for r in rows], float)
    out = [
        {
            "series": "slq_density",
            "x": float(r["eigenvalue"]),
            "x_right": float(r["eigenvalue"]),
            "y": float(r["density"]),
        }
        for r in rows
    ]
    for h in tables.get("exact_histogram", []):
        out.append(
            {"series": "exact_histogram", "x": float(h["left"]), "x_right": float(h["right"]), "y": float(h["density"])}
        )
    a, b = cdf_window(tables["ritz"], grid)
    xs = np.linspace(a, b, 401)
    f, se = slq_cdf(tables["ritz"], xs)
    out += [{"series": "slq_cdf", "x": float(x), "x_right": float(x), "y": float(v)} for x, v in zip(xs, f)]
    out += [{"series": "slq_cdf_stderr", "x": float(x), "x_right": float(x), "y": float(v)} for x, v in zip(xs, se)]
    if "exact_eigenvalues" in tables:
        e = exact_cdf(tables["exact_eigenvalues"], xs)
        out += [{"series": "exact_cdf", "x": float(x), "x_right": float(x), "y": float(v)} for x, v in zip(xs, e)]
    return out


def _title(info, label=None):
    n = info["num_params"]
    head = label or f"{MODEL_NAMES.get(info['model'], info['model'])}, N = {n:,}"
    return f"{head}\n{info['probes']} probes x {info['steps']} Lanczos steps"


def _neg_text(info):
    s = f"negative fraction {info['negative_fraction']:.4f} +- {info['negative_fraction_stderr']:.4f}"
    if "exact_negative_fraction" in info:
        s += f"\nexact (eigvalsh) {info['exact_negative_fraction']:.4f}"
    if "theory_negative_fraction" in info:
        s += f"\nsemicircle theory {info['theory_negative_fraction']:.4f}"
    return s


def fig_density(spectra, *, log=None):
    """SLQ density against the exact histogram (top) and cumulative fraction near 0 (bottom).

    Args:
        spectra: list of ``(label or None, series_rows, info)``; ``series_rows`` from ``density_series``.
        log: log density axis; None: for MLP Hessians (a tall bulk at 0 over outliers), else linear.
    """
    k = len(spectra)
    fig, axes = new_figure(ncols=k, nrows=2, width=4.2 * k if k > 1 else 6.0, height=6.0)
    for j, (label, series, info) in enumerate(spectra):
        ax, bx = axes[0, j], axes[1, j]
        s = defaultdict(list)
        for r in series:
            s[r["series"]].append(r)
        x = np.array([r["x"] for r in s["slq_density"]])
        y = np.array([r["y"] for r in s["slq_density"]])
        use_log = (info["model"] == "mlp") if log is None else log
        if s["exact_histogram"]:
            edges = np.array([r["x"] for r in s["exact_histogram"]] + [s["exact_histogram"][-1]["x_right"]])
            h = np.array([r["y"] for r in s["exact_histogram"]])
            ax.stairs(h, edges, fill=True, color="0.82", label=f"exact eigenvalues ({len(h)}-bin histogram)")
        ax.plot(x, y, color=COLORS[0], lw=1.2, label=f"SLQ density (Gaussian kernel sigma = {info['sigma']:.3g})")
        ax.axvline(0.0, color="0.3", lw=0.7, ls=":")
        peak = max(y.max(), max((r["y"] for r in s["exact_histogram"]), default=0.0))
        if use_log:  # headroom above the curves for the legend
            ax.set_yscale("log")
            ax.set_ylim(peak * 1e-5, peak * 60)
        else:
            ax.set_ylim(0, peak * 1.35)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density" + (" (log scale)" if use_log else ""))
        ax.set_title(_title(info, label), fontsize=8.5)
        ax.legend(fontsize=6.5, loc="upper right")

        xc = np.array([r["x"] for r in s["slq_cdf"]])
        fc = np.array([r["y"] for r in s["slq_cdf"]])
        se = np.array([r["y"] for r in s["slq_cdf_stderr"]])
        bx.fill_between(
            xc,
            np.clip(fc - 2 * se, 0, 1),
            np.clip(fc + 2 * se, 0, 1),
            color=COLORS[0],
            alpha=0.2,
            lw=0,
            label="SLQ +- 2 standard errors (probes)",
        )
        bx.plot(xc, fc, color=COLORS[0], lw=1.2, label="SLQ (interpolated quadrature CDF)")
        if s["exact_cdf"]:
            bx.step(
                xc,
                [r["y"] for r in s["exact_cdf"]],
                where="post",
                color=COLORS[1],
                lw=1.0,
                ls="--",
                label="exact (eigvalsh)",
            )
        f0, e0 = info["negative_fraction"], info["negative_fraction_stderr"]
        bx.errorbar(
            [0.0],
            [f0],
            yerr=[2 * e0 if math.isfinite(e0) else 0.0],
            color=COLORS[0],
            marker="o",
            ms=4,
            capsize=3,
            ls="none",
        )
        if "exact_negative_fraction" in info:
            bx.plot([0.0], [info["exact_negative_fraction"]], marker="x", color=COLORS[1], ms=7, ls="none")
        bx.axvline(0.0, color="0.3", lw=0.7, ls=":")
        bx.set_xlim(xc[0], xc[-1])
        bx.set_ylim(0, 1)
        bx.set_xlabel("eigenvalue (window around the bulk and 0)")
        bx.set_ylabel("fraction of eigenvalues below")
        bx.text(0.02, 0.97, _neg_text(info), transform=bx.transAxes, va="top", ha="left", fontsize=7)
        bx.legend(fontsize=6.5, loc="lower right")
    return fig


def fig_training(rows, counts=None):
    """MLP Hessians of several sizes. With ``counts`` (the ``counts`` table of ``run_training``): a 2 x 4
    grid, rows at initialisation and after training, columns N-(eps), N0(eps), N+(eps) against eps / ||H||
    (line: estimate; band: its bracket, probe noise and polynomial error; crosses: exact eigvalsh where N
    is small), and the loss along gradient descent. Without: the negative fraction along training (SLQ
    +- 2 s.e.; dotted: its bracket) and the loss."""
    sizes = sorted({r["num_params"] for r in rows})
    if not counts:
        return _fig_training_fraction(rows, sizes)
    steps = sorted({r["step"] for r in counts})
    first, last = steps[0], steps[-1]
    fig, axes = new_figure(ncols=4, nrows=2, width=13.0, height=6.4)
    quantities = (
        ("negative", "N-(eps): fraction < -eps"),
        ("zero", "N0(eps): fraction in [-eps, eps]"),
        ("positive", "N+(eps): fraction > eps"),
    )
    for i, (step, when) in enumerate(((first, "at initialisation"), (last, f"after {last} GD steps"))):
        for j, (q, title) in enumerate(quantities):
            ax = axes[i, j]
            for k, n in enumerate(sizes):
                rs = sorted((r for r in counts if r["num_params"] == n and r["step"] == step), key=lambda r: r["eps"])
                if not rs:
                    continue
                c, mk = COLORS[k % len(COLORS)], MARKERS[k % len(MARKERS)]
                e = np.array([r["eps"] for r in rs])
                ax.fill_between(
                    e,
                    [r[f"{q}_fraction_lower"] for r in rs],
                    [r[f"{q}_fraction_upper"] for r in rs],
                    color=c,
                    alpha=0.18,
                    lw=0,
                )
                ax.plot(e, [r[f"{q}_fraction"] for r in rs], color=c, marker=mk, ms=3.5, lw=1.0, label=f"N = {n:,}")
                if rs[0].get(f"exact_{q}_fraction") is not None:
                    ax.plot(
                        e,
                        [r[f"exact_{q}_fraction"] for r in rs],
                        color="black",
                        marker="x",
                        ms=5,
                        ls="none",
                        label="exact (eigvalsh)" if k == 0 else None,
                    )
            ax.set_xscale("log")
            ax.set_xlabel("eps / ||H|| (threshold / spectral norm)")
            ax.set_ylabel("fraction of Hessian eigenvalues")
            ax.set_title(f"{title}, {when}", fontsize=8)
        bx = axes[i, 3]
        if i == 0:
            for k, n in enumerate(sizes):
                rs = [r for r in rows if r["num_params"] == n]
                bx.plot(
                    [r["step"] for r in rs],
                    [r["loss"] for r in rs],
                    color=COLORS[k % len(COLORS)],
                    marker=MARKERS[k % len(MARKERS)],
                    ms=4,
                    lw=1.0,
                )
            bx.set_yscale("log")
            bx.set_xlabel("gradient-descent step")
            bx.set_ylabel("training loss (MSE / 2)")
            bx.set_title("Loss", fontsize=9)
        else:
            bx.axis("off")
            handles, labels = axes[0, 0].get_legend_handles_labels()
            bx.legend(
                handles,
                labels,
                fontsize=8,
                loc="center",
                title="band: bracket (probe noise +\npolynomial resolution)",
                title_fontsize=7,
            )
    return fig


def _fig_training_fraction(rows, sizes):
    fig, axes = new_figure(ncols=2, width=8.0, height=3.4)
    ax, bx = axes[0]
    for i, n in enumerate(sizes):
        rs = [r for r in rows if r["num_params"] == n]
        st = np.array([r["step"] for r in rs], float)
        c, mk = COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]
        for key in ("negative_fraction_lower", "negative_fraction_upper"):
            ax.plot(st, [r[key] for r in rs], color=c, lw=0.7, ls=":")
        ax.errorbar(
            st,
            [r["negative_fraction"] for r in rs],
            yerr=[2 * r["negative_fraction_stderr"] for r in rs],
            color=c,
            marker=mk,
            ms=4,
            capsize=2,
            lw=1.0,
            label=f"N = {n:,} (width {rs[0]['width']})",
        )
        bx.plot(st, [r["loss"] for r in rs], color=c, marker=mk, ms=4, lw=1.0)
    ax.set_xlabel("gradient-descent step (0: initialisation)")
    ax.set_ylabel("fraction of negative Hessian eigenvalues")
    ax.set_ylim(0, 1)
    ax.set_title(
        "Negative fraction along training: SLQ +- 2 s.e. (probes);\n"
        "dotted: Chebyshev-Markov-Stieltjes bracket + 2 s.e.",
        fontsize=8,
    )
    bx.set_yscale("log")
    bx.set_xlabel("gradient-descent step")
    bx.set_ylabel("training loss (MSE / 2)")
    bx.set_title("Loss", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    bx.legend(handles, labels, fontsize=7, loc="upper right")
    return fig
