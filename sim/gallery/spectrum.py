"""Gallery: issue 5: Hessian spectra at scale (stochastic Lanczos quadrature from Hessian-vector products).

Only numbers go into the CSVs and captions; timings go into the JSON (``extra``), so PNG/SVG/CSV are
byte-identical on re-run.
"""

from __future__ import annotations

import dataclasses

from sim.experiments import spectrum as exp_spec
from sim.gallery import register
from sim.io import Output
from sim.models import width_for_params
from sim.plots import save, style
from sim.plots import spectrum as plot_spec
from sim.theory.rmt import semicircle_cdf


def _density_configs(quick: bool):
    if quick:
        goe = exp_spec.SpectrumConfig(model="goe", dim=400, shift=0.4, probes=8, steps=40, dtype="float64", seed=0)
        # the MLP of spectrum_training's quick run (N = 967, float32, the same SLQ options): the two entries
        # share its compiled programs (SLQ, dense Hessian, sampling), which is most of their cost
        t = _training_config(True)
        mlp = exp_spec.SpectrumConfig(
            model="mlp",
            width=width_for_params(t.param_counts[0], depth=t.depth, input_dim=t.input_dim, output_dim=t.output_dim),
            depth=t.depth,
            input_dim=t.input_dim,
            output_dim=t.output_dim,
            num_samples=t.num_samples,
            noise=t.noise,
            probes=t.probes,
            steps=t.steps,
            batch_size=t.batch_size,
            dtype=t.dtype,
            seed=0,
        )
    else:
        goe = exp_spec.SpectrumConfig(model="goe", dim=2000, shift=0.4, probes=16, steps=80, dtype="float64", seed=0)
        mlp = exp_spec.SpectrumConfig(
            model="mlp", width=24, depth=2, input_dim=64, num_samples=256, probes=16, steps=100, dtype="float64", seed=0
        )
    return goe, mlp


@register("spectrum_density", "SLQ density and negative fraction of a GOE and an MLP Hessian against eigvalsh")
def _spectrum_density(out: Output, quick: bool):
    goe_cfg, mlp_cfg = _density_configs(quick)
    panels, rows, timings = [], [], {}
    for name, cfg in (("goe", goe_cfg), ("mlp", mlp_cfg)):
        res = exp_spec.run(cfg)
        info = res.info
        series = plot_spec.density_series(res.rows, res.tables, info)
        label = (
            f"GOE + {cfg.shift:g} I, N = {info['num_params']:,}"
            if name == "goe"
            else f"MLP {'-'.join(map(str, cfg.widths))} loss Hessian, N = {info['num_params']:,}"
        )
        panels.append((label, series, info))
        rows += [{"panel": name, **r} for r in series]
        timings[name] = {"seconds": info["seconds"], "peak_rss_mb": info["peak_rss_mb"]}
    with style():
        save(plot_spec.fig_density(panels), out, "spectrum_density")
    out.csv("spectrum_density.csv", rows)
    g, m = panels[0][2], panels[1][2]
    caption = (
        f"With {goe_cfg.probes} probes x {goe_cfg.steps} Lanczos steps, SLQ puts the negative fraction of a shifted "
        f"GOE (N = {g['num_params']:,}) at {g['negative_fraction']:.4f} +- {g['negative_fraction_stderr']:.4f} "
        f"against {g['exact_negative_fraction']:.4f} from eigvalsh (semicircle limit "
        f"{float(semicircle_cdf(-goe_cfg.shift)):.4f}), and with {mlp_cfg.probes} x {mlp_cfg.steps} that of an MLP "
        f"loss Hessian (N = {m['num_params']:,}) at {m['negative_fraction']:.4f} +- {m['negative_fraction_stderr']:.4f} "
        f"against {m['exact_negative_fraction']:.4f}; L1 distances of the densities to the exact ones smoothed with "
        f"the same kernel: {g['density_l1']:.3f} and {m['density_l1']:.3f}."
    )
    params = {"goe": goe_cfg.to_json(), "mlp": mlp_cfg.to_json()}
    summary = {
        k: {
            key: p[2].get(key)
            for key in (
                "negative_fraction",
                "negative_fraction_stderr",
                "exact_negative_fraction",
                "density_l1",
                "min_eigenvalue",
                "exact_min_eigenvalue",
                "max_eigenvalue",
                "exact_max_eigenvalue",
            )
        }
        for k, p in zip(("goe", "mlp"), panels)
    }
    return caption, params, goe_cfg.seed, {"summary": summary, "timings": timings}


#: thresholds of the counts, relative to ||H||
TRAINING_EPS = (3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3)


def _training_config(quick: bool) -> exp_spec.SpectrumTrainingConfig:
    if quick:
        return exp_spec.SpectrumTrainingConfig(
            param_counts=(1_000,),
            train_steps=40,
            checkpoints=3,
            probes=4,
            steps=20,
            batch_size=2,
            seed=0,
            eps=TRAINING_EPS,
            degree=200,
            count_probes=8,
        )
    return exp_spec.SpectrumTrainingConfig(
        param_counts=(1_000, 10_000, 100_000, 1_000_000),
        train_steps=150,
        checkpoints=4,
        probes=8,
        steps=40,
        batch_size=4,
        seed=0,
        eps=TRAINING_EPS,
        degree=800,
        count_probes=4,
    )


def _resolved(counts, n, step):
    """The smallest eps / ||H|| at which N-(eps) is bracketed to +-0.005, and the bracket at the smallest eps."""
    rs = sorted((r for r in counts if r["num_params"] == n and r["step"] == step), key=lambda r: r["eps"])
    ok = [r["eps"] for r in rs if r["negative_fraction_upper"] - r["negative_fraction_lower"] <= 0.01]
    small = rs[0]
    return (min(ok) if ok else None), small


@register(
    "spectrum_training",
    "eigenvalue counts N-(eps), N0(eps), N+(eps) of MLP Hessians, 10^3..10^6 params, at init and after GD",
)
def _spectrum_training(out: Output, quick: bool):
    cfg = _training_config(quick)
    res = exp_spec.run_training(cfg)
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in res.rows]  # timings only in the JSON
    counts = res.tables["counts"]
    with style():
        save(plot_spec.fig_training(rows, counts), out, "spectrum_training")
    out.csv("spectrum_training.csv", rows)
    out.csv("spectrum_training_counts.csv", counts)
    sizes = sorted({r["num_params"] for r in rows})
    steps = sorted({r["step"] for r in counts})
    parts = []
    for n in sizes:
        said = []
        for step, when in ((steps[0], "at init"), (steps[-1], "trained")):
            eps_ok, small = _resolved(counts, n, step)
            lo, hi = small["negative_fraction_lower"], small["negative_fraction_upper"]
            res_txt = (
                f"resolved to +-0.005 down to eps = {eps_ok:g} ||H||"
                if eps_ok
                else "not resolved to +-0.005 at any eps"
            )
            ex = small.get("exact_negative_fraction")
            said.append(
                f"{when} {res_txt}, at {small['eps']:g} ||H|| in [{lo:.3f}, {hi:.3f}]"
                + (f" (exact {ex:.3f})" if ex is not None else "")
            )
        parts.append(f"N = {n:,}: " + "; ".join(said))
    caption = (
        f"Eigenvalue counts of tanh MLP loss Hessians (depth {cfg.depth}) at initialisation and after "
        f"{cfg.train_steps} gradient-descent steps: N-(eps), N0(eps), N+(eps) against eps / ||H||, from deflation of "
        f"the converged outliers and a degree-{cfg.degree} Jackson-damped Chebyshev trace with {cfg.count_probes} "
        f"probes; bands are brackets covering probe noise (2 s.e.) and the polynomial's resolution, crosses the exact "
        f"eigvalsh counts (N <= {cfg.exact_max:,}). N-(eps): " + ". ".join(parts) + ". Below the resolution the "
        "bracket widens to the mass near 0 instead of reporting a point."
    )
    extra = {
        "seconds_per_checkpoint": [
            {"num_params": r["num_params"], "step": r["step"], "seconds": r["seconds"]} for r in res.rows
        ],
        **res.info,
    }
    return caption, dataclasses.asdict(cfg), cfg.seed, extra
