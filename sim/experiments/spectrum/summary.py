"""Tables and facts of a spectrum run: the SLQ density and negative fraction with its bracket, the exact
comparison, and the eigenvalue counts N-(eps), N0(eps), N+(eps) (``sim.counts``)."""

from __future__ import annotations

import math
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from sim.counts import counts
from sim.experiments.base import Result
from sim.lanczos import spectral_density

#: standard errors (across probes) by which the quadrature bracket is widened in the reports
BRACKET_Z = 2.0


def _bracket(fr) -> tuple[float, float]:
    """The Chebyshev-Markov-Stieltjes bracket of a ``FractionEstimate`` widened by ``BRACKET_Z`` standard
    errors across probes: it covers the quadrature error (rigorously, per probe) and the probe noise.
    Never clipped to [0, 1]."""
    return (float(fr.lower - BRACKET_Z * fr.lower_stderr), float(fr.upper + BRACKET_Z * fr.upper_stderr))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _smoothed(evals: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    out = np.zeros_like(grid)
    for chunk in np.array_split(evals, max(1, evals.size // 2048)):
        z = (grid[:, None] - chunk[None, :]) / sigma
        out += np.exp(-0.5 * z * z).sum(1)
    return out / (evals.size * sigma * math.sqrt(2 * math.pi))


def _summarise(quad, frac0, frac_t, ext, config, n, timings, exact_evals, extra_info) -> Result:
    nodes = np.asarray(quad.nodes, np.float64)
    lo, hi = float(nodes.min()), float(nodes.max())
    if exact_evals is not None:
        lo, hi = min(lo, float(exact_evals[0])), max(hi, float(exact_evals[-1]))
    width = hi - lo if hi > lo else 1.0
    sigma = config.sigma if config.sigma is not None else width / config.steps
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, config.grid_points)
    rho = np.asarray(spectral_density(quad, jnp.asarray(grid, quad.nodes.dtype), sigma=sigma), np.float64)
    rows = [{"eigenvalue": float(x), "density": float(r)} for x, r in zip(grid, rho)]

    info = {
        "model": config.model,
        "num_params": n,
        "probes": config.probes,
        "steps": config.steps,
        "probe": config.probe,
        "reortho": config.reortho,
        "dtype": config.dtype,
        "seed": config.seed,
        "negative_fraction": float(frac0.fraction),
        "negative_fraction_stderr": float(frac0.stderr),
        "negative_fraction_lower": _bracket(frac0)[0],
        "negative_fraction_upper": _bracket(frac0)[1],
        "negative_fraction_method": "interpolate",
        "threshold": config.threshold,
        "fraction_below_threshold": float(frac_t.fraction),
        "fraction_below_threshold_stderr": float(frac_t.stderr),
        "min_eigenvalue": float(ext.min_value),
        "min_eigenvalue_residual": float(ext.min_residual),
        "max_eigenvalue": float(ext.max_value),
        "max_eigenvalue_residual": float(ext.max_residual),
        "breakdowns": int(np.sum(np.asarray(quad.breakdowns))),
        "sigma": sigma,
        **extra_info,
    }
    tables = {
        "ritz": [
            {"probe": int(p), "node": float(t), "weight": float(w), "residual": float(r)}
            for p in range(nodes.shape[0])
            for t, w, r in zip(nodes[p], np.asarray(quad.weights[p]), np.asarray(quad.residuals[p]))
        ]
    }
    if exact_evals is not None:
        ex = np.asarray(exact_evals, np.float64)
        exact_rho = _smoothed(ex, grid, sigma)
        info.update(
            exact_negative_fraction=float(np.mean(ex < 0)),
            exact_fraction_below_threshold=float(np.mean(ex < config.threshold)),
            exact_min_eigenvalue=float(ex[0]),
            exact_max_eigenvalue=float(ex[-1]),
            density_l1=float(np.trapezoid(np.abs(rho - exact_rho), grid)),
        )
        tables["exact_density"] = [{"eigenvalue": float(x), "density": float(r)} for x, r in zip(grid, exact_rho)]
        tables["exact_eigenvalues"] = [{"eigenvalue": float(v)} for v in ex]
        bins = max(10, min(200, int(math.sqrt(ex.size))))
        hist, edges = np.histogram(ex, bins=bins, range=(float(ex[0]), float(ex[-1])), density=True)
        tables["exact_histogram"] = [
            {"left": float(a), "right": float(b), "density": float(h)} for a, b, h in zip(edges[:-1], edges[1:], hist)
        ]
    info["seconds"] = timings
    info["peak_rss_mb"] = _peak_rss_mb()
    return Result(rows=rows, tables=tables, info=info)


def _timed(f, *args):
    """Compile and run ``f`` separately; returns (outputs, compile seconds, run seconds)."""
    t0 = time.perf_counter()
    compiled = f.lower(*args).compile()
    t1 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    t2 = time.perf_counter()
    return out, t1 - t0, t2 - t1


#: standard errors (across probes) by which the counts' polynomial bracket is widened
COUNT_Z = 2.0
#: the columns of the counts table, in order (the first seven are the issue's; the rest complete them)
COUNT_COLUMNS = (
    "eps",
    "negative_fraction",
    "negative_fraction_stderr",
    "negative_fraction_lower",
    "negative_fraction_upper",
    "zero_fraction",
    "positive_fraction",
    "eps_abs",
    "zero_fraction_lower",
    "zero_fraction_upper",
    "positive_fraction_stderr",
    "positive_fraction_lower",
    "positive_fraction_upper",
    "resolution",
)


def spectral_norm(mom) -> float:
    """||H|| as the counts see it: the largest |Ritz value| of the deflation run (a lower bound that the
    extreme Ritz values reach first)."""
    return float(mom.norm)


def count_rows(mom, eps, *, relative: bool, exact_evals=None) -> list[dict]:
    """One row per eps (``COUNT_COLUMNS``, plus ``exact_*`` fractions when ``exact_evals`` is given).

    N-(eps) = F(-eps), N+(eps) = 1 - F(eps), N0(eps) = F(eps) - F(-eps) with F the fraction below (from
    ``sim.counts.counts``); the brackets of N0 and N+ follow from those of F at -eps and +eps (for N0 the
    two brackets add: conservative). Nothing is clipped.
    """
    eps = np.asarray(eps, np.float64)
    if eps.size == 0:
        return []
    scale = spectral_norm(mom) if relative else 1.0
    ea = eps * scale
    c = counts(mom, np.concatenate([-ea, ea]), z=COUNT_Z)
    k = eps.size
    rows = []
    for i in range(k):
        m, p = i, k + i  # indices of -eps and +eps
        row = {
            "eps": float(eps[i]),
            "negative_fraction": float(c.fraction[m]),
            "negative_fraction_stderr": float(c.stderr[m]),
            "negative_fraction_lower": float(c.lower[m]),
            "negative_fraction_upper": float(c.upper[m]),
            "zero_fraction": float(c.fraction[p] - c.fraction[m]),
            "positive_fraction": float(1.0 - c.fraction[p]),
            "eps_abs": float(ea[i]),
            "zero_fraction_lower": float(c.lower[p] - c.upper[m]),
            "zero_fraction_upper": float(c.upper[p] - c.lower[m]),
            "positive_fraction_stderr": float(c.stderr[p]),
            "positive_fraction_lower": float(1.0 - c.upper[p]),
            "positive_fraction_upper": float(1.0 - c.lower[p]),
            "resolution": float(c.resolution),
        }
        if exact_evals is not None:
            ev = np.asarray(exact_evals, np.float64)
            row.update(
                exact_negative_fraction=float(np.mean(ev < -ea[i])),
                exact_zero_fraction=float(np.mean(np.abs(ev) <= ea[i])),
                exact_positive_fraction=float(np.mean(ev > ea[i])),
            )
        rows.append(row)
    return rows


def counts_info(mom) -> dict:
    """Facts of the counts for the JSON: deflation, the bulk interval, ||H||."""
    k = int(mom.num_deflated)
    return {
        "spectral_norm": spectral_norm(mom),
        "deflated": k,
        "deflated_eigenvalues": [float(x) for x in np.asarray(mom.deflated)[np.isfinite(np.asarray(mom.deflated))]],
        "deflation_residual": float(mom.rho),
        "bulk_interval": [float(mom.centre - mom.halfwidth), float(mom.centre + mom.halfwidth)],
        "degree": int(mom.mu.shape[1] - 1),
        "count_probes": int(mom.mu.shape[0]),
    }
