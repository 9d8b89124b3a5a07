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
