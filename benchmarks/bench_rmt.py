"""Index counting of 10^5 GOE matrices at N = 8, 32, 128: hdsim (JAX) against numpy and scipy.

The same float32 matrices (hdsim's ``sim.rmt.goe`` sampler, chunks of about 2^20 entries, sampling
excluded from every timing) are counted by

* hdsim ``rmt.index(h, method="ldl")``: signs of the LDL^T pivots (Sylvester inertia), elimination in
  float64, jitted and batched over the chunk;
* scipy LDL/inertia: LAPACK ``dsytrf`` (Bunch-Kaufman pivoted LDL^T, float64, the same precision as
  hdsim's elimination) one matrix at a time through ``scipy.linalg.lapack.dsytrf``, then the negative
  eigenvalues of the block-diagonal D counted (1x1 pivots by sign, 2x2 blocks by determinant and
  trace), vectorised over the chunk: the same method as hdsim, the fastest scipy offers;
* numpy ``(np.linalg.eigvalsh(h) < 0).sum(-1)`` (batched, float32 LAPACK);
* ``scipy.linalg.ldl`` (the user-facing LDL: permutation and D returned as full matrices) on the first
  ``--ldl-subset`` matrices only (it is 10-40x slower per matrix), reported per matrix;
* ``--jax-eigh``: hdsim ``rmt.index(h, method="eigh")`` too.

Every count is compared matrix by matrix with dsytrf's (mismatches printed). Times (wall, and CPU seconds
of the worker, which other jobs on shared cores inflate far less) are totals over the workload, one pass: "first" includes the compilation of hdsim's first chunk (a fresh process per
thread count, ``benchmarks/_report.py``), "warm" replaces that first call by a second, warm one.
Each thread count runs in its own worker process with CPU affinity, BLAS and XLA thread settings
fixed before numpy and JAX load; ``--threads 1,all`` (default) runs both.

Usage:  python benchmarks/bench_rmt.py [--quick] [--samples N | N8,N32,N128] [--dims 8,32,128] [--threads 1,all]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _report

REPO = Path(__file__).resolve().parents[1]
SIDES = ("hdsim-ldl", "scipy-sytrf", "numpy-eigvalsh")


def chunk_size(n: int) -> int:
    """Matrices per chunk: about 2^20 entries, between 64 and 2^14 (the rule of hdsim's streamed counters)."""
    return int(min(2**14, max(64, 2**20 // (n * n))))


def negative_pivots(diag, sub, ipiv):
    """Negative eigenvalues of the block-diagonal D of lower ``?sytrf`` factorisations, batched.

    ``diag`` (B, n) and ``sub`` (B, n - 1) are D's diagonal and subdiagonal, ``ipiv`` (B, n) LAPACK's
    pivots: ``ipiv[k] = ipiv[k + 1] < 0`` marks a 2x2 block in rows k, k + 1 (LAPACK ?sytrf, lower).
    A 2x2 block has one negative eigenvalue when its determinant is negative, else two or none by
    the sign of its trace.
    """
    import numpy as np

    b, n = diag.shape
    neg = np.zeros(b, np.int64)
    second = np.zeros(b, bool)  # row k is the second row of a 2x2 block
    for k in range(n):
        first = ~second
        two = first & (ipiv[:, k] < 0) if k + 1 < n else np.zeros(b, bool)
        one = first & ~two
        neg += one & (diag[:, k] < 0)
        if k + 1 < n:
            a, c, s = diag[:, k], diag[:, k + 1], sub[:, k]
            det = a * c - s * s
            neg += np.where(two, np.where(det < 0, 1, np.where(a + c < 0, 2, 0)), 0)
        second = two
    return neg


def sytrf_index(h32):
    """Index of each matrix in ``h32`` (B, n, n) by LAPACK dsytrf in float64 and the inertia of D."""
    import numpy as np
    from scipy.linalg.lapack import dsytrf, dsytrf_lwork

    b, n, _ = h32.shape
    h = h32.astype(np.float64)  # C order; each matrix's transpose (itself) is Fortran-ordered: no copy
    lwork = int(dsytrf_lwork(n, lower=1)[0])
    diag = np.empty((b, n))
    sub = np.empty((b, max(n - 1, 0)))
    ipiv = np.empty((b, n), np.int64)
    for i in range(b):
        ldu, piv, info = dsytrf(h[i].T, lower=1, lwork=lwork, overwrite_a=1)
        if info < 0:
            raise RuntimeError(f"dsytrf: illegal argument {-info}")
        diag[i] = np.diagonal(ldu)
        sub[i] = np.diagonal(ldu, -1)
        ipiv[i] = piv
    return negative_pivots(diag, sub, ipiv)


def ldl_index(h32):
    """Index by ``scipy.linalg.ldl`` (float64): inertia of its block-diagonal D."""
    import numpy as np
    import scipy.linalg

    out = []
    for m in h32.astype(np.float64):
        _, d, _ = scipy.linalg.ldl(m, lower=True, check_finite=False)
        dg, sb = np.diagonal(d), np.diagonal(d, -1)
        # a 2x2 block of D has a nonzero subdiagonal entry; mark it as LAPACK's ipiv would
        two = np.zeros(len(dg), bool)
        two[:-1] = sb != 0
        piv = np.where(two | np.r_[False, two[:-1]], -1, 1)
        out.append(negative_pivots(dg[None], sb[None], piv[None])[0])
    return np.array(out)


# --------------------------------------------------------------------------- worker


def bench(n, samples, seed, *, jax_eigh, ldl_subset):
    import jax
    import numpy as np

    from sim import rmt

    chunk = min(chunk_size(n), samples)
    key = jax.random.key(seed)
    sides = SIDES + (("hdsim-eigh",) if jax_eigh else ())
    fns = {
        "hdsim-ldl": lambda h, hn: np.asarray(rmt.index(h, method="ldl")),
        "hdsim-eigh": lambda h, hn: np.asarray(rmt.index(h, method="eigh")),
        "scipy-sytrf": lambda h, hn: sytrf_index(hn),
        "numpy-eigvalsh": lambda h, hn: (np.linalg.eigvalsh(hn) < 0).sum(-1),
    }
    total = dict.fromkeys(sides, 0.0)
    total_cpu = dict.fromkeys(sides, 0.0)
    first, warm0, first_cpu, warm0_cpu = {}, {}, {}, {}
    mismatch = dict.fromkeys(sides, 0)
    hist = np.zeros(n + 1, np.int64)
    done, c = 0, 0
    ldl_t, ldl_bad, ldl_m = 0.0, 0, 0
    while done < samples:
        m = min(chunk, samples - done)
        # hdsim always counts a full chunk (one compiled shape); the extra matrices of a last, partial
        # chunk are counted and dropped, the baselines get the m matrices only
        h = jax.block_until_ready(rmt.goe(jax.random.fold_in(key, c), n, batch_shape=(chunk,)))
        hn = np.asarray(h)[:m]
        res = {}
        for side in sides:
            if c == 0:  # the workload's first call in this process (hdsim compiles here)
                t, tc = time.perf_counter(), time.process_time()
                fns[side](h, hn)
                first[side], first_cpu[side] = time.perf_counter() - t, time.process_time() - tc
            t, tc = time.perf_counter(), time.process_time()
            res[side] = fns[side](h, hn)[:m]
            dt, dtc = time.perf_counter() - t, time.process_time() - tc
            total[side] += dt
            total_cpu[side] += dtc
            if c == 0:
                warm0[side], warm0_cpu[side] = dt, dtc
        ref = res["scipy-sytrf"]
        for side in sides:
            mismatch[side] += int(np.sum(res[side] != ref))
        hist += np.bincount(ref, minlength=n + 1)
        if ldl_m < ldl_subset:
            k = min(m, ldl_subset - ldl_m)
            t = time.perf_counter()
            idx = ldl_index(hn[:k])
            ldl_t += time.perf_counter() - t
            ldl_bad += int(np.sum(idx != ref[:k]))
            ldl_m += k
        done += m
        c += 1
    # compile-inclusive total: the first call of the first chunk in place of its warm call
    times = {s: {"first": total[s] - warm0[s] + first[s], "warm": total[s]} for s in sides}
    # the same in CPU seconds of this process (1 thread: unaffected by other jobs waiting for the cores)
    cpu = {s: {"first": total_cpu[s] - warm0_cpu[s] + first_cpu[s], "warm": total_cpu[s]} for s in sides}
    return {
        "n": n,
        "samples": samples,
        "chunk": chunk,
        "chunks": c,
        "times": times,
        "cpu": cpu,
        "mismatch": mismatch,
        "index_mean": float(np.dot(np.arange(n + 1), hist) / samples),
        "p_min": float(hist[0] / samples),
        "ldl_subset": ldl_m,
        "ldl_per_matrix": ldl_t / max(ldl_m, 1),
        "ldl_mismatch": ldl_bad,
    }


def worker(args):
    sys.path.insert(0, str(REPO))
    import jax

    jax.config.update("jax_enable_x64", True)  # hdsim's "ldl" eliminates in float64; matrices stay float32
    import numpy as np
    import scipy.linalg  # noqa: F401  (loaded before the BLAS report)

    dims = [int(d) for d in args.dims.split(",")]
    counts = [int(float(s)) for s in args.samples.split(",")] if args.samples else [10_000 if args.quick else 100_000]
    if len(counts) == 1:
        counts *= len(dims)
    if len(counts) != len(dims):
        raise SystemExit(f"--samples: give one count or one per dimension ({len(dims)}), got {args.samples!r}")
    out = {}
    for n, samples in zip(dims, counts):
        r = bench(n, samples, args.seed, jax_eigh=args.jax_eigh, ldl_subset=args.ldl_subset)
        out[n] = r
        t = r["times"]
        print(
            f"N={n}: {samples} matrices in {r['chunks']} chunks of {r['chunk']}; "
            + "; ".join(
                f"{s} {t[s]['warm']:.3f} s (with the first call, incl. hdsim's compile: {t[s]['first']:.3f})" for s in t
            )
            + f"; mismatches against dsytrf {r['mismatch']}; mean index {r['index_mean']:.3f}, "
            f"P(index 0) {r['p_min']:.2e}; scipy.linalg.ldl {r['ldl_per_matrix'] * 1e6:.0f} us per matrix "
            f"on {r['ldl_subset']} matrices ({r['ldl_mismatch']} mismatches)",
            flush=True,
        )
        assert all(v == 0 for v in r["mismatch"].values()) and r["ldl_mismatch"] == 0, "index counts differ"
    _report.emit({"env": _report.environment(), "per_n": out, "numpy": np.__version__})


# --------------------------------------------------------------------------- parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10^4 matrices instead of 10^5")
    ap.add_argument("--samples", default=None, help="matrices per N: one count or one per --dims entry")
    ap.add_argument("--dims", default="8,32,128")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ldl-subset", type=int, default=1000, help="matrices counted by scipy.linalg.ldl (slow)")
    ap.add_argument("--jax-eigh", action="store_true", help="also time rmt.index(method='eigh')")
    _report.add_arguments(ap, repeat=1)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    print(f"python {' '.join(sys.argv)}\n{_report.format_load()} (at the start)")
    runs = {}
    for threads in _report.thread_counts(args.threads):
        print(f"--- worker on {threads} thread(s): fresh process, hdsim's first chunk compiles")
        runs[threads] = _report.run_worker(_report.worker_argv(__file__, argv), threads)
    print(_report.format_environment(runs[max(runs)]["env"]))
    dims = list(next(iter(runs.values()))["per_n"])
    for n in dims:
        per = {t: {"times": r["per_n"][n]["times"], "env": r["env"]} for t, r in runs.items()}
        some = next(iter(runs.values()))["per_n"][n]
        for base in ("numpy-eigvalsh", "scipy-sytrf"):
            print(f"--- N={n}, {some['samples']} matrices: hdsim-ldl against {base} (speed-up = {base} / hdsim)")
            print(_report.format_comparison(per, "hdsim-ldl", base))
            cpu = {
                t: {"times": r["per_n"][n]["cpu"], "env": r["env"]} for t, r in runs.items() if "cpu" in r["per_n"][n]
            }
            if cpu:
                print(
                    "in CPU seconds (quote these under load): "
                    + _report.format_comparison(cpu, "hdsim-ldl", base, unit="CPU s")
                )
        for t, r in runs.items():
            rn = r["per_n"][n]
            hd = rn["times"]["hdsim-ldl"]["warm"] / rn["samples"]
            print(
                f"{t} thread(s): scipy.linalg.ldl {rn['ldl_per_matrix'] * 1e6:.1f} us per matrix against hdsim-ldl "
                f"{hd * 1e6:.2f} us (warm): {_report.format_speedup(rn['ldl_per_matrix'] / hd)}"
            )
    print(f"{_report.format_load()} (at the end)")
    _report.save_runs(args.json, f"benchmarks/{Path(__file__).name}", argv, runs)
    return runs


if __name__ == "__main__":
    main()
