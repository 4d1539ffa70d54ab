"""Multilayer perceptrons of any width and depth in three parameterisations (pure, key first).

A network with input dimension ``d``, ``depth`` hidden layers of ``width`` units and ``k`` outputs is a
list of layers ``{"w": (fan_in, fan_out), "b": (fan_out,)}``; layer l computes
``h_l = phi(m_l * (h_{l-1} @ w_l) + mb_l * b_l)`` (no phi on the last layer). The parameterisation fixes
the forward multipliers ``m_l``, ``mb_l`` and the initial standard deviations of ``w_l``, ``b_l``, as the
``parameterization`` argument of neural-tangents' ``stax.Dense`` does:

* ``standard``: ``m = 1``, ``w ~ N(0, sigma_w^2 / fan_in)``, ``mb = 1``, ``b ~ N(0, sigma_b^2)``. A
  width-independent learning rate is unstable at large width (the NTK grows like the width).
* ``ntk``: ``m = sigma_w / sqrt(fan_in)``, ``mb = sigma_b``, every parameter ``N(0, 1)``. Same function at
  initialisation as ``standard``; the NTK has a finite limit, so one learning rate fits every width and the
  network trains lazily: ``||theta_T - theta_0||`` stays O(1) while ``||theta_0|| ~ sqrt(#params)``.
* ``mup``: the maximal-update (mean-field) parameterisation for SGD with one width-independent learning
  rate (Yang & Hu 2021, Tensor Programs IV, Table 3, written with the learning-rate factors moved into
  the multipliers): a layer whose effective weights have initial variance ``v`` and learning-rate factor
  ``c`` gets ``m = sqrt(c)`` and parameters of standard deviation ``sqrt(v / c)``. Input layer (and every
  bias): ``v = sigma^2 / fan_in``, ``c = fan_out``; hidden layers: ``v = sigma_w^2 / fan_in``, ``c = 1``;
  output layer: ``v = sigma_w^2 / fan_in^2``, ``c = 1 / fan_in``. For one hidden layer this is the
  mean-field network ``f = (1/n) sum_i a_i phi(w_i . x)`` trained with learning rate ``eta * n``: the
  output is 0 at infinite width, and every parameter moves by O(1) of its own size (not lazy). Under
  Adam the multipliers are not equivalent to learning-rate factors (Adam normalises the gradient), so
  ``mup`` with Adam is the parameterisation above, not Adam's muP.

The flattened parameter vector (``jax.flatten_util.ravel_pytree``) is what distances, Hessians and
interpolations act on; the multipliers make that vector's geometry depend on the parameterisation, as
the issue's laws do (the relative change is a statement about these coordinates).

References:
    Jacot, Gabriel, Hongler 2018 (NTK parameterisation); Novak et al. 2020, neural-tangents ``stax.Dense``;
    Mei, Montanari, Nguyen 2018 (mean field); Yang & Hu 2021, arXiv 2011.14522 (muP);
    docs/theory.md, "Training: lazy and feature learning".
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sim._util import as_key, float_dtype

__all__ = [
    "PARAMETERIZATIONS",
    "ACTIVATIONS",
    "widths_of",
    "num_params",
    "multipliers",
    "init",
    "apply",
    "mse",
    "loss",
    "error_rate",
]

PARAMETERIZATIONS = ("standard", "ntk", "mup")
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "gelu": jax.nn.gelu, "linear": lambda x: x}


def _check(fn, d_in, width, depth, d_out, parameterization, activation="relu"):
    for name, v in (("d_in", d_in), ("width", width), ("depth", depth), ("d_out", d_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{fn}: {name} must be an integer >= 1, got {v!r}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"{fn}: parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"{fn}: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


def widths_of(d_in: int, width: int, depth: int, d_out: int) -> tuple[int, ...]:
    """Layer widths ``(d_in, width, ..., width, d_out)`` with ``depth`` hidden layers."""
    return (int(d_in),) + (int(width),) * int(depth) + (int(d_out),)


def num_params(d_in: int, width: int, depth: int, d_out: int) -> int:
    """Number of parameters (weights and biases)."""
    ws = widths_of(d_in, width, depth, d_out)
    return sum(a * b + b for a, b in zip(ws[:-1], ws[1:]))


def multipliers(widths, parameterization: str, *, sigma_w: float = 1.0, sigma_b: float = 0.0):
    """Per layer ``(m_w, std_w, m_b, std_b)`` as Python floats (see the module docstring).

    ``sigma_b = 0`` (default) starts every bias at 0 in every parameterisation (their multipliers are
    then those of ``sigma_b = 1``, so biases still train)."""
    out = []
    last = len(widths) - 2
    sb = sigma_b if sigma_b > 0 else 1.0
    b_scale = 1.0 if sigma_b > 0 else 0.0  # initial bias std factor
    for l, (fi, fo) in enumerate(zip(widths[:-1], widths[1:])):
        if parameterization == "standard":
            out.append((1.0, sigma_w / math.sqrt(fi), 1.0, b_scale * sb))
        elif parameterization == "ntk":
            out.append((sigma_w / math.sqrt(fi), 1.0, sb, b_scale))
        else:  # mup (SGD form, learning-rate factors in the multipliers)
            if l == 0 and l != last:
                v, c = sigma_w**2 / fi, float(fo)
            elif l == last and l != 0:
                v, c = sigma_w**2 / fi**2, 1.0 / fi
            elif l == 0 and l == last:  # no hidden layer: a linear model, mean-field in nothing
                v, c = sigma_w**2 / fi, 1.0
            else:
                v, c = sigma_w**2 / fi, 1.0
            cb = float(fo) if l != last else 1.0
            out.append((math.sqrt(c), math.sqrt(v / c), math.sqrt(cb) * sb, b_scale / math.sqrt(cb)))
    return tuple(out)


def init(
    key,
    d_in: int,
    width: int,
    depth: int,
    d_out: int,
    *,
    parameterization: str = "ntk",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    dtype=jnp.float32,
) -> list[dict]:
    """Random initial parameters: layer l from ``fold_in(key, l)`` (weights ``fold_in(., 0)``, biases
    ``fold_in(., 1)``), so a layer's draw does not depend on the others' shapes.

    Returns:
        list of ``{"w": (fan_in, fan_out), "b": (fan_out,)}``.
    """
    _check("init", d_in, width, depth, d_out, parameterization)
    dt = float_dtype(dtype, fn="init")
    key = as_key(key)
    ws = widths_of(d_in, width, depth, d_out)
    layers = []
    for l, ((fi, fo), (_, sw, _, sb)) in enumerate(
        zip(zip(ws[:-1], ws[1:]), multipliers(ws, parameterization, sigma_w=sigma_w, sigma_b=sigma_b))
    ):
        k = jax.random.fold_in(key, l)
        w = sw * jax.random.normal(jax.random.fold_in(k, 0), (fi, fo), dt)
        b = sb * jax.random.normal(jax.random.fold_in(k, 1), (fo,), dt)
        layers.append({"w": w, "b": b})
    return layers


def apply(
    params, x, *, parameterization: str = "ntk", activation: str = "relu", sigma_w: float = 1.0, sigma_b: float = 0.0
) -> jax.Array:
    """Network output, ``(n, d_in) -> (n, d_out)``; the same arguments as ``init`` (multipliers are
    recomputed from the shapes, so ``params`` carries arrays only)."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"apply: parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"apply: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    ws = (params[0]["w"].shape[0],) + tuple(p["w"].shape[1] for p in params)
    mult = multipliers(ws, parameterization, sigma_w=sigma_w, sigma_b=sigma_b)
    return _forward(params, x, mult, ACTIVATIONS[activation])


def _forward(params, x, mult, phi, transposed=None):
    """The forward pass with multipliers ``mult`` (``multipliers``) and activation ``phi``.

    The multiplier scales the weight matrix (fan_in x fan_out), not the layer's output (n x fan_out):
    the same function, one pass over the smaller array (and the NTK parameterisation's effective
    weights ``m * w`` are computed as the standard one's initial weights are). ``transposed[l]``: layer l's
    weight is stored as (fan_out, fan_in) (``sim.learning.train`` trains in that layout where it makes
    XLA's weight-gradient product faster; the function is the same). The multipliers may be traced
    arrays (``sim.learning.train`` passes them as data); a Python 1.0 skips its product."""
    h = x
    for l, (p, (mw, _, mb, _)) in enumerate(zip(params, mult)):
        w = p["w"] if isinstance(mw, float) and mw == 1.0 else mw * p["w"]
        if transposed is not None and transposed[l]:
            w = w.T
        h = h @ w + mb * p["b"][None, :]
        if l < len(params) - 1:
            h = phi(h)
    return h


def mse(out, y):
    """``0.5 * mean_n sum_k (out - y)^2`` (squared loss on one-hot targets, summed over classes)."""
    r = out - y
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=-1))


def loss(params, x, y, **model):
    """Mean squared loss of the network ``apply(params, x, **model)`` on targets ``y``."""
    return mse(apply(params, x, **model), y)


def error_rate(params, x, labels, **model):
    """Fraction of ``x`` whose arg-max output differs from the integer ``labels``."""
    return jnp.mean(jnp.argmax(apply(params, x, **model), axis=-1) != labels)
