"""benchmarks/bench_rmt.py's LDL/inertia baseline counts negative eigenvalues exactly, 2x2 pivots included."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_rmt  # noqa: E402
from scipy.linalg.lapack import dsytrf  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 3, 8, 33])
def test_sytrf_inertia_matches_eigvalsh(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((400, n, n))
    h = (a + np.swapaxes(a, 1, 2)).astype(np.float32)
    h[:200] *= 1 - np.eye(n, dtype=np.float32)  # zero diagonal: Bunch-Kaufman must take 2x2 pivots
    h[200:300] -= np.float32(3 * np.sqrt(n)) * np.eye(n, dtype=np.float32)  # many negative eigenvalues
    h[300:400] += np.float32(3 * np.sqrt(n)) * np.eye(n, dtype=np.float32)  # none
    exact = (np.linalg.eigvalsh(h.astype(np.float64)) < 0).sum(-1)
    assert np.array_equal(bench_rmt.sytrf_index(h), exact)
    assert np.array_equal(bench_rmt.ldl_index(h[::4]), exact[::4])
    assert set(exact) >= ({0, n} if n > 1 else {0, 1})
    if n > 1:  # the 2x2 branch was exercised
        assert any((dsytrf(m.astype(np.float64), lower=1)[1] < 0).any() for m in h[:200])
