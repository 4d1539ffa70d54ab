"""The gradient noise scale (McCandlish et al. 2018) from two batch sizes and Hessian-vector products.

For a batch-B mean gradient ``G_B`` of a loss with true gradient G, per-example gradient covariance Sigma
and Hessian H, ``E|G_B|^2 = |G|^2 + tr(Sigma)/B`` and ``E[G_B^T H G_B] = G^T H G + tr(H Sigma)/B``. Two
independent batches of sizes ``b_small < b_big`` then give unbiased estimates

    |G|^2     ~ (b_big |G_big|^2 - b_small |G_small|^2) / (b_big - b_small)
    tr(Sigma) ~ (|G_small|^2 - |G_big|^2) / (1/b_small - 1/b_big)

and the same with ``|.|^2`` replaced by ``G^T H G`` (H from a Hessian-vector product of the true loss,
``sim.hvp.hvp``) for ``G^T H G`` and ``tr(H Sigma)``. The noise scales are the ratios
``B_simple = tr(Sigma)/|G|^2`` and ``B_noise = tr(H Sigma)/(G^T H G)``; ``estimates`` returns the four
unbiased pieces (averaged over ``reps`` independent pairs), never the ratios, so that a caller averages
numerators and denominators over seeds and replicates before dividing (the ratio of averages is
consistent; an average of ratios is not).

Batches are drawn like training batches (``sim.learning.parallel.sample``): samples 0 .. b - 1 under the key
``fold_in(key, 2 r + size)`` of pair r (size 0: small, 1: big).

References:
    McCandlish, Kaplan, Amodei et al. 2018, arXiv 1812.06162, appendix A.1.
    docs/theory.md#gradient-noise-scale.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from sim.hvp import hvp
from sim.learning.parallel import Arrays, Problem, batch_loss, sample, true_loss

__all__ = ["Estimates", "estimates", "exact_linear"]


class Estimates(NamedTuple):
    """Unbiased estimates (leading axes as the inputs'): ``g2`` = |G|^2, ``tr_sigma`` = tr(Sigma), ``ghg`` =
    G^T H G, ``tr_h_sigma`` = tr(H Sigma)."""

    g2: jax.Array
    tr_sigma: jax.Array
    ghg: jax.Array
    tr_h_sigma: jax.Array


def _pair(b_small, b_big, small, big):
    """(signal, noise) from the squared norms of a small-batch and a big-batch gradient."""
    signal = (b_big * big - b_small * small) / (b_big - b_small)
    noise = (small - big) / (1.0 / b_small - 1.0 / b_big)
    return signal, noise


@functools.partial(jax.jit, static_argnames=("problem", "b_small", "b_big", "reps"))
def _estimates(problem, arrays, params, key, *, b_small, b_big, reps):
    def one(r):
        out = []
        for size, b in ((0, b_small), (1, b_big)):
            x, y = sample(problem, arrays, jax.random.fold_in(key, 2 * r + size), 0, b)
            g = jax.grad(lambda p: batch_loss(problem, p, x, y))(params)
            hg = hvp(lambda p: true_loss(problem, arrays, p), params, g)
            gv, hv = ravel_pytree(g)[0], ravel_pytree(hg)[0]
            out.append((jnp.vdot(gv, gv), jnp.vdot(gv, hv)))
        (n_s, q_s), (n_b, q_b) = out
        g2, tr_s = _pair(b_small, b_big, n_s, n_b)
        ghg, tr_hs = _pair(b_small, b_big, q_s, q_b)
        return jnp.stack([g2, tr_s, ghg, tr_hs])

    m = jnp.mean(jax.lax.map(one, jnp.arange(reps)), axis=0)
    return Estimates(m[0], m[1], m[2], m[3])


def estimates(
    problem: Problem, arrays: Arrays, params, key, *, b_small: int = 32, b_big: int = 1024, reps: int = 4
) -> Estimates:
    """The four unbiased pieces of the noise scales at ``params`` (one point), averaged over ``reps``
    independent pairs of batches (see the module docstring). ``vmap`` over stacked ``params`` and keys.

    Raises:
        ValueError: ``b_small`` < 1, ``b_big`` <= ``b_small`` or ``reps`` < 1.
    """
    if int(b_small) != b_small or b_small < 1 or int(b_big) != b_big or b_big <= b_small:
        raise ValueError(f"estimates: need integers 1 <= b_small < b_big, got {b_small}, {b_big}")
    if int(reps) != reps or reps < 1:
        raise ValueError(f"estimates: reps must be an integer >= 1, got {reps}")
    return _estimates(problem, arrays, params, key, b_small=int(b_small), b_big=int(b_big), reps=int(reps))


def exact_linear(arrays: Arrays, params) -> Estimates:
    """The exact pieces for the linear model on a stream (Gaussian x ~ N(0, H), H = diag(lambda)):
    ``Sigma = H delta delta^T H + (delta^T H delta + sigma^2) H`` (docs/theory.md#gradient-noise-scale)."""
    lam, w, noise = arrays
    delta = params[:, 0] - w
    g2 = jnp.sum((lam * delta) ** 2)
    ghg = jnp.sum(lam**3 * delta**2)
    c = jnp.sum(lam * delta**2) + noise
    return Estimates(g2, g2 + c * jnp.sum(lam), ghg, ghg + c * jnp.sum(lam**2))
