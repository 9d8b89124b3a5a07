"""What the zoo asks of huggingface_hub, and how it reports each failure, pinned where mutation
testing found it loose. A recording stand-in replaces ``HfApi``/``snapshot_download`` here: the
calls' arguments are the behaviour under test (the real round trips are in test_publish.py and
test_hub_download.py). Also ``list_models``'s rows and the torch.hub entry points."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import httpx
import huggingface_hub
import pytest
import torch
from huggingface_hub import constants, errors

import nodezoo
from nodezoo.models.classifier import ImageClassifier
from nodezoo.zoo import HubAccessError, ZooError, catalog, registry
from nodezoo.zoo.folder import FOLDER_FILES
from nodezoo.zoo.hub import STALE_PATTERNS, download_folder, upload_folder, upload_token


def http_error(cls, status: int, message: str = "boom"):
    response = httpx.Response(status, request=httpx.Request("GET", "http://hub.invalid/x"))
    return cls(message, response=response)


class RecordingApi:
    """Stands in for ``HfApi``: records each call; ``fail`` is raised by the first call."""

    calls: ClassVar[list] = []
    fail: Exception | None = None
    info = SimpleNamespace(commit_url="http://hub/commit/1", pr_url="http://hub/pr/7")

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def _call(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        if self.fail is not None:
            raise self.fail
        return self.info

    def create_repo(self, *args, **kwargs):
        return self._call("create_repo", *args, **kwargs)

    def create_branch(self, *args, **kwargs):
        return self._call("create_branch", *args, **kwargs)

    def upload_folder(self, **kwargs):
        return self._call("upload_folder", **kwargs)


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setattr(RecordingApi, "calls", [])
    monkeypatch.setattr(RecordingApi, "fail", None)
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return RecordingApi


def test_upload_creates_the_repo_and_commits_the_folder(api, tmp_path):
    folder = tmp_path / "tiny-model"
    url = upload_folder(folder, "acme/tiny", token="hf_tok")
    assert url == "http://hub/commit/1"
    assert api.calls == [
        ("init", "hf_tok"),
        ("create_repo", ("acme/tiny",), {"private": False, "exist_ok": True, "repo_type": "model"}),
        (
            "upload_folder",
            (),
            {
                "folder_path": str(folder),
                "repo_id": "acme/tiny",
                "revision": None,
                "create_pr": False,
                "delete_patterns": list(FOLDER_FILES),
                "commit_message": "Publish tiny-model with nodezoo",
            },
        ),
    ]
    assert STALE_PATTERNS == tuple(FOLDER_FILES)


def test_upload_to_a_branch_as_a_pull_request(api, tmp_path):
    url = upload_folder(
        tmp_path / "m",
        "acme/tiny",
        private=True,
        branch="dev",
        create_pr=True,
        delete_patterns=None,
        token="hf_tok",
        commit_message="my message",
    )
    assert url == "http://hub/pr/7"
    names = [call[0] for call in api.calls]
    assert names == ["init", "create_repo", "create_branch", "upload_folder"]
    assert api.calls[1][2]["private"] is True
    assert api.calls[2][1:] == (("acme/tiny",), {"branch": "dev", "exist_ok": True})
    upload = api.calls[3][2]
    assert upload["revision"] == "dev" and upload["create_pr"] is True
    assert upload["delete_patterns"] is None and upload["commit_message"] == "my message"


def test_without_a_pull_request_url_the_commit_url_is_returned(api, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "info", SimpleNamespace(commit_url="http://hub/c/2", pr_url=None))
    assert upload_folder(tmp_path / "m", "acme/t", create_pr=True, token="t") == "http://hub/c/2"
    monkeypatch.setattr(api, "info", "http://hub/plain")  # an old client returning a str
    assert upload_folder(tmp_path / "m", "acme/t", token="t") == "http://hub/plain"


@pytest.mark.parametrize(
    "failure, expected",
    [
        (
            http_error(errors.HfHubHTTPError, 403, "403 Forbidden\nmore"),
            "uploading to 'acme/t' on http://hub.test failed (HTTP 403): 403 Forbidden. Check the "
            "network, the token's write access and the repo id.",
        ),
        (
            errors.HTTPError("connection refused"),
            "uploading to 'acme/t' on http://hub.test failed (HTTPError): connection refused.",
        ),
        (errors.HTTPError(""), "failed (HTTPError): HTTPError."),
        (ValueError("bad metadata"), "the Hub refused 'acme/t': bad metadata"),
    ],
)
def test_upload_failures_say_what_failed(api, tmp_path, monkeypatch, failure, expected):
    monkeypatch.setattr(constants, "ENDPOINT", "http://hub.test")
    monkeypatch.setattr(api, "fail", failure)
    with pytest.raises(HubAccessError) as err:
        upload_folder(tmp_path / "m", "acme/t", token="t")
    assert expected in str(err.value)


def test_the_upload_token(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_logged_in")
    assert upload_token("hf_given") == "hf_given"
    assert upload_token() == "hf_logged_in"
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(HubAccessError, match="no Hugging Face token: log in with `hf auth login`"):
        upload_token()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubAccessError) as err:
        upload_token("hf_given")
    assert str(err.value) == (
        "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it to publish, or build the "
        "folder only with --out DIR."
    )


# ------------------------------------------------------------------------------ downloads
@pytest.fixture
def snapshot(monkeypatch, tmp_path):
    """``snapshot_download`` replaced: records its kwargs, returns ``result`` or raises it."""
    state = SimpleNamespace(calls=[], result=tmp_path / "snap")
    state.result.mkdir()

    def fake(repo_id, **kwargs):
        state.calls.append((repo_id, kwargs))
        if isinstance(state.result, Exception):
            raise state.result
        return str(state.result)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setattr(constants, "ENDPOINT", "http://hub.test")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/cache/default")
    return state


def test_download_asks_for_the_zoo_files_only(snapshot):
    (snapshot.result / "config.json").write_text("{}")
    (snapshot.result / "model.safetensors").write_bytes(b"")
    folder = download_folder("acme/tiny", "v1", token="t", cache_dir="/c", force_download=True)
    assert folder == snapshot.result
    (repo_id, kwargs) = snapshot.calls[0]
    assert repo_id == "acme/tiny"
    assert kwargs == {
        "revision": "v1",
        "allow_patterns": list(FOLDER_FILES),
        "token": "t",
        "cache_dir": "/c",
        "force_download": True,
        "local_files_only": False,
        "etag_timeout": 5,
        "library_name": "nodezoo",
        "library_version": nodezoo.__version__,
    }


def test_a_repo_without_config_and_weights_is_not_a_model(snapshot):
    (snapshot.result / "config.json").write_text("{}")
    with pytest.raises(ZooError, match=r"Hub repo 'acme/x' has no config\.json and model\.safe"):
        download_folder("acme/x")
    (snapshot.result / "config.json").unlink()
    (snapshot.result / "model.safetensors").write_bytes(b"")
    with pytest.raises(ZooError, match=r"at revision 'v2' has no config\.json"):
        download_folder("acme/x", "v2")


@pytest.mark.parametrize(
    "failure, kwargs, cls, expected",
    [
        (
            errors.HFValidationError("bad id"),
            {},
            ZooError,
            "'acme/x' is not a folder, a zoo name or a valid Hub repo id ('org/name'): bad id",
        ),
        (
            http_error(errors.RepositoryNotFoundError, 404),
            {"revision": "v1"},
            HubAccessError,
            "no model repo 'acme/x' at revision 'v1' on http://hub.test (or it is private: log "
            "in with `hf auth login` or set HF_TOKEN).",
        ),
        (
            http_error(errors.RevisionNotFoundError, 404),
            {"revision": "v9"},
            HubAccessError,
            "'acme/x' has no revision 'v9'; give an existing branch, tag or commit, or no "
            "revision for main.",
        ),
        (
            errors.LocalEntryNotFoundError("not cached"),
            {"local_files_only": True, "cache_dir": "/mine"},
            HubAccessError,
            "cannot load 'acme/x': local_files_only=True and it is not in the local cache "
            "(/mine). To fix: download it once without local_files_only, or pass a local folder",
        ),
        (
            errors.LocalEntryNotFoundError("not cached"),
            {},
            HubAccessError,
            "cannot load 'acme/x': http://hub.test could not be reached and it is not in the "
            "local cache (/cache/default). To fix: check the network (and HF_ENDPOINT)",
        ),
        (
            http_error(errors.HfHubHTTPError, 500, "500 Server Error"),
            {},
            HubAccessError,
            "downloading 'acme/x' from http://hub.test failed: 500 Server Error",
        ),
    ],
    ids=["invalid", "no-repo", "no-revision", "local-only", "unreachable", "http"],
)
def test_download_failures_say_what_to_do(snapshot, failure, kwargs, cls, expected):
    snapshot.result = failure
    kwargs = dict(kwargs)  # the parameter's dict is shared between runs of this test
    revision = kwargs.pop("revision", None)
    with pytest.raises(cls) as err:
        download_folder("acme/x", revision, **kwargs)
    assert type(err.value) is cls
    assert expected in str(err.value)


def test_offline_mode_is_named_when_nothing_is_cached(snapshot, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snapshot.result = errors.LocalEntryNotFoundError("not cached")
    with pytest.raises(HubAccessError) as err:
        download_folder("acme/x")
    assert "HF_HUB_OFFLINE is set and it is not in the local cache (/cache/default)" in str(
        err.value
    )
    assert "download it once while online, or unset HF_HUB_OFFLINE" in str(err.value)


# ------------------------------------------------------------------------------ catalog
@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo_root")
    torch.manual_seed(0)
    model = ImageClassifier(backbone="mlp", num_classes=3, in_channels=1, image_size=8, width=4)
    model.save_pretrained(root / "tiny-mlp", metrics={"test/acc": 0.5, "run/epochs": 2})
    model.save_pretrained(root / "bare-mlp")
    return root


def test_list_models_rows(tiny_zoo, monkeypatch):
    monkeypatch.setattr(registry, "zoo_root", lambda: tiny_zoo)
    params = sum(
        p.numel()
        for p in ImageClassifier(
            backbone="mlp", num_classes=3, in_channels=1, image_size=8, width=4
        ).parameters()
    )
    assert catalog.list_models() == [
        {
            "name": "bare-mlp",
            "architecture": "image-classifier",
            "metric": "test/acc",
            "better": "higher",
            "value": None,
            "params": params,
            "epochs": None,
        },
        {
            "name": "tiny-mlp",
            "architecture": "image-classifier",
            "metric": "test/acc",
            "better": "higher",
            "value": 0.5,
            "params": params,
            "epochs": 2,
        },
    ]
    assert json.loads((tiny_zoo / "tiny-mlp" / "metrics.json").read_text())["run/epochs"] == 2


def test_torch_hub_entry_points(tiny_zoo, monkeypatch):
    monkeypatch.setattr(registry, "zoo_root", lambda: tiny_zoo)
    points = catalog.entrypoints()
    assert sorted(points) == ["bare_mlp", "pretrained", "tiny_mlp"]
    load = points["tiny_mlp"]
    assert load.__name__ == "tiny_mlp"
    assert load.__doc__ == "The zoo model 'tiny-mlp' (keyword args go to from_pretrained)."
    model = load(solver=None)  # keyword args reach from_pretrained (an override)
    assert isinstance(model, ImageClassifier) and not model.training
    by_ref = points["pretrained"](tiny_zoo / "tiny-mlp", num_classes=5)
    assert by_ref.head.out_features == 5
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load()(x), points["bare_mlp"]()(x))  # the same weights
