"""Experiments: sweeps over dimensions that turn kernels into tables (no files, no plots).

Each experiment takes a frozen config dataclass and an optional ``progress(advance: int)`` callback
and returns a ``Result``: the main table (list of row dicts, one schema), optional side tables, and
facts for the JSON (e.g. device, throughput). Writing and plotting live in ``sim.io``/``sim.plots``.
"""

from sim.experiments.base import Result

__all__ = ["Result"]
