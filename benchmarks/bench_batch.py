"""Benchmark: a batch-size sweep (13 sizes, 8 seeds), hdsim's vmapped, sharded SGD against the per-seed,
per-size loop a user would write (numpy for the linear model, PyTorch for the MLP).

Workloads (issue 15), the same for both sides, with the same stopping rule (a fixed step count per size):

* ``linear``: isotropic noiseless linear regression, d = ``--dim`` (100), fresh Gaussian samples every step,
  the per-step optimal rate ``B/(B + d + 1)``, batch sizes 1, 2, 4, ..., 4096, and per size the theory's
  steps to cut the loss 100-fold, ``ceil(ln 100 / ln(1 + B/(d + 1)))`` (961 steps per seed over the 13
  sizes); the population loss ``|theta - w|^2 / 2`` after every step is recorded. float64 on both sides.
  hdsim: ``sim.learning.parallel.run_to_target`` (one compiled program for all 13 sizes; the Gaussians of
  sample j of step t are Threefry-2x32 blocks with counter (j, c) under ``fold_in(k_seed, t)``, mapped to
  float32 as ``sim.vectors.standard_normal`` maps its words, cast to float64); numpy: ``default_rng`` per seed, ``standard_normal((B, d))`` per step. The workload is
  17 M Gaussians and mostly drawing: the RNG line prints both generators' rates alone (hdsim's in the sweep's
  own loops, its training left out), which bound the speed-up.
* ``mlp``: one-hidden-layer ReLU MLP (width ``--width`` 64, NTK multipliers) on scikit-learn's digits
  (1,300 training images, squared loss on one-hot labels), 13 log-spaced batch sizes 1 .. 1024 drawn with
  replacement, ``--mlp-steps`` (200) SGD steps at rate 0.5, the full-pool loss after every step; float32.
  Both sides start from the same initial parameters (hdsim's, copied into torch).

Both run in one worker per thread count with the same thread limits (``_report``). hdsim's first pass
(tracing and XLA compilation of the one program that serves every batch size) is printed on its own line
beside the warm time, in wall and CPU time; the ratio is baseline / hdsim. hdsim is also timed on ``--devices`` (2) virtual CPU devices
(``sim.devices.split_host``): on a CPU they share the same cores, so splitting the batch gives no
speed-up (it adds the all-gather of the gradients); on GPUs or TPUs each device brings its own compute and
memory bandwidth, which is where data parallelism pays.

Usage:  python benchmarks/bench_batch.py [--workloads linear,mlp] [--threads 1,all] [--repeat 2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402

SIZES_LINEAR = tuple(2**k for k in range(13))


def _sizes_mlp():
    import numpy as np

    return tuple(int(b) for b in np.unique(np.round(np.geomspace(1, 1024, 13))))


def _steps_linear(b, d):
    return math.ceil(math.log(100) / math.log1p(b / (d + 1)))


_timed_cpu = _report.timed_cpu


def _print_compile(name, t):
    """The first call's extra time (tracing + XLA compilation of the one program), wall and CPU."""
    extra_wall, extra_cpu = t["first"] - t["warm"], t["cpu_first"] - t["cpu_warm"]
    print(
        f"{name}: hdsim compile (first call - warm): "
        + (f"{extra_wall:.2f} s wall" if extra_wall >= 0 else "not resolved in wall time (load)")
        + f", {extra_cpu:.2f} s CPU"
    )


def _rng_rates(np, sizes, steps_of, seeds, d):
    """Gaussians per CPU second of the two generators alone on the workload's draws. hdsim: the linear sweep's
    drawing without its training, the same samples in the same loops as ``sim.learning.parallel``'s stream
    (per seed and step the key ``fold_in(k_seed, t)``, blocks of ``STREAM_BLOCK`` rows of 8 samples, rows,
    then the last samples one at a time; ``stream_halves``, the even and odd Gaussians, cast to float64),
    the Gaussians summed instead of turned into gradients, compiled with the same options. numpy: PCG64
    float64 ``standard_normal``. The linear workload is mostly drawing, so ``gaussians / rate`` bounds each
    side's time from below."""
    import jax
    import jax.numpy as jnp

    from sim.learning import parallel as P
    from sim.vectors import CPU_COMPILER_OPTIONS

    m, rb, nz = P.MAX_LEAVES, P.STREAM_BLOCK, d + 1
    ne, no = (nz + 1) // 2, nz // 2

    def seed(kb, bint, steps):
        def step(t, tot):
            kt = P.fold_in_raw(kb, t.astype(jnp.uint32))

            def add(a, base, rows, mm):
                ze, zo = P.stream_halves(kt, base, rows, mm, nz)
                ae, ao = a
                for i in range(rows):
                    ae, ao = ae.at[:mm].add(ze[i, :, :ne].astype(jnp.float64)), ao.at[:mm].add(zo[i, :, :no])
                return ae, ao

            nb, nr = bint // (m * rb), bint // m
            a = (jnp.zeros((m, ne), jnp.float64), jnp.zeros((m, no), jnp.float64))
            a = jax.lax.fori_loop(0, nb, lambda q, a: add(a, m * rb * q, rb, m), a)
            a = jax.lax.fori_loop(nb * rb, nr, lambda q, a: add(a, m * q, 1, m), a)
            _, a = jax.lax.while_loop(
                lambda c: (c[0] < m) & (nr * m + c[0] < bint), lambda c: (c[0] + 1, add(c[1], nr * m + c[0], 1, 1)),
                (jnp.int32(0), a),
            )  # fmt: skip
            return tot + jnp.sum(a[0]) + jnp.sum(a[1])

        return jax.lax.fori_loop(0, steps, step, jnp.zeros((), jnp.float64))

    f = jax.jit(jax.vmap(seed, in_axes=(0, None, None)), compiler_options=CPU_COMPILER_OPTIONS)
    keys = P.seed_keys(jax.random.key(0), seeds)

    def draw_sweep():
        return [f(keys, np.int32(b), np.int32(steps_of(b))).block_until_ready() for b in sizes]

    draw_sweep()
    best = math.inf
    for _ in range(3):
        c = time.process_time()
        draw_sweep()
        best = min(best, time.process_time() - c)
    n = sum(steps_of(b) * b for b in sizes) * seeds * (d + 1)
    rng = np.random.default_rng(0)
    c = time.process_time()
    for _ in range(5):
        rng.standard_normal(1 << 22)
    npr = 5 * (1 << 22) / (time.process_time() - c)
    return {"gaussians": n, "hdsim_per_cpu_s": n / best, "numpy_per_cpu_s": npr}


def worker(args):
    from sim.devices import split_host

    split_host(min(args.devices, len(_report.available_cpus())) if args.devices > 1 else 1)
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from sim.learning import parallel as P

    seeds, d = args.seeds, args.dim
    key = jax.random.key(args.seed)
    result = {"env": _report.environment(), "times": {}, "checks": {}}
    work = [w.strip() for w in args.workloads.split(",")]
    n_dev = len(jax.devices())

    def sweep(prob, arr, sizes, steps_of, lr, devices):
        # one compiled program for every batch size: B and the step count are run-time values, the loss
        # buffer (capacity) is the longest run; target 0: every size runs its fixed step count
        cap = max(steps_of(b) for b in sizes)
        out = []
        for b in sizes:
            p = P.init_params(prob, key, seeds)
            r = P.run_to_target(
                prob,
                arr,
                p,
                P.seed_keys(key, seeds),
                batch_size=b,
                max_steps=steps_of(b),
                capacity=cap,
                every=cap,
                lr=lr,
                devices=devices,
            )
            out.append(np.asarray(r.losses)[:, : steps_of(b)])
        return out

    def _devices(run, sizes=SIZES_LINEAR):
        """Warm times of the sweep on one device and on all (any batch size splits over 1, 2, 4, 8 devices)."""
        t1, _ = _timed_cpu(lambda: run(list(sizes), 1), 1)
        tk, _ = _timed_cpu(lambda: run(list(sizes), n_dev), 1)
        return {"one": t1, "all": tk, "sizes": list(sizes)}

    if "linear" in work:
        prob = P.Problem("stream", None, d, 1)
        w = np.full(d, 1 / math.sqrt(d))
        arr = P.stream_arrays(np.ones(d), w)
        steps_of = lambda b: _steps_linear(b, d)  # noqa: E731
        t_hd, out_hd = _timed_cpu(lambda: sweep(prob, arr, SIZES_LINEAR, steps_of, "optimal", 1), args.repeat)

        def numpy_loop():
            finals = []
            for b in SIZES_LINEAR:
                eta = b / (b + d + 1)
                fin = []
                for s in range(seeds):
                    rng = np.random.default_rng([args.seed, s, b])
                    theta = np.zeros(d)
                    losses = np.empty(steps_of(b))
                    for t in range(steps_of(b)):
                        x = rng.standard_normal((b, d))
                        r = x @ (theta - w)
                        theta -= eta * (x.T @ r) / b
                        dl = theta - w
                        losses[t] = 0.5 * (dl @ dl)
                    fin.append(losses[-1])
                finals.append(np.array(fin))
            return finals

        t_np, out_np = _timed_cpu(numpy_loop, max(args.repeat - 1, 0) if args.repeat > 1 else 0)
        if not math.isfinite(t_np["warm"]):
            t_np["warm"] = t_np["first"]
        result["times"]["linear"] = {"hdsim": t_hd, "numpy": t_np}
        result["rng"] = _rng_rates(np, SIZES_LINEAR, steps_of, seeds, d)
        if n_dev > 1:
            result["times"]["linear_devices"] = _devices(lambda s, k: sweep(prob, arr, s, steps_of, "optimal", k))
        f_hd = np.array([o[:, -1].mean() for o in out_hd]) / 0.5
        f_np = np.array([o.mean() for o in out_np]) / 0.5
        print(
            "linear: mean final loss ratio per size (target 0.01): hdsim "
            + " ".join(f"{v:.3g}" for v in f_hd)
            + "; numpy "
            + " ".join(f"{v:.3g}" for v in f_np)
        )
        _print_compile("linear", t_hd)
        result["checks"]["linear_final_ratio"] = {"hdsim": f_hd, "numpy": f_np}

    if "mlp" in work:
        import torch

        from sim.learning.data import load
        from sim.learning.train import Model

        torch.set_num_threads(args.worker_threads)
        data = load("digits", jax.random.key(0), 1300, 8, dtype=np.float32)
        model = Model(64, args.width, 1, 10)
        prob = P.Problem("pool", model, 64, 10, "float32")
        arr = P.pool_arrays(data.x_train, data.y_train, dtype=np.float32)
        sizes = _sizes_mlp()
        steps_of = lambda b: args.mlp_steps  # noqa: E731
        t_hd, out_hd = _timed_cpu(lambda: sweep(prob, arr, sizes, steps_of, 0.5, 1), args.repeat)
        p0 = jax.tree.map(np.asarray, P.init_params(prob, key, seeds))
        x = torch.from_numpy(np.array(data.x_train))
        y = torch.from_numpy(np.array(data.y_train))
        m1, m2 = 1 / math.sqrt(64), 1 / math.sqrt(args.width)

        def torch_loop():
            finals = []
            gen = torch.Generator().manual_seed(args.seed)
            for b in sizes:
                fin = []
                for s in range(seeds):
                    w1, b1, w2, b2 = (
                        torch.tensor(p0[layer][k][s], requires_grad=True) for layer in (0, 1) for k in ("w", "b")
                    )
                    opt = torch.optim.SGD([w1, b1, w2, b2], lr=0.5)
                    losses = torch.empty(args.mlp_steps)
                    for t in range(args.mlp_steps):
                        idx = torch.randint(0, x.shape[0], (b,), generator=gen)
                        xb, yb = x[idx], y[idx]
                        opt.zero_grad(set_to_none=True)
                        out = m2 * (torch.relu(m1 * (xb @ w1) + b1) @ w2) + b2
                        loss = 0.5 * ((out - yb) ** 2).sum(dim=1).mean()
                        loss.backward()
                        opt.step()
                        with torch.no_grad():
                            full = m2 * (torch.relu(m1 * (x @ w1) + b1) @ w2) + b2
                            losses[t] = 0.5 * ((full - y) ** 2).sum(dim=1).mean()
                    fin.append(float(losses[-1]))
                finals.append(np.array(fin))
            return finals

        t_pt, out_pt = _timed_cpu(torch_loop, max(args.repeat - 1, 0) if args.repeat > 1 else 0)
        if not math.isfinite(t_pt["warm"]):
            t_pt["warm"] = t_pt["first"]
        result["times"]["mlp"] = {"hdsim": t_hd, "pytorch": t_pt}
        if n_dev > 1:
            result["times"]["mlp_devices"] = _devices(lambda s, k: sweep(prob, arr, s, steps_of, 0.5, k), sizes)
        f_hd = np.array([o[:, -1].mean() for o in out_hd])
        f_pt = np.array([o.mean() for o in out_pt])
        print(
            "mlp: mean final full-pool loss per size: hdsim "
            + " ".join(f"{v:.3g}" for v in f_hd)
            + "; pytorch "
            + " ".join(f"{v:.3g}" for v in f_pt)
        )
        _print_compile("mlp", t_hd)
        result["checks"]["mlp_final_loss"] = {"hdsim": f_hd, "pytorch": f_pt}
        result["torch"] = torch.__version__
    result["devices"] = n_dev
    _report.emit(result)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="linear,mlp")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--mlp-steps", type=int, default=200)
    p.add_argument("--devices", type=int, default=2, help="virtual CPU devices for the extra hdsim timing")
    p.add_argument("--seed", type=int, default=0)
    _report.add_arguments(p, repeat=2)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(
        f"workloads: {args.workloads}; {args.seeds} seeds x 13 batch sizes; linear d = {args.dim} (theory steps per "
        f"size, optimal rate, float64); mlp width {args.width} on digits, {args.mlp_steps} SGD steps per size, float32"
    )
    runs = {t: _report.run_worker(_report.worker_argv(__file__), t) for t in _report.thread_counts(args.threads)}
    print(_report.format_environment(next(iter(runs.values()))["env"]))
    for name, base in (("linear", "numpy"), ("mlp", "pytorch")):
        if all(name in r["times"] for r in runs.values()):
            sub = {t: {**r, "times": r["times"][name]} for t, r in runs.items()}
            print(f"--- {name} ---")
            print(_report.format_comparison(sub, "hdsim", base))
            for t, r in runs.items():
                th, tb = r["times"][name]["hdsim"], r["times"][name][base]
                print(
                    f"{t} thread(s), CPU time: hdsim warm {th['cpu_warm']:.4g} s (first {th['cpu_first']:.4g}), "
                    f"{base} {tb['cpu_warm']:.4g} (first {tb['cpu_first']:.4g}): speed-up warm "
                    f"{_report.format_speedup(tb['cpu_warm'] / th['cpu_warm'])}, compile-inclusive "
                    f"{_report.format_speedup(tb['cpu_first'] / th['cpu_first'])}"
                )
                g = r.get("rng") if name == "linear" else None
                if g:
                    n, hd, npr = g["gaussians"], g["hdsim_per_cpu_s"], g["numpy_per_cpu_s"]
                    print(
                        f"{t} thread(s), RNG bound: {n / 1e6:.1f} M Gaussians; the generators alone draw "
                        f"{hd / 1e6:.0f} M/CPU-s (hdsim, float32 Threefry, in the sweep's own loops) and "
                        f"{npr / 1e6:.0f} M/CPU-s (numpy PCG64): drawing alone takes {n / hd:.3g} s "
                        f"({n / hd / th['cpu_warm']:.0%} of hdsim's run) and {n / npr:.3g} s "
                        f"({n / npr / tb['cpu_warm']:.0%} of numpy's run), so hdsim's warm speed-up is at most "
                        f"{tb['cpu_warm'] / (n / hd):.2f}x with this generator; 5x needs "
                        f"{5 * n / tb['cpu_warm'] / 1e6:.0f} M/CPU-s of complete training"
                    )
            for t, r in runs.items():
                dev = r["times"].get(f"{name}_devices")
                if dev:
                    print(
                        f"{t} thread(s), the {len(dev['sizes'])} sizes: hdsim warm "
                        f"{dev['one']['warm']:.3f} s on one CPU device, {dev['all']['warm']:.3f} s on {r['devices']} "
                        f"virtual CPU devices ({dev['one']['warm'] / dev['all']['warm']:.2f}x): virtual devices share "
                        "the same cores"
                    )
    _report.save_runs(args.json, __file__, None, runs)


if __name__ == "__main__":
    main()
