"""Memory model of a spectrum run: refuse, before starting, what cannot fit."""

from __future__ import annotations

from sim.experiments.spectrum.config import SpectrumConfig

__all__ = ["memory_estimate", "check_memory"]


def memory_estimate(config: SpectrumConfig) -> int:
    """Rough upper estimate (bytes) of the peak memory of ``run(config)``.

    Lanczos bases ``batch x steps x N`` (full reorthogonalisation) or a few vectors per probe (none),
    the operator (GOE matrix N^2, p-spin couplings n^p, GRF features 16 n^2, MLP parameters and
    activations), and the dense Hessian plus ``eigvalsh`` workspace (float64) when the exact comparison
    is on; for point=critical, the Newton search's dense Hessians for every start; the counts' float64
    deflation basis and probe vectors (run after the SLQ, so the larger of the two); plus 512 MiB for the
    runtime. Measured at N = 1,000,911 (MLP, 2 probes x 80 steps at once, float32): estimate 1.2 GB,
    peak resident memory 1.25 GB.
    """
    item = 8 if config.dtype == "float64" else 4
    n = config.num_params
    bs = min(config.batch_size or config.probes, config.probes)
    bs *= max(1, min(config.devices or 1, config.probes // bs))  # host-split CPU devices share the memory
    lanczos = bs * (config.steps if config.reortho == "full" else 0) * n * item + bs * 8 * n * item
    exact = config.exact == "yes" or (config.exact == "auto" and n <= config.exact_max)
    dense = 5 * 8 * n * n  # float64 Hessian, its transpose/symmetrisation and the eigvalsh workspace
    if config.model == "goe":
        op = 3 * n * n * item
    elif config.model == "mlp":
        acts = config.num_samples * sum(config.widths)
        op = 6 * n * item + 8 * acts * item
        if exact:
            dense += n * n * item + 256 * n * 8  # the HVP columns in the parameter dtype, one lax.map batch
    elif config.model == "grf":
        feats = config.landscape().num_features(config.dim)
        op = 3 * feats * config.dim * 8 + min(feats * config.dim**2, 1 << 24) * 8
    else:  # pspin
        op = 3 * config.dim**config.p * 8
    critical = (
        6 * config.starts * config.dim**2 * 8 if config.model in ("grf", "pspin") and config.point == "critical" else 0
    )
    runtime = 512 << 20  # the JAX/XLA runtime and compiled code (~300 MB measured) plus XLA temporaries
    counts = 0
    if config.eps:  # float64 deflation basis, Ritz and residual vectors, and 4 vectors per probe at once
        cb = min(config.batch_size or config.count_probes or config.probes, config.count_probes or config.probes)
        counts = (min(80, n) + 2 * 2 * 16 + 4) * n * 8 + cb * 4 * n * 8
    return int(max(lanczos, counts) + op + (dense if exact else 0) + critical + runtime)


def check_memory(config: SpectrumConfig, available: int) -> None:
    """Raise ValueError when ``memory_estimate(config)`` exceeds ``available`` bytes."""
    need = memory_estimate(config)
    if need > available:
        n = config.num_params
        exact = config.exact == "yes" or (config.exact == "auto" and n <= config.exact_max)
        raise ValueError(
            f"N = {n:,} with {config.steps} steps x {min(config.batch_size or config.probes, config.probes)} probes "
            f"at once{' and the exact dense Hessian' if exact else ''} needs about {need / 2**30:.1f} GiB, more than "
            f"the {available / 2**30:.1f} GiB available; use fewer --lanczos-steps, a smaller --probe-batch, "
            f"--reortho none{', --exact no' if exact else ''} or a smaller model"
        )
