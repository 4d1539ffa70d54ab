"""Every citation ``docs/theory.md#<anchor>`` in the code, tests, benchmarks and README points at a
section that exists, and nothing cites the developers' private notes instead."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THEORY = ROOT / "docs" / "theory.md"
SOURCES = [
    ROOT / "README.md",
    ROOT / "cli.py",
    *sorted((ROOT / "sim").rglob("*.py")),
    *sorted((ROOT / "tests").glob("*.py")),
    *sorted((ROOT / "benchmarks").glob("*.py")),
]


def _anchors() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^##\s+([a-z0-9-]+)\s*$", THEORY.read_text(), re.MULTILINE)}


def test_theory_sections_have_stable_anchors():
    anchors = _anchors()
    assert {
        "distances-chi-law",
        "goe-semicircle",
        "goe-large-deviation",
        "grf-bray-dean",
        "pspin",
        "slq-error",
        "eigenlearning",
        "double-descent",
        "references",
    } <= anchors
    # links inside the document resolve too
    internal = set(re.findall(r"\]\(#([a-z0-9-]+)\)", THEORY.read_text()))
    assert internal - anchors == set()


def test_every_citation_resolves():
    anchors = _anchors()
    bad, private = [], []
    for path in SOURCES:
        if not path.exists() or path == Path(__file__).resolve():
            continue
        text = path.read_text()
        for line_no, line in enumerate(text.splitlines(), 1):
            for anchor in re.findall(r"docs/theory\.md#([A-Za-z0-9_-]+)", line):
                if anchor not in anchors:
                    bad.append(f"{path.relative_to(ROOT)}:{line_no}: #{anchor}")
            if re.search(r"THEORY\.md|\.\./shared|/work/shared", line):
                private.append(f"{path.relative_to(ROOT)}:{line_no}")
    assert not bad, "citations of missing sections: " + ", ".join(bad)
    assert not private, "cite docs/theory.md, not the private notes: " + ", ".join(private)
