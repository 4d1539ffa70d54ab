"""Distance-concentration figures, drawn from the experiment's rows (sim.experiments.distances)."""

from __future__ import annotations

import math
from collections import defaultdict

import jax
import numpy as np
from matplotlib.legend_handler import HandlerTuple

from sim.fit import fit_power_law
from sim.plots import COLORS, MARKERS, new_figure, pick_dims
from sim.theory.distances import angle_density

__all__ = ["fig_histograms", "fig_rel_std", "fig_rel_contrast", "fig_angles", "fit_rows"]

METRIC_UNITS = {
    "euclidean": "Euclidean distance",
    "sqeuclidean": "squared Euclidean distance",
    "cityblock": "L1 distance",
    "minkowski": "Minkowski distance",
    "chebyshev": "Chebyshev distance",
    "cosine": "cosine distance",
}


def _series(rows, metric, key="rel_std"):
    """{dist: (dims, values, theory)} for one metric, in row order."""
    out = defaultdict(lambda: ([], [], []))
    for r in rows:
        if r["metric"] == metric:
            s = out[r["dist"]]
            s[0].append(r["dim"])
            s[1].append(r[key])
            s[2].append(r.get("theory_" + key, math.nan))
    return {k: tuple(np.asarray(v, dtype=float) for v in s) for k, s in out.items()}


def fit_rows(rows, metric, *, seed=0, key="rel_std"):
    """Power-law fit of ``key`` against dim for each distribution: {dist: PowerLawFit or None}."""
    fits = {}
    for i, (dist, (dims, vals, _)) in enumerate(_series(rows, metric, key).items()):
        ok = np.isfinite(vals) & (vals > 0)
        fits[dist] = (
            fit_power_law(jax.random.fold_in(jax.random.key(seed), i), dims[ok], vals[ok])
            if ok.sum() >= 3 and np.unique(dims[ok]).size >= 3
            else None
        )
    return fits


def _labels(rows, metric):
    """Legend name of each law: its parameters when they are the same in every row (e.g. student-t(df=5))."""
    params = defaultdict(set)
    for r in rows:
        if r["metric"] == metric:
            params[r["dist"]].add(r.get("dist_params", r["dist"]))
    return {k: (next(iter(v)) if len(v) == 1 else k) for k, v in params.items()}


def fig_rel_std(rows, metric="euclidean", *, fits=None, title=None):
    """rel_std = std/mean of the pair distances against d, log-log, theory dashed, fitted exponents."""
    fits = fits if fits is not None else fit_rows(rows, metric)
    labels = _labels(rows, metric)
    fig, ax = new_figure(width=7.0, height=3.6)
    ax = ax[0, 0]
    handles, names = [], []
    for i, (dist, (dims, vals, theory)) in enumerate(_series(rows, metric).items()):
        c, mk = COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]
        (h,) = ax.plot(dims, vals, marker=mk, ls="none", color=c)
        hs = [h]
        if np.isfinite(theory).any():
            (t,) = ax.plot(dims, theory, ls="--", color=c, lw=1.0)
            hs.append(t)
        f = fits.get(dist)
        fit_txt = f"{f.exponent:+.3f} [{f.ci_low:+.3f}, {f.ci_high:+.3f}]" if f else "n/a"
        handles.append(tuple(hs))
        names.append(f"{labels[dist]}: {fit_txt}" + ("" if len(hs) > 1 else " (no theory)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dimension d")
    ax.set_ylabel(f"std / mean of the {METRIC_UNITS.get(metric, metric)}")
    ax.set_title(title or "Distances concentrate like d^(-1/2), unless tails are heavy or the rank is low")
    ax.legend(
        handles,
        names,
        handler_map={tuple: HandlerTuple(ndivide=None)},
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=7,
        title="markers: measured, dashed: theory\nfitted slope [95% bootstrap CI]",
        title_fontsize=7,
    )
    return fig


def fig_rel_contrast(rows, metric="euclidean"):
    """Relative contrast (Dmax - Dmin)/Dmin over all pairs against d (Beyer et al. 1999: -> 0 when the
    relative variance -> 0). No closed form: a d^(-1/2) guide is drawn through the last gaussian point."""
    labels = _labels(rows, metric)
    fig, ax = new_figure(width=7.0, height=3.4)
    ax = ax[0, 0]
    series = _series(rows, metric, "rel_contrast")
    for i, (dist, (dims, vals, _)) in enumerate(series.items()):
        ax.plot(dims, vals, marker=MARKERS[i % len(MARKERS)], color=COLORS[i % len(COLORS)], label=labels[dist])
    if "gaussian" in series:
        dims, vals, _ = series["gaussian"]
        ax.plot(dims, vals[-1] * (dims / dims[-1]) ** -0.5, ls=":", color="0.4", label="guide: slope -1/2")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("relative contrast (max - min) / min")
    ax.set_title(f"Nearest and farthest pairs become alike ({METRIC_UNITS.get(metric, metric)})")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    return fig


def _hist(hist_rows, dist, dim, quantity, edges, metric=None):
    """Dense counts on ``edges`` from the sparse histogram rows of one (dist, dim, quantity)."""
    edges = np.asarray(edges, float)
    cnt = np.zeros(edges.size - 1)
    index = {round(e, 6): i for i, e in enumerate(edges[:-1])}
    for h in hist_rows:
        if (
            h["dist"] == dist
            and h["dim"] == dim
            and h["quantity"] == quantity
            and (metric is None or h["metric"] == metric)
        ):
            cnt[index[round(float(h["bin_lo"]), 6)]] += h["count"]
    return cnt


def _rebin(edges, cnt, width):
    """Merge adjacent bins so that they are about ``width`` wide (at least the original width)."""
    edges = np.asarray(edges, float)
    k = max(1, int(round(width / (edges[1] - edges[0]))))
    m = (cnt.size // k) * k
    return edges[: m + 1 : k], cnt[:m].reshape(-1, k).sum(axis=1)


def fig_histograms(rows, hist_rows, edges, metric="euclidean", dists=None, most=4):
    """Histograms of distance / mean distance, one panel per law, one curve per d (up to ``most``);
    dashed: the normal law with the theoretical relative spread, where it exists."""
    labels = _labels(rows, metric)
    dists = dists or list(labels)
    fig, axes = new_figure(ncols=len(dists), width=2.35 * len(dists), height=2.8)
    for ax, dist in zip(axes[0], dists):
        rs = {r["dim"]: r for r in rows if r["dist"] == dist and r["metric"] == metric}
        peak = 0.0
        for j, d in enumerate(pick_dims(rs)):
            r = rs[d]
            rel = r["rel_std"] if math.isfinite(r["rel_std"]) else 1.0
            e, cnt = _rebin(edges, _hist(hist_rows, dist, d, "distance/mean", edges, metric), min(rel / 3, 0.05))
            dens = cnt / (r["pairs"] * np.diff(e))
            peak = max(peak, dens.max())
            c = COLORS[j % len(COLORS)]
            ax.stairs(dens, e, color=c, label=f"d = {d:,}")
            s = r["theory_rel_std"]
            if isinstance(s, float) and math.isfinite(s):
                x = np.linspace(e[0], e[-1], 2000)
                ax.plot(x, np.exp(-0.5 * ((x - 1) / s) ** 2) / (s * math.sqrt(2 * math.pi)), ls="--", lw=0.8, color=c)
        ax.set_title(labels[dist])
        ax.set_yscale("log")
        ax.set_ylim(1e-2, 3 * peak)
        ax.set_xlim(0, 2.5)
    fig.supxlabel("distance / mean distance over all pairs", fontsize=9)
    axes[0, 0].set_ylabel("density")
    axes[0, -1].legend(fontsize=6.5, title="solid: measured\ndashed: normal theory", title_fontsize=6.5)
    return fig


def fig_angles(angle_rows, hist_rows, edges, dists=None, most=4):
    """Angle between pairs of random vectors: histograms per d against the exact isotropic density
    sin^(d-2) (gaussian); non-centred laws concentrate at arccos(m1^2/m2) instead of 90 degrees."""
    dists = dists or list(dict.fromkeys(a["dist"] for a in angle_rows))
    fig, axes = new_figure(ncols=len(dists), width=2.6 * len(dists), height=2.8)
    for ax, dist in zip(axes[0], dists):
        dims = pick_dims({h["dim"] for h in hist_rows if h["dist"] == dist and h["quantity"] == "angle_deg"}, most)
        peak = 0.0
        for j, d in enumerate(dims):
            e, cnt = _rebin(edges, _hist(hist_rows, dist, d, "angle_deg", edges), min(57.3 / math.sqrt(d) / 3, 2.0))
            c = COLORS[j % len(COLORS)]
            dens = cnt / (cnt.sum() * np.diff(e))
            peak = max(peak, dens.max())
            ax.stairs(dens, e, color=c, label=f"d = {d:,}")
            if dist == "gaussian":
                t = np.linspace(0.05, 179.95, 3600)
                ax.plot(t, angle_density(t, d), ls="--", lw=0.8, color=c)
        limits = [a["theory_cos_mean"] for a in angle_rows if a["dist"] == dist]
        if dist != "gaussian" and limits and math.isfinite(limits[-1]):
            ax.axvline(
                math.degrees(math.acos(limits[-1])),
                color="0.3",
                ls=":",
                lw=1,
                label=f"large-d limit {math.degrees(math.acos(limits[-1])):.1f}°",
            )
        ax.set_title(dist + (": dashed = exact density" if dist == "gaussian" else ""))
        ax.set_xlim(0, 180)
        ax.set_xticks([0, 45, 90, 135, 180])
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 3 * peak)
        ax.legend(fontsize=6.5)
    fig.supxlabel("angle between two random vectors (degrees)", fontsize=9)
    axes[0, 0].set_ylabel("density (per degree)")
    return fig
