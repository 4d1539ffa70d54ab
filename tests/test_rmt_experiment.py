"""`sim.experiments.rmt.run`: the parts that run in worker threads (rare-event and exact values) give the
numbers of the plain sequential calls, and the shared exact table gives the single-n values."""

import math

import numpy as np
import pytest

from sim import rare
from sim.experiments import rmt as exp


def test_exact_many_equals_single_n_calls():
    ns = (1, 2, 5, 12, 17)
    many = rare.log_p_positive_definite_exact_many(ns)
    assert sorted(many) == list(ns)
    for n in ns:
        # one table at the digits of n = 17 against each n's own: equal to the formula's accuracy
        assert many[n] == pytest.approx(rare.log_p_positive_definite_exact(n), rel=1e-14, abs=1e-15)
    assert rare.log_p_positive_definite_exact_many([]) == {}
    with pytest.raises(ValueError, match="n must be an integer in"):
        rare.log_p_positive_definite_exact_many([3, 0])


def test_threaded_run_gives_the_sequential_numbers():
    """TI for n = 6, 7 runs in worker threads while the Monte Carlo streams: same numbers as direct calls."""
    cfg = exp.RmtConfig(
        dims=(2, 6, 7),
        samples=3000,
        seed=4,
        min_minima=100,
        ti_chains=4,
        ti_sweeps=30,
        spectrum_dims=(),
    )
    res = exp.run(cfg)
    rows = {r["dim"]: r for r in res.rows}
    # n = 2: P(min) = 0.146, ~440 of 3000 Monte Carlo minima (>= min_minima); n = 6, 7: ~0.01 minima, TI
    assert rows[2]["method"] == "monte-carlo"
    for n in (6, 7):
        assert rows[n]["method"] == exp.METHOD_NAMES["ti"]
        direct = rare.log_p_positive_definite_ti(exp._key(cfg.seed, n, 0.0, 1), n, chains=4, sweeps=30)
        assert rows[n]["log_p_min"] == direct.log_p and rows[n]["log_p_min_stderr"] == direct.stderr
        assert math.exp(rows[n]["log_p_min"]) == rows[n]["p_min"]
    for n in (2, 6, 7):
        assert rows[n]["exact_log_p_min"] == pytest.approx(rare.log_p_positive_definite_exact(n), rel=1e-14)
    assert [r["dim"] for r in res.tables["rare"]] == [6, 7]
    # the Monte Carlo counts do not depend on the threads either: the n = 2 histogram again, alone
    alone = exp.run(exp.RmtConfig(dims=(2,), samples=3000, seed=4, rare="none", spectrum_dims=()))
    hist = [(h["index"], h["count"]) for h in res.tables["index_hist"] if h["dim"] == 2]
    assert hist == [(h["index"], h["count"]) for h in alone.tables["index_hist"]]
    assert np.isfinite(res.info["seconds_rare"]) and res.info["seconds_exact"] > 0
