"""Random-matrix Hessian figures, drawn from the rows and side tables of ``sim.experiments.rmt``.

* ``fig_minima``: ln P(index = 0) against N (Monte Carlo, rare-event and exact points) with the
  large-deviation law -theta N^2, and the remainder -ln P - theta N^2 that holds the O(N) correction.
* ``fig_shift``: index fraction of GOE/sqrt(N) + s I against s with the semicircle CDF F(-s), and the
  finite-N remainder N (measured - F(-s)) against arcsin(s/2)/(2 pi).
* ``fig_index_distribution``: P(index = k) for a few N against a normal law of variance ln N/pi^2 + C,
  and Var(index) against N (against the binomial N/4 that independent signs would give).
* ``fig_spectra``: eigenvalue densities against the semicircle (Marchenko-Pastur for Wishart).

Error bars are one standard error, except the plain Monte Carlo P(min) counts, which are often small
(a handful of minima): their bars are the exact 68.3% Clopper-Pearson interval of the binomial count
(the interval a +-1 SE bar means), not the normal p +- sqrt(p(1 - p)/n), which is too short at small counts.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from sim.fit import ThetaFit, clopper_pearson_interval, fit_linear, fit_theta
from sim.plots import COLORS, MARKERS, new_figure, pick_dims
from sim.theory import rmt as th

__all__ = [
    "fig_minima",
    "fig_shift",
    "fig_index_distribution",
    "fig_spectra",
    "theta_fit",
    "shift_fit",
    "variance_fit",
    "index_variance_table",
    "mc_log_p_interval",
]

ENSEMBLE_NAMES = {
    "goe": "GOE",
    "wigner-rademacher": "Wigner (±1 entries)",
    "wigner-uniform": "Wigner (uniform entries)",
    "wishart": "Wishart",
}


def _zero_shift(rows):
    return [r for r in rows if float(r["shift"]) == 0.0]


def theta_fit(rows, *, min_dim=10, seed=0) -> ThetaFit | None:
    """``fit_theta`` on the measured ln P(min) (Monte Carlo or rare-event, never the exact values) at shift 0."""
    rs = [r for r in _zero_shift(rows) if r["ensemble"] == "goe"]
    return fit_theta(
        [r["dim"] for r in rs],
        [r["log_p_min"] for r in rs],
        [r["log_p_min_stderr"] for r in rs],
        min_dim=min_dim,
        seed=seed,
    )


#: coverage of a +-1 SE normal bar, used for the exact intervals drawn beside the other +-1 SE bars
ONE_SIGMA = math.erf(1 / math.sqrt(2))


def mc_log_p_interval(r, level: float = ONE_SIGMA):
    """(ln p, ln low, ln high) of the plain Monte Carlo count of a row: p = minima / samples and the exact
    Clopper-Pearson interval of the count; nan when no minimum was seen."""
    k, n = int(r["mc_minima"]), int(r["samples"])
    if k <= 0:
        return math.nan, math.nan, math.nan
    lo, hi = clopper_pearson_interval(k, n, level)
    return math.log(k / n), math.log(float(lo)), math.log(float(hi))


def fig_minima(rows, *, fit: ThetaFit | None = None, title=None):
    """ln P(GOE_N has no negative eigenvalue) against N, and the remainder -ln P - theta N^2."""
    rows = sorted(_zero_shift(rows), key=lambda r: r["dim"])
    fit = fit if fit is not None else theta_fit(rows)
    fig, axes = new_figure(ncols=2, width=7.0, height=3.4)
    ax, axr = axes[0]
    ens = rows[0]["ensemble"] if rows else "goe"
    theta = th.THETA
    dims = np.array([r["dim"] for r in rows], float)

    def both(x, y, yerr, resid_y, **kw):
        """yerr: symmetric, or (below, above) for y; the remainder -y - theta N^2 flips the two sides."""
        ax.errorbar(x, y, yerr=yerr, ls="none", **kw)
        kw.pop("label", None)
        axr.errorbar(x, resid_y, yerr=yerr[::-1] if isinstance(yerr, tuple) else yerr, ls="none", **kw)

    # plain Monte Carlo wherever it saw a minimum (also where the row's value is rare-event): exact binomial bars
    mc = [(r["dim"], *mc_log_p_interval(r)) for r in rows if r["mc_minima"] > 0]
    if mc:
        x, y, lo, hi = (np.array(v, float) for v in zip(*mc))
        both(
            x,
            y,
            (y - lo, hi - y),
            -y - theta * x**2,
            marker=MARKERS[0],
            color=COLORS[0],
            ms=4,
            label=f"plain Monte Carlo ({rows[0]['samples']:,} matrices per N; exact binomial 68% bars)",
        )
    # Monte Carlo saw nothing: the one-sided 95% bound 3/samples
    none = [
        (r["dim"], math.log(r["mc_p_min_upper95"]))
        for r in rows
        if r["mc_minima"] == 0 and r["method"] == "monte-carlo" and math.isfinite(r["mc_p_min_upper95"])
    ]
    if none:
        x, y = (np.array(v, float) for v in zip(*none))
        ax.plot(x, y, ls="none", marker="v", mfc="none", color=COLORS[0], label="Monte Carlo saw none: 95% upper bound")
    rare = [r for r in rows if r["method"] not in ("monte-carlo",) and math.isfinite(r["log_p_min"])]
    if rare:
        x = np.array([r["dim"] for r in rare], float)
        y = np.array([r["log_p_min"] for r in rare])
        e = np.array([r["log_p_min_stderr"] for r in rare])
        name = "thermodynamic integration" if rare[0]["method"].startswith("ti") else rare[0]["method"]
        both(
            x, y, e, -y - theta * x**2, marker=MARKERS[1], color=COLORS[1], ms=4, capsize=2, label=f"rare-event: {name}"
        )
    ex = [(r["dim"], r["exact_log_p_min"]) for r in rows if math.isfinite(r.get("exact_log_p_min", math.nan))]
    if ex:
        x, y = (np.array(v, float) for v in zip(*ex))
        ax.plot(x, y, ls="none", marker="x", color=COLORS[6], ms=4, label="exact (de Bruijn Pfaffian)")
        axr.plot(x, -y - theta * x**2, ls="none", marker="x", color=COLORS[6], ms=4)
    if ens == "goe" and dims.size:
        xs = np.linspace(0, dims.max() * 1.02, 400)
        ax.plot(xs, -theta * xs**2, ls="--", color=COLORS[6], lw=1.0, label="-θN², θ = ln3/4 (leading order)")
        axr.axhline(0.0, ls="--", color=COLORS[6], lw=1.0)
        if fit is not None:
            lbl = (
                f"fit -θN² - bN - c over N ≥ {min(fit.dims)}: θ = {fit.theta:.4f} "
                f"[{fit.ci_low:.4f}, {fit.ci_high:.4f}], b = {fit.b:.2f}"
            )
            xf = np.linspace(min(fit.dims), max(fit.dims), 200)
            yf = fit.theta * xf**2 + fit.b * xf + fit.c
            ax.plot(xf, -yf, color=COLORS[2], lw=1.0, label=lbl)
            axr.plot(xf, yf - theta * xf**2, color=COLORS[2], lw=1.0)
    ax.set_xlabel("matrix size N")
    ax.set_ylabel("ln P(no negative eigenvalue)")
    axr.set_xlabel("matrix size N")
    axr.set_ylabel("-ln P - (ln3/4) N²  (the O(N) correction)")
    ax.set_xlim(0, None)
    axr.set_xlim(0, None)
    if title is None and ens != "goe":  # the -θN² law is the GOE's
        title = f"P({ENSEMBLE_NAMES.get(ens, ens)} matrix has no negative eigenvalue) against N; error bars ±1 SE"
    fig.suptitle(
        title
        or f"Minima vanish like exp(-θN²): P({ENSEMBLE_NAMES.get(ens, ens)} Hessian is positive "
        "definite); error bars ±1 SE (Monte Carlo counts: exact 68% interval)",
        fontsize=9,
    )
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=7)
    return fig


def shift_fit(rows, dim):
    """Coefficient a of N (measured - F(-s)) = a arcsin(s/2)/(2 pi) at one N, over |s| <= 1.5 (GOE only)."""
    rs = [
        r
        for r in rows
        if r["dim"] == dim and abs(float(r["shift"])) <= 1.5 and math.isfinite(r["theory_index_fraction_finite_n"])
    ]
    if len(rs) < 2:
        return None
    s = np.array([float(r["shift"]) for r in rs])
    y = np.array([dim * (r["mean_index_fraction"] - r["theory_index_fraction"]) for r in rs])
    se = np.array([dim * r["mean_index_fraction_stderr"] for r in rs])
    return fit_linear(np.arcsin(s / 2) / (2 * math.pi), y, se, through_origin=True)


def fig_shift(rows, *, most=4, title=None):
    """Index fraction of H/sqrt(N) + s I against s (semicircle CDF), and the finite-N remainder."""
    by_dim = defaultdict(list)
    for r in rows:
        by_dim[r["dim"]].append(r)
    dims = pick_dims(by_dim, most)
    fig, axes = new_figure(ncols=2, width=7.0, height=3.2)
    ax, axr = axes[0]
    ens = rows[0]["ensemble"]
    smin = min(float(r["shift"]) for r in rows)
    smax = max(float(r["shift"]) for r in rows)
    pad = max(0.1, 0.05 * (smax - smin))
    xs = np.linspace(smin - pad, smax + pad, 600)
    for j, d in enumerate(dims):
        rs = sorted(by_dim[d], key=lambda r: float(r["shift"]))
        s = np.array([float(r["shift"]) for r in rs])
        m = np.array([r["mean_index_fraction"] for r in rs])
        se = np.array([r["mean_index_fraction_stderr"] for r in rs])
        sd = np.array([r["std_index_fraction"] for r in rs])
        c, mk = COLORS[j % len(COLORS)], MARKERS[j % len(MARKERS)]
        ax.errorbar(s, m, yerr=se, ls="none", marker=mk, color=c, ms=4, label=f"N = {d}")
        ax.fill_between(s, m - sd, m + sd, color=c, alpha=0.12, lw=0)
        f = np.array([r["theory_index_fraction"] for r in rs])
        axr.errorbar(s, d * (m - f), yerr=d * se, ls="none", marker=mk, color=c, ms=4, capsize=2, label=f"N = {d}")
    if ens == "wishart":
        ax.plot(s, f, color=COLORS[6], ls="--", lw=1.0, label="Marchenko-Pastur CDF (N's aspect)")
    else:
        ax.plot(xs, th.shifted_goe_index_fraction(xs), color=COLORS[6], ls="--", lw=1.0, label="semicircle CDF F(-s)")
        if ens == "goe":
            xi = np.linspace(-1.999, 1.999, 400)
            axr.plot(
                xi,
                np.arcsin(xi / 2) / (2 * math.pi),
                color=COLORS[6],
                ls="--",
                lw=1.0,
                label="1/N theory arcsin(s/2)/(2π), |s| < 2",
            )
    axr.axhline(0.0, color="0.5", lw=0.6)
    ax.set_xlabel("shift s of the spectrum (" + ("W + s·I)" if ens == "wishart" else "H/√N + s·I)"))
    ax.set_ylabel("fraction of negative eigenvalues")
    axr.set_xlabel("shift s")
    axr.set_ylabel("N × (measured − F(−s))" + (", F: Marchenko-Pastur" if ens == "wishart" else ""))
    ax.legend(fontsize=7, title="points ±1 SE, band: ±1 SD\nacross matrices", title_fontsize=6.5)
    axr.legend(fontsize=7)
    law = "Marchenko-Pastur CDF" if ens == "wishart" else "semicircle CDF"
    fig.suptitle(
        title
        or f"{ENSEMBLE_NAMES.get(ens, ens)} shifted by s: the index fraction follows the {law}"
        + (", with a 1/N correction" if ens == "goe" else ""),
        fontsize=9,
    )
    return fig


def _plain_ticks(axis, values):
    """Ticks at ``values`` labelled as plain numbers on a log axis (no 2 x 10^0)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    axis.set_major_locator(FixedLocator(list(values)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _dense_hist(hist_rows, dim, shift=0.0):
    c = np.zeros(dim + 1)
    for h in hist_rows:
        if h["dim"] == dim and float(h["shift"]) == shift:
            c[h["index"]] += h["count"]
    return c


def index_variance_table(rows, hist_rows, shift=0.0):
    """Per N: variance of the index and its delta-method standard error sqrt((m4 - s^4)/M), from the
    histograms. List of dicts (dim, samples, var_index, var_index_stderr, theory, binomial)."""
    out = []
    for r in sorted((r for r in rows if float(r["shift"]) == shift), key=lambda r: r["dim"]):
        d = r["dim"]
        c = _dense_hist(hist_rows, d, shift)
        tot = c.sum()
        if tot < 2 or d < 2:
            continue
        k = np.arange(d + 1)
        mean = np.sum(k * c) / tot
        m2 = np.sum((k - mean) ** 2 * c) / tot
        m4 = np.sum((k - mean) ** 4 * c) / tot
        var = m2 * tot / (tot - 1)
        out.append(
            {
                "dim": d,
                "samples": int(tot),
                "var_index": float(var),
                "var_index_stderr": float(math.sqrt(max(m4 - m2**2, 0.0) / tot)),
                "theory": float(th.goe_index_variance(d)) if r["ensemble"] == "goe" else math.nan,
                "binomial": d / 4,
            }
        )
    return out


def variance_fit(var_rows):
    """Var(index) = a ln N + C by weighted least squares (theory a = 1/pi^2 = 0.1013)."""
    if len(var_rows) < 3:
        return None
    return fit_linear(
        np.log([v["dim"] for v in var_rows]),
        [v["var_index"] for v in var_rows],
        [v["var_index_stderr"] for v in var_rows],
    )


def fig_index_distribution(rows, hist_rows, *, dims=None, most=4, shift=0.0, title=None):
    """P(index = k) against k - N/2 for a few N (normal law of variance ln N/pi^2 + C dashed), and
    Var(index) against N with the theory and the binomial N/4."""
    rs = {r["dim"]: r for r in rows if float(r["shift"]) == shift}
    dims = dims or pick_dims([d for d in rs if d >= 2], most)
    fig, axes = new_figure(ncols=2, width=7.0, height=3.2)
    ax, axv = axes[0]
    ens = next(iter(rs.values()))["ensemble"]
    for j, d in enumerate(dims):
        c = _dense_hist(hist_rows, d, shift)
        tot = c.sum()
        k = np.arange(d + 1)
        p = c / tot
        seen = c > 0
        col, mk = COLORS[j % len(COLORS)], MARKERS[j % len(MARKERS)]
        centre = d * float(rs[d]["mean_index_fraction"]) if ens != "goe" or shift else d / 2
        # log axis, counts down to a handful in the tails: exact binomial (Clopper-Pearson) 68% bars
        lo, hi = clopper_pearson_interval(c[seen].astype(np.int64), np.full(int(seen.sum()), int(tot)), ONE_SIGMA)
        ax.errorbar(
            k[seen] - centre,
            p[seen],
            yerr=(p[seen] - lo, hi - p[seen]),
            ls="none",
            marker=mk,
            color=col,
            ms=4,
            label=f"N = {d}",
        )
        if ens == "goe" and shift == 0:
            var = float(th.goe_index_variance(d))
            g = np.exp(-((k - d / 2) ** 2) / (2 * var))
            ax.plot(k - d / 2, g / g.sum(), ls="--", color=col, lw=0.9)
    if dims:
        kb = np.arange(max(dims) + 1)
        dmax = max(dims)
        lb = np.array([math.lgamma(dmax + 1) - math.lgamma(i + 1) - math.lgamma(dmax - i + 1) for i in kb])
        ax.plot(
            kb - dmax / 2,
            np.exp(lb - dmax * math.log(2)),
            ls=":",
            color="0.45",
            lw=1.0,
            label=f"binomial({dmax}, 1/2): independent signs",
        )
    ax.set_yscale("log")
    ax.set_ylim(max(0.3 / max(r["samples"] for r in rs.values()), 1e-7), 1.0)
    ax.set_xlim(-6.5, 6.5)
    ax.set_xlabel("index k − N/2 (negative eigenvalues minus half)")
    ax.set_ylabel("P(index = k)")
    ax.legend(
        fontsize=6,
        loc="upper left",
        title="points: exact 68% binomial bars; dashed: normal,\nvariance ln N/π² + 0.24",
        title_fontsize=6,
    )
    v = index_variance_table(list(rs.values()), hist_rows, shift)
    if v:
        x = np.array([r["dim"] for r in v], float)
        axv.errorbar(
            x,
            [r["var_index"] for r in v],
            yerr=[r["var_index_stderr"] for r in v],
            ls="none",
            marker=MARKERS[0],
            color=COLORS[0],
            ms=4,
            capsize=2,
            label="measured Var(index)",
        )
        xs = np.geomspace(max(2, x.min() / 1.2), x.max() * 1.2, 200)
        if ens == "goe" and shift == 0:
            axv.plot(xs, th.goe_index_variance(xs), ls="--", color=COLORS[6], lw=1.0, label="theory ln N/π² + 0.24")
        f = variance_fit(v)
        if f is not None:
            axv.plot(
                xs,
                f.slope * np.log(xs) + f.intercept,
                color=COLORS[2],
                lw=1.0,
                label=f"fit a ln N + C: a = {f.slope:.4f} [{f.ci_low:.4f}, {f.ci_high:.4f}]",
            )
        axv.plot(xs, xs / 4, ls=":", color="0.45", lw=1.0, label="binomial N/4")
        axv.set_xscale("log")
        axv.set_yscale("log")
        _plain_ticks(axv.xaxis, [d for d in x])
        top = max(x.max() * 1.2 / 4, max(r["var_index"] for r in v))
        ticks = (0.1, 0.2, 0.3, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        _plain_ticks(axv.yaxis, [t for t in ticks if t <= 2 * top])
        axv.set_xlabel("matrix size N")
        axv.set_ylabel("variance of the index")
        axv.legend(fontsize=6.5)
    fig.suptitle(
        title or f"The index of a {ENSEMBLE_NAMES.get(ens, ens)} matrix barely fluctuates: variance ~ ln N/π², not N/4",
        fontsize=9,
    )
    return fig


def fig_spectra(spec_rows, *, dims=None, most=4, shift=None, title=None):
    """Eigenvalue density histograms (±1 SE, Poisson on the bin counts) against the limiting law."""
    if shift is None:
        shift = min({float(r["shift"]) for r in spec_rows}, key=abs)
    by_dim = defaultdict(list)
    for r in spec_rows:
        if float(r["shift"]) == shift:
            by_dim[r["dim"]].append(r)
    dims = dims or pick_dims(by_dim, most)
    fig, axes = new_figure(ncols=len(dims), width=max(2.0 * len(dims), 5.0), height=2.8, sharey=True)
    ens = spec_rows[0]["ensemble"]
    law = "Marchenko-Pastur" if ens == "wishart" else "semicircle"
    for j, (ax, d) in enumerate(zip(axes[0], dims)):
        rs = sorted(by_dim[d], key=lambda r: r["x_left"])
        lo = np.array([r["x_left"] for r in rs])
        hi = np.array([r["x_right"] for r in rs])
        dens = np.array([r["density"] for r in rs])
        cnt = np.array([r["count"] for r in rs], float)
        err = np.where(cnt > 0, dens / np.sqrt(np.maximum(cnt, 1)), 0.0)
        mid = (lo + hi) / 2
        c = COLORS[j % len(COLORS)]
        ax.stairs(dens, np.append(lo, hi[-1]), color=c, lw=1.0)
        ax.errorbar(mid, dens, yerr=err, ls="none", color=c, lw=0.8, label="measured")
        ax.plot(mid, [r["theory_density"] for r in rs], ls="--", color=COLORS[6], lw=1.0, label=law)
        ax.set_title(f"N = {d}")
        base = "eigenvalue of W = XᵀX/m" if ens == "wishart" else "eigenvalue of H/√N"
        ax.set_xlabel(base + (f" + {shift:g}" if shift else ""))
    axes[0, 0].set_ylabel("density of eigenvalues")
    axes[0, -1].legend(fontsize=6.5)
    sep = " " if len(dims) >= 3 else "\n"
    fig.suptitle(
        title or f"{ENSEMBLE_NAMES.get(ens, ens)} spectra approach the {law} law as N grows{sep}(error bars ±1 SE)",
        fontsize=9,
    )
    return fig
