"""Gallery: issue 5: Hessian spectra at scale."""

from __future__ import annotations

from sim.gallery import register  # noqa: F401
