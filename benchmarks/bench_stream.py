"""Benchmark: streaming the squared distance between two huge random vectors, hdsim against numpy.

Workload (issue 6, "GPT-3-sized vectors"): S = |x - y|^2 for two random vectors of dimension d,
never holding a vector: coordinates are generated a chunk at a time and the squared differences
accumulated.

  * hdsim: ``sim.pairwise_distances(key, law, 2, d, metric="sqeuclidean")``: counter-based Threefry
    tiles, float32 draws and a float64 pairwise tree (gaussian); bit-packed words and popcount(xor),
    32 coordinates per uint32, integer-exact (rademacher).
  * numpy: what a user writes with ``np.random.default_rng``: a loop over chunks of 2^22 coordinates.
    gaussian: ``standard_normal(float32)`` for x and y, ``acc += float64 sum of (x - y)^2``.
    rademacher: the same with +-1 int8 (``integers(0, 2) * 2 - 1``), and, as the strong baseline,
    packed random uint64 words with ``np.bitwise_count(x ^ y)`` (numpy >= 2).

Throughput is coordinates generated per second (2 d per run), after one warm-up call (hdsim's compile
time is printed apart). Agreement: different generators give different numbers, so each S is
checked against theory (mean 2d; std sqrt(8d) gaussian, 2 sqrt(d) rademacher: docs/theory.md#distances-moments),
and hdsim is checked exactly against numpy on hdsim's own ``sim.sample`` vectors at d = 10^5.

Random-number throughput (``--rates``, printed first): numbers per CPU second of each generator, drawn
in blocks of 2^18 that stay in cache and are summed (so no generator pays for writing gigabytes to
memory): hdsim's counter-based stream (Threefry-2x32 words, and float32 Gaussians from them), JAX's own
``jax.random.bits``/``normal`` with its default Threefry and with the ``rbg``/``unsafe_rbg``
implementations (XLA's RngBitGenerator), all compiled with the CPU options of hdsim's kernels
(``sim.vectors.CPU_COMPILER_OPTIONS``: prefer 512-bit vectors), and numpy's PCG64 (uint32 words, float32 uniforms and
Gaussians, one core: numpy's generators are single-threaded). CPU time, not wall time: the figure
that does not depend on the other jobs sharing the cores. The limit of the cores is the fastest of
these per CPU second times the cores.

Usage:  python benchmarks/bench_stream.py [--quick] [--gaussian-dim 1e8] [--rademacher-dim 1e10] [--devices N]
        [--rates-only] [--split-host 2] [--no-baselines]
Issue 16's goal, two Gaussian vectors of d = 1e10 on both cores:
        python benchmarks/bench_stream.py --split-host 2 --gaussian-dim 1e10 --rademacher-dim 1e9 --no-rates --no-baselines
"""

from __future__ import annotations

import argparse
import math
import os
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import sim  # noqa: E402
from sim import Gaussian, Rademacher, pairwise_distances, sample  # noqa: E402

CHUNK = 1 << 22


def numpy_gaussian(rng, d):
    acc = 0.0
    for start in range(0, d, CHUNK):
        c = min(CHUNK, d - start)
        diff = rng.standard_normal(c, dtype=np.float32) - rng.standard_normal(c, dtype=np.float32)
        acc += float(np.sum(np.square(diff, dtype=np.float64)))
    return acc


def numpy_rademacher_int8(rng, d):
    acc = 0
    for start in range(0, d, CHUNK):
        c = min(CHUNK, d - start)
        x = rng.integers(0, 2, c, dtype=np.int8) * 2 - 1
        y = rng.integers(0, 2, c, dtype=np.int8) * 2 - 1
        acc += int(np.count_nonzero(x != y))
    return 4.0 * acc


def numpy_rademacher_packed(rng, d):
    acc = 0
    for start in range(0, d, CHUNK):
        c = min(CHUNK, d - start)
        w = -(-c // 64)
        x = rng.integers(0, 2**64 - 1, w, dtype=np.uint64, endpoint=True)
        y = rng.integers(0, 2**64 - 1, w, dtype=np.uint64, endpoint=True)
        z = x ^ y
        if c % 64:
            z[-1] &= np.uint64((1 << (c % 64)) - 1)
        acc += int(np.bitwise_count(z).sum(dtype=np.int64))
    return 4.0 * acc


RATE_BLOCK = 1 << 18


def _cpu_best(fn, repeat=3):
    """Shortest CPU time (all threads of this process) and wall time of fn() over ``repeat`` calls."""
    fn()
    cpu = wall = math.inf
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu, wall = min(cpu, time.process_time() - c), min(wall, time.perf_counter() - w)
    return cpu, wall


def _jax_rate(make_block, total):
    """Numbers per CPU second of ``make_block(key, i)`` (RATE_BLOCK numbers), summed in a jitted loop."""
    import jax.numpy as jnp

    from sim.vectors import kernel_jit

    @kernel_jit  # jax.jit with the CPU options hdsim's kernels compile with (sim.vectors.CPU_COMPILER_OPTIONS)
    def run(key):
        def body(i, acc):
            return acc + make_block(key, i).astype(jnp.float32)

        return jax.lax.fori_loop(0, total // RATE_BLOCK, body, jnp.zeros((RATE_BLOCK,), jnp.float32))

    key = jax.random.key(0)
    return _cpu_best(lambda: run(key).block_until_ready())


def rng_rates(total: int = 1 << 26) -> list[tuple[str, float, float]]:
    """(generator, numbers per CPU second, numbers per wall second) for hdsim, JAX and numpy."""
    import jax.numpy as jnp

    from sim.vectors import sign_words, standard_normal

    def fold(key, i):
        return jax.random.fold_in(key, i)

    cases = [
        ("hdsim Threefry-2x32 words (uint32)", lambda k, i: sign_words(fold(k, i), RATE_BLOCK)),
        ("hdsim Gaussians (float32)", lambda k, i: standard_normal(fold(k, i), (RATE_BLOCK,), jnp.float32)),
    ]
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):

        def key_of(k, i, impl=impl):
            return jax.random.key(jax.random.bits(fold(k, i), (), jnp.uint32), impl=impl)

        cases += [
            (f"jax.random.bits {impl} (uint32)", lambda k, i, f=key_of: jax.random.bits(f(k, i), (RATE_BLOCK,))),
            (f"jax.random.normal {impl} (float32)", lambda k, i, f=key_of: jax.random.normal(f(k, i), (RATE_BLOCK,))),
        ]
    out = []
    for name, make in cases:
        cpu, wall = _jax_rate(make, total)
        out.append((name, total / cpu, total / wall))
    rng = np.random.default_rng(0)
    n_blocks = total // RATE_BLOCK
    for name, draw in (
        ("numpy PCG64 words (uint32)", lambda: rng.integers(0, 2**32, RATE_BLOCK, dtype=np.uint32)),
        ("numpy PCG64 uniforms (float32)", lambda: rng.random(RATE_BLOCK, dtype=np.float32)),
        ("numpy PCG64 Gaussians (float32)", lambda: rng.standard_normal(RATE_BLOCK, dtype=np.float32)),
    ):
        cpu, wall = _cpu_best(lambda draw=draw: [draw().sum() for _ in range(n_blocks)])
        out.append((name, total / cpu, total / wall))
    return out


def print_rates(rates, cores: int) -> None:
    print(f"random-number throughput, blocks of {RATE_BLOCK} summed in cache; load average {os.getloadavg()[0]:.2f}")
    print(f"{'generator':<40} {'M/CPU-s':>9} {'M/s wall':>9}")
    for name, per_cpu, per_wall in rates:
        print(f"{name:<40} {per_cpu / 1e6:>9.0f} {per_wall / 1e6:>9.0f}")
    by = dict((n, r) for n, r, _ in rates)
    g, pg = by["hdsim Gaussians (float32)"], by["numpy PCG64 Gaussians (float32)"]
    w, pw = by["hdsim Threefry-2x32 words (uint32)"], by["numpy PCG64 words (uint32)"]
    print(
        f"per CPU second: hdsim Gaussians {g / pg:.2f}x numpy PCG64's, words {w / pw:.2f}x; limit of the {cores} cores "
        f"(fastest per CPU second x cores): {cores * max(g, pg) / 1e6:.0f} M Gaussians/s, "
        f"{cores * max(w, pw) / 1e6:.0f} M words/s"
    )
    print(
        f"two Gaussian vectors of d = 1e10 at hdsim's generation rate on {cores} cores: "
        f"{2e10 / (cores * g):.0f} s (generation alone)"
    )


CPU_SECONDS: dict[str, float] = {}


def timed(fn, *args, name=None):
    """(result, wall seconds); the CPU seconds of the call (all threads) go to CPU_SECONDS[name]."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    CPU_SECONDS[name] = time.process_time() - c0
    return out, time.perf_counter() - t0


def hdsim_s(key, law, d, devices):
    return float(pairwise_distances(key, law, 2, d, metric="sqeuclidean", devices=devices)[0, 1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gaussian-dim", type=float, default=1e8)
    ap.add_argument("--rademacher-dim", type=float, default=1e10)
    ap.add_argument("--devices", type=int, default=None, help="hdsim devices (default: all)")
    ap.add_argument("--quick", action="store_true", help="d = 10^7 gaussian, 10^9 rademacher")
    ap.add_argument(
        "--split-host",
        type=int,
        default=None,
        metavar="N",
        help="present the CPU as N devices (one per core) so that hdsim streams on N cores (sim.devices.split_host); "
        "devices take up to 8 aligned power-of-two blocks of chunks in turn (sim.devices.cyclic_blocks), so their "
        "shares stay balanced (d = 1e10 on 2 devices: 54%% / 46%%; one block each gave 86%% / 14%%)",
    )
    ap.add_argument("--rates-only", action="store_true", help="only the random-number throughput table")
    ap.add_argument(
        "--no-baselines",
        action="store_true",
        help="time hdsim alone (numpy's Gaussian loop takes ~5 CPU-minutes at d = 1e10)",
    )
    ap.add_argument("--no-rates", action="store_true", help="skip the random-number throughput table")
    a = ap.parse_args()
    if a.split_host:
        from sim.devices import split_host

        split_host(a.split_host)  # before anything touches a device
    dg, dr = (10**7, 10**9) if a.quick else (int(a.gaussian_dim), int(a.rademacher_dim))
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device(s)), "
        f"numpy {np.__version__}; sim from {os.path.dirname(sim.__file__)}; 2 points, squared Euclidean distance, "
        f"numpy chunk {CHUNK}"
    )

    if not a.no_rates:
        print_rates(rng_rates(1 << 24 if a.quick else 1 << 26), len(os.sched_getaffinity(0)))
    if a.rates_only:
        return

    # exact agreement on the same vectors (hdsim's own samples)
    key = jax.random.key(0)
    for law in (Gaussian(), Rademacher()):
        x = np.asarray(sample(key, law, 2, 100_000), dtype=np.float64)
        ref = float(np.sum((x[0] - x[1]) ** 2))
        got = hdsim_s(key, law, 100_000, a.devices)
        rel = abs(got - ref) / ref
        print(f"same vectors, d=1e5, {law.name}: hdsim {got:.10g} numpy {ref:.10g} rel diff {rel:.1e}")
        assert rel <= (1e-6 if law.name == "gaussian" else 0.0), rel

    have_popcount = hasattr(np, "bitwise_count")
    print(f"{'law':<11} {'d':>9} {'impl':<22} {'seconds':>8} {'CPU s':>8} {'coords/s':>10} {'S/(2d)-1':>10} {'z':>6}")
    for law, d, sd, baselines in (
        (Gaussian(), dg, math.sqrt(8 * dg), [("numpy standard_normal", numpy_gaussian)]),
        (
            Rademacher(),
            dr,
            2 * math.sqrt(dr),
            [("numpy int8 +-1", numpy_rademacher_int8)]
            + ([("numpy uint64 popcount", numpy_rademacher_packed)] if have_popcount else []),
        ),
    ):
        t0 = time.perf_counter()
        hdsim_s(jax.random.key(1), law, d, a.devices)  # compile (same shapes as the timed call)
        compile_s = time.perf_counter() - t0
        s, t = timed(hdsim_s, jax.random.key(2), law, d, a.devices, name="hdsim")
        rows = [("hdsim", s, t)]
        for name, fn in [] if a.no_baselines else baselines:
            if name.startswith("numpy int8") and d > 2 * 10**9:
                continue  # too slow to be worth waiting for
            rng = np.random.default_rng(2)
            fn(rng, CHUNK)  # warm-up
            v, tb = timed(fn, rng, d, name=name)
            rows.append((name, v, tb))
        for name, v, tt in rows:
            z = (v - 2 * d) / sd
            cpu = CPU_SECONDS[name]
            print(
                f"{law.name:<11} {d:>9.3g} {name:<22} {tt:>8.2f} {cpu:>8.2f} {2 * d / tt:>10.3g} "
                f"{v / (2 * d) - 1:>+10.2e} {z:>+6.2f}"
            )
            assert abs(z) < 5, f"{name}: S is {z:.1f} standard deviations from 2d"
        for name, _, tb in rows[1:]:
            print(f"  speed ratio hdsim / {name}: {tb / t:.2f}x   (hdsim compile {compile_s:.1f} s, not timed)")


if __name__ == "__main__":
    main()
