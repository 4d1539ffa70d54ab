"""Cheap stand-in gallery topic for tests/test_gallery.py's worker-process tests (not a test module)."""

import os

from sim.gallery import register


@register("fake_a1", "first entry of topic a")
def _a1(out, quick):
    out.csv("fake_a1.csv", [{"x": 1, "quick": quick}])
    return "a1 caption", {"n": 1}, 0, {"pid": os.getpid()}


@register("fake_a2", "second entry of topic a: fails when FAKE_GALLERY_FAIL names it")
def _a2(out, quick):
    if os.environ.get("FAKE_GALLERY_FAIL") == "fake_a2":
        raise ValueError("fake_a2 failed")
    out.csv("fake_a2.csv", [{"x": 2}])
    return "a2 caption", {"n": 2}, 0, {"pid": os.getpid()}
