"""The gallery: complete in figures/, indexed in the README with its captions, byte-identical re-runs on one
machine, and a regenerated figure's data within the cross-machine tolerance of the committed data."""

import csv
import filecmp
import json
import math
import os
import re
from pathlib import Path

import pytest

from sim.gallery import REGISTRY, gallery_markdown, make_figures
from sim.gallery._text import verdict

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"


def test_every_registered_figure_is_committed_with_its_data():
    for name in REGISTRY:
        for ext in ("png", "svg", "csv", "json"):
            assert (FIGURES / f"{name}.{ext}").exists(), (
                f"figures/{name}.{ext} missing: run `hdsim figures --only {name}`"
            )
        meta = json.loads((FIGURES / f"{name}.json").read_text())
        # the full run, not --quick
        assert meta["command"] == f"hdsim figures --only {name}", (name, meta["command"])
        assert len(_read_csv(FIGURES / f"{name}.csv")) >= 2, name


def test_readme_gallery_matches_the_committed_figures():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- gallery:begin -->\n(.*)<!-- gallery:end -->", readme, re.S)
    assert m, "README.md has no gallery section between <!-- gallery:begin --> and <!-- gallery:end -->"
    assert m.group(1).strip() == gallery_markdown(FIGURES, prefix="figures/").strip()


DISTANCE_FIGURES = ["concentration", "histograms"]  # one shared sweep: the plotting path of the distance figures


@pytest.mark.parametrize("names", [DISTANCE_FIGURES])
def test_quick_distance_figures_are_byte_identical_on_rerun(tmp_path, names):
    a, b = tmp_path / "a", tmp_path / "b"
    make_figures(a, names, quick=True)
    make_figures(b, names, quick=True)
    files = sorted(p.name for p in a.iterdir() if p.suffix in (".png", ".svg", ".csv"))
    assert len(files) == 3 * len(names)
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors, mismatch + errors


def test_caption_verdict_says_where_the_theory_falls():
    assert verdict(0.294, 0.314, 0.316) == "theory 0.316, above the interval: the cause is not established"
    assert verdict(-0.673, -0.543, -0.5, what="asymptotic theory", spec="g", why="small d") == (
        "asymptotic theory -0.5, above the interval: small d"
    )
    assert verdict(0.2732, 0.2764, 0.2747, spec=".4f") == "theory 0.2747, inside the interval"
    assert verdict(0.1, 0.2, 0.05, why="x").startswith("theory 0.050, below the interval: x")


# ---------------------------------------------------------------------------------------------
# Cross-machine reproducibility (README "Reproducibility"): on another CPU or BLAS, XLA and LAPACK sum in
# other orders, so float32 statistics differ in their last digits and an eigenvalue within rounding of 0
# can flip a count. The stated tolerance: relative 1e-5 on floating-point statistics, plus two flipped
# counts on statistics made of counts; integers and parameters exact. On this machine the regenerated
# file is byte-identical (tests above), so this test is the one that speaks for other machines.

CROSS_MACHINE_RTOL = 1e-5
FLIPPED_COUNTS = 2


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _value(cell):
    """A CSV cell as a number (missing: nan; sim.io writes missing values empty, older files 'nan'/'None')."""
    if cell in ("", "nan", "None"):
        return math.nan
    try:
        return float(cell)
    except ValueError:
        return cell


def test_regenerated_rmt_shift_data_matches_the_committed_data(tmp_path):
    """`rmt_shift` (the cheapest standalone full-size gallery entry: 2 x 21 x 4000 GOE matrices) regenerated
    from scratch against figures/rmt_shift.csv. Its statistics are made of counts: per matrix the index
    fraction k/N, so F flipped eigenvalue signs move the mean by at most F/(S N) and, since the standard
    deviation is a (scaled) Euclidean norm of the centred fractions, the std by at most F/(N sqrt(S - 1))
    and the standard error by that over sqrt(S) (S matrices); the float rounding adds rtol 1e-5."""
    from sim.gallery import rmt as gal

    gal._run.cache_clear()
    make_figures(tmp_path, ["rmt_shift"])
    new, old = _read_csv(tmp_path / "rmt_shift.csv"), _read_csv(FIGURES / "rmt_shift.csv")
    assert len(new) == len(old) and list(new[0]) == list(old[0])
    for a, b in zip(new, old):
        n, s = int(b["dim"]), int(b["samples"])
        assert (int(a["dim"]), int(a["samples"]), float(a["shift"])) == (n, s, float(b["shift"]))
        flips = {
            "mean_index_fraction": FLIPPED_COUNTS / (s * n),
            "std_index_fraction": FLIPPED_COUNTS / (n * math.sqrt(s - 1)),
            "mean_index_fraction_stderr": FLIPPED_COUNTS / (n * math.sqrt(s - 1) * math.sqrt(s)),
        }
        for k, bound in flips.items():
            x, y = _value(a[k]), _value(b[k])
            assert abs(x - y) <= CROSS_MACHINE_RTOL * abs(y) + bound, (k, n, b["shift"], x, y)
        for k in ("theory_index_fraction", "theory_index_fraction_finite_n"):  # float64 closed forms
            assert _value(a[k]) == pytest.approx(_value(b[k]), rel=1e-9, abs=1e-15), (k, n, b["shift"])


def test_rmt_minima_caption_says_why_quick_mode_fits_no_theta():
    from sim.fit import fit_theta
    from sim.gallery import rmt as gallery_rmt

    m, n = gallery_rmt.THETA_FIT_MIN_DIM, gallery_rmt.THETA_FIT_MIN_SIZES
    dims = [m + 8 * i for i in range(n)]
    log_p = [-0.2747 * d**2 - 0.5 * d for d in dims]
    # the constants the caption quotes are fit_theta's: one size fewer, or one below min_dim, gives no fit
    assert fit_theta(dims[:-1], log_p[:-1], [0.1] * (n - 1), min_dim=m) is None
    assert fit_theta([m - 1] + dims[1:], log_p, [0.1] * n, min_dim=m) is None
    fit = fit_theta(dims, log_p, [0.1] * n, min_dim=m)
    assert fit is not None
    text = gallery_rmt._theta_sentence(None, (6,), quick=True)
    assert text == (
        "theta is not fitted here (ln3/4 = 0.2747): the fit needs thermodynamic-integration estimates at 4 or "
        "more sizes N >= 8, and this run has none (N = 6: --quick runs reduced sizes)"
    )
    assert " - " not in text and "too few points" not in text
    full = gallery_rmt._theta_sentence(fit, tuple(dims))
    assert full.startswith(f"a weighted fit to the thermodynamic-integration estimates at N = {m} to {dims[-1]} gives")


@pytest.fixture
def fake_topics(monkeypatch):
    """Two cheap topics registered for one test (the worker processes import them by module name)."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    monkeypatch.setattr("sim.gallery.REGISTRY", dict(REGISTRY))
    for m in ("_gallery_topic_a", "_gallery_topic_b"):
        sys.modules.pop(m, None)
        importlib.import_module(m)
    return ["fake_a1", "fake_b1", "fake_a2"]


def test_worker_processes_write_the_same_files_in_the_same_order(tmp_path, fake_topics):
    seq, par = tmp_path / "seq", tmp_path / "par"
    seen = []
    a = make_figures(seq, fake_topics, quick=True)
    b = make_figures(par, fake_topics, quick=True, workers=2, progress=seen.append)
    assert [r["name"] for r in b] == fake_topics == seen  # results and progress in the order asked
    assert [(r["files"], r["caption"]) for r in a] == [(r["files"], r["caption"]) for r in b]
    files = sorted(p.name for p in seq.iterdir())
    assert files == sorted(p.name for p in par.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(seq, par, [f for f in files if not f.endswith(".json")], shallow=False)
    assert not mismatch and not errors
    pids = {json.loads((par / f"{n}.json").read_text())["info"]["pid"] for n in fake_topics}
    assert os.getpid() not in pids  # computed in the worker processes


@pytest.mark.slow  # spawns two worker processes (each imports jax): seconds
def test_a_failing_entry_in_a_worker_raises_and_nothing_after_it_is_written(tmp_path, fake_topics, monkeypatch):
    monkeypatch.setenv("FAKE_GALLERY_FAIL", "fake_a2")
    names = ["fake_a1", "fake_a2", "fake_b1"]
    with pytest.raises(ValueError, match="fake_a2 failed"):
        make_figures(tmp_path, names, quick=True, workers=2)
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert written == ["fake_a1.csv", "fake_a1.json"]
