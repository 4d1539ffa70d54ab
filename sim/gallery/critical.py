"""Gallery: issue 4: critical points of random losses."""

from __future__ import annotations

from sim.gallery import register  # noqa: F401
