"""`.ci/run`: the README's test command first, then every claim-backing slow test, named one by one.

Static checks (no test is run here; pytest only collects): each named test exists in its file, and every
`slow` test of the suite is either named in `.ci/run` or listed below with the reason it backs no published claim, so a new
slow test is a decision, not an accident.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"

# slow tests that back no published claim (README gallery caption or promise), with the reason
NOT_CLAIMS = {
    "tests/test_gallery.py::test_a_failing_entry_in_a_worker_raises_and_nothing_after_it_is_written": "the "
    "error path of `hdsim figures --workers N` (spawns worker processes); no figure or README number rests on it",
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
    "tests/test_critical.py::test_digits_critical_points_are_critical_and_their_index_is_exact": "the Dauphin "
    "plot on digits is not in the gallery or README yet (too few converged starts)",
    "tests/test_learning_critical.py::test_proposed_gallery_entry_runs_quick": "a smoke run of the proposed "
    "Dauphin gallery entry in quick mode; `hdsim figures --quick` runs the gallery's own entries",
    # slow sizes given as fixture parameters, which the old regex scan of the files did not see
    "tests/test_lanczos.py::test_no_reorthogonalisation_gives_the_same_count[N2000]": "an implementation "
    "cross-check (no reorthogonalisation against full); the default suite runs the small GOE",
}


def _claim_tests():
    text = CI.read_text()
    m = re.search(r"CLAIM_TESTS=\((.*?)\n\)", text, re.S)
    assert m, ".ci/run has no CLAIM_TESTS=( ... ) list"
    return re.findall(r'^\s*"([^"]+)"', m.group(1), re.M)


def _slow_tests():
    """node ids of the tests marked slow, as pytest itself collects them (so a slow mark on a decorator,
    a parametrize entry or a fixture parameter is seen alike). Collection only: no test runs."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "slow", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {line.strip() for line in proc.stdout.splitlines() if line.startswith("tests/") and "::" in line}


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
