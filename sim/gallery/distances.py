"""Gallery: distance concentration (issue 2)."""

from __future__ import annotations

import functools
import math

import numpy as np

from sim.distances import Metric
from sim.experiments import distances as exp_dist
from sim.fit import fit_slope
from sim.gallery import register
from sim.gallery._text import verdict
from sim.io import Output
from sim.plots import distances as plot_dist
from sim.plots import save, style
from sim.vectors import Cauchy, Gaussian, Init, LogNormal, PowerLaw, Rademacher, StudentT, Uniform

LAWS = (Gaussian(), Uniform(), Rademacher(), StudentT(df=10.0), Cauchy(), LogNormal(sigma=1.0), PowerLaw(a=1.5))


#: the quick gallery's laws: Student t's generator (a gamma sampler, a rejection loop) alone took 4.5 of the
#: quick concentration sweep's ~16 CPU-s of compilation, and no caption quotes it
QUICK_LAWS = tuple(law for law in LAWS if not isinstance(law, StudentT))


def _concentration_config(quick: bool) -> exp_dist.DistancesConfig:
    dims = (10, 100, 1000, 10000) if quick else (10, 32, 100, 316, 1000, 3162, 10000, 31623, 100000)
    return exp_dist.DistancesConfig(
        dists=QUICK_LAWS if quick else LAWS,
        metrics=(Metric("euclidean"),),
        dims=dims,
        points=64 if quick else 256,
        seed=0,
    )


def _rank_configs(quick: bool):
    dims = (10, 100, 1000, 10000) if quick else (10, 32, 100, 316, 1000, 3162, 10000, 31623, 100000, 316228, 1000000)
    init_dims = (1000, 10000, 100000) if quick else (1000, 3162, 10000, 31623, 100000, 316228, 1000000)
    pts = 64 if quick else 256
    laws = tuple(PowerLaw(a=a) for a in (0.0, 0.5, 1.0, 2.0))
    return (
        exp_dist.DistancesConfig(dists=laws, dims=dims, points=pts, seed=0),
        exp_dist.DistancesConfig(
            dists=(Init(widths=(784, 1, 1, 10), scheme="he"),), dims=init_dims, points=pts, seed=0
        ),
    )


@functools.cache
def _run_distances(config: exp_dist.DistancesConfig):
    return exp_dist.run(config)


def _fits_json(fits):
    return {k: (v._asdict() if v else None) for k, v in fits.items()}


def _theory_exponent(rows, dist, key="theory_rel_std"):
    """Slope of the theory's ``key`` against d on log-log axes over the same dimensions as the data (the
    finite-d theory where the rows carry one: e.g. -0.45, not -1/2, for covariance eigenvalues i^-1/2);
    None where the rows have no theory."""
    rs = [r for r in rows if r["dist"] == dist and r["metric"] == "euclidean"]
    d = np.array([r["dim"] for r in rs], np.float64)
    t = np.array([r.get(key) if r.get(key) is not None else math.nan for r in rs], np.float64)
    ok = np.isfinite(t) & (t > 0)
    f = fit_slope(np.log(d[ok]), np.log(t[ok])) if ok.sum() >= 3 else None
    return f.slope if f else None


def _slope_sentence(fits, dist, rows=None):
    """``b (95% CI ...)``, followed by where the theory's exponent on the same d falls, when ``rows`` are
    given and carry a theory."""
    f = fits.get(dist)
    if not f:
        return "n/a"
    txt = f"{f.exponent:.3f} (95% CI {f.ci_low:.3f} to {f.ci_high:.3f}"
    th = _theory_exponent(rows, dist) if rows is not None else None
    if th is None:
        return txt + ")"
    return txt + f"; {verdict(f.ci_low, f.ci_high, th, why=_why_off(rows, dist))})"


def _why_off(rows, dist):
    """The known reason a fit may miss the theory: a large-d formula (O(1/d) relative error) used at small d."""
    rs = sorted((r for r in rows if r["dist"] == dist and r["metric"] == "euclidean"), key=lambda r: r["dim"])
    if not rs or rs[0].get("theory_kind") != "asymptotic" or not rs[0].get("theory_rel_std"):
        return None
    dev = rs[0]["rel_std"] / rs[0]["theory_rel_std"] - 1
    return (
        f"the theory is the large-d formula (relative error O(1/d)), and at d = {rs[0]['dim']} the measured "
        f"spread is {abs(dev):.1%} {'above' if dev > 0 else 'below'} it"
    )


@register("concentration", "std/mean of pairwise Euclidean distances against d for seven coordinate laws")
def _concentration(out: Output, quick: bool):
    cfg = _concentration_config(quick)
    res = _run_distances(cfg)
    fits = plot_dist.fit_rows(res.rows, "euclidean")
    with style():
        save(plot_dist.fig_rel_std(res.rows, fits=fits), out, "concentration")
    out.csv("concentration.csv", res.rows)
    rows = res.rows
    caption = (
        f"The relative spread of distances between {cfg.points} random vectors falls as d^b with fitted "
        f"b = {_slope_sentence(fits, 'gaussian', rows)} for Gaussian coordinates, "
        f"{_slope_sentence(fits, 'uniform', rows)} for uniform and {_slope_sentence(fits, 'rademacher', rows)} "
        f"for signs (theory on the same d); Cauchy coordinates give b = {_slope_sentence(fits, 'cauchy')}: no "
        f"concentration; a covariance spectrum decaying as i^-1.5 (bounded effective rank) gives "
        f"{_slope_sentence(fits, 'powerlaw', rows)}."
    )
    return caption, cfg.to_json(), cfg.seed, {"fits": _fits_json(fits)}


@register("contrast", "relative contrast (Dmax - Dmin)/Dmin against d")
def _contrast(out: Output, quick: bool):
    cfg = _concentration_config(quick)
    res = _run_distances(cfg)
    fits = plot_dist.fit_rows(res.rows, "euclidean", key="rel_contrast")
    with style():
        save(plot_dist.fig_rel_contrast(res.rows), out, "contrast")
    out.csv(
        "contrast.csv",
        [
            {k: r[k] for k in ("dist", "dist_params", "dim", "points", "pairs", "min", "max", "rel_contrast")}
            for r in res.rows
        ],
    )
    cauchy = [r["rel_contrast"] for r in res.rows if r["dist"] == "cauchy"]
    g = sorted((r["dim"], r["rel_contrast"]) for r in res.rows if r["dist"] == "gaussian")
    local = np.diff(np.log([c for _, c in g])) / np.diff(np.log([d for d, _ in g]))  # slope between neighbours
    f = fits.get("gaussian")
    why = (
        f"-1/2 is the large-d law and at small d the closest pair is far closer than the typical one, "
        f"which steepens the curve: the slope between neighbouring d is {local[0]:.2f} from d = {g[0][0]} "
        f"to {g[1][0]} and {local[-1]:.2f} from d = {g[-2][0]:,} to {g[-1][0]:,}"
    )
    b_txt = (
        f"{f.exponent:.3f} (95% CI {f.ci_low:.3f} to {f.ci_high:.3f}; "
        f"{verdict(f.ci_low, f.ci_high, -0.5, what='asymptotic theory', spec='g', why=why)})"
        if f
        else "n/a"
    )
    caption = (
        f"Among {cfg.points * (cfg.points - 1) // 2} pairs, (Dmax - Dmin)/Dmin falls as d^b with "
        f"b = {b_txt} for Gaussian vectors (Beyer et al. 1999: it tends to 0), while Cauchy vectors keep a "
        f"contrast between {min(cauchy):.0f} and {max(cauchy):.0f} at every d."
    )
    return caption, cfg.to_json(), cfg.seed, {"fits": _fits_json(fits)}


@register("histograms", "histograms of distance/mean for Gaussian, uniform and Cauchy vectors")
def _histograms(out: Output, quick: bool):
    cfg = _concentration_config(quick)
    res = _run_distances(cfg)
    dists = ("gaussian", "uniform", "cauchy")
    with style():
        save(
            plot_dist.fig_histograms(res.rows, res.tables["hist"], exp_dist.HIST_EDGES, dists=list(dists)),
            out,
            "histograms",
        )
    out.csv(
        "histograms.csv", [h for h in res.tables["hist"] if h["dist"] in dists and h["quantity"] == "distance/mean"]
    )
    g = {r["dim"]: r for r in res.rows if r["dist"] == "gaussian"}
    lo, hi = min(g), max(g)
    caption = (
        f"Distances divided by their mean: the Gaussian histogram narrows from std {g[lo]['rel_std']:.3f} at d = {lo} "
        f"to {g[hi]['rel_std']:.4f} at d = {hi:,} (theory {g[lo]['theory_rel_std']:.3f} and "
        f"{g[hi]['theory_rel_std']:.4f}); the Cauchy histogram keeps its shape."
    )
    return caption, cfg.to_json(), cfg.seed, {}


@register("angles", "angle between random vectors: histograms against the exact density")
def _angles(out: Output, quick: bool):
    cfg = _concentration_config(quick)
    res = _run_distances(cfg)
    dists = ("gaussian", "uniform")
    with style():
        save(
            plot_dist.fig_angles(res.tables["angles"], res.tables["hist"], exp_dist.ANGLE_EDGES, dists=list(dists)),
            out,
            "angles",
        )
    out.csv("angles.csv", res.tables["angles"])
    g = [a for a in res.tables["angles"] if a["dist"] == "gaussian"]
    ratio = [a["cos_var"] * a["dim"] for a in g]
    u = [a for a in res.tables["angles"] if a["dist"] == "uniform"][-1]
    caption = (
        f"Angles between Gaussian vectors concentrate at 90 degrees: d * Var(cos) = {min(ratio):.3f} to "
        f"{max(ratio):.3f} over d = {g[0]['dim']} to {g[-1]['dim']:,} (exact: 1); Uniform[0,1] vectors are not "
        f"isotropic and meet at {u['angle_mean_deg']:.1f} degrees (limit arccos(3/4) = "
        f"{math.degrees(math.acos(0.75)):.1f})."
    )
    return caption, cfg.to_json(), cfg.seed, {}


@register("effective_rank", "concentration is governed by the effective rank: power-law spectra and network init")
def _effective_rank(out: Output, quick: bool):
    cfg_pl, cfg_init = _rank_configs(quick)
    rows = _run_distances(cfg_pl).rows + _run_distances(cfg_init).rows
    # one legend entry per exponent
    rows = [dict(r, dist=r["dist_params"] if r["dist"] == "powerlaw" else "init (MLP 784-h-h-10, He)") for r in rows]
    fits = plot_dist.fit_rows(rows, "euclidean")
    with style():
        save(
            plot_dist.fig_rel_std(rows, fits=fits, title="Concentration follows the effective rank, not d"),
            out,
            "effective_rank",
        )
    out.csv("effective_rank.csv", rows)
    parts = [f"a = {a}: b = {_slope_sentence(fits, f'powerlaw(a={a})', rows)}" for a in (0.0, 0.5, 1.0, 2.0)]
    caption = (
        "Gaussian vectors with covariance eigenvalues i^-a: the relative spread falls as d^b with "
        + "; ".join(parts)
        + " (theory on the same d: -1/2 for a < 1/2, flat for a > 1, with slowly varying exponents between);"
        f" the parameters of an MLP at He initialisation give b = "
        f"{_slope_sentence(fits, 'init (MLP 784-h-h-10, He)', rows)}."
    )
    return caption, {"powerlaw": cfg_pl.to_json(), "init": cfg_init.to_json()}, cfg_pl.seed, {"fits": _fits_json(fits)}
