"""Benchmark: training an ensemble of MLPs, hdsim's vmapped ensemble against the PyTorch loop a user would write.

Workload (issue 12): ``--seeds`` (32) one-hidden-layer ReLU MLPs of width ``--width`` (256), NTK
parameterisation, on ``--n-train`` (1,300: the whole training pool) scikit-learn digits, squared loss on
one-hot labels, ``--steps`` (1,000) full-batch gradient-descent steps at learning rate 0.5, float32.

* hdsim: ``sim.learning.train.train`` (optax SGD, ``lax.scan`` over steps, ``vmap`` over seeds, one
  compiled program).
* baseline: PyTorch (CPU build), a Python loop over seeds, each a ``torch.nn`` model with the same
  multipliers trained by ``torch.optim.SGD`` for the same steps, from the *same initial parameters*
  (copied from hdsim's), so the final losses must agree within float32 noise (printed).

Both run in one worker process per thread count, with the same thread limits (``_report``: affinity,
BLAS/OpenMP variables, XLA's one-thread flags; ``torch.set_num_threads``). hdsim's first call (tracing and
compilation) is printed on its own line beside the warm time; the ratio is PyTorch / hdsim.

Usage:  python benchmarks/bench_train.py [--seeds 32] [--width 256] [--steps 1000] [--threads 1,all] [--repeat 1]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report  # noqa: E402


def worker(args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from sim.learning import data as dm
    from sim.learning import train as T

    torch.set_num_threads(args.worker_threads)
    d = dm.load("digits", jax.random.key(0), args.n_train, 10, dtype=jnp.float32)
    model = T.Model(64, args.width, 1, 10, "ntk")
    key = jax.random.key(1)

    def hd():
        run = T.train(key, d, model, optimizer="gd", lr=args.lr, steps=args.steps, seeds=args.seeds)
        return jax.block_until_ready(run)

    t_hd, run = _report.timed(hd, args.repeat)
    loss_hd = np.asarray(T.evaluate(model, run.params, d.x_train, d.y_train, d.labels_train)[0])

    x = torch.from_numpy(np.array(d.x_train))  # a writable copy
    y = torch.from_numpy(np.array(d.y_train))
    p0 = [[np.asarray(a) for a in (layer["w"], layer["b"])] for layer in jax.tree.map(lambda a: a, run.params0)]
    m1, m2 = 1 / math.sqrt(64), 1 / math.sqrt(args.width)  # NTK multipliers (sigma_w = 1), biases x 1

    def torch_loop():
        losses = []
        for s in range(args.seeds):
            w1 = torch.tensor(p0[0][0][s], requires_grad=True)
            b1 = torch.tensor(p0[0][1][s], requires_grad=True)
            w2 = torch.tensor(p0[1][0][s], requires_grad=True)
            b2 = torch.tensor(p0[1][1][s], requires_grad=True)
            opt = torch.optim.SGD([w1, b1, w2, b2], lr=args.lr)
            for _ in range(args.steps):
                opt.zero_grad(set_to_none=True)
                h = torch.relu(m1 * (x @ w1) + b1)
                out = m2 * (h @ w2) + b2
                loss = 0.5 * ((out - y) ** 2).sum(dim=1).mean()
                loss.backward()
                opt.step()
            with torch.no_grad():
                h = torch.relu(m1 * (x @ w1) + b1)
                losses.append(float(0.5 * ((m2 * (h @ w2) + b2 - y) ** 2).sum(dim=1).mean()))
        return np.array(losses)

    t_pt, loss_pt = _report.timed(torch_loop, max(args.repeat - 1, 0) if args.repeat > 1 else 0)
    if not math.isfinite(t_pt["warm"]):  # one PyTorch run only (no compilation to separate): first = warm
        t_pt["warm"] = t_pt["first"]
    rel = float(np.max(np.abs(loss_hd - loss_pt) / np.abs(loss_pt)))
    print(
        f"final training loss: hdsim mean {loss_hd.mean():.6g}, PyTorch mean {loss_pt.mean():.6g}; largest relative "
        f"difference over seeds {rel:.2e}"
    )
    print(f"hdsim compile (first call - warm): {t_hd['first'] - t_hd['warm']:.2f} s")
    _report.emit(
        {
            "env": _report.environment(),
            "times": {"hdsim": t_hd, "pytorch": t_pt},
            "max_rel_loss_diff": rel,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--n-train", type=int, default=1300)
    p.add_argument("--lr", type=float, default=0.5)
    _report.add_arguments(p, repeat=1)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    print(
        f"workload: {args.seeds} seeds x width {args.width} MLP (NTK), {args.n_train} digits, {args.steps} full-batch "
        f"GD steps, float32"
    )
    runs = {t: _report.run_worker(_report.worker_argv(__file__), t) for t in _report.thread_counts(args.threads)}
    print(_report.format_environment(next(iter(runs.values()))["env"]))
    print(_report.format_comparison(runs, "hdsim", "pytorch"))
    _report.save_runs(args.json, __file__, None, runs)


if __name__ == "__main__":
    main()
