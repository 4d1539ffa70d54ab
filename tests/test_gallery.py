"""The gallery: complete in figures/, indexed in the README with its captions, byte-identical re-runs."""

import filecmp
import re
from pathlib import Path

import pytest

from sim.gallery import REGISTRY, gallery_markdown, make_figures

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"


def test_every_registered_figure_is_committed_with_its_data():
    for name in REGISTRY:
        for ext in ("png", "svg", "csv", "json"):
            assert (FIGURES / f"{name}.{ext}").exists(), f"figures/{name}.{ext} missing: run `hdsim figures --only {name}`"


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
