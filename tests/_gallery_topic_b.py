"""Cheap stand-in gallery topic for tests/test_gallery.py's worker-process tests (not a test module)."""

import os

from sim.gallery import register


@register("fake_b1", "first entry of topic b")
def _b1(out, quick):
    out.csv("fake_b1.csv", [{"y": 1}])
    out.text("fake_b1.txt", "b1\n")
    return "b1 caption", {"n": 3}, 0, {"pid": os.getpid()}
