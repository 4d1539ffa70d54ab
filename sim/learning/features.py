"""Random-features regression: P fixed random features phi(x) = act(W x / sqrt(s)) / sqrt(P) of the
inputs (W with i.i.d. N(0, 1) rows, s the inputs' mean squared norm so that pre-activations have unit
variance), followed by ridge / minimum-norm least squares on them.

``activation``: ``relu``, ``tanh`` or ``linear`` (random projections: the linear model of Maloney, Roberts
and Sully 2022, whose loss falls as P^-(beta - 1) when n >> P). Feature j's weights come from
``fold_in(key, j)``, so the first P features of a draw of P' > P are the draw of P.

References:
    Rahimi & Recht 2007, "Random features for large-scale kernel machines", NeurIPS.
    Mei & Montanari 2022, Comm. Pure Appl. Math. 75, 667 (double descent of random features).
    Maloney, Roberts, Sully 2022, arXiv 2210.16859; docs/theory.md#random-features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sim.learning.data import Data
from sim.learning.ridge import Curve, ridge_curve

__all__ = ["ACTIVATIONS", "random_features", "features_curve"]

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "linear": lambda z: z}


def random_features(key, x, num_features: int, *, activation: str = "relu", input_scale=None):
    """(n, P) random features of the inputs ``x`` (n, d).

    Args:
        key: PRNG key (feature j uses ``fold_in(key, j)``).
        x: (n, d) inputs. num_features: P (static).
        activation: one of ``ACTIVATIONS``.
        input_scale: the inputs' mean squared norm E|x|^2 (default d: standardised inputs).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"random_features: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    d = x.shape[1]
    s = d if input_scale is None else input_scale
    w = jax.vmap(lambda j: jax.random.normal(jax.random.fold_in(key, j), (d,), x.dtype))(jnp.arange(num_features))
    z = (x @ w.T) / jnp.sqrt(jnp.asarray(s, x.dtype))
    return ACTIVATIONS[activation](z) / jnp.sqrt(jnp.asarray(num_features, x.dtype))


def features_curve(
    key,
    data: Data,
    ns,
    num_features: int,
    ridge=0.0,
    *,
    activation: str = "relu",
    input_scale=None,
    method: str = "cholesky",
) -> Curve:
    """Losses of ridge / minimum-norm regression on P random features for the nested training sets ``ns``."""
    phi = random_features(key, data.x_train, num_features, activation=activation, input_scale=input_scale)
    phi_test = random_features(key, data.x_test, num_features, activation=activation, input_scale=input_scale)
    return ridge_curve(phi, data.y_train, phi_test, data.y_test, data.f_test, ns, ridge, method=method)
