"""Hessian-vector and Gauss–Newton-vector products of scalar losses of pytrees; no Hessian is formed.

Two levels:

* pytree level: ``hvp(loss, params, tangents)`` and ``gnvp(predict, output_loss, params, tangents)``
  take and return pytrees shaped like ``params``;
* operator level: ``hessian_matvec(loss, params)``, ``gauss_newton_matvec(predict, output_loss,
  params)`` and ``landscape_hessian_matvec`` (a ``sim.landscapes`` Hessian on its tangent space) return a
  *matvec callable* on flat vectors of length ``num_params(params)`` (the layout
  of ``jax.flatten_util.ravel_pytree``). This is what ``sim.lanczos`` consumes.

The Hessian product is forward-over-reverse, ``d/dt grad L(p + t v)`` at ``t = 0``: one JVP of the
gradient. The operator form linearises the gradient *once* (``jax.linearize``), so every further
product runs only the tangent half of the forward-over-reverse pass; it stores the residuals of one
gradient evaluation (the activations), i.e. O(batch x width x depth) memory, never O(N^2).

The Gauss–Newton (generalised Gauss–Newton) matrix of ``L(p) = l(f(p))`` is ``G = J^T H_l J`` with
``J = df/dp`` and ``H_l`` the Hessian of the output loss ``l`` in the outputs; it is positive
semi-definite whenever ``l`` is convex, and equals the Hessian when ``f`` is linear in ``p``. The
product is a JVP of ``f``, an HVP of ``l`` in output space, and a VJP of ``f``.

Nothing here is jitted: the callables close over ``params`` and data, so build them *inside* the
function you jit (closing over traced values is fine), e.g.::

    @jax.jit
    def negative_fraction(key, params, task):
        mv = hessian_matvec(lambda p: mse_loss(p, task), params)
        q = slq(key, mv, num_params(params), num_steps=80, num_probes=16)
        return fraction_below(q, 0.0)

References:
    Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6 (1994).
    Schraudolph, "Fast curvature matrix-vector products for second-order gradient descent",
    Neural Computation 14 (2002) (Gauss–Newton products).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = [
    "hvp",
    "gnvp",
    "hessian_matvec",
    "mlp_hessian_matvec",
    "gauss_newton_matvec",
    "landscape_hessian_matvec",
    "num_params",
]

PyTree = Any
Matvec = Callable[[jax.Array], jax.Array]


def num_params(params: PyTree) -> int:
    """Total number of scalars in the pytree ``params`` (the length of its flat vector)."""
    return int(sum(int(jnp.size(leaf)) for leaf in jax.tree_util.tree_leaves(params)))


def _check_callable(fn: str, name: str, f) -> None:
    if not callable(f):
        raise ValueError(f"{fn}: {name} must be callable, got {type(f).__name__}")


def _check_float_tree(fn: str, params: PyTree) -> None:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{fn}: params has no array leaves")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(f"{fn}: every leaf of params must be floating, got {jnp.result_type(leaf)}")


def hvp(loss: Callable[[PyTree], jax.Array], params: PyTree, tangents: PyTree) -> PyTree:
    """Hessian-vector product ``H(params) @ tangents`` of a scalar loss, forward-over-reverse.

    Args:
        loss: ``params -> ()`` scalar loss (close over the data).
        params: pytree of floating arrays, the point where the Hessian is taken.
        tangents: pytree with the structure, shapes and dtypes of ``params``.

    Returns:
        Pytree like ``params``: ``sum_j d^2 L / dp_i dp_j * tangents_j``.
    """
    _check_callable("hvp", "loss", loss)
    _check_float_tree("hvp", params)
    return jax.jvp(jax.grad(loss), (params,), (tangents,))[1]


def gnvp(
    predict: Callable[[PyTree], Any],
    output_loss: Callable[[Any], jax.Array],
    params: PyTree,
    tangents: PyTree,
) -> PyTree:
    """Gauss–Newton-vector product ``J^T H_l J @ tangents`` for ``L(p) = output_loss(predict(p))``.

    Args:
        predict: ``params -> outputs`` (any pytree of floating arrays; close over the inputs).
        output_loss: ``outputs -> ()`` scalar loss of the outputs (close over the targets).
        params: pytree of floating arrays.
        tangents: pytree like ``params``.

    Returns:
        Pytree like ``params``.
    """
    _check_callable("gnvp", "predict", predict)
    _check_callable("gnvp", "output_loss", output_loss)
    _check_float_tree("gnvp", params)
    out, jvp_out = jax.jvp(predict, (params,), (tangents,))
    h_jv = jax.jvp(jax.grad(output_loss), (out,), (jvp_out,))[1]
    _, vjp = jax.vjp(predict, params)
    return vjp(h_jv)[0]


def hessian_matvec(loss: Callable[[PyTree], jax.Array], params: PyTree) -> Matvec:
    """The Hessian of ``loss`` at ``params`` as a matvec on flat vectors (``ravel_pytree`` layout).

    The gradient is linearised once at ``params``; each call then costs the tangent half of a
    forward-over-reverse pass. Input vectors are cast to the parameter dtype.

    Args:
        loss: ``params -> ()`` scalar loss (close over the data).
        params: pytree of floating arrays, all of one dtype.

    Returns:
        ``matvec(v)``: ``(n,) -> (n,)`` with ``n = num_params(params)``, ``v -> H v``.
    """
    _check_callable("hessian_matvec", "loss", loss)
    _check_float_tree("hessian_matvec", params)
    flat, unravel = ravel_pytree(params)

    def flat_grad(x):
        return ravel_pytree(jax.grad(loss)(unravel(x)))[0]

    _, lin = jax.linearize(flat_grad, flat)

    def matvec(v: jax.Array) -> jax.Array:
        return lin(v.astype(flat.dtype))

    return matvec


def mlp_hessian_matvec(params: PyTree, x: jax.Array, y: jax.Array) -> Matvec:
    """The Hessian of ``sim.models.mse_loss(params, Task(x, y))`` (tanh MLP of ``sim.models.mlp_apply``) as a
    matvec on flat vectors, by the hand-written R-operator (Pearlmutter 1994).

    The same operator as ``hessian_matvec(lambda p: mse_loss(p, Task(x, y)), params)`` (tested to float
    rounding), cheaper: the forward pass, the back-propagated errors and their tanh factors are computed
    once, and each product is exactly the six GEMMs per layer of the tangent passes (two forward, four
    backward), in layouts that need no transposed copies, plus O(m width) elementwise work. Under ``vmap``
    over vectors the products with the weights become single wide GEMMs. With ``L(p) = (1/2m) sum |f - y|^2``,
    ``z_l = h_{l-1} W_l + b_l``, ``h_l = tanh z_l`` (``f = z_L``), errors ``g_L = (f - y) / m``,
    ``g_{l-1} = (g_l W_l^T) * (1 - h_{l-1}^2)``, the product with ``(dW, db)`` is

        R z_l = R h_{l-1} W_l + h_{l-1} dW_l + db_l,   R h_l = (1 - h_l^2) R z_l,   R g_L = R z_L / m,
        R gW_l = h_{l-1}^T R g_l + R h_{l-1}^T g_l,   R gb_l = sum_rows R g_l,
        R g_{l-1} = (R g_l W_l^T + g_l dW_l^T) (1 - h_{l-1}^2) - 2 (g_l W_l^T) h_{l-1} R h_{l-1}.

    Args:
        params: ``sim.models.mlp_init`` parameters, a list of ``(W (fan_in, fan_out), b (fan_out,))``, one dtype.
        x: (m, d_in) inputs. y: (m, d_out) targets.

    Returns:
        ``matvec(v)``: ``(n,) -> (n,)`` in the ``ravel_pytree(params)`` layout; vectors are cast to the
        parameter dtype.
    """
    _check_float_tree("mlp_hessian_matvec", params)
    if jnp.ndim(x) != 2 or jnp.ndim(y) != 2 or jnp.shape(x)[0] != jnp.shape(y)[0]:
        raise ValueError(f"mlp_hessian_matvec: need x (m, d_in) and y (m, d_out), got {jnp.shape(x)}, {jnp.shape(y)}")
    flat, unravel = ravel_pytree(params)
    dt = flat.dtype
    ws = [jnp.asarray(w) for w, _ in params]
    bs = [jnp.asarray(b) for _, b in params]
    num = len(ws)
    m = jnp.shape(x)[0]
    hs = [jnp.asarray(x, dt)]  # h_0 = x, h_1 .. h_{L-1}
    for w, b in zip(ws[:-1], bs[:-1]):
        hs.append(jnp.tanh(hs[-1] @ w + b[None, :]))
    f = hs[-1] @ ws[-1] + bs[-1][None, :]
    d = {l: 1.0 - hs[l] * hs[l] for l in range(1, num)}  # tanh' at each hidden layer
    g: dict[int, jax.Array] = {}  # g[l]: error at z_l
    e: dict[int, jax.Array] = {}  # e[l] = -2 (g_{l+1} W_{l+1}^T) h_l, the curvature of tanh times the error
    g[num] = (f - jnp.asarray(y, dt)) / m
    for l in range(num - 1, 0, -1):
        gh = g[l + 1] @ ws[l].T
        g[l] = gh * d[l]
        e[l] = -2.0 * gh * hs[l]

    def matvec(v: jax.Array) -> jax.Array:
        tang = unravel(v.astype(dt))
        rh: dict[int, jax.Array] = {}  # R h_l, l >= 1
        rg = jnp.zeros((), dt)
        for l in range(1, num + 1):
            dw, db = tang[l - 1]
            rz = hs[l - 1] @ dw + db[None, :]
            if l > 1:
                rz = rz + rh[l - 1] @ ws[l - 1]
            if l < num:
                rh[l] = d[l] * rz
            else:
                rg = rz / m
        out: list[Any] = [None] * num
        for l in range(num, 0, -1):
            dw, _ = tang[l - 1]
            rgw = hs[l - 1].T @ rg
            if l > 1:
                rgw = rgw + rh[l - 1].T @ g[l]
            out[l - 1] = (rgw, jnp.sum(rg, axis=0))
            if l > 1:
                rg = (rg @ ws[l - 1].T + g[l] @ dw.T) * d[l - 1] + e[l - 1] * rh[l - 1]
        return ravel_pytree([tuple(o) for o in out])[0]

    return matvec


def gauss_newton_matvec(
    predict: Callable[[PyTree], Any],
    output_loss: Callable[[Any], jax.Array],
    params: PyTree,
) -> Matvec:
    """The Gauss–Newton matrix ``J^T H_l J`` as a matvec on flat vectors (``ravel_pytree`` layout).

    ``predict`` is linearised once (JVP and its transpose, the VJP, reuse the same residuals) and the
    output-space Hessian of ``output_loss`` is linearised once at the outputs.

    Args:
        predict: ``params -> outputs`` (close over the inputs).
        output_loss: ``outputs -> ()`` scalar loss of the outputs (close over the targets).
        params: pytree of floating arrays, all of one dtype.

    Returns:
        ``matvec(v)``: ``(n,) -> (n,)``, ``v -> J^T H_l J v``.
    """
    _check_callable("gauss_newton_matvec", "predict", predict)
    _check_callable("gauss_newton_matvec", "output_loss", output_loss)
    _check_float_tree("gauss_newton_matvec", params)
    flat, unravel = ravel_pytree(params)

    def flat_predict(x):
        return predict(unravel(x))

    out, jvp_lin = jax.linearize(flat_predict, flat)
    vjp_lin = jax.linear_transpose(jvp_lin, flat)
    _, h_out = jax.linearize(jax.grad(output_loss), out)

    def matvec(v: jax.Array) -> jax.Array:
        return vjp_lin(h_out(jvp_lin(v.astype(flat.dtype))))[0]

    return matvec


def _reflector(x: jax.Array):
    """(B, B^T) of ``sim.landscapes.sphere_tangent_basis(x)`` as functions (Householder, never formed)."""
    n = x.shape[0]
    u = x / jnp.linalg.norm(x)
    e = jnp.zeros((n,), x.dtype).at[n - 1].set(1.0)
    sign = jnp.where(u[n - 1] >= 0, 1.0, -1.0).astype(x.dtype)
    w = u + sign * e
    ww = jnp.dot(w, w)

    def refl(y):
        return y - (2.0 * jnp.dot(w, y) / ww) * w

    def b(v):  # (n - 1,) -> (n,)
        return refl(jnp.concatenate([v, jnp.zeros((1,), v.dtype)]))

    def bt(z):  # (n,) -> (n - 1,)
        return refl(z)[: n - 1]

    return b, bt


def landscape_hessian_matvec(landscape, params, x, dtype) -> Matvec:
    """Hessian-vector product of a landscape at ``x`` on its tangent space, for vectors of ``dtype``.

    Euclidean (grf): ``v -> D^2 phi(x) v`` (a JVP of the gradient). Sphere (pspin): the tangent Hessian
    ``B^T (P D^2H P - (x . DH / n) P) B = B^T D^2H B - (x . DH / n) I`` in the Householder basis ``B``
    (``sim.landscapes.sphere_tangent_basis``), so its matrix is ``landscape.tangent_hessian``.
    """
    wdt = x.dtype

    def hv(y):
        return jax.jvp(lambda z: landscape.euclidean_grad(params, z), (x,), (y,))[1]

    if landscape.manifold != "sphere":
        return lambda v: hv(v.astype(wdt)).astype(dtype)
    n = x.shape[0]
    radial = jnp.dot(x, landscape.euclidean_grad(params, x)) / n
    b, bt = _reflector(x)
    return lambda v: (bt(hv(b(v.astype(wdt)))) - radial * v.astype(wdt)).astype(dtype)
