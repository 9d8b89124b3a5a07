"""Long loops show progress: plain lines when not on a terminal."""

from __future__ import annotations

import io

from nodezoo.progress import progress


def test_plain_lines_off_a_terminal():
    stream = io.StringIO()
    assert list(progress(range(20), total=20, desc="evaluating", stream=stream)) == list(range(20))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("evaluating: 2/20 batches (")
    assert lines[-1].startswith("evaluating: 20/20 batches (")


def test_a_short_loop_still_reports_its_end():
    stream = io.StringIO()
    list(progress(range(3), total=3, desc="x", stream=stream))
    assert stream.getvalue().splitlines()[-1].startswith("x: 3/3 batches")
