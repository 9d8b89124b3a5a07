"""A reference that is no model: the error says what was tried (folder, zoo name, Hub id), and a
run directory or checkpoint passed for a zoo folder says how to make one (`nodezoo publish`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nodezoo.zoo import HubAccessError, ZooError, from_pretrained
from nodezoo.zoo import pretrained as pretrained_module


def test_a_missing_absolute_path_is_called_a_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained_module, "download_folder", pytest.fail)  # never the Hub
    missing = tmp_path / "nope"
    with pytest.raises(ZooError) as err:
        from_pretrained(str(missing))
    message = str(err.value)
    assert f"as a folder (no directory '{missing}')" in message
    assert "as a Hub repo id (not of the form 'org/name')" in message
    assert "repo_type" not in message


def test_a_mistyped_relative_path_names_the_folder_and_the_hub_failure(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise HubAccessError("cannot load 'nope/odenet': the Hub could not be reached.")

    monkeypatch.setattr(pretrained_module, "download_folder", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubAccessError) as err:
        from_pretrained("nope/odenet")
    message = str(err.value)
    assert f"as a folder (no directory '{tmp_path / 'nope' / 'odenet'}')" in message
    assert "as a zoo name (zoo names have no '/')" in message
    assert "as a Hub repo id (cannot load 'nope/odenet': the Hub could not be reached)" in message
    assert "\n" not in message  # the CLI prints user errors on one line


def test_an_unknown_zoo_name_lists_the_known_ones(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ZooError, match=r"as a zoo name \(not a shipped model\).*odenet-fashion"):
        from_pretrained("odenet-fashoin-mnist")


def test_a_checkpoint_says_how_to_publish_it(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"not read")
    advice = re.escape(f"`nodezoo publish {ckpt} --out DIR`")
    with pytest.raises(ZooError, match=rf"Lightning checkpoint.*{advice}"):
        from_pretrained(ckpt)


def test_a_run_directory_says_how_to_publish_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read")
    with pytest.raises(ZooError, match=r"training run directory .*`nodezoo publish .*last\.ckpt"):
        from_pretrained(run)


def test_an_empty_directory_is_not_a_zoo_folder(tmp_path):
    with pytest.raises(ZooError, match=r"has no config\.json: not a zoo folder"):
        from_pretrained(Path(tmp_path))
