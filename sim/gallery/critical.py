"""Gallery: issue 4: critical points of random losses.

Entries (their experiments are shared through ``_run``):

* ``critical_index_energy``: index fraction against energy for the GRF, the 3-spin glass and the MLP.
* ``critical_minima_fraction``: fraction of minima among unique critical points against N (GRF, MLP).
* ``critical_spectra``: Hessian spectra at randomly chosen GRF saddles against the shifted semicircle.
* ``pspin_threshold``: energies of the minima reached by gradient descent (3-spin) against n.

* ``critical_dauphin``: the Dauphin plot, index fraction against training loss of an MLP's critical
  points on scikit-learn's digits, found by the "subnet" finder (minima of sub-networks embedded with
  silent hidden units; the damped-Newton search converges from too few starts on that loss). Width 4 on
  64 images (45 CPU-s); width 6 on 128 images gives the same staircase with 23 points for 358 CPU-s.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from sim import fit
from sim.experiments import critical as exp_crit
from sim.gallery import register
from sim.gallery._text import verdict
from sim.io import Output
from sim.plots import critical as plot_crit
from sim.plots import save, style
from sim.theory import landscapes as theory

__all__: list[str] = []


def _configs(quick: bool) -> dict[str, exp_crit.CriticalConfig]:
    C = exp_crit.CriticalConfig
    if quick:
        # a smoke run, paid for mostly in compilation (one finder program per landscape and size): one size
        # per landscape, one configuration shared by the GRF entries, and 7 slots, so that each finder
        # compiles one copy of its search loop instead of three (``CriticalConfig.slots``)
        grf = C(landscape="grf", dims=(8,), starts=64, descent=False, spectra=8, slots=7)
        return {
            "grf": grf,
            "grf_small": grf,
            "mlp": C(landscape="mlp", dims=(2,), starts=32, descent=False, spectra=0, slots=7),
            "pspin": C(landscape="pspin", dims=(8,), starts=8, instances=2, spectra=0, slots=7),
            "dauphin": C(landscape="mlp", data="digits", dims=(2,), num_samples=32, starts=6, descent=False, spectra=0),
        }
    return {
        "grf": C(landscape="grf", dims=(4, 8, 16, 32), starts=512, descent=False, spectra=32),
        "grf_small": C(landscape="grf", dims=(2, 3, 4, 5, 6, 8), starts=256, instances=4, descent=False, spectra=0),
        "mlp": C(landscape="mlp", dims=(1, 2, 3, 4, 6, 8), starts=256, descent=False, spectra=0),
        "pspin": C(landscape="pspin", dims=(8, 16, 32, 64), starts=32, instances=4, spectra=0),
        "dauphin": C(landscape="mlp", data="digits", dims=(4,), num_samples=64, starts=10, descent=False, spectra=0),
    }


@functools.cache
def _run(config: exp_crit.CriticalConfig):
    return exp_crit.run(config)


def _prepare(*configs: exp_crit.CriticalConfig) -> None:
    """Start compiling the programs of the ``configs`` side by side (``exp_crit.prepare``; a no-op for
    programs compiled before): compilation is most of these entries' time. Results do not change."""
    for config in configs:
        exp_crit.prepare(config)


def _params(cfgs, *names):
    import dataclasses

    # ``slots`` only when set (the full gallery leaves it None: its parameters stay as they were)
    return {k: {f: v for f, v in dataclasses.asdict(cfgs[k]).items() if f != "slots" or v is not None} for k in names}


def _last(summary):
    return summary[-1]


def _fmt(v, spec=".2f"):
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _summary_csv(label, summary):
    keys = (
        "landscape",
        "dim",
        "size",
        "instances",
        "found",
        "converged",
        "not_converged",
        "unique",
        "minima",
        "minima_fraction",
        "mean_index_fraction",
        "theory_mean_index_fraction",
        "spearman",
    )
    return [dict({"series": label}, **{k: s[k] for k in keys}) for s in summary]


def _index_energy_slope(rows, config, dim):
    """(measured OLS fit of index fraction on energy over the unique points at ``dim``, the OLS slope of
    the theory index fraction at the same energies)."""
    pts = [r for r in rows if r["unique"] and r["dim"] == dim]
    e = np.array([r["energy"] for r in pts], np.float64)
    a = np.array([r["index_fraction"] for r in pts], np.float64)
    th = theory.grf_index_fraction(e) if config.landscape == "grf" else theory.pspin_index_fraction(e, config.p)
    ft = fit.fit_slope(e, np.asarray(th, np.float64))
    return fit.fit_slope(e, a), (ft.slope if ft else math.nan)


#: what a caption says when a large-N theory misses a finite-N interval
_LARGE_N = "cause not established; the theory is the large-N law and its finite-N correction is not computed"


def _slope_txt(pair) -> str:
    f, th = pair
    if f is None:
        return "n/a"
    return (
        f"{f.slope:.3f} (95% CI {f.ci_low:.3f} to {f.ci_high:.3f}) [{verdict(f.ci_low, f.ci_high, th, why=_LARGE_N)}]"
    )


@register("critical_index_energy", "index fraction against energy of critical points: GRF, 3-spin, MLP")
def _index_energy(out: Output, quick: bool):
    cfgs = _configs(quick)
    _prepare(*(cfgs[k] for k in ("grf", "pspin", "mlp")))
    res = {k: _run(cfgs[k]) for k in ("grf", "pspin", "mlp")}
    # MLP panels from P >= 9 (at P = 5 there are only a handful of critical points)
    panels = [
        (
            cfgs[k].landscape,
            [r for r in res[k].rows if k != "mlp" or r["dim"] >= 9 or quick],
            res[k].tables["theory"],
            res[k].tables["summary"],
        )
        for k in ("grf", "pspin", "mlp")
    ]
    with style():
        save(plot_crit.fig_index_energy(panels), out, "critical_index_energy")
    cols = ("landscape", "dim", "instance", "start", "energy", "index", "index_fraction")
    out.csv(
        "critical_index_energy.csv",
        [{c: r[c] for c in cols} for k in ("grf", "pspin", "mlp") for r in res[k].rows if r["unique"]],
    )
    g, s, m = (_last(res[k].tables["summary"]) for k in ("grf", "pspin", "mlp"))
    slopes = {
        k: _index_energy_slope(res[k].rows, cfgs[k], _last(res[k].tables["summary"])["dim"]) for k in ("grf", "pspin")
    }
    caption = (
        f"The index fraction of unique critical points rises with their energy: slope "
        f"{_slope_txt(slopes['grf'])} per unit energy density for the Gaussian random field at N = {g['dim']} "
        f"and {_slope_txt(slopes['pspin'])} per unit energy per spin for the 3-spin glass at n = {s['dim']} "
        f"(least squares over the points, theory on the same energies in brackets); Spearman correlation "
        f"{_fmt(g['spearman'])} for the Gaussian random field at N = {g['dim']} (mean index fraction "
        f"{_fmt(g['mean_index_fraction'], '.3f')} against {_fmt(g['theory_mean_index_fraction'], '.3f')} from the "
        f"Bray-Dean law F(energy) at the same energies), {_fmt(s['spearman'])} for the 3-spin glass at n = {s['dim']} "
        f"(theory F(u sqrt(3/2)): {_fmt(s['mean_index_fraction'], '.3f')} measured against "
        f"{_fmt(s['theory_mean_index_fraction'], '.3f')}) and {_fmt(m['spearman'])} for the teacher-student MLP "
        f"with P = {m['dim']} parameters (no theory)."
    )
    extra = {k: res[k].tables["summary"] for k in ("grf", "pspin", "mlp")}
    extra["slopes"] = {k: {"measured": v[0]._asdict() if v[0] else None, "theory": v[1]} for k, v in slopes.items()}
    return caption, _params(cfgs, "grf", "pspin", "mlp"), cfgs["grf"].seed, {"summary": extra}


@register("critical_minima_fraction", "fraction of minima among critical points against N (GRF, MLP)")
def _minima_fraction(out: Output, quick: bool):
    cfgs = _configs(quick)
    _prepare(cfgs["grf_small"], cfgs["mlp"])
    series = {
        "Gaussian random field": _run(cfgs["grf_small"]).tables["summary"],
        "MLP (teacher-student)": _run(cfgs["mlp"]).tables["summary"],
    }
    fits = {
        k: fit.fit_minima_decay([s["dim"] for s in v], [s["minima"] for s in v], [s["unique"] for s in v])
        for k, v in series.items()
    }
    with style():
        save(plot_crit.fig_minima_fraction(series, fits), out, "critical_minima_fraction")
    out.csv("critical_minima_fraction.csv", [r for k, v in series.items() for r in _summary_csv(k, v)])

    def law(label):
        f, v = fits[label], series[label]
        span = (
            f"N = {v[0]['dim']} to {v[-1]['dim']}: {_fmt(v[0]['minima_fraction'], '.3f')} to "
            f"{_fmt(v[-1]['minima_fraction'], '.3f')}"
            if len(v) > 1
            else f"N = {v[0]['dim']} only: {_fmt(v[0]['minima_fraction'], '.3f')}"
        )
        if f is None:
            return f"{label}: no fit ({sum(s['minima'] for s in v)} minima in total; {span})"
        verdict = "falls" if f.ci_low > 0 else ("rises" if f.ci_high < 0 else "shows no significant trend")
        return f"{label}: {verdict}, c = {f.rate:.3f} per dimension (95% CI {f.ci_low:.3f} to {f.ci_high:.3f}; {span})"

    caption = (
        "Fraction of minima among the unique critical points found by the damped Newton (Levenberg-Marquardt) search, fitted by "
        "logit(fraction) = a - c N (binomial maximum likelihood; N = number of parameters for the MLP): "
        f"{law('Gaussian random field')}; {law('MLP (teacher-student)')}; theory: minima are an e^(-cN) fraction."
    )
    extra = {"fits": {k: (f._asdict() if f else None) for k, f in fits.items()}}
    return caption, _params(cfgs, "grf_small", "mlp"), cfgs["grf_small"].seed, extra


def _grf_spectrum_fit(spectrum, length_scale):
    """Per dim: pooled Kolmogorov distance to the theory mixture, the fraction of negative eigenvalues,
    and the mean over saddles of (negative fraction - F(energy)) with its 95% interval (t on the
    per-saddle differences: the saddles are independent draws, their eigenvalues are not)."""
    out = {}
    for d in sorted({r["dim"] for r in spectrum}):
        rows = [r for r in spectrum if r["dim"] == d]
        ev = np.sort([r["eigenvalue"] for r in rows])
        energies = np.array(list({(r["instance"], r["start"]): r["energy"] for r in rows}.values()))
        centres, radius = theory.grf_hessian_semicircle(energies, length_scale)
        cdf = np.mean([theory.semicircle_cdf(ev, c, radius) for c in np.atleast_1d(centres)], axis=0)
        k = np.arange(1, ev.size + 1) / ev.size
        ks = float(max(np.max(k - cdf), np.max(cdf - (k - 1 / ev.size))))
        saddle_eigs, saddle_energy = {}, {}
        for r in rows:
            saddle_eigs.setdefault((r["instance"], r["start"]), []).append(r["eigenvalue"])
            saddle_energy[(r["instance"], r["start"])] = r["energy"]
        diff = np.array(
            [
                np.mean(np.asarray(v) < 0) - float(theory.grf_index_fraction(saddle_energy[s]))
                for s, v in saddle_eigs.items()
            ]
        )
        if diff.size > 1:
            half = float(fit.student_t_quantile(0.975, diff.size - 1) * diff.std(ddof=1) / math.sqrt(diff.size))
        else:
            half = math.nan
        out[d] = {
            "dim": d,
            "saddles": int(energies.size),
            "eigenvalues": int(ev.size),
            "kolmogorov_distance": ks,
            "negative_fraction": float(np.mean(ev < 0)),
            "theory_negative_fraction": float(np.mean(theory.grf_index_fraction(energies))),
            "negative_minus_theory": float(diff.mean()),
            "negative_minus_theory_ci95": [float(diff.mean() - half), float(diff.mean() + half)],
            "mean_energy": float(energies.mean()),
        }
    return out


@register("critical_spectra", "Hessian spectrum at randomly chosen GRF saddles against the shifted semicircle")
def _spectra(out: Output, quick: bool):
    cfgs = _configs(quick)
    cfg = cfgs["grf"]
    res = _run(cfg)
    spec = res.tables["spectrum"]
    with style():
        save(
            plot_crit.fig_spectra(
                spec,
                "grf",
                theory_spec=lambda e: theory.grf_hessian_semicircle(e, cfg.length_scale),
                title="Gaussian random field: Hessian eigenvalues at randomly chosen saddles "
                "(dotted: 0; the mass left of it is the index)",
            ),
            out,
            "critical_spectra",
        )
    out.csv("critical_spectra.csv", spec)
    stats = _grf_spectrum_fit(spec, cfg.length_scale)
    top = stats[max(stats)]
    lo, hi = top["negative_minus_theory_ci95"]
    caption = (
        f"At {top['saddles']} saddles drawn at random (seeded) among the unique saddles of the Gaussian random "
        f"field at N = {top['dim']} (mean energy {top['mean_energy']:.3f}) the pooled Hessian eigenvalues follow "
        f"the semicircle of radius 2 shifted by minus the energy (Bray-Dean): Kolmogorov distance "
        f"{top['kolmogorov_distance']:.3f} for {top['eigenvalues']} eigenvalues, a fraction "
        f"{top['negative_fraction']:.3f} of them negative against {top['theory_negative_fraction']:.3f} from "
        f"F(energy) (per-saddle difference {top['negative_minus_theory']:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f}; "
        f"{verdict(lo, hi, 0.0, what='zero', spec='g', why=_LARGE_N)})."
    )
    return caption, _params(cfgs, "grf"), cfg.seed, {"spectra": list(stats.values())}


@register("pspin_threshold", "3-spin glass: minima reached by gradient descent approach the threshold -E_inf")
def _pspin_threshold(out: Output, quick: bool):
    cfgs = _configs(quick)
    cfg = cfgs["pspin"]
    res = _run(cfg)
    summary = res.tables["summary"]
    einf = theory.pspin_threshold(cfg.p)
    dims = [s["dim"] for s in summary]
    mean = [s["descent_mean_energy"] for s in summary]
    se = [s["descent_energy_se"] if s["descent_energy_se"] is not None else math.nan for s in summary]
    gap_fit = fit.fit_gap_power_law(dims, [m + einf if m is not None else math.nan for m in mean], se)
    with style():
        save(plot_crit.fig_descent_energy(summary, res.tables["descent"], cfg.p, fit=gap_fit), out, "pspin_threshold")
    keys = (
        "dim",
        "instances",
        "descent_runs",
        "descent_converged",
        "descent_minima",
        "descent_mean_energy",
        "descent_energy_se",
    )
    out.csv(
        "pspin_threshold.csv",
        [
            dict({k: s[k] for k in keys}, threshold=-einf, ground_state=-theory.pspin_ground_state(cfg.p))
            for s in summary
        ],
    )
    fit_txt = (
        f"; the gap to the threshold falls as n^b with b = {gap_fit.exponent:.2f} (95% CI {gap_fit.ci_low:.2f} "
        f"to {gap_fit.ci_high:.2f})"
        if gap_fit
        else ""
    )
    lo, hi = summary[0], summary[-1]
    ground = -theory.pspin_ground_state(cfg.p)
    above = all(m is None or m > ground for m in mean)
    if len(summary) > 1:
        where = (
            f"falls from {lo['descent_mean_energy']:.3f} ± {_fmt(lo['descent_energy_se'], '.3f')} at n = {lo['dim']} "
            f"to {hi['descent_mean_energy']:.3f} ± {_fmt(hi['descent_energy_se'], '.3f')} at n = {hi['dim']}"
        )
    else:  # the quick gallery: one size
        where = f"is {lo['descent_mean_energy']:.3f} ± {_fmt(lo['descent_energy_se'], '.3f')} at n = {lo['dim']}"
    caption = (
        f"Gradient descent from random starts in the spherical {cfg.p}-spin glass ends at minima whose energy per "
        f"spin {where} (mean ± SE over {cfg.instances} instances), "
        + ("approaching" if len(summary) > 1 else "against")
        + f" the threshold -E_inf = {-einf:.3f} with means "
        + ("above" if above else "not all above")
        + f" the large-n ground state {ground:.3f}"
        + fit_txt
        + "."
    )
    return caption, _params(cfgs, "pspin"), cfg.seed, {"fit": gap_fit._asdict() if gap_fit else None}


DAUPHIN_DESCRIPTION = "index fraction against training loss of an MLP's critical points on digits (Dauphin plot)"


def dauphin_entry(out: Output, quick: bool):
    """The Dauphin plot (see the module docstring)."""
    cfgs = _configs(quick)
    cfg = cfgs["dauphin"]
    res = _run(cfg)
    rows, s = res.rows, res.tables["summary"][0]
    pts = [r for r in rows if r["converged"] and r["unique"]]
    line = fit.fit_slope([r["energy"] for r in pts], [r["index_fraction"] for r in pts])
    with style():
        save(plot_crit.fig_dauphin(rows, line), out, "critical_dauphin")
    keys = ("start", "converged", "grad_norm", "energy", "index", "index_fraction", "n_zero", "unique", "steps")
    out.csv("critical_dauphin.csv", [{k: r[k] for k in keys} for r in rows])
    saddles = [r for r in pts if r["index"] > 0]
    minima = [r for r in pts if r["index"] == 0]
    e_sad = min((r["energy"] for r in saddles), default=math.nan)
    e_min = max((r["energy"] for r in minima), default=math.nan)
    caption = (
        f"A (64, {cfg.dims[0]}, 10) tanh MLP (P = {s['dim']}) on {cfg.num_samples} digits images: of {s['found']} "
        f"starts {s['converged']} converged to {s['unique']} distinct critical points (minima of sub-networks with "
        f"0 to {cfg.dims[0]} active hidden units, the rest silent: one family of critical points, the saddles "
        f"that gradient descent from small weights passes, not a sample of all of them), {len(saddles)} saddles with index fractions "
        f"{_fmt(min((r['index_fraction'] for r in saddles), default=None), '.3f')} to "
        f"{_fmt(max((r['index_fraction'] for r in saddles), default=None), '.3f')} at losses from {_fmt(e_sad, '.3f')} "
        f"up and {len(minima)} minima at losses up to {_fmt(e_min, '.3f')}, Spearman correlation of index and loss "
        f"{_fmt(s['spearman'], '.2f')} (as Dauphin and co-authors reported in 2014: high-loss critical points are saddles, only "
        "low-loss ones minima; the indices are measured from the full Hessian, not assumed)."
    )
    extra = {"summary": res.tables["summary"], "fit": line._asdict() if line else None}
    return caption, _params(cfgs, "dauphin"), cfg.seed, extra


register("critical_dauphin", DAUPHIN_DESCRIPTION)(dauphin_entry)
