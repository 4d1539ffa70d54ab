"""Critical points of random losses: a Newton-type finder, a descent minimiser, the Hessian index.

All functions take a ``sim.landscapes.Landscape`` (static), its random instance ``params`` and work in
the landscape's dtype (use float64: Frye et al. show float32 Newton-type searches stop in
"gradient-flat" regions). Starts are ``landscape.start(fold_in(key, s), params)`` for s = 0..S-1, so
start s is the same point whatever S.

**Finder** (``find_critical_points``; single-start pieces ``newton_init``/``build_newton_kernel``/
``newton_solve``): Levenberg-Marquardt on the residual ``g(x) = grad L(x)`` (Riemannian on the
sphere), whose Jacobian is the Hessian H. Each iteration diagonalises ``H = Q diag(l) Q^T`` once and
tries the damped Newton steps ``v = -Q diag(l / (l^2 + mu_k s^2)) Q^T g`` (``s = max |l|``) for
``mu_k = mu 10^k``, k = 0..3, capped at ``max_step * distance_scale`` in length; it takes the least
damped one that lowers ``|g|`` and sets ``mu`` from it, else multiplies ``mu`` by 10^4. As ``mu -> 0``
this is Newton's method, which converges (quadratically) to nondegenerate saddles as well as minima.
A run **converges** when ``|g| <= rtol * grad_scale`` (``landscape.grad_scale``: the typical
gradient norm at a random point; rtol = 1e-8 by default); it **stalls** when ``mu`` exceeds 1e12
(a local minimum of |g|^2 that is not a critical point, Frye et al.'s gradient-flat points) or when
|g| has not halved over ``patience`` iterations (default 10: crawling through a gradient-flat
region); else it stops after ``max_steps`` iterations. Non-converged runs keep ``converged =
False``: callers must exclude them from statistics, and report them. Measured on the GRF at n = 32:
about 52% of random starts converge, 48% stall (scipy's MINPACK LM on the same residual: 56%).

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

References: Levenberg 1944, Marquardt 1963; Dauphin et al., NIPS 2014; Frye, Yang, Sheikh, Hamilton,
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

__all__ = [
    "NewtonState",
    "NewtonInfo",
    "newton_init",
    "build_newton_kernel",
    "newton_solve",
    "hessian_index",
    "merge_duplicates",
    "CriticalPoints",
    "find_critical_points",
    "minimise",
    "starts",
]

_CANDIDATES = 4  # damping values tried per iteration: mu * 10^k, k < _CANDIDATES
_MU_INIT = 1e-3
_MU_MIN = 1e-15
_MU_STALL = 1e12
_PROGRESS = 0.5  # every `patience` iterations |grad| must have fallen by this factor, else stalled


class NewtonState(NamedTuple):
    """What persists between iterations of one run.

    Attributes:
        x: current point, shape (dim,).
        grad: (Riemannian) gradient at x, shape (dim,).
        grad_norm: |grad|, scalar.
        damping: Levenberg-Marquardt mu (relative to max eigenvalue^2), scalar.
        steps: iterations done, int32.
        converged: |grad| <= gtol reached, bool.
        stalled: mu exceeded its ceiling (a non-critical minimum of |grad|^2), or |grad| fell by less
            than the factor 1/2 over the last ``patience`` iterations, bool.
        ref_norm: |grad| at the last multiple of ``patience`` iterations (progress check), scalar.
    """

    x: jax.Array
    grad: jax.Array
    grad_norm: jax.Array
    damping: jax.Array
    steps: jax.Array
    converged: jax.Array
    stalled: jax.Array
    ref_norm: jax.Array


class NewtonInfo(NamedTuple):
    """Diagnostics of one iteration: accepted step, damping used, |grad| after."""

    accepted: jax.Array
    damping: jax.Array
    grad_norm: jax.Array


def newton_init(landscape: Landscape, params, x, gtol) -> NewtonState:
    """State at the start point ``x`` (shape (dim,)); ``gtol`` is the absolute |grad| tolerance."""
    g = landscape.grad(params, x)
    gn = jnp.linalg.norm(g)
    dt = x.dtype
    return NewtonState(x, g, gn, jnp.asarray(_MU_INIT, dt), jnp.int32(0), gn <= gtol, jnp.bool_(False), gn)


def build_newton_kernel(landscape: Landscape, *, max_step: float = 0.5, patience: int = 10):
    """Return ``kernel(params, state, gtol) -> (state, info)``: one Levenberg-Marquardt iteration.

    Pure, not jitted: the caller jits, ``vmap``s over starts and loops over iterations. A state that
    has converged or stalled is returned unchanged.
    """

    def kernel(params, state: NewtonState, gtol):
        x, g = state.x, state.grad
        dt = x.dtype
        lam, q = jnp.linalg.eigh(landscape.hessian(params, x))
        gq = q.T @ g
        scale2 = jnp.max(lam * lam)
        radius = jnp.asarray(max_step * landscape.distance_scale(params), dt)
        mus = state.damping * jnp.asarray(10.0, dt) ** jnp.arange(_CANDIDATES, dtype=dt)

        def trial(mu):
            v = -(q @ (lam * gq / (lam * lam + mu * scale2)))
            vn = jnp.linalg.norm(v)
            v = v * jnp.minimum(1.0, radius / jnp.maximum(vn, jnp.finfo(dt).tiny))
            y = landscape.retract(x, v)
            gy = landscape.grad(params, y)
            return y, gy, jnp.linalg.norm(gy)

        ys, gys, gns = jax.vmap(trial)(mus)
        ok = jnp.isfinite(gns) & (gns < state.grad_norm)
        k = jnp.argmax(ok)  # first (least damped) improving candidate
        accepted = jnp.any(ok) & ~state.converged & ~state.stalled
        mu_new = jnp.where(accepted, jnp.maximum(mus[k] / 10.0, _MU_MIN), state.damping * 10.0**_CANDIDATES)
        frozen = state.converged | state.stalled
        mu_new = jnp.where(frozen, state.damping, mu_new)
        x_new = jnp.where(accepted, ys[k], x)
        g_new = jnp.where(accepted, gys[k], g)
        gn_new = jnp.where(accepted, gns[k], state.grad_norm)
        steps = state.steps + jnp.where(frozen, 0, 1).astype(jnp.int32)
        checkpoint = ~frozen & (steps % patience == 0)
        slow = checkpoint & (gn_new > _PROGRESS * state.ref_norm)
        converged = gn_new <= gtol
        new = NewtonState(
            x_new,
            g_new,
            gn_new,
            mu_new,
            steps,
            converged,
            state.stalled | (~converged & ((mu_new > _MU_STALL) | slow)),
            jnp.where(checkpoint, gn_new, state.ref_norm),
        )
        return new, NewtonInfo(accepted, mu_new, gn_new)

    return kernel


def newton_solve(
    landscape: Landscape, params, x0, gtol, *, max_steps: int = 100, max_step: float = 0.5, patience: int = 10
):
    """Run the finder from one start ``x0`` until converged, stalled or ``max_steps``: -> NewtonState.

    Pure (a ``lax.while_loop``); ``vmap`` it over starts. Under ``vmap`` the loop runs until every
    run is done, finished runs stay frozen.
    """
    kernel = build_newton_kernel(landscape, max_step=max_step, patience=patience)
    state = newton_init(landscape, params, x0, gtol)

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
    cut = zero_tol * jnp.max(jnp.abs(ev))
    index = jnp.sum(ev < -cut).astype(jnp.int32)
    n_zero = jnp.sum(jnp.abs(ev) <= cut).astype(jnp.int32)
    return index, n_zero, ev


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
        index: number of negative Hessian eigenvalues (S,) int32 (meaningful where converged).
        n_zero: number of zero modes (S,) int32.
        eigenvalues: ascending tangent Hessian eigenvalues (S, tdim).
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
    index: jax.Array
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
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(n_starts, dtype=jnp.uint32))
    return jax.vmap(lambda k: landscape.start(k, params))(keys)


def _analyse(landscape, params, state: NewtonState, gtol, steps, zero_tol, dedup_tol) -> CriticalPoints:
    index, n_zero, ev = jax.vmap(lambda x: hessian_index(landscape, params, x, zero_tol=zero_tol))(state.x)
    energy = jax.vmap(lambda x: landscape.energy_density(params, x))(state.x)
    tol = dedup_tol * landscape.distance_scale(params)
    unique, dup = merge_duplicates(state.x, state.converged, tol)
    return CriticalPoints(
        state.x, energy, state.grad_norm, steps, state.converged, state.stalled, index, n_zero, ev, unique, dup, gtol
    )


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
) -> CriticalPoints:
    """Newton-type search for critical points (saddles and minima) from ``n_starts`` random starts.

    Two schedules with the same per-start iteration (results agree up to rounding):

    * ``slots=None`` (default): one jitted ``vmap`` over all starts of a ``lax.while_loop``; pure, so
      it can itself be ``vmap``-ed (e.g. over instances). Every start pays for the slowest one.
    * ``slots=B``: B starts run at once in a jitted block of ``patience`` iterations; after each block
      the host replaces finished runs by pending starts (one compile; work proportional to the total
      number of iterations rather than ``n_starts * max(steps)``). Not ``vmap``-able.

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
        patience: a run whose |grad| has not halved in ``patience`` iterations stops as stalled.
        slots: None, or the number of concurrent runs of the refilling schedule (>= 1).

    Returns:
        ``CriticalPoints`` with one entry per start (converged or not).
    """
    _check("find_critical_points", landscape, n_starts, rtol=rtol, zero_tol=zero_tol, dedup_tol=dedup_tol,
           max_step=max_step)
    for name, v in (("max_steps", max_steps), ("patience", patience)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"find_critical_points: {name} must be an integer >= 1, got {v!r}")
    if slots is not None:
        if isinstance(slots, bool) or int(slots) != slots or slots < 1:
            raise ValueError(f"find_critical_points: slots must be None or an integer >= 1, got {slots!r}")
        return _find_refill(as_key(key), landscape, params, int(n_starts), int(max_steps), float(rtol),
                            float(zero_tol), float(dedup_tol), float(max_step), int(patience), int(slots))
    return _find(as_key(key), landscape, params, int(n_starts), int(max_steps), float(rtol), float(zero_tol),
                 float(dedup_tol), float(max_step), int(patience))


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def _advance(landscape, params, state, max_steps, max_step, patience, gtol):
    """``patience`` iterations of the kernel for a block of runs; runs at max_steps stay frozen."""
    kernel = build_newton_kernel(landscape, max_step=max_step, patience=patience)

    def body(_, st):
        new = jax.vmap(lambda s: kernel(params, s, gtol)[0])(st)
        keep = st.steps >= max_steps
        return jax.tree.map(lambda a, b: jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - 1)), a, b), st, new)

    return jax.lax.fori_loop(0, patience, body, state)


@functools.partial(jax.jit, static_argnums=(0,))
def _init_all(landscape, params, x0, gtol):
    return jax.vmap(lambda x: newton_init(landscape, params, x, gtol))(x0)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _analyse_jit(landscape, params, state, gtol, zero_tol, dedup_tol):
    return _analyse(landscape, params, state, gtol, state.steps, zero_tol, dedup_tol)


def _find_refill(key, landscape, params, n_starts, max_steps, rtol, zero_tol, dedup_tol, max_step, patience, slots):
    x0 = _starts(key, landscape, params, n_starts)
    gtol = rtol * landscape.grad_scale(params)
    final = jax.tree.map(np.array, _init_all(landscape, params, x0, gtol))  # host copy, filled as runs end
    b = min(slots, n_starts)
    owner = np.arange(b)  # start index held by each slot, -1 when idle
    pending = b
    block = jax.tree.map(lambda a: a[:b], final)
    while True:
        block = jax.tree.map(np.array, _advance(landscape, params, block, max_steps, max_step, patience, gtol))
        done = (block.converged | block.stalled | (block.steps >= max_steps)) & (owner >= 0)
        for slot in np.flatnonzero(done):
            for field, a in zip(final, block):
                field[owner[slot]] = a[slot]
            if pending < n_starts:  # refill the slot with the next start
                owner[slot] = pending
                for field, a in zip(final, block):
                    a[slot] = field[pending]
                pending += 1
            else:
                owner[slot] = -1
        if np.all(owner < 0):
            break
    state = NewtonState(*(jnp.asarray(a) for a in final))
    return _analyse_jit(landscape, params, state, gtol, zero_tol, dedup_tol)


@functools.partial(jax.jit, static_argnums=(1, 3, 4, 5, 6, 7, 8, 9))
def _find(key, landscape, params, n_starts, max_steps, rtol, zero_tol, dedup_tol, max_step, patience):
    x0 = _starts(key, landscape, params, n_starts)
    gtol = rtol * landscape.grad_scale(params)
    state = jax.vmap(
        lambda x: newton_solve(landscape, params, x, gtol, max_steps=max_steps, max_step=max_step, patience=patience)
    )(x0)
    return _analyse(landscape, params, state, gtol, state.steps, zero_tol, dedup_tol)


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
    _check("minimise", landscape, n_starts, descent_rtol=descent_rtol, rtol=rtol, zero_tol=zero_tol,
           dedup_tol=dedup_tol)
    for name, v in (("descent_steps", descent_steps), ("max_steps", max_steps), ("patience", patience)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"minimise: {name} must be an integer >= 1, got {v!r}")
    return _minimise(as_key(key), landscape, params, int(n_starts), int(descent_steps), float(descent_rtol),
                     int(max_steps), float(rtol), float(zero_tol), float(dedup_tol), int(patience))


@functools.partial(jax.jit, static_argnums=(1, 3, 4, 5, 6, 7, 8, 9, 10))
def _minimise(key, landscape, params, n_starts, descent_steps, descent_rtol, max_steps, rtol, zero_tol, dedup_tol,
              patience):
    x0 = _starts(key, landscape, params, n_starts)
    scale = landscape.grad_scale(params)
    x1, it = jax.vmap(lambda x: _descent(landscape, params, x, descent_rtol * scale, descent_steps))(x0)
    gtol = rtol * scale
    state = jax.vmap(
        lambda x: newton_solve(landscape, params, x, gtol, max_steps=max_steps, max_step=0.5, patience=patience)
    )(x1)
    return _analyse(landscape, params, state, gtol, state.steps + it, zero_tol, dedup_tol)
