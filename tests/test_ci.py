"""`.ci/run`: the README's test command first, then every claim-backing slow test, named one by one.

Static checks (no test is run here): each named test exists in its file, and every `slow` test of the
suite is either named in `.ci/run` or listed below with the reason it backs no published claim, so a new
slow test is a decision, not an accident.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"

# slow tests that back no published claim (README gallery caption or promise), with the reason
NOT_CLAIMS = {
    "tests/test_critical.py::test_pspin_p4_small_n_euler_and_kac_rice": "a theory cross-check of the p = 4 "
    "landscape, which no figure or README sentence uses",
    "tests/test_lanczos.py::test_spectrum_experiment_mlp_after_training": "the trained-MLP path of the spectrum "
    "experiment; the spectrum_training caption's numbers come from the gallery run itself",
    "tests/test_lanczos.py::test_spectrum_training_rows": "row bookkeeping of the training sweep",
    "tests/test_rmt.py::test_ldl_inertia_matches_eigvalsh[64]": "the default suite checks N = 1, 8, 24; N = 64 "
    "only adds compile time",
    "tests/test_cli_spectrum.py::test_pspin_at_a_critical_point_full_depth": "CLI plumbing of --at critical",
    "tests/test_cli_spectrum.py::test_quick_gallery_is_byte_identical": "same-machine re-run identity, which "
    "tests/test_gallery.py checks for the distance and rmt entries in the default suite",
    "tests/test_counts.py::test_mlp_counts_against_eigvalsh[N2185-init]": "no README or gallery sentence quotes "
    "the counts at N = 2185 (the default suite checks N = 489); move it to CLAIM_TESTS if one does",
    "tests/test_counts.py::test_mlp_counts_against_eigvalsh[N2185-trained]": "as N2185-init",
}


def _claim_tests():
    text = CI.read_text()
    m = re.search(r"CLAIM_TESTS=\((.*?)\n\)", text, re.S)
    assert m, ".ci/run has no CLAIM_TESTS=( ... ) list"
    return re.findall(r'^\s*"([^"]+)"', m.group(1), re.M)


def _slow_tests():
    """node ids of the tests marked slow (decorator, or a slow-marked parameter), by reading the files
    (a slow-marked fixture parameter is not seen: name such tests in CLAIM_TESTS or NOT_CLAIMS by hand)."""
    found = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        src = path.read_text()
        rel = f"tests/{path.name}"
        for m in re.finditer(r"@pytest\.mark\.slow[^\n]*\n(?:@[^\n]*\n)*def (test_\w+)", src):
            found.add(f"{rel}::{m.group(1)}")
        # a slow-marked parameter: pytest.param(..., marks=pytest.mark.slow[, id="X"]) before the next def
        for m in re.finditer(
            r"pytest\.param\(([^()]*(?:\([^()]*\)[^()]*)*?),?\s*marks=pytest\.mark\.slow"
            r"(?:,\s*id=\"([\w-]+)\")?\)",
            src,
        ):
            d = re.compile(r"^def (\w+)\(", re.M).search(src, m.end())
            if d and d.group(1).startswith("test_"):  # (a fixture's slow parameter is not seen here)
                found.add(f"{rel}::{d.group(1)}[{m.group(2) or m.group(1).strip().rstrip(',').strip()}]")
    return found


def test_ci_runs_the_readme_command_then_the_claim_tests():
    text = CI.read_text()
    readme = (ROOT / "README.md").read_text()
    cmd = 'python -m pip install -q -e ".[test]" && python -m pytest -q'
    assert cmd in readme and cmd in text
    assert text.index(cmd) < text.index('"${CLAIM_TESTS[@]}"')
    assert re.search(r'python -m pytest -q -m slow [^\n]*"\$\{CLAIM_TESTS\[@\]\}"', text)


def test_every_named_claim_test_exists():
    names = _claim_tests()
    assert len(names) == len(set(names)) and names
    for node in names:
        path, _, name = node.partition("::")
        func = name.split("[")[0]
        assert re.search(rf"^def {func}\(", (ROOT / path).read_text(), re.M), f"{node}: no such test"


def test_every_slow_test_is_a_claim_or_says_why_not():
    slow = _slow_tests()
    claims, excused = set(_claim_tests()), set(NOT_CLAIMS)
    unaccounted = slow - claims - excused
    assert not unaccounted, f"slow tests neither in .ci/run's CLAIM_TESTS nor in NOT_CLAIMS: {sorted(unaccounted)}"
    assert not (claims & excused)
