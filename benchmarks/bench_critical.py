"""Critical-point search for the GRF landscape: hdsim (vmap over starts, jit) against scipy and a numpy port.

Workload: ``sim.landscapes.GRF()`` at n = 32 (16 n = 512 random features), 512 random starts, float64.
Every side uses the **same stopping rules**, hdsim's defaults:

* converged when |grad| <= 1e-8 sqrt(n) (``rtol * grad_scale``), tested at every evaluated point;
* at most 100 iterations and 1 + 4 x 100 = 401 evaluations of gradient and Hessian per start (hdsim's
  LM tries at most 4 dampings per iteration; an escape step, below, is an iteration of one evaluation,
  so the escapes leave both caps as they were);
* stalled (stopped, not converged) when the smallest |grad| seen has not halved over 10 iterations.
  hdsim's default (``escapes=3``) first takes up to three escapes: a run that would stall moves by the
  undamped Newton step whatever |grad| does and starts a fresh progress window (``sim.critical``'s
  docstring). MINPACK has no such step: the scipy side stops at the first stall, the scipy-minpack
  side has no progress rule at all (it runs to MINPACK's own end or the 401-evaluation cap).

Sides, all given the same start points:

* hdsim: ``sim.critical.find_critical_points`` (Levenberg-Marquardt on grad = 0, Cholesky-solved
  damped steps, one gradient+Hessian evaluation per damping trial), 128 starts at a time on a queue
  that gives a finished run's slot to the next start (``--slots``). Its time includes the Hessian
  index of every converged point and the merging of duplicates (the baselines do not do these).
* scipy: ``scipy.optimize.root(method="lm")`` per start (MINPACK's LM on the same residual, numpy
  gradient and Hessian). The rules above are added by wrapping the residual: it raises when |grad| <=
  gtol or the evaluation cap is reached; the Jacobian callback (called once per MINPACK iteration)
  applies the iteration cap and the progress rule. MINPACK keeps its own tests (xtol = ftol = 1e-15,
  gtol = 0: they stop a run only when no progress is possible).
* scipy-minpack: the same with MINPACK's own termination only, beside the convergence test and the
  401-evaluation cap (no iteration cap, no progress rule): what a user who trusts MINPACK writes.
* numpy port: hdsim's iteration, line by line, one start at a time, escapes included: the same
  algorithm without JAX. It checks that hdsim's batched run gives the per-start results (the share of
  starts with the same converged flag is printed; the run fails below 95%) and counts hdsim's
  evaluations. Flags differ only where rounding decides the accept test: on 512 starts 3-4 runs
  (99.2-99.4%, also between hdsim's own 1- and 2-thread runs) reach a trial whose |grad| equals the
  current one to 12-13 digits (a heavily damped, tiny step near a stall), and XLA's and OpenBLAS's
  roundings take different sides; the escapes keep runs longer in such places than plain LM did.

Speed is quoted per run (the ratio), per gradient+Hessian evaluation and per critical point found
(converged start, and distinct point), since the methods converge from different starts.

Each thread count runs in a fresh worker process (``benchmarks/_report.py``: CPU affinity, BLAS and
XLA thread settings fixed before numpy and JAX load), hdsim's first call there includes compilation.

Run: ``python benchmarks/bench_critical.py`` (``--quick``: 64 starts; ``--threads 1``; ``--repeat 3``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import _report

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- numpy field and solvers
# (numpy is imported by the worker only, after the parent fixed the thread environment)


class NumpyGRF:
    """The same field in numpy: value, gradient, Hessian."""

    def __init__(self, params, np):
        self.np = np
        self.f = np.asarray(params.freq)
        self.a = np.asarray(params.a)
        self.b = np.asarray(params.b)
        m, n = self.f.shape
        self.amp = np.sqrt(n / m)
        self.evals = 0

    def energy(self, x):
        t = self.f @ x
        return self.amp * self.np.sum(self.a * self.np.cos(t) + self.b * self.np.sin(t))

    def grad(self, x):
        t = self.f @ x
        return self.f.T @ (self.amp * (self.b * self.np.cos(t) - self.a * self.np.sin(t)))

    def grad_hess(self, x):
        self.evals += 1
        t = self.f @ x
        c, s = self.np.cos(t), self.np.sin(t)
        g = self.f.T @ (self.amp * (self.b * c - self.a * s))
        h = -(self.f.T * (self.amp * (self.a * c + self.b * s))) @ self.f
        return g, h


class _Stop(Exception):
    pass


def scipy_search(field, x0, gtol, *, max_steps, patience, max_evals, hdsim_rules=True):
    """``scipy.optimize.root(method="lm")`` per start with the stopping rules in the module docstring.

    Returns (points, converged, evaluations, iterations); a run's point is the evaluated point with the
    smallest |grad| (MINPACK's iterate when it ends on its own).
    """
    import numpy as np
    import scipy.optimize

    xs, conv, evals, iters = [], [], 0, 0
    for x_start in x0:
        run = {
            "evals": 0,
            "iters": 0,
            "best": np.inf,
            "ref": np.inf,
            "x": x_start,
            "ok": False,
            "at": None,
            "g": None,
            "h": None,
            "jac_at": None,
        }

        def fun(x, run=run):
            if run["at"] is not None and np.array_equal(run["at"], x):
                return run["g"]  # scipy asks twice for the start (a shape check): no second evaluation
            g, h = field.grad_hess(x)
            run["evals"] += 1
            run["at"], run["g"], run["h"] = x.copy(), g, h
            gn = np.linalg.norm(g)
            if gn < run["best"]:
                run["best"], run["x"] = gn, x.copy()
            if gn <= gtol:
                run["ok"] = True
                raise _Stop
            if run["evals"] >= max_evals:
                raise _Stop
            return g

        def jac(x, run=run):
            # MINPACK asks for the Jacobian once per iteration, at the point it moved to (and once
            # more at the start, for a shape check: not an iteration)
            if run["jac_at"] is None or not np.array_equal(run["jac_at"], x):
                run["jac_at"] = x.copy()
                done = run["iters"]  # iterations completed before this one
                if hdsim_rules:
                    if done >= max_steps:
                        raise _Stop
                    if done == 0:
                        run["ref"] = run["best"]
                    elif done % patience == 0:
                        if not run["best"] <= 0.5 * run["ref"]:
                            raise _Stop
                        run["ref"] = run["best"]
                run["iters"] += 1
            fun(x)
            return run["h"]

        try:
            # maxiter (MINPACK's maxfev) above the cap: the wrapper's own count of evaluations rules
            scipy.optimize.root(
                fun,
                x_start,
                jac=jac,
                method="lm",
                options={"xtol": 1e-15, "ftol": 1e-15, "gtol": 0.0, "maxiter": 2 * max_evals},
            )
        except _Stop:
            pass
        xs.append(run["x"])
        conv.append(run["ok"])
        evals += run["evals"]
        iters += run["iters"]
    return np.array(xs), np.array(conv), evals, iters


def port_search(field, x0, gtol, radius, *, max_steps, patience, escapes, max_evals):
    """hdsim's "lm" iteration (``sim.critical``, method="lm", ``escapes`` escape steps) for one start at a
    time, in numpy.

    An iteration tries the dampings ``mu 10^k`` (k < 4) and moves to the first step that lowers |grad|
    (``mu`` becomes half the one used, at least 1e-15; after four failures ``mu`` grows by 10^4). After
    it: converged when |grad| <= gtol; every ``patience`` iterations since the last check or escape the
    smallest |grad| seen must have halved. A run that would stall (no halving, or ``mu`` > 1e12) takes,
    while fewer than ``escapes`` were taken, an escape instead: one iteration of one evaluation, the
    undamped step (``mu`` = 1e-10, capped at ``radius``), moved to whatever |grad| does (if finite),
    then ``mu`` = 1e-3 and a fresh progress window from there. Each iteration uses at most 4
    evaluations (an escape 1), so a run uses at most ``max_evals`` = 1 + 4 ``max_steps``: checked.
    """
    import numpy as np

    xs, conv = [], []
    n = x0.shape[1]

    def step(x, g, h, m):
        s2 = np.sum(h * h)
        c = np.linalg.cholesky(h @ h + m * s2 * np.eye(n))
        v = -np.linalg.solve(c.T, np.linalg.solve(c, h @ g))
        return x + v * min(1.0, radius / max(np.linalg.norm(v), 1e-300))

    for x in x0:
        evals0 = field.evals
        g, h = field.grad_hess(x)
        gn = np.linalg.norm(g)
        mu, best, ref, ref_steps, steps, used, escape = 1e-3, gn, gn, 0, 0, 0, False
        ok = gn <= gtol
        while not ok and steps < max_steps:
            steps += 1
            if escape:  # the undamped step, taken whatever |grad| does; then a fresh start of LM from there
                y = step(x, g, h, 1e-10)
                gy, hy = field.grad_hess(y)
                if np.isfinite(np.linalg.norm(gy)):
                    x, g, h, gn = y, gy, hy, np.linalg.norm(gy)
                mu, best, escape = 1e-3, gn, False
                ref, ref_steps = best, steps
                ok = gn <= gtol
                continue
            for k in range(4):
                m = mu * 10.0**k
                y = step(x, g, h, m)
                gy, hy = field.grad_hess(y)
                if np.linalg.norm(gy) < gn:
                    x, g, h, gn, mu = y, gy, hy, np.linalg.norm(gy), max(m / 2, 1e-15)
                    break
            else:
                mu *= 1e4
            best = min(best, gn)
            ok = gn <= gtol
            checkpoint = steps - ref_steps >= patience
            slow = checkpoint and not best <= 0.5 * ref
            if checkpoint:
                ref, ref_steps = best, steps
            if not ok and (slow or mu > 1e12):
                if used == escapes:
                    break  # stalled
                used, escape = used + 1, True
        assert field.evals - evals0 <= max_evals, (field.evals - evals0, max_evals)
        xs.append(x)
        conv.append(ok)
    return np.array(xs), np.array(conv)


def unique_points(x, conv, tol):
    import numpy as np

    keep = []
    for i in np.flatnonzero(conv):
        if all(np.linalg.norm(x[i] - x[j]) > tol for j in keep):
            keep.append(i)
    return np.array(keep, dtype=int)


# --------------------------------------------------------------------------- worker


def worker(args):
    sys.path.insert(0, str(REPO))
    import jax

    jax.config.update("jax_enable_x64", True)  # this script's own process: the GRF runs in float64
    import numpy as np
    import scipy.optimize  # loaded before the BLAS report
    import scipy.stats

    from sim import critical, landscapes
    from sim.theory.landscapes import grf_index_fraction

    max_steps, patience, escapes = 100, 10, critical.DEFAULT_ESCAPES
    max_evals = 1 + 4 * max_steps
    n, starts = args.dim, args.starts or (64 if args.quick else 512)
    land = landscapes.GRF()
    params = land.sample(jax.random.key(1), n)
    key = jax.random.key(0)
    field = NumpyGRF(params, np)
    x0 = np.asarray(critical.starts(key, land, params, starts))
    gtol = 1e-8 * float(land.grad_scale(params))
    tol = 1e-6 * land.distance_scale(params)
    print(
        f"GRF n={n}, features={params.freq.shape[0]}, starts={starts}, float64, gtol={gtol:.2e}, "
        f"at most {max_steps} iterations / {max_evals} evaluations per start, progress rule over {patience}; "
        f"hdsim and the port take up to {escapes} escape steps before a run stalls"
    )

    def hdsim():
        return jax.block_until_ready(
            critical.find_critical_points(
                key, land, params, starts, slots=args.slots, max_steps=max_steps, patience=patience, escapes=escapes
            )
        )

    times, info = {}, {}
    times["hdsim"], cp = _report.timed(hdsim, args.repeat)
    cp = jax.tree.map(np.asarray, cp)
    info["hdsim"] = {"converged": int(cp.converged.sum()), "unique": int(cp.unique.sum())}

    def run_scipy(rules):
        field.evals = 0
        out = scipy_search(
            field, x0, gtol, max_steps=max_steps, patience=patience, max_evals=max_evals, hdsim_rules=rules
        )
        assert out[2] == field.evals  # every gradient+Hessian evaluation is counted
        return out

    times["scipy"], (xs, cs, ev_sp, it_sp) = _report.timed(lambda: run_scipy(True), args.repeat)
    times["scipy-minpack"], (xm, cm, ev_mp, it_mp) = _report.timed(lambda: run_scipy(False), args.repeat)

    def run_port():
        field.evals = 0
        return port_search(
            field,
            x0,
            gtol,
            0.5 * land.distance_scale(params),
            max_steps=max_steps,
            patience=patience,
            escapes=escapes,
            max_evals=max_evals,
        ), field.evals

    times["port"], ((xp, cpo), ev_port) = _report.timed(run_port, min(args.repeat, 1))

    # agreement: converged points are critical points (numpy recomputation); same index-energy law
    for name, x, c in (("hdsim", cp.x, cp.converged), ("scipy", xs, cs), ("scipy-minpack", xm, cm), ("port", xp, cpo)):
        gmax = max((np.linalg.norm(field.grad(x[i])) for i in np.flatnonzero(c)), default=0.0)
        assert gmax <= 1.0001 * gtol, (name, gmax)
    same = float(np.mean(cpo == cp.converged))
    both = cpo & cp.converged
    close = bool(np.all(np.linalg.norm(xp[both] - cp.x[both], axis=1) <= tol))
    print(f"port against hdsim: same converged flag on {same:.1%} of starts, same points where both converged: {close}")
    assert same >= 0.95 and close, "the numpy port no longer follows hdsim's iteration"
    info["port"] = {"converged": int(cpo.sum()), "unique": len(unique_points(xp, cpo, tol)), "evals": ev_port}
    # hdsim's useful evaluations are the port's (same iteration, same starts; checked above, up to the
    # few runs where rounding decides an accept test)
    info["hdsim"]["evals"] = ev_port
    for name, x, c, ev, it in (("scipy", xs, cs, ev_sp, it_sp), ("scipy-minpack", xm, cm, ev_mp, it_mp)):
        u = unique_points(x, c, tol)
        info[name] = {"converged": int(c.sum()), "unique": len(u), "evals": ev, "iterations": it}
        e = np.array([field.energy(x[i]) / n for i in u])
        fr = np.array([np.sum(np.linalg.eigvalsh(field.grad_hess(x[i])[1]) < 0) for i in u]) / n
        both = sum(any(np.linalg.norm(x[i] - cp.x[j]) <= tol for j in np.flatnonzero(cp.unique)) for i in u)
        print(
            f"{name}: {len(u)} distinct critical points ({both} also found by hdsim), minima {np.mean(fr == 0):.3f},"
            f" mean index fraction {fr.mean():.3f} (theory F(eps) at the same energies "
            f"{grf_index_fraction(e).mean():.3f}), Spearman(index, energy) {scipy.stats.spearmanr(fr, e)[0]:.3f}"
        )
        assert abs(fr.mean() - grf_index_fraction(e).mean()) < 0.05
    e_hd = cp.energy[cp.unique]
    fr_hd = cp.index[cp.unique] / n
    print(
        f"hdsim: {cp.unique.sum()} distinct critical points, minima {np.mean(fr_hd == 0):.3f}, mean index fraction "
        f"{fr_hd.mean():.3f} (theory {grf_index_fraction(e_hd).mean():.3f})"
    )
    for name, d in info.items():
        print(
            f"{name:>13}: first {times[name]['first']:7.3f} s, warm {times[name]['warm']:7.3f} s; converged "
            f"{d['converged']}/{starts}, distinct {d['unique']}, gradient+Hessian evaluations {d['evals']} "
            f"({d['evals'] / starts:.1f} per start)"
        )
    _report.emit({"env": _report.environment(), "times": times, "info": info, "starts": starts})


# --------------------------------------------------------------------------- parent


def per_unit(runs, sides, hdsim="hdsim"):
    """Warm time per evaluation and per critical point found, and the ratios to hdsim's."""
    lines = []
    for threads, r in runs.items():
        for unit, key in (("evaluation", "evals"), ("converged start", "converged"), ("distinct point", "unique")):
            hd = r["times"][hdsim]["warm"] / r["info"][hdsim][key]
            parts = [f"{hdsim} {hd * 1e3:.3f} ms"]
            for side in sides:
                b = r["times"][side]["warm"] / r["info"][side][key]
                parts.append(f"{side} {b * 1e3:.3f} ms ({_report.format_speedup(_report.speedup(b, hd))})")
            lines.append(f"{threads} thread(s), warm time per {unit}: " + ", ".join(parts))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 starts instead of 512")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--starts", type=int, default=None)
    ap.add_argument("--slots", type=int, default=128, help="concurrent runs of hdsim's queue")
    _report.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    print(f"python {' '.join(sys.argv)}\n{_report.format_load()} (at the start)")
    runs = {}
    for threads in _report.thread_counts(args.threads):
        print(f"--- worker on {threads} thread(s): fresh process, hdsim's first call compiles")
        runs[threads] = _report.run_worker(_report.worker_argv(__file__, argv), threads)
    print(_report.format_environment(runs[max(runs)]["env"]))
    for side in ("scipy", "scipy-minpack", "port"):
        print(f"--- hdsim against {side} (speed-up = {side} time / hdsim time)")
        print(_report.format_comparison(runs, "hdsim", side))
    print(per_unit(runs, ("scipy", "scipy-minpack", "port")))
    print(f"{_report.format_load()} (at the end)")
    _report.save_runs(args.json, f"benchmarks/{Path(__file__).name}", argv, runs)
    return runs


if __name__ == "__main__":
    main()
