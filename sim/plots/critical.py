"""Figures of critical points of random losses, drawn from ``sim.experiments.critical`` tables.

* ``fig_index_energy``: index fraction of the unique critical points against their energy, one panel
  per dimension (one row of panels per landscape), with the theory curve where it is known.
* ``fig_minima_fraction``: fraction of minima among the unique critical points against N (log y),
  Wilson 95% error bars, and the fitted exponential decay ``logit p = a - c N``.
* ``fig_spectra``: Hessian eigenvalues at saddles (drawn at random by the experiment) against the shifted
  semicircle of the theory.
* ``fig_dauphin``: index fraction against training loss of the critical points of an MLP on real data
  (Dauphin et al. 2014, Fig. 1), with the least-squares line and its 95% band, degenerate points
  (zero modes) marked apart and the final losses of the non-converged searches as a rug.
* ``fig_descent_energy``: energies per spin of the minima reached by gradient descent (p-spin) against n,
  with the threshold -E_inf and the ground state -E_0.

The fits behind the figures live in ``sim.fit``.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.ticker import NullFormatter

from sim import fit
from sim.plots import COLORS, MARKERS, new_figure, pick_dims
from sim.theory import landscapes as theory

__all__ = [
    "fig_index_energy",
    "fig_minima_fraction",
    "fig_spectra",
    "fig_descent_energy",
    "fig_dauphin",
    "ENERGY_LABEL",
]

ENERGY_LABEL = {
    "grf": "energy density  phi / N",
    "pspin": "energy per spin  H / N",
    "mlp": "training loss",
}
_N_LABEL = {"grf": "N", "pspin": "N", "mlp": "P"}
_INDEX_LABEL = {"grf": "k / N", "pspin": "k / (N - 1)", "mlp": "k / P"}


def _unique(rows, dim):
    return [r for r in rows if r["dim"] == dim and r["converged"] and r["unique"]]


def fig_index_energy(panels, *, most=4, title=None):
    """Index fraction against energy of the unique critical points.

    Args:
        panels: list of ``(landscape_name, rows, theory_rows, summary_rows)``, one row of panels each
            (rows: the experiment's main table; theory_rows: its ``tables["theory"]``, may be empty).
        most: panels per row (dimensions spread evenly).
    """
    ncols = max(len(pick_dims({r["dim"] for r in p[1]}, most)) for p in panels)
    fig, axes = new_figure(
        ncols=ncols, nrows=len(panels), width=1.95 * ncols + 0.6, height=2.35 * len(panels) + 0.5, sharey="row"
    )
    for i, (name, rows, theory_rows, summary) in enumerate(panels):
        summ = {s["dim"]: s for s in summary}
        dims = pick_dims({r["dim"] for r in rows}, most)
        for j in range(ncols):
            ax = axes[i, j]
            if j >= len(dims):
                ax.set_visible(False)
                continue
            d = dims[j]
            pts = _unique(rows, d)
            e = np.array([r["energy"] for r in pts])
            fr = np.array([r["index_fraction"] for r in pts])
            ax.plot(
                e,
                fr,
                ls="none",
                marker="o",
                ms=2.5,
                alpha=0.45,
                color=COLORS[0],
                mec="none",
                label="unique critical points",
            )
            if theory_rows:
                te = np.array([t["energy"] for t in theory_rows])
                ta = np.array([t["index_fraction"] for t in theory_rows])
                if e.size:
                    lo, hi = e.min(), e.max()
                    pad = 0.1 * max(hi - lo, 0.1)
                    keep = (te >= lo - pad) & (te <= hi + pad)
                    te, ta = te[keep], ta[keep]
                ax.plot(te, ta, color=COLORS[6], ls="--", lw=1.0, label="theory")
            if name == "mlp" and e.size and np.all(e > 0):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            s = summ.get(d, {})
            rho = s.get("spearman")
            rho_txt = f"{rho:.2f}" if isinstance(rho, float) and math.isfinite(rho) else "n/a"
            ax.set_title(f"{name}, {_N_LABEL.get(name, 'N')} = {d}: {len(pts)} points\nSpearman {rho_txt}", fontsize=8)
            ax.set_xlabel(ENERGY_LABEL.get(name, "energy"), fontsize=8)
            top = 1.0
            if theory_rows is None or not len(theory_rows):  # no theory curve: zoom on the data
                frs = [r["index_fraction"] for r in rows if r["converged"] and r["unique"]]
                top = min(1.0, 1.15 * max(frs, default=1.0) + 0.02)
            ax.set_ylim(-0.04 * top, 1.04 * top)
        axes[i, 0].set_ylabel("index fraction  " + _INDEX_LABEL.get(name, "k / N"))
        axes[i, 0].legend(fontsize=6.5, loc="upper left")
    fig.suptitle(title or "Higher critical points have more descending directions", fontsize=10)
    return fig


def fig_minima_fraction(series, fits=None, *, title=None):
    """Fraction of minima among unique critical points against N, log y, Wilson 95% intervals.

    Args:
        series: ``{label: summary_rows}`` (the experiment's ``tables["summary"]``).
        fits: ``{label: MinimaDecay or None}`` (default: ``fit_minima_decay`` of each series).
    """
    fig, ax = new_figure(width=6.2, height=3.6)
    ax = ax[0, 0]
    floor = 1.0
    for i, (label, summary) in enumerate(series.items()):
        c, mk = COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]
        dims = np.array([s["dim"] for s in summary], float)
        k = np.array([s["minima"] for s in summary], float)
        n = np.array([s["unique"] for s in summary], float)
        ok = n > 0
        dims, k, n = dims[ok], k[ok], n[ok]
        lo, hi = fit.wilson_interval(k, n)
        p = k / n
        pos = k > 0
        floor = min(
            floor, float(np.min(hi)) / 3 if hi.size else floor, float(np.min(lo[pos])) / 1.5 if pos.any() else 1.0
        )
        f = (fits or {}).get(label) if fits is not None else fit.fit_minima_decay(dims, k, n)
        fit_txt = f": decay c = {f.rate:.3f} per dim (95% CI {f.ci_low:.3f} to {f.ci_high:.3f})" if f else ""
        ax.errorbar(
            dims[pos],
            p[pos],
            yerr=[p[pos] - lo[pos], hi[pos] - p[pos]],
            ls="none",
            marker=mk,
            color=c,
            capsize=2.5,
            label=f"{label}{fit_txt}",
        )
        if (~pos).any():  # no minima found: the 95% upper bound
            ax.plot(
                dims[~pos],
                hi[~pos],
                ls="none",
                marker="v",
                color=c,
                mfc="none",
                label=f"{label}: none found (95% upper bound)",
            )
        if f:
            xs = np.linspace(dims.min(), dims.max(), 200)
            ax.plot(xs, 1 / (1 + np.exp(-(f.intercept - f.rate * xs))), ls="--", lw=1.0, color=c)
    ax.set_yscale("log")
    ax.set_ylim(max(floor, 1e-4), 1.3)
    ax.set_xlabel("dimension N (number of parameters P for the MLP)")
    ax.set_ylabel("minima / unique critical points")
    ax.set_title(title or "Minima become a vanishing fraction of critical points as N grows", fontsize=10)
    ax.legend(
        fontsize=7, title="markers: measured (95% Wilson interval); dashed: fit logit = a - c N", title_fontsize=7
    )
    return fig


def _semicircle_mixture(x, centres, radius):
    return np.mean([theory.semicircle_density(x, c, radius) for c in centres], axis=0)


def fig_spectra(spectrum_rows, name, *, theory_spec=None, most=3, title=None):
    """Hessian eigenvalues at the saddles of the experiment's ``tables["spectrum"]``, one panel per N.

    Args:
        spectrum_rows: rows with dim, instance, start, energy, eigenvalue.
        name: landscape name (axis labels).
        theory_spec: ``energy -> (centre, radius)`` of the theory's semicircle (None: no theory).
    """
    dims = pick_dims({r["dim"] for r in spectrum_rows}, most)
    fig, axes = new_figure(ncols=max(len(dims), 1), width=2.4 * max(len(dims), 1) + 0.5, height=2.9)
    for ax, d in zip(axes[0], dims):
        rows = [r for r in spectrum_rows if r["dim"] == d]
        ev = np.array([r["eigenvalue"] for r in rows])
        saddles = {(r["instance"], r["start"]): (r["energy"], r["index"]) for r in rows}
        energies = np.array([v[0] for v in saddles.values()])
        idx = np.array([v[1] for v in saddles.values()])
        bins = max(8, min(40, int(round(2 * math.sqrt(ev.size)))))
        lo, hi = float(ev.min()), float(ev.max())
        if theory_spec is not None:
            cs, r = theory_spec(energies)
            lo, hi = min(lo, float(np.min(cs)) - r), max(hi, float(np.max(cs)) + r)
        edges = np.linspace(lo, hi, bins + 1)
        dens, _, _ = ax.hist(ev, bins=edges, density=True, color=COLORS[0], alpha=0.55, label="measured")
        ax.set_ylim(0, 1.4 * float(np.max(dens)))  # headroom for the legend
        if theory_spec is not None:
            x = np.linspace(lo, hi, 800)
            cs, r = theory_spec(energies)
            ax.plot(
                x,
                _semicircle_mixture(x, np.atleast_1d(cs), r),
                color=COLORS[1],
                lw=1.2,
                label="theory: shifted semicircle",
            )
        ax.axvline(0.0, color="0.35", lw=0.8, ls=":")
        ax.set_title(
            f"{_N_LABEL.get(name, 'N')} = {d}: {len(saddles)} saddles, index {int(idx.min())}"
            + (f"-{int(idx.max())}" if idx.max() != idx.min() else "")
            + f"\nmean energy {energies.mean():.3g}",
            fontsize=8,
        )
        ax.set_xlabel("Hessian eigenvalue", fontsize=8)
    axes[0, 0].set_ylabel("density")
    axes[0, 0].legend(fontsize=6.5, loc="upper left")
    fig.suptitle(
        title or f"{name}: Hessian spectrum at random saddles\n(dotted: 0; the mass left of it is the index)",
        fontsize=10,
    )
    return fig


def fig_descent_energy(summary, descent_rows, p, *, fit=None, title=None):
    """p-spin: energy per spin of the minima reached by gradient descent against n.

    Args:
        summary: the experiment's summary rows (descent_mean_energy, descent_energy_se per n).
        descent_rows: its ``tables["descent"]`` (one row per start).
        p: the p-spin order (theory lines).
        fit: optional ``GapFit`` of mean energy + E_inf against n, drawn dashed.
    """
    einf, e0 = theory.pspin_threshold(p), theory.pspin_ground_state(p)
    fig, ax = new_figure(width=6.0, height=3.5)
    ax = ax[0, 0]
    dims = np.array([s["dim"] for s in summary if s["descent_mean_energy"] is not None], float)
    mean = np.array([s["descent_mean_energy"] for s in summary if s["descent_mean_energy"] is not None], float)
    se = np.array(
        [
            s["descent_energy_se"] if s["descent_energy_se"] is not None else np.nan
            for s in summary
            if s["descent_mean_energy"] is not None
        ],
        float,
    )
    mins = [r for r in descent_rows if r["converged"] and r["index"] == 0]
    if mins:
        rng = np.random.default_rng(0)  # horizontal jitter of the individual minima (fixed: reproducible)
        x = np.array([r["dim"] for r in mins], float)
        ax.plot(
            x * np.exp(rng.uniform(-0.06, 0.06, x.size)),
            [r["energy"] for r in mins],
            ls="none",
            marker=".",
            ms=3,
            alpha=0.3,
            color=COLORS[5],
            label="minima reached (one per start)",
        )
    ax.errorbar(
        dims,
        mean,
        yerr=np.where(np.isfinite(se), 2 * se, 0),
        marker="o",
        color=COLORS[0],
        capsize=3,
        ls="none",
        label="mean ± 2 SE over instances",
    )
    if fit is not None:
        xs = np.geomspace(dims.min(), dims.max(), 100)
        ax.plot(
            xs,
            -einf + fit.prefactor * xs**fit.exponent,
            color=COLORS[0],
            ls=(0, (2, 2)),
            lw=0.9,
            label=f"fit: -E_inf + {fit.prefactor:.2f} n^b, b = {fit.exponent:.2f} ± {1.96 * fit.se:.2f} (95%)",
        )
    ax.axhline(-einf, color=COLORS[1], ls="--", lw=1.1, label=f"threshold -E_inf = {-einf:.4f} (n → ∞)")
    ax.axhline(-e0, color=COLORS[6], ls=":", lw=1.1, label=f"ground state -E_0 = {-e0:.4f} (n → ∞)")
    ax.set_xscale("log")
    ax.set_xticks(dims)
    ax.set_xticklabels([f"{int(d)}" for d in dims])
    ax.minorticks_off()
    ax.set_xlabel("number of spins n")
    ax.set_ylabel("energy per spin  H / n")
    ax.set_title(title or f"Spherical {p}-spin: gradient descent stops near the threshold energy", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def fig_dauphin(rows, line=None, *, title=None):
    """Index fraction against training loss of the unique critical points (one network and data set).

    Args:
        rows: the experiment's main table (one row per start; converged or not).
        line: ``sim.fit.LinearFit`` of index fraction on loss (drawn with its 95% band), or None.
    """
    fig, axes = new_figure(width=5.6, height=3.6)
    ax = axes[0, 0]
    pts = [r for r in rows if r["converged"] and r["unique"]]
    lost = [r for r in rows if not r["converged"]]
    groups = (
        ("saddles", [r for r in pts if r["index"] > 0 and r["n_zero"] == 0], COLORS[0], "o", True),
        ("minima (index 0)", [r for r in pts if r["index"] == 0 and r["n_zero"] == 0], COLORS[1], "s", True),
        ("degenerate (zero modes)", [r for r in pts if r["n_zero"] > 0], COLORS[2], "D", False),
    )
    for label, g, color, marker, filled in groups:
        if not g:
            continue
        ax.plot(
            [r["energy"] for r in g],
            [r["index_fraction"] for r in g],
            ls="none",
            marker=marker,
            ms=4,
            alpha=0.75,
            color=color,
            mfc=color if filled else "none",
            label=f"{label}: {len(g)}",
        )
    if lost:
        ax.plot(
            [r["energy"] for r in lost],
            np.full(len(lost), -0.03),
            ls="none",
            marker="|",
            ms=7,
            color=COLORS[6],
            alpha=0.5,
            label=f"not converged (final loss): {len(lost)}",
        )
    if line is not None and pts:
        e = np.array([r["energy"] for r in pts])
        xs = np.linspace(e.min(), e.max(), 50)
        ax.plot(xs, line.intercept + line.slope * xs, color=COLORS[6], lw=1.0, ls="--", label="least squares")
        # pointwise 95% band of the fitted mean: s^2 / n + stderr^2 (x - mean)^2 (fit_slope's residual
        # variance s^2 is its chi2_per_dof)
        se = np.sqrt(line.chi2_per_dof / e.size + line.stderr**2 * (xs - e.mean()) ** 2)
        mid = line.intercept + line.slope * xs
        ax.fill_between(xs, mid - 1.96 * se, mid + 1.96 * se, color=COLORS[6], alpha=0.12, lw=0, label="95% band")
    ax.set_xlabel("training loss at the critical point  (MSE / 2 + weight decay)")
    ax.set_ylabel("index fraction  k / P")
    top = max([r["index_fraction"] for r in pts], default=0.0)
    ax.set_ylim(-0.06, max(0.1, 1.15 * top))
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title or "MLP on digits: index fraction of critical points against their training loss", fontsize=9)
    return fig
