"""Gallery: issue 3: random-matrix Hessians (minima vanish like exp(-theta N^2), the index follows the
semicircle, the index barely fluctuates, spectra approach the semicircle)."""

from __future__ import annotations

import functools
import math

import numpy as np

from sim.experiments import rmt as exp_rmt
from sim.gallery import register
from sim.gallery._text import verdict
from sim.io import Output
from sim.plots import rmt as plot_rmt
from sim.plots import save, style
from sim.theory import rmt as th

SEED = 0
# LDL^T inertia (the default for the GOE): its streamed counter compiles one program per size bucket
# (``sim.rmt.ldl_bucket``: every N <= 8 shares one), where eigvalsh compiles one per N; the quick gallery's
# Monte Carlo counts (N = 1..8, all with QUICK_SAMPLES matrices) then run a single program. The counts are
# those of eigvalsh on the same matrices (tests/test_rmt.py).
METHOD = "ldl"
# quick runs use one sample count (= default_chunk for N <= 8) so that every config shares compilations
QUICK_SAMPLES = 16384


def _minima_configs(quick: bool):
    """Plain Monte Carlo where it sees minima (N <= 7), thermodynamic integration beyond."""
    mc = exp_rmt.RmtConfig(
        dims=tuple(range(1, 6 if quick else 8)),
        samples=QUICK_SAMPLES if quick else 400_000,
        rare="none",
        index_method=METHOD,
        spectrum_dims=(),
        seed=SEED,
    )
    # TI dims are multiples of 8: the sampler compiles once per padded size 8k (quick: N = 6, the same
    # compilation as tests/test_rare.py's small-N runs, 16 chains x 200 sweeps)
    ti = exp_rmt.RmtConfig(
        dims=(6,) if quick else (8, 16, 24, 32, 40, 48),
        samples=QUICK_SAMPLES if quick else 2000,
        rare="ti",
        ti_chains=16,
        ti_sweeps=200,
        min_minima=10**9,
        index_method=METHOD,
        spectrum_dims=(),
        seed=SEED,
    )
    return mc, ti


def _shift_config(quick: bool):
    shifts = tuple(float(s) for s in np.round(np.linspace(-2.5, 2.5, 7 if quick else 21), 6))
    return exp_rmt.RmtConfig(
        dims=(4, 8) if quick else (8, 32),
        shifts=shifts,
        samples=QUICK_SAMPLES if quick else 4000,
        rare="none",
        exact_max_dim=0,
        index_method=METHOD,
        spectrum_dims=(),
        seed=SEED,
    )


def _index_config(quick: bool):
    return exp_rmt.RmtConfig(
        dims=(2, 4, 8) if quick else (4, 8, 16, 32, 64),
        samples=QUICK_SAMPLES if quick else 20_000,
        rare="none",
        exact_max_dim=0,
        index_method=METHOD,
        spectrum_dims=(2, 8) if quick else (4, 16, 64),
        spectrum_samples=256 if quick else 2000,
        spectrum_bins=40 if quick else 50,
        seed=SEED,
    )


@functools.cache
def _run(config: exp_rmt.RmtConfig):
    return exp_rmt.run(config)


def _minima_rows(quick: bool):
    mc, ti = _minima_configs(quick)
    rows = _run(mc).rows + _run(ti).rows
    return sorted(rows, key=lambda r: r["dim"]), mc, ti


#: the smallest N and the number of sizes ``plot_rmt.theta_fit`` (``sim.fit.fit_theta``) needs
THETA_FIT_MIN_DIM, THETA_FIT_MIN_SIZES = 8, 4


def _theta_sentence(fit, ti_dims, quick: bool = False) -> str:
    """The caption's clause on theta: the weighted fit and where ln3/4 falls, or, when there is no fit
    (the quick gallery runs thermodynamic integration at too few sizes), which sizes there are."""
    if fit is not None:
        return (
            f"a weighted fit to the thermodynamic-integration estimates at N = {min(fit.dims)} to {max(fit.dims)} "
            f"gives theta = {fit.theta:.4f} (95% CI {fit.ci_low:.4f} to {fit.ci_high:.4f}, with a linear term "
            f"b = {fit.b:.2f}, chi2/dof {fit.chi2_per_dof:.2f}), "
            + verdict(fit.ci_low, fit.ci_high, th.THETA, what="ln3/4 =", spec=".4f")
        )
    usable = [d for d in ti_dims if d >= THETA_FIT_MIN_DIM]
    sizes = ", ".join(str(d) for d in ti_dims)
    return (
        f"theta is not fitted here (ln3/4 = {th.THETA:.4f}): the fit needs thermodynamic-integration estimates "
        f"at {THETA_FIT_MIN_SIZES} or more sizes N >= {THETA_FIT_MIN_DIM}, and this run has "
        f"{len(usable) or 'none'} (N = {sizes}{': --quick runs reduced sizes' if quick else ''})"
    )


@register("rmt_minima", "ln P(GOE Hessian has no negative eigenvalue) against N with the -theta N^2 law")
def _minima(out: Output, quick: bool):
    rows, mc, ti = _minima_rows(quick)
    fit = plot_rmt.theta_fit(rows, min_dim=THETA_FIT_MIN_DIM, seed=SEED)
    with style():
        save(plot_rmt.fig_minima(rows, fit=fit), out, "rmt_minima")
    csv_rows = []
    for r in rows:  # with the exact binomial 68% interval drawn for the plain Monte Carlo counts
        _, lo, hi = plot_rmt.mc_log_p_interval(r)
        csv_rows.append(
            dict(
                {
                    k: r[k]
                    for k in ("dim", "samples", "log_p_min", "log_p_min_stderr", "method", "mc_minima", "mc_p_min")
                },
                mc_log_p_min_low68=lo,
                mc_log_p_min_high68=hi,
                **{k: r[k] for k in ("mc_p_min_upper95", "theory_log_p_min", "exact_log_p_min")},
            )
        )
    out.csv("rmt_minima.csv", csv_rows)
    big = rows[-1]
    caption = (
        f"P(a GOE Hessian is positive definite) falls as exp(-theta N^2 - bN - c): {_theta_sentence(fit, ti.dims, quick)}; "
        f"plain Monte Carlo with {mc.samples:,} matrices sees no minimum "
        f"beyond N = {max((r['dim'] for r in rows if r['mc_minima'] > 0), default=0)}, and at N = {big['dim']} "
        f"ln P = {big['log_p_min']:.1f} ± {big['log_p_min_stderr']:.1f} (exact {big['exact_log_p_min']:.1f})."
    )
    extra = {"theta_fit": fit._asdict() if fit else None, "theta_theory": th.THETA}
    return caption, {"monte_carlo": mc.to_json(), "rare": ti.to_json()}, SEED, extra


@register("rmt_shift", "index fraction of the shifted GOE against the shift, with the semicircle CDF")
def _shift(out: Output, quick: bool):
    cfg = _shift_config(quick)
    res = _run(cfg)
    with style():
        save(plot_rmt.fig_shift(res.rows), out, "rmt_shift")
    out.csv(
        "rmt_shift.csv",
        [
            {
                k: r[k]
                for k in (
                    "dim",
                    "samples",
                    "shift",
                    "mean_index_fraction",
                    "mean_index_fraction_stderr",
                    "std_index_fraction",
                    "theory_index_fraction",
                    "theory_index_fraction_finite_n",
                )
            }
            for r in res.rows
        ],
    )
    d = max(cfg.dims)
    f = plot_rmt.shift_fit(res.rows, d)
    z = [
        abs(r["mean_index_fraction"] - r["theory_index_fraction_finite_n"]) / r["mean_index_fraction_stderr"]
        for r in res.rows
        if r["dim"] == d and abs(r["shift"]) <= 1.5 and r["mean_index_fraction_stderr"] > 0
    ]
    caption = (
        f"The fraction of negative eigenvalues of GOE/sqrt(N) + sI follows the semicircle CDF F(-s) up to a 1/N "
        f"term a*arcsin(s/2)/(2 pi N): at N = {d} with {cfg.samples:,} matrices per shift the fitted "
        + (
            f"a = {f.slope:.3f} (95% CI {f.ci_low:.3f} to {f.ci_high:.3f}; "
            f"{verdict(f.ci_low, f.ci_high, 1.0, spec='g')}), "
            if f
            else ""
        )
        + f"and the corrected prediction is within {max(z):.1f} standard errors at every |s| <= 1.5."
    )
    return caption, cfg.to_json(), SEED, {"shift_fit": f._asdict() if f else None}


@register("rmt_index_distribution", "distribution of the GOE index for a few N, and its variance against ln N")
def _index_distribution(out: Output, quick: bool):
    cfg = _index_config(quick)
    res = _run(cfg)
    with style():
        save(plot_rmt.fig_index_distribution(res.rows, res.tables["index_hist"]), out, "rmt_index_distribution")
    out.csv("rmt_index_distribution.csv", res.tables["index_hist"])
    v = plot_rmt.index_variance_table(res.rows, res.tables["index_hist"])
    f = plot_rmt.variance_fit(v)
    big = v[-1]
    caption = (
        f"The index of a GOE matrix fluctuates far less than independent signs would: Var(index) = a ln N + C with "
        f"fitted a = {f.slope:.4f} (95% CI {f.ci_low:.4f} to {f.ci_high:.4f}; "
        f"{verdict(f.ci_low, f.ci_high, 1 / math.pi**2, what='theory 1/pi^2 =', spec='.4f')}), "
        f"C = {f.intercept:.3f} (simulation value 0.24); at N = {big['dim']} the variance is "
        f"{big['var_index']:.3f} ± {big['var_index_stderr']:.3f}, against the binomial N/4 = {big['binomial']:g}."
    )
    return caption, cfg.to_json(), SEED, {"variance_fit": f._asdict() if f else None, "variance": v}


@register("rmt_spectra", "GOE eigenvalue densities for a few N against the semicircle")
def _spectra(out: Output, quick: bool):
    cfg = _index_config(quick)
    res = _run(cfg)
    spec = res.tables["spectrum"]
    with style():
        save(plot_rmt.fig_spectra(spec), out, "rmt_spectra")
    out.csv("rmt_spectra.csv", spec)
    tv, floor = {}, {}
    for d in cfg.spectrum_dims:
        rs = [r for r in spec if r["dim"] == d]
        w = np.array([r["x_right"] - r["x_left"] for r in rs])
        dens = np.array([r["density"] for r in rs])
        cnt = np.array([r["count"] for r in rs], float)
        tv[d] = float(0.5 * np.sum(np.abs(dens - np.array([r["theory_density"] for r in rs])) * w))
        # what Poisson noise alone would give: E|noise| = sqrt(2/pi) sigma per bin
        floor[d] = float(0.5 * np.sum(math.sqrt(2 / math.pi) * dens / np.sqrt(np.maximum(cnt, 1)) * w))
    d0, d1 = min(tv), max(tv)
    caption = (
        f"Eigenvalues of GOE/sqrt(N) fill the semicircle sqrt(4 - x^2)/(2 pi): the total-variation distance "
        f"between the binned density ({cfg.spectrum_samples:,} matrices per N) and the semicircle falls from "
        f"{tv[d0]:.3f} at N = {d0} to {tv[d1]:.3f} at N = {d1} (sampling noise alone: {floor[d1]:.3f})."
    )
    return (
        caption,
        cfg.to_json(),
        SEED,
        {"total_variation": {str(k): v for k, v in tv.items()}, "noise_floor": {str(k): v for k, v in floor.items()}},
    )
