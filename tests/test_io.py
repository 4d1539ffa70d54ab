"""sim.io: the one CSV convention, and commits that never leave a mix of old and new files.

The crash tests interrupt ``Output.commit`` at every point where a real crash could land (before the
journal, between two renames) and check what the directory holds afterwards, and after the next
``Output`` on it has recovered.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sim import io


def names(d):
    return sorted(p.name for p in d.iterdir())


# ---- CSV cells ----


def test_missing_values_are_empty_cells_in_every_column():
    text = io.to_csv_text([{"a": None, "b": math.nan, "c": np.float64("nan"), "d": np.float32("nan"), "e": 1}])
    assert text == "a,b,c,d,e\n,,,,1\n"


def test_float32_values_are_written_with_the_digits_they_carry():
    x = np.float32(0.1234567891)
    assert io.format_value(x) == "0.1234568"  # 7 significant digits
    assert io.format_value(np.float32(3.0e-12)) == "3e-12"
    # a difference in the 8th digit (what another CPU's summation order gives) does not show
    assert io.format_value(np.float32(1.2345671)) == io.format_value(np.float32(1.2345672))


def test_float64_values_round_trip():
    for v in (0.1, 1 / 3, 2.0**-1074, 1e300, -0.0):
        assert float(io.format_value(v)) == v and io.format_value(v) == repr(v)
        assert float(io.format_value(np.float64(v))) == v


def test_other_cells():
    assert [io.format_value(v) for v in (True, np.bool_(False), np.int64(7), 3, "x", math.inf, -math.inf)] == [
        "True",
        "False",
        "7",
        "3",
        "x",
        "inf",
        "-inf",
    ]


def test_json_writes_float32_with_its_digits(tmp_path):
    with io.Output(tmp_path) as o:
        o.json("a.json", {"x": np.float32(0.1), "y": math.nan, "z": np.float64(0.1)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 0.1, "y": None, "z": 0.1}


# ---- commits ----


def _old_files(d):
    for n in ("a.csv", "b.png", "c.json"):
        (d / n).write_text(f"old {n}")


def _stage_new(o):
    for n in ("a.csv", "b.png", "c.json"):
        o.text(n, f"new {n}")


def test_commit_puts_every_file_in_place_and_leaves_nothing_staged(tmp_path):
    _old_files(tmp_path)
    with io.Output(tmp_path) as o:
        _stage_new(o)
        o.text("sub/d.csv", "new d")
        assert [n for n in names(tmp_path) if not n.startswith(io.STAGE_PREFIX)] == ["a.csv", "b.png", "c.json"]
        assert (tmp_path / "a.csv").read_text() == "old a.csv"  # nothing visible before the commit
    assert names(tmp_path) == ["a.csv", "b.png", "c.json", "sub"]
    assert all((tmp_path / n).read_text() == f"new {n}" for n in ("a.csv", "b.png", "c.json"))
    assert (tmp_path / "sub" / "d.csv").read_text() == "new d"


def test_failure_before_commit_keeps_old_files_and_leaves_nothing(tmp_path):
    _old_files(tmp_path)
    with pytest.raises(RuntimeError):
        with io.Output(tmp_path) as o:
            _stage_new(o)
            raise RuntimeError("the run failed")
    assert names(tmp_path) == ["a.csv", "b.png", "c.json"]
    assert all((tmp_path / n).read_text() == f"old {n}" for n in ("a.csv", "b.png", "c.json"))


def test_crash_between_renames_is_completed_by_the_next_output(tmp_path, monkeypatch):
    """The process dies after the first rename of the commit: the directory mixes one new file with
    two old ones until the next Output opens it, which completes the journaled commit."""
    _old_files(tmp_path)
    real = os.replace
    moved = []

    def crash_after_first_final_rename(src, dst):
        if (
            str(dst).startswith(str(tmp_path))
            and not str(dst).endswith(io._JOURNAL)
            and io.STAGE_PREFIX not in os.path.basename(os.path.dirname(str(dst)))
        ):
            if moved:
                raise KeyboardInterrupt  # stands for a kill: nothing after this line runs
            moved.append(dst)
        return real(src, dst)

    o = io.Output(tmp_path)
    _stage_new(o)
    monkeypatch.setattr(io.os, "replace", crash_after_first_final_rename)
    with pytest.raises(KeyboardInterrupt):
        o.commit()
    monkeypatch.setattr(io.os, "replace", real)
    contents = {n: (tmp_path / n).read_text() for n in ("a.csv", "b.png", "c.json")}
    assert sorted(contents.values()) == ["new a.csv", "old b.png", "old c.json"]  # the crash left a mix
    io.Output(tmp_path)  # the next run (or sim.io.recover) finishes the commit
    assert names(tmp_path) == ["a.csv", "b.png", "c.json"]
    assert all((tmp_path / n).read_text() == f"new {n}" for n in ("a.csv", "b.png", "c.json"))


def test_killed_process_before_the_journal_is_rolled_back(tmp_path):
    """A process killed while staging (no journal yet): its staged files are removed by the next
    Output, the previous files are untouched."""
    _old_files(tmp_path)
    code = textwrap.dedent(f"""
        import os
        from sim import io
        o = io.Output({str(tmp_path)!r})
        for n in ("a.csv", "b.png", "c.json"):
            o.text(n, "new " + n)
        os._exit(9)  # killed: no commit, no discard, no finally
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 9
    assert any(n.startswith(io.STAGE_PREFIX) for n in names(tmp_path))
    io.Output(tmp_path)
    assert names(tmp_path) == ["a.csv", "b.png", "c.json"]
    assert all((tmp_path / n).read_text() == f"old {n}" for n in ("a.csv", "b.png", "c.json"))


def test_a_live_runs_staging_is_left_alone(tmp_path):
    o = io.Output(tmp_path)
    o.text("a.csv", "mine")
    io.recover(tmp_path)  # another process opening the directory
    with o:
        pass
    assert (tmp_path / "a.csv").read_text() == "mine"


def test_remove_deletes_in_the_same_commit(tmp_path):
    _old_files(tmp_path)
    with io.Output(tmp_path) as o:
        o.text("a.csv", "new")
        o.remove("b.png")
        o.remove("a.csv")  # staged in this run: kept
    assert names(tmp_path) == ["a.csv", "c.json"] and (tmp_path / "a.csv").read_text() == "new"


@pytest.mark.parametrize("bad", ["../x.csv", "/tmp/x.csv", ".hdsim-stage-x/y"])
def test_names_outside_the_directory_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        io.Output(tmp_path).path(bad)
