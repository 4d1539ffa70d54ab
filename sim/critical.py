"""Critical points of random losses: a Newton-type finder, a descent minimiser, the Hessian index.

All functions take a ``sim.landscapes.Landscape`` (static), its random instance ``params`` and work in
the landscape's dtype (use float64: Frye et al. show float32 Newton-type searches stop in
"gradient-flat" regions). Starts are ``landscape.start(fold_in(key, s), params)`` for s = 0..S-1, so
start s is the same point whatever S.

**Finder** (``find_critical_points``, ``search``; single-start pieces ``newton_init``/
``build_newton_kernel``/``newton_solve``): Levenberg-Marquardt on the residual ``g(x) = grad L(x)``
(Riemannian on the sphere), whose Jacobian is the Hessian H. A step solves the damped normal equations
``(H^2 + mu s^2 I) v = -H g`` (``s^2 = |H|_F^2``, at least the largest squared eigenvalue) by a
Cholesky factorisation and is capped at ``max_step * distance_scale`` in length. Method "lm" (the
default) tries ``mu, 10 mu, 100 mu, 1000 mu`` in turn, one evaluation of ``landscape.grad_hessian``
each, and moves to the first that lowers |g|; then ``mu`` becomes half the one used (at least 1e-15);
when all four fail ``mu`` grows by 10^4. One *iteration* (``steps``) is that sequence. As ``mu -> 0``
the step is Newton's, which converges quadratically to nondegenerate saddles as well as minima.
Halving rather than dividing by 10 after a success (Marquardt's choice, and hdsim's before) wastes
fewer evaluations on steps that fail. Measured with the escape steps below (instance
``sample(fold_in(key(0), 0), n)``, starts from ``fold_in(key(0), 1)``; an *evaluation* is one call of
``grad_hessian``): on the GRF at n = 32 with 512 starts it needs 22,518 evaluations instead of 39,060
and converges from 378 starts instead of 360 (without escapes: 12,053 against 19,904 evaluations, 285
against 258 starts); on the teacher-student MLP (max_steps 300, patience 50, 256 starts) it finds more
distinct critical points, 68, 79, 166 at P = 13, 17, 33 against 46, 73, 132, with 27,516, 29,931,
41,847 evaluations against 39,473, 47,088, 74,492.
Method "newton" keeps ``mu = 1e-10`` and moves to every proposal, also uphill in |g|: on the GRF at
n = 32 it converges from about as many starts (292), but it wanders as n grows (64 starts: 9 against
38 at n = 64, none against 32 at n = 128), so it is an option only.
A run **converges** when ``|g| <= rtol * grad_scale`` (``landscape.grad_scale``: the typical gradient
norm at a random point; rtol = 1e-8 by default); it **stalls** when the smallest |g| seen has not
halved over the last ``patience`` iterations (default 10), when ``mu`` exceeds 1e12 (a local minimum of
|g|^2 that is not a critical point: the "gradient-flat" points of Frye et al.) or, for "newton", when
|g| becomes non-finite; else it stops after ``max_steps`` iterations. Non-converged runs keep
``converged = False``: callers must exclude them from statistics, and report them.

**Escapes** ("lm"). Why runs stalled: with 128 starts at n = 32, 53% of GRF runs and 56% of p = 3
p-spin runs converged (64 GRF starts at n = 64: 53%); all others stopped on the progress rule after
~25 iterations with |g| ~ 0.5% of ``grad_scale``. Without the progress rule only 2% more converged,
the rest ended with ``mu > 1e12`` after ~42 iterations; no run reached the cap of 100, and damping
relative to |H|_F^2 / n instead of |H|_F^2 did not help (50%). So neither the iteration cap, the
stall rule, the damping schedule nor the sphere is the cause: a monotone method (LM accepts only
steps that lower |g|) ends in a non-critical local minimum of |g|^2, where H is nearly singular along
g. A run that would stall therefore takes an *escape*: the undamped Newton step (capped at
``max_step``, so a step of about half a correlation length along the near-null direction), accepted
whatever |g| does, then LM again with ``mu`` reset and a fresh progress window; ``escapes`` (default
3) such steps per run, after which it stalls as before. Measured (same starts, ``max_steps`` 100):
GRF n = 32: 53% -> 70% converged; n = 64: 53% -> 73%; p-spin p = 3, n = 32: 56% -> 74% (6 escapes:
76-77%, with 23% then stopped by the cap); not used to choose them: GRF n = 48: 52% -> 73%, p-spin
p = 4, n = 20: 64% -> 80% (pinned in tests/test_critical.py). The previous method measured 58% on
512 GRF starts at n = 32 (scipy's MINPACK LM on the same residual: 56%). The price: stalled runs now
take ~75 iterations instead of ~25; on the GRF at n = 32 (512 starts, as above) 22,518 evaluations
instead of 12,053 (1.9x), 60 instead of 42 per converged start (1.4x). ``escapes=0`` is the previous
method exactly.
Converged points are critical points by the same test (|g| <= gtol at an evaluated point).

**Sub-networks with silent units** (method "subnet", MLPs only: ``subnet_solve``). On an MLP trained
on real data (digits) the Newton-type finders converge from few starts: "lm" 3 of 24 (width 2, 32
images) and 6 of 12 (width 4), "newton" 1 of 24, with the converged points in a narrow band of losses,
mostly minima; the others stall at gradient-flat points (|g| 3e-5 to 1e-2 with one Hessian eigenvalue
near 0: non-critical minima of |g|^2, Frye et al.). Following the eigenvectors towards a chosen index
(saddle-free Newton with the k lowest modes ascending, a trust region on the accuracy of the gradient's
linear model) converged from none of 9 starts (k = 1, 4, 12; width 2, 32 images, 300 iterations).
What converges is a descent method with a merit function: start s keeps its first ``a = s mod (n + 1)``
hidden units *active* and sets every weight of the others to 0 (*silent*), then minimises the loss over
the active parameters (saddle-free trust-region Newton, see ``subnet_solve``). A silent unit's gradient
is exactly 0, so the minimum of the narrower network is a critical point of the width-n one (Fukumizu &
Amari 2000); its Hessian is block diagonal across silent units, each adding one descending direction per
singular value of the input-residual correlation ``X~^T R / m`` above the weight decay
(``MLP.unit_mask``). These are the saddles that gradient descent from a small initialisation passes
(saddle-to-saddle dynamics): the fewer active units, the higher the loss and the index. Measured (width
4, 64 images, seed 0, 10 starts): 10 of 10 converged in 5-52 iterations, losses 0.447 (all silent,
index 36 of P = 310), 0.375 (27), 0.315 (18), 0.262 (9), 0.212 (minima, index 0); width 6, 128
images (``hdsim critical --landscape mlp --data digits --dims 6 --num-samples 128 --starts 28``): 28 of
28, index 9 per silent unit (up to 54 of 460) at losses 0.165-0.446, minima at 0.123-0.127. The indices are
those of the full Hessian, not assumed (tests/test_learning_critical.py checks them against autodiff,
numpy's eigvalsh and the closed form above); the family is one kind of critical point, not a sample of
all of them.

**Index** (``hessian_index``): eigenvalues of the exact Hessian on the tangent space (n - 1 directions
on the sphere: the normal direction is removed exactly, not by tolerance). An eigenvalue ``l`` is a
zero mode when ``|l| <= zero_tol * max |l|`` (default 1e-6: far above the O(|g|) perturbation of a
true zero mode at a converged point, far below the spacing of a random spectrum of n <= 10^3
eigenvalues); the index counts ``l < -zero_tol * max |l|``. The p-spin glass has no continuous
symmetry (zero modes are not expected there); MLP critical points can have flat directions.

**Duplicates** (``merge_duplicates``): converged points closer than ``dedup_tol * distance_scale``
(default 1e-6 times the correlation length / sqrt(n) on the sphere) are one point; each point
points to the first start that found it. On the sphere x and -x are different points.

**Minimiser** (``minimise``): Riemannian gradient descent with an Armijo step (the step grows by 1.25
after an accepted step and halves after a rejected one) until ``|g| <= descent_rtol * grad_scale`` or
``descent_steps``, then the Newton finder polishes from the end point to the nearest critical point.
The returned index says whether it is a minimum (a descent end point can sit near a saddle).

References: Nocedal & Wright, Numerical Optimization, 2nd ed., ch. 11 (Newton's method for nonlinear
equations); Levenberg 1944, Marquardt 1963; Dauphin et al., NIPS 2014; Frye, Yang, Sheikh, Hamilton,
Neural Computation 33, 1469 (2021) (arXiv 1901.10603); Absil, Mahony, Sepulchre 2008 (Riemannian Newton).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sim._util import as_key
from sim.landscapes import Landscape
from sim.vectors import fold_in

__all__ = [
    "NewtonState",
    "NewtonInfo",
    "newton_init",
    "newton_step",
    "build_newton_kernel",
    "newton_solve",
    "hessian_index",
    "merge_duplicates",
    "CriticalPoints",
    "search",
    "Runs",
    "DEFAULT_SLOTS",
    "METHODS",
    "FINDERS",
    "SubnetState",
    "subnet_solve",
    "subnet_active",
    "find_critical_points",
    "minimise",
    "compile_search",
    "starts",
]

_REG = 1e-10  # "newton": the damping, a Tikhonov regularisation relative to |H|_F^2
_CANDIDATES = 4  # "lm": damping values tried per iteration, mu * 10^k for k < _CANDIDATES
_MU_INIT = {"newton": _REG, "lm": 1e-3}  # initial damping
_MU_MIN = 1e-15  # "lm": smallest damping
_MU_SUCCESS = 0.5  # "lm": damping after a successful trial, relative to the one used
_MU_STALL = 1e12  # "lm": a run whose damping exceeds this sits at a non-critical minimum of |grad|^2
METHODS = ("lm", "newton")
#: step rules of ``find_critical_points``: the Newton-type finders and, for MLPs, "subnet" (``subnet_solve``)
FINDERS = METHODS + ("subnet",)
#: "lm": escape steps per run (undamped steps out of a non-critical minimum of |grad|^2, see the module docstring)
DEFAULT_ESCAPES = 3
_PROGRESS = 0.5  # every `patience` iterations the smallest |grad| seen must fall by this factor, else stalled
_ESCAPE = _CANDIDATES  # "lm": ``trial`` value of an escape evaluation (the undamped step, taken whatever |grad|)


class NewtonState(NamedTuple):
    """What persists between iterations of one run.

    Attributes:
        x: current point, shape (dim,).
        grad: (Riemannian) gradient at x, shape (dim,).
        hess: (Riemannian) Hessian at x, shape (dim, dim).
        grad_norm: |grad|, scalar.
        damping: ``mu`` of the step ``-(H^2 + mu s^2 I)^-1 H g`` (``s^2 = |H|_F^2``): ``1e-10`` for
            "newton", adapted for "lm", scalar.
        trial: "lm": which damping candidate ``mu 10^trial`` the next evaluation tries, int32.
        best_norm: smallest |grad| seen so far, scalar.
        ref_norm: ``best_norm`` at the last progress check (every ``patience`` iterations), scalar.
        ref_steps: ``steps`` at the last progress check or escape, int32.
        escapes: "lm": escape steps taken (see the module docstring), int32.
        steps: iterations done, int32.
        converged: |grad| <= gtol reached, bool.
        stalled: the smallest |grad| seen fell by less than the factor 1/2 over the last ``patience``
            iterations, the damping exceeded 1e12 ("lm") or |grad| became non-finite ("newton"), bool.
    """

    x: jax.Array
    grad: jax.Array
    hess: jax.Array
    grad_norm: jax.Array
    damping: jax.Array
    trial: jax.Array
    best_norm: jax.Array
    ref_norm: jax.Array
    ref_steps: jax.Array
    escapes: jax.Array
    steps: jax.Array
    converged: jax.Array
    stalled: jax.Array


class NewtonInfo(NamedTuple):
    """Diagnostics of one kernel call: length of the step taken (0 when frozen or rejected), |grad| after."""

    step_norm: jax.Array
    grad_norm: jax.Array


def newton_init(landscape: Landscape, params, x, gtol, *, method: str = "lm") -> NewtonState:
    """State at the start point ``x`` (shape (dim,)); ``gtol`` is the absolute |grad| tolerance."""
    g, h = landscape.grad_hessian(params, x)
    return _fresh(x, g, h, gtol, method)


def _fresh(x, g, h, gtol, method) -> NewtonState:
    gn = jnp.linalg.norm(g, axis=-1)
    mu = jnp.full(gn.shape, _MU_INIT[method], x.dtype)
    zero = jnp.zeros(gn.shape, jnp.int32)
    return NewtonState(x, g, h, gn, mu, zero, gn, gn, zero, zero, zero, gn <= gtol, ~jnp.isfinite(gn))


def newton_step(landscape: Landscape, params, x, grad, hess, damping=_REG, *, max_step: float = 0.5) -> jax.Array:
    """The finder's step from ``x``: ``-(H^2 + mu s^2 I)^-1 H g``, capped at ``max_step * distance_scale``.

    Args:
        landscape, params: the loss.
        x, grad, hess: point (dim,), gradient (dim,) and Hessian (dim, dim) there.
        damping: ``mu``, relative to ``s^2 = |H|_F^2`` (at least the largest squared eigenvalue).
        max_step: cap on the step length in units of ``landscape.distance_scale(params)``.

    Returns:
        The step, shape (dim,) (apply it with ``landscape.retract``).
    """
    dt = x.dtype
    dim = x.shape[0]
    s2 = jnp.sum(hess * hess)
    a = hess @ hess + (damping * s2 + jnp.finfo(dt).tiny) * jnp.eye(dim, dtype=dt)
    v = -jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(a), True), hess @ grad)
    radius = jnp.asarray(max_step * landscape.distance_scale(params), dt)
    return v * jnp.minimum(1.0, radius / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(dt).tiny))


def _propose(landscape, params, state: NewtonState, max_step: float, method: str):
    """The point the run evaluates next: the step with damping ``mu`` ("newton") or ``mu 10^trial`` ("lm")."""
    if method == "newton":
        mu = state.damping
    else:  # an escape evaluation takes the undamped (Newton) step
        mu = jnp.where(
            state.trial == _ESCAPE,
            _REG,
            state.damping * 10.0 ** jnp.minimum(state.trial, _CANDIDATES - 1).astype(state.x.dtype),
        )
    return landscape.retract(
        state.x, newton_step(landscape, params, state.x, state.grad, state.hess, mu, max_step=max_step)
    )


def _update(state: NewtonState, y, gy, hy, gtol, patience: int, method: str, escapes: int = 0) -> NewtonState:
    """The state after evaluating the proposal ``y`` (gradient ``gy``, Hessian ``hy``); frozen runs unchanged.

    "newton" moves to every (finite) proposal. "lm" moves only when |grad| falls: then ``mu`` becomes
    ``mu 10^trial / 2``; else the next evaluation tries ten times the damping, and after
    ``_CANDIDATES`` failures ``mu`` grows by ``10^_CANDIDATES``. An iteration (``steps``) ends with a
    move or with the last failed candidate; convergence and progress are checked there. A run that
    would stall ("lm", fewer than ``escapes`` escapes so far) instead evaluates the undamped step next
    (``trial = _ESCAPE``) and moves there whatever |grad| does, with ``mu`` reset and a fresh progress
    window.
    """
    frozen = state.converged | state.stalled
    gny = jnp.linalg.norm(gy)
    finite = jnp.isfinite(gny)
    escaping = jnp.zeros_like(frozen)
    if method == "newton":
        take = ~frozen & finite
        mu, trial, ends = state.damping, state.trial, ~frozen
    else:
        escaping = ~frozen & (state.trial == _ESCAPE)
        take = ~frozen & finite & (escaping | (gny < state.grad_norm))
        last = state.trial >= _CANDIDATES - 1
        ends = ~frozen & (take | last)
        tried = state.damping * 10.0 ** jnp.minimum(state.trial, _CANDIDATES - 1).astype(state.damping.dtype)
        mu = jnp.where(
            take,
            jnp.maximum(tried * _MU_SUCCESS, _MU_MIN),
            jnp.where(ends, state.damping * 10.0**_CANDIDATES, state.damping),
        )
        mu = jnp.where(escaping, _MU_INIT[method], mu)
        mu = jnp.where(frozen, state.damping, mu)
        trial = jnp.where(ends | frozen, 0, state.trial + 1).astype(jnp.int32)
    gny = jnp.where(take, gny, state.grad_norm)

    def pick(new, old):
        return jnp.where(take, new, old)

    steps = state.steps + ends.astype(jnp.int32)
    best = jnp.where(escaping, gny, jnp.minimum(state.best_norm, gny))
    checkpoint = ends & ~escaping & (steps - state.ref_steps >= patience)
    slow = checkpoint & ~(best <= _PROGRESS * state.ref_norm)
    converged = state.converged | (take & (gny <= gtol))
    blown = ~frozen & ~finite & (method == "newton")  # "lm" only rejects non-finite proposals
    stuck = ends & ~converged & (slow | (mu > _MU_STALL))
    escape = stuck & (state.escapes < escapes) if method == "lm" else jnp.zeros_like(stuck)
    reset = checkpoint | escaping
    return NewtonState(
        pick(y, state.x),
        pick(gy, state.grad),
        pick(hy, state.hess),
        gny,
        jnp.where(escape, _MU_INIT[method], mu),
        jnp.where(escape, _ESCAPE, trial).astype(jnp.int32),
        best,
        jnp.where(reset, best, state.ref_norm),
        jnp.where(reset, steps, state.ref_steps),
        state.escapes + escape.astype(jnp.int32),
        steps,
        converged,
        state.stalled | blown | (stuck & ~escape),
    )


def build_newton_kernel(
    landscape: Landscape,
    *,
    max_step: float = 0.5,
    patience: int = 10,
    method: str = "lm",
    escapes: int = DEFAULT_ESCAPES,
):
    """Return ``kernel(params, state, gtol) -> (state, info)``: one evaluation of the finder (for "lm"
    one damping trial; ``state.steps`` counts iterations, see the module docstring).

    Pure, not jitted: the caller jits, ``vmap``s over starts and loops over iterations. A state that
    has converged or stalled is returned unchanged.
    """

    def kernel(params, state: NewtonState, gtol):
        y = _propose(landscape, params, state, max_step, method)
        gy, hy = landscape.grad_hessian(params, y)
        new = _update(state, y, gy, hy, gtol, patience, method, escapes)
        return new, NewtonInfo(jnp.linalg.norm(new.x - state.x), new.grad_norm)

    return kernel


def newton_solve(
    landscape: Landscape,
    params,
    x0,
    gtol,
    *,
    max_steps: int = 100,
    max_step: float = 0.5,
    patience: int = 10,
    method: str = "lm",
    escapes: int = DEFAULT_ESCAPES,
):
    """Run the finder from one start ``x0`` until converged, stalled or ``max_steps``: -> NewtonState.

    Pure (a ``lax.while_loop``); ``vmap`` it over starts. Under ``vmap`` the loop runs until every
    run is done, finished runs stay frozen.
    """
    kernel = build_newton_kernel(landscape, max_step=max_step, patience=patience, method=method, escapes=escapes)
    state = newton_init(landscape, params, x0, gtol, method=method)

    def cond(s):
        return ~s.converged & ~s.stalled & (s.steps < max_steps)

    return jax.lax.while_loop(cond, lambda s: kernel(params, s, gtol)[0], state)


def hessian_index(landscape: Landscape, params, x, *, zero_tol: float = 1e-6):
    """Index of the point ``x`` from the exact Hessian on the tangent space.

    Args:
        landscape, params: the loss.
        x: point, shape (dim,).
        zero_tol: eigenvalues with ``|l| <= zero_tol * max|l|`` are zero modes, not counted.

    Returns:
        ``(index, n_zero, eigenvalues)``: int32 scalars and the ascending eigenvalues, shape (tdim,).
    """
    ev = jnp.linalg.eigvalsh(landscape.tangent_hessian(params, x))
    return (*_count(ev, zero_tol), ev)


def _count(ev, zero_tol):
    cut = zero_tol * jnp.max(jnp.abs(ev))
    return jnp.sum(ev < -cut).astype(jnp.int32), jnp.sum(jnp.abs(ev) <= cut).astype(jnp.int32)


def merge_duplicates(x, valid, tol):
    """Merge points closer than ``tol``.

    Args:
        x: points, shape (S, dim).
        valid: bool (S,): only valid (converged) points take part.
        tol: distance threshold (absolute).

    Returns:
        ``(unique, duplicate_of)``: bool (S,) true for the first valid start that found each point;
        int32 (S,) the start index of that first finder (itself when unique, -1 when not valid).
    """
    s = x.shape[0]
    idx = jnp.arange(s, dtype=jnp.int32)

    def first_match(xi):
        d = jnp.sqrt(jnp.sum((x - xi[None, :]) ** 2, axis=-1))
        hit = valid & (d <= tol)
        return jnp.where(jnp.any(hit), jnp.argmax(hit).astype(jnp.int32), jnp.int32(-1))

    dup = jax.lax.map(first_match, x)
    dup = jnp.where(valid, dup, -1)
    return valid & (dup == idx), dup


class CriticalPoints(NamedTuple):
    """Result of a search, one entry per start (leading axis S).

    Attributes:
        x: final points (S, dim).
        energy: energy density (per spin / per dimension; the loss for mlp) at x, (S,).
        grad_norm: |grad| at x, (S,).
        steps: finder iterations (S,) (descent + polish iterations for ``minimise``).
        converged: |grad| <= gtol (S,) bool. Only these are critical points.
        stalled: the finder stopped at a non-critical minimum of |grad|^2 (S,) bool.
        index: number of negative Hessian eigenvalues (S,) int32; -1 where not converged.
        n_zero: number of zero modes (S,) int32; -1 where not converged.
        eigenvalues: ascending tangent Hessian eigenvalues (S, tdim); NaN where not converged.
        unique: first start to find its (converged) point (S,) bool.
        duplicate_of: start index of the first finder, -1 if not converged (S,) int32.
        gtol: the absolute gradient tolerance used, scalar.
    """

    x: jax.Array
    energy: jax.Array
    grad_norm: jax.Array
    steps: jax.Array
    converged: jax.Array
    stalled: jax.Array
    index: jax.Array  # type: ignore[assignment]  # the Hessian index (shadows tuple.index: public API)
    n_zero: jax.Array
    eigenvalues: jax.Array
    unique: jax.Array
    duplicate_of: jax.Array
    gtol: jax.Array


def _check(fn, landscape, n_starts, **positive):
    if not isinstance(landscape, Landscape):
        raise ValueError(f"{fn}: landscape must be a sim.landscapes.Landscape, got {landscape!r}")
    if isinstance(n_starts, bool) or int(n_starts) != n_starts or n_starts < 1:
        raise ValueError(f"{fn}: n_starts must be an integer >= 1, got {n_starts!r}")
    for name, v in positive.items():
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{fn}: {name} must be a finite number > 0, got {v!r}")


def starts(key, landscape: Landscape, params, n_starts: int) -> jax.Array:
    """The start points: ``landscape.start(fold_in(key, s), params)`` for s < n_starts, shape (S, dim)."""
    _check("starts", landscape, n_starts)
    return _starts(as_key(key), landscape, params, int(n_starts))


@functools.partial(jax.jit, static_argnums=(1, 3))
def _starts(key, landscape, params, n_starts):
    keys = jax.vmap(lambda s: fold_in(key, s))(jnp.arange(n_starts, dtype=jnp.uint32))
    return jax.vmap(lambda k: landscape.start(k, params))(keys)


def _analyse(landscape, params, state, gtol, steps, zero_tol, dedup_tol) -> CriticalPoints:
    # Hessians in one batch; eigenvalues one point at a time and only where converged (the batched
    # eigh of every run cost a sixth of a GRF search); elsewhere NaN, index and n_zero -1
    hess = jax.vmap(lambda x: landscape.tangent_hessian(params, x))(state.x)
    tdim = hess.shape[-1]

    def spectrum(h):
        ev = jnp.linalg.eigvalsh(h)
        return (*_count(ev, zero_tol), ev)

    def skipped(h):
        return jnp.int32(-1), jnp.int32(-1), jnp.full((tdim,), jnp.nan, h.dtype)

    index, n_zero, ev = jax.lax.map(lambda a: jax.lax.cond(a[1], spectrum, skipped, a[0]), (hess, state.converged))
    energy = jax.vmap(lambda x: landscape.energy_density(params, x))(state.x)
    tol = dedup_tol * landscape.distance_scale(params)
    unique, dup = merge_duplicates(state.x, state.converged, tol)
    return CriticalPoints(
        state.x, energy, state.grad_norm, steps, state.converged, state.stalled, index, n_zero, ev, unique, dup, gtol
    )


#: concurrent runs of the search by default (``slots=None``): enough to keep the batched Hessian
#: products efficient, few enough that the last runs do not leave most of the batch idle
DEFAULT_SLOTS = 128


class Runs(NamedTuple):
    """Final state of every run of ``search``, leading axis S (one entry per start)."""

    x: jax.Array
    grad_norm: jax.Array
    steps: jax.Array
    converged: jax.Array
    stalled: jax.Array


def search(
    landscape: Landscape,
    params,
    x0,
    gtol,
    *,
    slots: int,
    max_steps: int = 100,
    max_step: float = 0.5,
    patience: int = 10,
    method: str = "lm",
    escapes: int = DEFAULT_ESCAPES,
) -> Runs:
    """Run the finder from every start in ``x0`` (shape (S, dim)), ``slots`` runs at a time: -> ``Runs``.

    A queue on the device: ``slots`` runs advance together (one ``vmap``-ed iteration); a run that
    has converged, stalled or reached ``max_steps`` is written out and its slot takes the next pending
    start (whose gradient and Hessian are that slot's evaluation in the next iteration), so the work
    is the total number of iterations, not ``S * max(steps)``. When no start is pending and at most
    half the slots are busy, the busy runs move to a batch of ``slots // 2`` and later of
    ``slots // 8`` so that the last, longest runs do not drag an idle batch along. Every run is the
    iteration of ``newton_solve`` from its own start: results do not depend on ``slots`` up to the
    rounding of the batched matrix products (bit-identical for the same ``slots``). Pure and
    jit-able (``slots``, ``max_steps``, ``max_step``, ``patience`` static); ``vmap``-able over
    instances.
    """
    s_total, dim = x0.shape
    b = min(int(slots), s_total)
    propose = jax.vmap(lambda st: _propose(landscape, params, st, max_step, method))
    gh = jax.vmap(lambda x: landscape.grad_hessian(params, x))
    update = jax.vmap(lambda st, y, g, h: _update(st, y, g, h, gtol, patience, method, escapes))
    last = jnp.int32(s_total - 1)

    def body(c):
        state, owner, load, pending, out = c
        point = jnp.where(load[:, None], x0[jnp.clip(owner, 0, last)], propose(state))
        g, h = gh(point)
        begun = _fresh(point, g, h, gtol, method)
        state = jax.tree.map(
            lambda a, b: jnp.where(load.reshape(load.shape + (1,) * (a.ndim - 1)), a, b),
            begun,
            update(state, point, g, h),
        )
        # finished runs are written out; their slots take the next pending starts
        done = (state.converged | state.stalled | (state.steps >= max_steps)) & (owner >= 0)
        target = jnp.where(done, owner, s_total)  # out of range: dropped
        out = Runs(
            *(
                o.at[target].set(v, mode="drop")
                for o, v in zip(out, (state.x, state.grad_norm, state.steps, state.converged, state.stalled))
            )
        )
        nxt = pending + jnp.cumsum(done, dtype=jnp.int32) - 1
        owner = jnp.where(done, jnp.where(nxt < s_total, nxt, jnp.int32(-1)), owner)
        pending = jnp.minimum(pending + jnp.sum(done, dtype=jnp.int32), jnp.int32(s_total))
        return state, owner, done & (owner >= 0), pending, out

    # placeholder runs: every slot loads its first start in the first iteration
    state = _fresh(x0[:b], jnp.zeros((b, dim), x0.dtype), jnp.zeros((b, dim, dim), x0.dtype), gtol, method)
    out = Runs(
        x0,
        jnp.zeros((s_total,), x0.dtype),
        jnp.zeros((s_total,), jnp.int32),
        jnp.zeros((s_total,), bool),
        jnp.zeros((s_total,), bool),
    )
    carry = (state, jnp.arange(b, dtype=jnp.int32), jnp.ones((b,), bool), jnp.int32(b), out)

    def busy(c):
        return jnp.sum(c[1] >= 0, dtype=jnp.int32)

    for tail in _tail_batches(b):
        carry = jax.lax.while_loop(lambda c: (busy(c) > 0) & ((c[3] < s_total) | (busy(c) > tail)), body, carry)
        keep = jnp.argsort(carry[1] < 0, stable=True)[:tail]  # the busy slots first
        carry = (jax.tree.map(lambda a: a[keep], carry[0]), carry[1][keep], carry[2][keep], carry[3], carry[4])
    carry = jax.lax.while_loop(lambda c: busy(c) > 0, body, carry)
    return carry[4]


def _tail_batches(slots: int) -> tuple[int, ...]:
    """Batch sizes the last runs move to: slots/2, then slots/8 (each >= 4). Replaying the run lengths
    of 512 GRF starts at n = 32, 93% of the evaluations at 128 slots are useful, against 88% with one
    step to slots/4 and 76% with none."""
    return tuple(t for t in (slots // 2, slots // 8) if t >= 4)


def find_critical_points(
    key,
    landscape: Landscape,
    params,
    n_starts: int,
    *,
    max_steps: int = 100,
    rtol: float = 1e-8,
    zero_tol: float = 1e-6,
    dedup_tol: float = 1e-6,
    max_step: float = 0.5,
    patience: int = 10,
    slots: int | None = None,
    method: str = "lm",
    escapes: int = DEFAULT_ESCAPES,
) -> CriticalPoints:
    """Newton-type search for critical points (saddles and minima) from ``n_starts`` random starts.

    ``slots`` runs advance at once; a finished run's slot takes the next pending start (``search``).
    Pure and jitted; ``vmap`` it over instances. Results do not depend on ``slots`` beyond the
    rounding of batched matrix products.

    Args:
        key: PRNG key; start s is ``landscape.start(fold_in(key, s), params)``.
        landscape: the loss family (``sim.landscapes``).
        params: its random instance (``landscape.sample``).
        n_starts: number of starts S >= 1.
        max_steps: iteration cap per start (static).
        rtol: convergence when ``|grad| <= rtol * landscape.grad_scale(params)``.
        zero_tol: relative zero-mode tolerance of the index (see ``hessian_index``).
        dedup_tol: duplicates are closer than ``dedup_tol * landscape.distance_scale(params)``.
        max_step: cap on one step, in units of ``distance_scale``.
        patience: a run whose smallest |grad| has not halved in ``patience`` iterations stops as stalled.
        slots: concurrent runs (>= 1); None: ``DEFAULT_SLOTS``.
        method: "lm" (Levenberg-Marquardt: only steps that lower |grad|) or "newton" (every capped
            step); see the module docstring. "subnet" (MLP only): start s minimises the loss of its
            first ``s mod (width + 1)`` hidden units with the others silent (``subnet_solve``); the
            converged points are critical points of the whole network, saddles when silent units
            have descending directions. ``patience`` and ``escapes`` do not apply to it.
        escapes: "lm": undamped escape steps per run out of a non-critical minimum of |grad|^2 before
            the run is reported stalled (0: plain LM); see the module docstring.

    Returns:
        ``CriticalPoints`` with one entry per start (converged or not).
    """
    return _find(
        *_find_args(
            key,
            landscape,
            params,
            n_starts,
            max_steps=max_steps,
            rtol=rtol,
            zero_tol=zero_tol,
            dedup_tol=dedup_tol,
            max_step=max_step,
            patience=patience,
            slots=slots,
            method=method,
            escapes=escapes,
        )
    )


def _find_args(
    key,
    landscape: Landscape,
    params,
    n_starts: int,
    *,
    max_steps: int = 100,
    rtol: float = 1e-8,
    zero_tol: float = 1e-6,
    dedup_tol: float = 1e-6,
    max_step: float = 0.5,
    patience: int = 10,
    slots: int | None = None,
    method: str = "lm",
    escapes: int = DEFAULT_ESCAPES,
):
    """``find_critical_points``' arguments checked and normalised: the arguments of ``_find``."""
    _check(
        "find_critical_points",
        landscape,
        n_starts,
        rtol=rtol,
        zero_tol=zero_tol,
        dedup_tol=dedup_tol,
        max_step=max_step,
    )
    for name, v, lo in (("max_steps", max_steps, 1), ("patience", patience, 1), ("escapes", escapes, 0)):
        if isinstance(v, bool) or int(v) != v or v < lo:
            raise ValueError(f"find_critical_points: {name} must be an integer >= {lo}, got {v!r}")
    if slots is not None and (isinstance(slots, bool) or int(slots) != slots or slots < 1):
        raise ValueError(f"find_critical_points: slots must be None or an integer >= 1, got {slots!r}")
    if method not in FINDERS:
        raise ValueError(f"find_critical_points: method must be one of {', '.join(FINDERS)}, got {method!r}")
    if method == "subnet" and not hasattr(landscape, "unit_mask"):
        raise ValueError(f"find_critical_points: method 'subnet' needs an MLP landscape, got {landscape.name!r}")
    slots = DEFAULT_SLOTS if slots is None else int(slots)
    return (
        as_key(key),
        landscape,
        params,
        int(n_starts),
        int(max_steps),
        float(rtol),
        float(zero_tol),
        float(dedup_tol),
        float(max_step),
        int(patience),
        min(slots, int(n_starts)),
        method,
        int(escapes),
    )


@functools.partial(jax.jit, static_argnums=(1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12))
def _find(
    key, landscape, params, n_starts, max_steps, rtol, zero_tol, dedup_tol, max_step, patience, slots, method, escapes
):
    x0 = _starts(key, landscape, params, n_starts)
    gtol = rtol * landscape.grad_scale(params)
    if method == "subnet":
        active = subnet_active(n_starts, landscape.size(params))

        def one(a):
            st = subnet_solve(landscape, params, a[0], a[1], gtol, max_steps=max_steps)
            return Runs(st.x, st.grad_norm, st.steps, st.converged, st.stalled)

        runs = jax.lax.map(one, (x0, active), batch_size=slots)
        return _analyse(landscape, params, runs, gtol, runs.steps, zero_tol, dedup_tol)
    runs = search(
        landscape,
        params,
        x0,
        gtol,
        slots=slots,
        max_steps=max_steps,
        max_step=max_step,
        patience=patience,
        method=method,
        escapes=escapes,
    )
    return _analyse(landscape, params, runs, gtol, runs.steps, zero_tol, dedup_tol)


def _descent(landscape, params, x, gtol, max_steps):
    """Riemannian gradient descent with an Armijo step from x: -> (x, steps)."""
    dt = x.dtype
    lr0 = jnp.asarray(0.1, dt) * landscape.distance_scale(params) / landscape.grad_scale(params)

    def cond(c):
        x, g, e, lr, it = c
        return (jnp.linalg.norm(g) > gtol) & (it < max_steps) & (lr > 1e-30)

    def body(c):
        x, g, e, lr, it = c
        y = landscape.retract(x, -lr * g)
        ey = landscape.energy(params, y)
        ok = ey <= e - 0.5 * lr * jnp.dot(g, g)
        gy = landscape.grad(params, y)
        return (
            jnp.where(ok, y, x),
            jnp.where(ok, gy, g),
            jnp.where(ok, ey, e),
            jnp.where(ok, lr * 1.25, lr * 0.5),
            it + 1,
        )

    c = (x, landscape.grad(params, x), landscape.energy(params, x), lr0, jnp.int32(0))
    x, _, _, _, it = jax.lax.while_loop(cond, body, c)
    return x, it


def minimise(
    key,
    landscape: Landscape,
    params,
    n_starts: int,
    *,
    descent_steps: int = 20000,
    descent_rtol: float = 1e-5,
    max_steps: int = 100,
    rtol: float = 1e-8,
    zero_tol: float = 1e-6,
    dedup_tol: float = 1e-6,
    patience: int = 10,
) -> CriticalPoints:
    """Gradient descent from ``n_starts`` random starts, then a Newton polish to a critical point.

    Same starts as ``find_critical_points`` with the same key. Descent stops when ``|grad| <=
    descent_rtol * grad_scale`` or after ``descent_steps``; the polish is ``newton_solve`` with
    ``max_steps`` and ``rtol``. ``steps`` counts descent plus polish iterations. A converged point
    with index 0 is a minimum reached by descent; other converged points are saddles the descent
    stopped near (reported, not minima).

    Returns:
        ``CriticalPoints`` with one entry per start.
    """
    return _minimise(
        *_minimise_args(
            key,
            landscape,
            params,
            n_starts,
            descent_steps=descent_steps,
            descent_rtol=descent_rtol,
            max_steps=max_steps,
            rtol=rtol,
            zero_tol=zero_tol,
            dedup_tol=dedup_tol,
            patience=patience,
        )
    )


def _minimise_args(
    key,
    landscape: Landscape,
    params,
    n_starts: int,
    *,
    descent_steps: int = 20000,
    descent_rtol: float = 1e-5,
    max_steps: int = 100,
    rtol: float = 1e-8,
    zero_tol: float = 1e-6,
    dedup_tol: float = 1e-6,
    patience: int = 10,
):
    """``minimise``' arguments checked and normalised: the arguments of ``_minimise``."""
    _check(
        "minimise", landscape, n_starts, descent_rtol=descent_rtol, rtol=rtol, zero_tol=zero_tol, dedup_tol=dedup_tol
    )
    for name, v in (("descent_steps", descent_steps), ("max_steps", max_steps), ("patience", patience)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"minimise: {name} must be an integer >= 1, got {v!r}")
    return (
        as_key(key),
        landscape,
        params,
        int(n_starts),
        int(descent_steps),
        float(descent_rtol),
        int(max_steps),
        float(rtol),
        float(zero_tol),
        float(dedup_tol),
        int(patience),
    )


def compile_search(kind: str, key, landscape: Landscape, params, n_starts: int, **options):
    """Compile, without running, the program that ``find_critical_points`` (``kind`` "find") or
    ``minimise`` ("minimise") runs for these arguments (the same options, checked the same way).

    A later call with arguments of the same shapes, options and device reuses the compiled program:
    so a caller can compile the programs of several sizes side by side in threads (XLA compiles with
    the GIL released) and run them later. The program and its results are those of the call itself."""
    if kind == "find":
        return _find.lower(*_find_args(key, landscape, params, n_starts, **options)).compile()
    if kind == "minimise":
        return _minimise.lower(*_minimise_args(key, landscape, params, n_starts, **options)).compile()
    raise ValueError(f"compile_search: kind must be 'find' or 'minimise', got {kind!r}")


@functools.partial(jax.jit, static_argnums=(1, 3, 4, 5, 6, 7, 8, 9, 10))
def _minimise(
    key, landscape, params, n_starts, descent_steps, descent_rtol, max_steps, rtol, zero_tol, dedup_tol, patience
):
    x0 = _starts(key, landscape, params, n_starts)
    scale = landscape.grad_scale(params)
    x1, it = jax.vmap(lambda x: _descent(landscape, params, x, descent_rtol * scale, descent_steps))(x0)
    gtol = rtol * scale
    state = jax.vmap(
        lambda x: newton_solve(landscape, params, x, gtol, max_steps=max_steps, max_step=0.5, patience=patience)
    )(x1)
    return _analyse(landscape, params, state, gtol, state.steps + it, zero_tol, dedup_tol)


# ---- sub-network minima embedded with silent units (MLP only) ----

_TR_TRIALS = 16  # "subnet": damping values tried per iteration, mu * 4^j
_TR_MU_INIT = 0.1  # "subnet": initial damping, relative to max |eigenvalue|


class SubnetState(NamedTuple):
    """One run of ``subnet_solve``: point, |grad| (full), damping, iterations, converged, stalled."""

    x: jax.Array
    grad_norm: jax.Array
    damping: jax.Array
    steps: jax.Array
    converged: jax.Array
    stalled: jax.Array


def subnet_solve(landscape: Landscape, params, x0, active, gtol, *, max_steps: int = 300) -> SubnetState:
    """Minimise an MLP loss over the parameters of its first ``active`` hidden units (the others silent,
    all their weights 0): a saddle-free trust-region Newton method. Returns the final ``SubnetState``.

    Each iteration takes the gradient and exact Hessian restricted to the active parameters (mask
    ``landscape.unit_mask``), their eigendecomposition ``H = Q diag(l) Q^T``, and the step
    ``d = -Q (|l| + mu s)^-1 Q^T g`` (``s = max |l|``: saddle-free Newton, Dauphin et al. 2014, with a
    Levenberg damping). The step is accepted when the loss falls by at least a quarter of the decrease
    of the quadratic model ``g.d + d.H.d / 2`` (or, once that decrease is below the rounding of the loss,
    when |grad| halves); then ``mu`` becomes ``mu / 3`` if the ratio exceeds 3/4. Rejected: ``mu`` grows
    by 4 and the step is retried, up to 16 times per iteration. Near a nondegenerate minimum of the
    restricted loss the step is Newton's (quadratic convergence). Converged: the *full* |grad| (all P
    parameters, the silent ones included) <= ``gtol``, so a converged point is a critical point of the
    width-n loss (see ``MLP.unit_mask``); stalled: no step accepted in an iteration. Pure; ``vmap`` it.
    """
    dt = x0.dtype
    n = landscape.hidden_width(x0)  # type: ignore[attr-defined]
    mask = landscape.unit_mask(n, active, dtype=dt)  # type: ignore[attr-defined]
    x0 = x0 * mask
    loss_grad = jax.value_and_grad(lambda y: landscape.energy(params, y))

    def body(st: SubnetState) -> SubnetState:
        e, (g, h) = landscape.energy(params, st.x), landscape.grad_hessian(params, st.x)
        g = g * mask
        hm = mask[:, None] * h * mask[None, :] + jnp.diag(1.0 - mask)  # silent coordinates decouple
        lam, q = jnp.linalg.eigh(hm)
        gq = q.T @ g
        s = jnp.max(jnp.abs(lam))
        gn = jnp.linalg.norm(g)

        def trial(c):
            mu, _, _, _, j = c
            d = mask * (q @ (-gq / (jnp.abs(lam) + mu * s)))
            pred = jnp.dot(g, d) + 0.5 * jnp.dot(d, h @ d)
            ey, gy = loss_grad(st.x + d)
            ratio = (ey - e) / jnp.minimum(pred, -jnp.finfo(dt).tiny)
            resolved = -pred > 1e3 * jnp.finfo(dt).eps * jnp.abs(e)
            ok = jnp.isfinite(ey) & jnp.where(resolved, ratio > 0.25, jnp.linalg.norm(gy) <= 0.5 * gn)
            good = ok & (~resolved | (ratio > 0.75))
            return jnp.where(ok, mu, 4.0 * mu), ok, good, d, j + 1

        mu, ok, good, d, _ = jax.lax.while_loop(
            lambda c: ~c[1] & (c[4] < _TR_TRIALS),
            trial,
            (st.damping, jnp.zeros((), bool), jnp.zeros((), bool), jnp.zeros_like(st.x), jnp.int32(0)),
        )
        x = jnp.where(ok, st.x + d, st.x)
        gn_full = jnp.linalg.norm(landscape.grad(params, x))
        return SubnetState(
            x,
            gn_full,
            jnp.maximum(jnp.where(good, mu / 3.0, mu), _MU_MIN),
            st.steps + 1,
            gn_full <= gtol,
            ~ok,
        )

    g0 = jnp.linalg.norm(landscape.grad(params, x0))
    st = SubnetState(x0, g0, jnp.asarray(_TR_MU_INIT, dt), jnp.int32(0), g0 <= gtol, jnp.zeros((), bool))
    return jax.lax.while_loop(lambda s: ~s.converged & ~s.stalled & (s.steps < max_steps), body, st)


def subnet_active(n_starts: int, width: int) -> jax.Array:
    """Active hidden units of each start of the "subnet" finder: start s has ``s mod (width + 1)``."""
    return jnp.arange(n_starts, dtype=jnp.int32) % (width + 1)
