"""Gallery: issue 3: random-matrix Hessians."""

from __future__ import annotations

from sim.gallery import register  # noqa: F401
