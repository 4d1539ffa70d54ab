"""Where training takes a network: distances, straight-line interpolation, permutation alignment.

Networks are ``sim.learning.mlp`` parameter lists (``[{"w", "b"}, ...]``); "layer l" is ``w_l`` and
``b_l`` together, "total" the whole flattened vector.

* ``change(p0, p)``: relative change ``||theta_T - theta_0|| / ||theta_0||`` and the cosine between
  ``theta_0`` and ``theta_T``, per layer and in total (jit/vmap-able).
* ``pair_distances(a0, b0, a, b)``: ``||theta_T^A - theta_T^B||`` and ``||theta_0^A - theta_0^B||`` per
  layer and in total (jit/vmap-able). For two independent draws of a wide network
  ``||theta_0^A - theta_0^B|| ~ sqrt(2) ||theta_0||`` (concentration of distances); the claim tested is
  that training keeps the ratio trained / init close to 1.
* ``interpolate(loss, a, b, ts)`` and ``barrier(loss, a, b, num)``: the loss along ``(1-t) a + t b`` and
  ``B = max_t [L((1-t) a + t b) - ((1-t) L(a) + t L(b))]`` on ``num`` evenly spaced t in [0, 1]
  (endpoints included, so B >= 0; a grid maximum is a lower bound of the continuous one).
* ``weight_matching(a, b)``: permutations of b's hidden units that maximise
  ``sum_l <W_l^A, P_{l-1}^T W_l^B P_l>`` (plus the biases), solved one layer at a time with
  ``scipy.optimize.linear_sum_assignment`` and iterated until no layer changes (Ainsworth, Hayase,
  Srinivasa 2023, "Git Re-Basin", Algorithm 1). ``permute(b, perms)`` applies them; the permuted network
  computes the same function. Runs in numpy/scipy (not traceable).

References:
    Entezari, Sedghi, Saukh, Neyshabur 2022, ICLR (permutation invariance and linear mode connectivity);
    Ainsworth, Hayase, Srinivasa 2023, ICLR (weight matching); Frankle et al. 2020 (barriers);
    docs/theory.md, "Training".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "layer_vectors",
    "change",
    "pair_distances",
    "interpolate",
    "barrier",
    "weight_matching",
    "permute",
    "matching_objective",
    "negative_fraction",
]


def layer_vectors(params) -> list[jax.Array]:
    """Per layer the flat vector ``concat(w.ravel(), b)``."""
    return [jnp.concatenate([p["w"].reshape(-1), p["b"].reshape(-1)]) for p in params]


def _sq(v):
    return jnp.sum(v * v)


def change(p0, p) -> dict:
    """``{"rel_change", "cos", "layer_rel_change" (L,), "layer_cos" (L,), "init_norm", "layer_init_norm"}``.

    ``cos`` is ``<theta_0, theta_T> / (||theta_0|| ||theta_T||)``; a layer whose initial norm is 0 (zero
    biases only, never a whole layer) would give nan and is not special-cased."""
    a, b = layer_vectors(p0), layer_vectors(p)
    n0 = jnp.stack([_sq(u) for u in a])
    n1 = jnp.stack([_sq(v) for v in b])
    d = jnp.stack([_sq(v - u) for u, v in zip(a, b)])
    dot = jnp.stack([jnp.sum(u * v) for u, v in zip(a, b)])
    return {
        "rel_change": jnp.sqrt(jnp.sum(d) / jnp.sum(n0)),
        "cos": jnp.sum(dot) / jnp.sqrt(jnp.sum(n0) * jnp.sum(n1)),
        "layer_rel_change": jnp.sqrt(d / n0),
        "layer_cos": dot / jnp.sqrt(n0 * n1),
        "init_norm": jnp.sqrt(jnp.sum(n0)),
        "layer_init_norm": jnp.sqrt(n0),
    }


def pair_distances(a0, b0, a, b) -> dict:
    """``{"trained", "init", "layer_trained" (L,), "layer_init" (L,)}``: distances between networks A
    and B after and before training."""
    da = jnp.stack([_sq(u - v) for u, v in zip(layer_vectors(a), layer_vectors(b))])
    d0 = jnp.stack([_sq(u - v) for u, v in zip(layer_vectors(a0), layer_vectors(b0))])
    return {
        "trained": jnp.sqrt(jnp.sum(da)),
        "init": jnp.sqrt(jnp.sum(d0)),
        "layer_trained": jnp.sqrt(da),
        "layer_init": jnp.sqrt(d0),
    }


def _lerp(a, b, t):
    return jax.tree.map(lambda u, v: (1 - t) * u + t * v, a, b)


def interpolate(loss, a, b, ts) -> jax.Array:
    """``loss((1-t) a + t b)`` for each t in ``ts`` (vmapped over t)."""
    ts = jnp.asarray(ts)
    return jax.vmap(lambda t: loss(_lerp(a, b, t.astype(jax.tree.leaves(a)[0].dtype))))(ts)


def barrier(loss, a, b, num: int = 25) -> jax.Array:
    """``max_t [L(t) - ((1-t) L(a) + t L(b))]`` on ``num`` (>= 2) evenly spaced t in [0, 1]."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"barrier: num must be an integer >= 2, got {num!r}")
    ts = jnp.linspace(0.0, 1.0, num)
    path = interpolate(loss, a, b, ts)
    return jnp.max(path - ((1 - ts) * path[0] + ts * path[-1]))


def _np_layers(params, scales):
    out = []
    for l, p in enumerate(params):
        sw, sb = (1.0, 1.0) if scales is None else scales[l][:2]
        out.append((np.asarray(p["w"], np.float64) * sw, np.asarray(p["b"], np.float64) * sb))
    return out


def _permuted(layers, perms):
    out = []
    for l, (w, b) in enumerate(layers):
        if l > 0:
            w = w[perms[l - 1], :]
        if l < len(perms):
            w, b = w[:, perms[l]], b[perms[l]]
        out.append((w, b))
    return out


def matching_objective(a, b, perms=None, scales=None) -> float:
    """``sum_l <W_l^A, (P B)_l> + <b_l^A, (P B)_l>`` (the quantity weight matching maximises)."""
    la, lb = _np_layers(a, scales), _np_layers(b, scales)
    perms = [np.arange(w.shape[1]) for w, _ in lb[:-1]] if perms is None else perms
    return float(sum(np.sum(wa * wb) + np.sum(ba * bb) for (wa, ba), (wb, bb) in zip(la, _permuted(lb, perms))))


def weight_matching(a, b, *, scales=None, max_iter: int = 100, seed: int = 0) -> tuple[list[np.ndarray], int, bool]:
    """Permutations of b's hidden units aligning b to a (Git Re-Basin weight matching).

    Args:
        a, b: networks of the same shapes.
        scales: optional per layer ``(m_w, m_b)`` forward multipliers (``sim.learning.mlp.multipliers``):
            the matching then compares effective weights ``m * w``, the same for every parameterisation.
        max_iter: sweeps over the layers at most.
        seed: order of the layers in each sweep (numpy ``default_rng(seed)``).

    Returns:
        ``(perms, sweeps, converged)``: ``perms[l]`` (int array of the width of hidden layer l) maps a's
        unit i to b's unit ``perms[l][i]``; ``converged`` is False if ``max_iter`` sweeps still changed a
        permutation (reported, not hidden).
    """
    from scipy.optimize import linear_sum_assignment

    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"weight_matching: max_iter must be an integer >= 1, got {max_iter!r}")
    la, lb = _np_layers(a, scales), _np_layers(b, scales)
    if [w.shape for w, _ in la] != [w.shape for w, _ in lb]:
        raise ValueError("weight_matching: a and b must have the same layer shapes")
    hidden = len(la) - 1
    perms = [np.arange(la[l][0].shape[1]) for l in range(hidden)]
    rng = np.random.default_rng(seed)
    for sweep in range(1, max_iter + 1):
        changed = False
        for l in rng.permutation(hidden):
            wa, ba = la[l]
            wb, bb = lb[l]
            if l > 0:
                wb = wb[perms[l - 1], :]
            sim = wa.T @ wb + np.outer(ba, bb)
            wa2, _ = la[l + 1]
            wb2, _ = lb[l + 1]
            if l + 1 < hidden:
                wb2 = wb2[:, perms[l + 1]]
            sim += wa2 @ wb2.T
            _, cols = linear_sum_assignment(sim, maximize=True)
            old = np.trace(sim[:, perms[l]])
            new = np.trace(sim[:, cols])
            if new > old + 1e-12 * max(1.0, abs(old)) and not np.array_equal(cols, perms[l]):
                perms[l] = cols
                changed = True
        if not changed:
            return perms, sweep, True
    return perms, max_iter, False


def permute(params, perms):
    """b with its hidden units permuted: ``w_l[perms[l-1], :][:, perms[l]]``, ``b_l[perms[l]]``."""
    out = []
    for l, p in enumerate(params):
        w, bias = p["w"], p["b"]
        if l > 0:
            w = w[jnp.asarray(perms[l - 1]), :]
        if l < len(perms):
            w, bias = w[:, jnp.asarray(perms[l])], bias[jnp.asarray(perms[l])]
        out.append({"w": w, "b": bias})
    return out


def negative_fraction(key, loss, params, *, num_steps: int = 80, num_probes: int = 8, threshold: float = 0.0):
    """Fraction of Hessian eigenvalues of ``loss`` at ``params`` below ``threshold`` (the index fraction),
    by stochastic Lanczos quadrature: ``sim.hvp.hessian_matvec`` and ``sim.lanczos.slq`` (probes from
    ``key``), read with ``sim.lanczos.fraction_below`` (interpolated staircase). Returns
    ``(fraction, stderr)`` (stderr over probes: probe noise only; the quadrature bracket is
    ``sim.lanczos.fraction_below``'s ``lower``/``upper``). ``num_steps`` is capped at the parameter count
    (full depth: the quadrature is exact up to probe noise)."""
    from jax.flatten_util import ravel_pytree

    from sim.hvp import hessian_matvec
    from sim.lanczos import fraction_below, slq

    flat, _ = ravel_pytree(params)
    dim = int(flat.shape[0])
    quad = slq(
        key,
        hessian_matvec(loss, params),
        dim,
        num_steps=min(int(num_steps), dim),
        num_probes=int(num_probes),
        dtype=flat.dtype,
    )
    est = fraction_below(quad, threshold)
    return est.fraction, est.stderr
