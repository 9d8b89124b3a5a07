"""nodezoo.files.write_atomic: the old file or the new one, never half of one."""

import os
from pathlib import Path

import pytest

from nodezoo.files import write_atomic


def test_writes_text_and_bytes(tmp_path):
    assert write_atomic(tmp_path / "a.json", "é\n").read_bytes() == "é\n".encode()
    assert write_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]  # no temporaries


def test_a_write_stopped_midway_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old weights")
    real_write = Path.write_bytes

    def stop_halfway(self, data):
        real_write(self, data[: len(data) // 2])
        raise KeyboardInterrupt  # the session ends mid-write

    monkeypatch.setattr(Path, "write_bytes", stop_halfway)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"new weights, twice as long")
    assert path.read_bytes() == b"old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_the_temporary_file_is_per_process(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: seen.append(Path(a).name) or real_replace(a, b))
    write_atomic(tmp_path / "summary.json", "{}")
    assert seen == [f".summary.json.{os.getpid()}.tmp"]


def test_save_figure_writes_the_format_of_the_suffix_and_keeps_the_old_file_on_failure(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nodezoo.files import save_figure

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0])
    png = save_figure(fig, tmp_path / "plots" / "card.png", dpi=20)  # parent created
    svg = save_figure(fig, tmp_path / "plots" / "card.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]

    class Broken:  # a figure whose drawing fails midway, after writing part of its output
        def savefig(self, buffer, **kwargs):
            buffer.write(b"\x89PNG half")
            raise RuntimeError("drawing failed")

    with pytest.raises(RuntimeError, match="drawing failed"):
        save_figure(Broken(), png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(png.read_bytes()) > 100
    assert sorted(p.name for p in png.parent.iterdir()) == ["card.png", "card.svg"]
    plt.close(fig)


def test_write_csv_atomic_round_trips_through_the_csv_reader(tmp_path):
    import csv

    from nodezoo.files import write_csv_atomic

    rows = [{"model": "odenet", "note": 'a, "quoted"\nline'}, {"model": "resnet", "note": ""}]
    path = write_csv_atomic(tmp_path / "table.csv", ["model", "note"], rows)
    with path.open(newline="") as f:
        assert list(csv.DictReader(f)) == rows
