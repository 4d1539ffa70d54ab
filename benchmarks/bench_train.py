"""Benchmark: training an ensemble of MLPs, hdsim's ensemble training against the PyTorch loop a user would write.

Workload (issue 12): ``--seeds`` (32) one-hidden-layer ReLU MLPs of width ``--width`` (256), NTK
parameterisation, on ``--n-train`` (1,300: the whole training pool) scikit-learn digits, squared loss on
one-hot labels, ``--steps`` (1,000) full-batch gradient-descent steps at learning rate 0.5, float32.

* hdsim: ``sim.learning.train.train`` (optax SGD; each seed's whole training one compiled ``lax.scan``,
  compiled once for all seeds and run for one seed after another).
* baseline: PyTorch (CPU build), a Python loop over seeds, each network in ``torch.nn.Linear``'s layout
  (``F.linear``, weights (out, in): the faster of the two layouts on this machine) with the same
  multipliers, trained by ``torch.optim.SGD`` for the same steps from the *same initial parameters*
  (copied from hdsim's), so the final losses must agree within float32 noise (printed).
  ``--torch-layout matmul``: weights (in, out), ``x @ w`` with the multipliers on the products (the
  baseline this benchmark used before; slower).

Both run in one worker process per thread count, with the same thread limits (``_report``: affinity,
BLAS/OpenMP variables, XLA's one-thread flags; ``torch.set_num_threads``; PyTorch's own thread report
is printed). hdsim's first call (tracing and compilation) is printed on its own line beside the warm
time; the ratio is PyTorch / hdsim, in wall time and in CPU time (cleaner when other jobs share the
cores). The FLOP rate of each side (the five matrix products per step, CPU time) is printed beside the
rate of a 1024^3 float32 product in XLA and in PyTorch on the same threads: how close each side runs to
the machine's matrix-product limit.

Profile (jaxlib 0.10.2, one core of an AMD EPYC (Zen 4), jax.profiler trace of the training loop): the
vmapped ensemble of the previous version spent its step in the first layer's (1300, 64) x (64, 32*256)
product (its 42 MB output streams through memory), two transposes of that output between (n, S*w) and
(S, n, w) layouts, and a batched (256, 1300) x (1300, 10) weight gradient run by a generic kernel at
~3 GFLOP/s: 31 GFLOP/s in all (3.4 ms CPU per seed and step). No float64, no host synchronisation,
no per-step Python, no recompilation per step. Now: 1.3-1.5 ms, 70-80 GFLOP/s, near the 1024^3 product's
rate (76 GFLOP/s against 95 for XLA's 1024^3 product over the 1,000-step run); PyTorch runs the same
products at ~34 GFLOP/s (half its own 1024^3 rate of ~64-86): 3x would need hdsim above XLA's own
1024^3 rate on this core.

Usage:  python benchmarks/bench_train.py [--seeds 32] [--width 256] [--steps 1000] [--threads 1,all] [--repeat 1]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the checkout's sim, not another installed copy (the workers inherit sys.argv, not sys.path: PYTHONPATH)
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, _REPO)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_REPO, os.environ.get("PYTHONPATH")) if p)
import _report  # noqa: E402


def _gemm_limit(jax, jnp, np, torch, size=1024, reps=5):
    """GFLOP/s of a square float32 matrix product (CPU time), XLA and PyTorch: the machine's GEMM limit."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    f = jax.jit(lambda u, v: u @ v)
    ja = jnp.asarray(a)
    ta = torch.from_numpy(a)
    out = {}
    for name, call in (("hdsim", lambda: f(ja, ja).block_until_ready()), ("pytorch", lambda: ta @ ta)):
        call()
        c = time.process_time()
        for _ in range(reps):
            call()
        out[name] = 2 * size**3 * reps / (time.process_time() - c) / 1e9
    return out


_timed_cpu = _report.timed_cpu


def worker(args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sim.learning import data as dm
    from sim.learning import train as T

    torch.set_num_threads(args.worker_threads)
    print(
        "torch threads: "
        + "; ".join(ln.strip() for ln in torch.__config__.parallel_info().splitlines() if "threads" in ln.lower())
    )
    d = dm.load("digits", jax.random.key(0), args.n_train, 10, dtype=jnp.float32)
    model = T.Model(64, args.width, 1, 10, "ntk")
    key = jax.random.key(1)

    def hd():
        run = T.train(key, d, model, optimizer="gd", lr=args.lr, steps=args.steps, seeds=args.seeds)
        return jax.block_until_ready(run)

    t_hd, run = _timed_cpu(hd, args.repeat)
    loss_hd = np.asarray(T.evaluate(model, run.params, d.x_train, d.y_train, d.labels_train)[0])

    x = torch.from_numpy(np.array(d.x_train))  # a writable copy
    y = torch.from_numpy(np.array(d.y_train))
    p0 = [[np.asarray(a) for a in (layer["w"], layer["b"])] for layer in run.params0]
    m1, m2 = 1 / math.sqrt(64), 1 / math.sqrt(args.width)  # NTK multipliers (sigma_w = 1), biases x 1

    def torch_loop():
        # torch.nn.Linear's layout: weights (out, in), F.linear (measured faster than x @ w with (in, out)
        # weights: 3.9 against 5.8 ms per seed and step on one core); the multipliers scale the weights
        losses = []
        for s in range(args.seeds):
            lin = args.torch_layout == "linear"
            w1 = torch.tensor(p0[0][0][s].T.copy() if lin else p0[0][0][s], requires_grad=True)
            b1 = torch.tensor(p0[0][1][s], requires_grad=True)
            w2 = torch.tensor(p0[1][0][s].T.copy() if lin else p0[1][0][s], requires_grad=True)
            b2 = torch.tensor(p0[1][1][s], requires_grad=True)
            opt = torch.optim.SGD([w1, b1, w2, b2], lr=args.lr)
            for _ in range(args.steps):
                opt.zero_grad(set_to_none=True)
                if lin:
                    out = F.linear(torch.relu(F.linear(x, m1 * w1, b1)), m2 * w2, b2)
                else:  # the previous baseline: weights (in, out), multipliers on the products
                    out = m2 * (torch.relu(m1 * (x @ w1) + b1) @ w2) + b2
                loss = 0.5 * ((out - y) ** 2).sum(dim=1).mean()
                loss.backward()
                opt.step()
            with torch.no_grad():
                if lin:
                    out = F.linear(torch.relu(F.linear(x, m1 * w1, b1)), m2 * w2, b2)
                else:
                    out = m2 * (torch.relu(m1 * (x @ w1) + b1) @ w2) + b2
                losses.append(float(0.5 * ((out - y) ** 2).sum(dim=1).mean()))
        return np.array(losses)

    t_pt, loss_pt = _timed_cpu(torch_loop, max(args.repeat - 1, 0) if args.repeat > 1 else 0)
    if not math.isfinite(t_pt["warm"]):  # one PyTorch run only (no compilation to separate): first = warm
        t_pt["warm"] = t_pt["first"]
    rel = float(np.max(np.abs(loss_hd - loss_pt) / np.abs(loss_pt)))
    print(
        f"final training loss: hdsim mean {loss_hd.mean():.6g}, PyTorch mean {loss_pt.mean():.6g}; largest relative "
        f"difference over seeds {rel:.2e}"
    )
    # the first call's extra time is compilation; printed in wall and CPU time (with other jobs on the cores
    # the wall difference is noise, and can even come out negative: then it says so instead of a negative time)
    extra_wall, extra_cpu = t_hd["first"] - t_hd["warm"], t_hd["cpu_first"] - t_hd["cpu_warm"]
    print(
        f"hdsim first call {t_hd['first']:.2f} s, warm {t_hd['warm']:.2f} s wall; first call's extra (compilation): "
        + (f"{extra_wall:.2f} s wall" if extra_wall >= 0 else "not resolved in wall time (load)")
        + f", {extra_cpu:.2f} s CPU"
    )
    n, w = args.n_train, args.width
    flop = args.seeds * args.steps * 2 * n * (2 * 64 * w + 3 * w * 10)  # forward 2 products, backward 3
    limit = _gemm_limit(jax, jnp, np, torch)
    rates = {side: flop / t["cpu_warm"] / 1e9 for side, t in (("hdsim", t_hd), ("pytorch", t_pt))}
    print(
        f"CPU time: hdsim warm {t_hd['cpu_warm']:.3g} s (first {t_hd['cpu_first']:.3g}), PyTorch {t_pt['cpu_warm']:.3g} s; "
        f"speed-up in CPU time warm {_report.format_speedup(t_pt['cpu_warm'] / t_hd['cpu_warm'])}, compile-inclusive "
        f"{_report.format_speedup(t_pt['cpu_first'] / t_hd['cpu_first'])}"
    )
    print(
        f"FLOP rate ({flop / 1e12:.3g} TFLOP of matrix products, CPU time): hdsim {rates['hdsim']:.1f} GFLOP/s, PyTorch "
        f"{rates['pytorch']:.1f}; 1024^3 float32 product on these threads: XLA {limit['hdsim']:.1f}, PyTorch "
        f"{limit['pytorch']:.1f} GFLOP/s per CPU-second"
    )
    _report.emit(
        {
            "env": _report.environment(),
            "times": {"hdsim": t_hd, "pytorch": t_pt},
            "max_rel_loss_diff": rel,
            "gflops_cpu": rates,
            "gemm_limit_gflops_cpu": limit,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_parallel_info": torch.__config__.parallel_info(),
        }
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--n-train", type=int, default=1300)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument(
        "--torch-layout",
        choices=("linear", "matmul"),
        default="linear",
        help="PyTorch weights as torch.nn.Linear's (out, in) with F.linear (default, the faster here), or (in, out) "
        "with x @ w and the multipliers on the products (the previous baseline)",
    )
    _report.add_arguments(p, repeat=1)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(
        f"workload: {args.seeds} seeds x width {args.width} MLP (NTK), {args.n_train} digits, {args.steps} full-batch "
        f"GD steps, float32; PyTorch layout {args.torch_layout}"
    )
    runs = {t: _report.run_worker(_report.worker_argv(__file__), t) for t in _report.thread_counts(args.threads)}
    print(_report.format_environment(next(iter(runs.values()))["env"]))
    print(_report.format_comparison(runs, "hdsim", "pytorch"))
    for t, r in runs.items():
        th, tp = r["times"]["hdsim"], r["times"]["pytorch"]
        print(
            f"{t} thread(s), CPU time: hdsim warm {th['cpu_warm']:.4g} s (first {th['cpu_first']:.4g}), PyTorch "
            f"{tp['cpu_warm']:.4g}: speed-up warm {_report.format_speedup(tp['cpu_warm'] / th['cpu_warm'])}, "
            f"compile-inclusive {_report.format_speedup(tp['cpu_first'] / th['cpu_first'])}"
        )
    _report.save_runs(args.json, __file__, None, runs)


if __name__ == "__main__":
    main()
