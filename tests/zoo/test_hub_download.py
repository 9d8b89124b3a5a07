"""Downloads by repo id over real HTTP from a local Hub (olah serving a git repo): latest and
pinned revisions, offline reloads from the cache, and clear errors when nothing can be had.

huggingface_hub reads HF_ENDPOINT/HF_HUB_OFFLINE/HF_HOME when it is imported. One test runs a
fresh interpreter with those variables (the user's path); the others point the already imported
library at the local Hub by patching the constants it derived from them (saves ~10 s of imports
per case)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from huggingface_hub import constants
from safetensors.torch import load_file, save_file

from nodezoo.zoo import HubAccessError, from_pretrained
from nodezoo.zoo.folder import write_checksums


def head_bias_sum(model) -> float:
    return model.head.bias.sum().item()


@pytest.fixture(scope="module")
def published_repo(local_hub, zoo_folder, tmp_path_factory):
    """'acme/tiny' with two commits: the original weights, then a head bias shifted by +1."""
    first = local_hub.commit_folder("acme/tiny", zoo_folder, "first weights")
    second_folder = tmp_path_factory.mktemp("v2") / "tiny"
    shutil.copytree(zoo_folder, second_folder)
    state = load_file(str(second_folder / "model.safetensors"))
    state["head.bias"] = state["head.bias"] + 1
    save_file(state, str(second_folder / "model.safetensors"))
    write_checksums(second_folder)  # else loading refuses the edited weights
    local_hub.commit_folder("acme/tiny", second_folder, "second weights")
    bias = load_file(str(zoo_folder / "model.safetensors"))["head.bias"]
    return {"first": first, "v1": bias.sum().item(), "v2": bias.sum().item() + bias.numel()}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Point the imported huggingface_hub at ``endpoint`` with an empty cache in tmp_path."""

    def point(endpoint: str, *, offline: bool = False, cache: str = "cache"):
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / cache))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.delenv("HF_TOKEN", raising=False)

    return point


def test_latest_and_pinned_revision(local_hub, published_repo, hub):
    hub(local_hub.endpoint)
    assert head_bias_sum(from_pretrained("acme/tiny")) == pytest.approx(published_repo["v2"])
    pinned = from_pretrained("acme/tiny", revision=published_repo["first"])
    assert head_bias_sum(pinned) == pytest.approx(published_repo["v1"], abs=1e-6)


def test_offline_reload_from_cache(local_hub, published_repo, hub):
    hub(local_hub.endpoint)
    from_pretrained("acme/tiny")
    from_pretrained("acme/tiny", revision=published_repo["first"])
    hub(local_hub.endpoint, offline=True)
    assert head_bias_sum(from_pretrained("acme/tiny")) == pytest.approx(published_repo["v2"])
    pinned = from_pretrained("acme/tiny", revision=published_repo["first"])
    assert head_bias_sum(pinned) == pytest.approx(published_repo["v1"], abs=1e-6)
    with pytest.raises(HubAccessError, match=r"HF_HUB_OFFLINE is set.*download it once"):
        from_pretrained("acme/never-downloaded")


def test_unreachable_hub_uses_the_cache_or_says_what_to_do(
    local_hub, published_repo, hub, free_port
):
    hub(local_hub.endpoint)
    from_pretrained("acme/tiny")
    hub(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert head_bias_sum(from_pretrained("acme/tiny")) == pytest.approx(published_repo["v2"])
    hub(f"http://127.0.0.1:{free_port()}", cache="empty")
    with pytest.raises(HubAccessError, match=r"could not be reached.*pass a local folder"):
        from_pretrained("acme/tiny")


def test_unknown_repo_and_revision_are_clear_errors(local_hub, published_repo, hub):
    hub(local_hub.endpoint)
    with pytest.raises(HubAccessError, match="acme/missing"):
        from_pretrained("acme/missing")
    with pytest.raises(HubAccessError, match="no-such-branch"):
        from_pretrained("acme/tiny", revision="no-such-branch")


CLIENT = """
import json, sys
from nodezoo.zoo import from_pretrained
print(json.dumps([from_pretrained("acme/tiny", revision=r).head.bias.sum().item()
                  for r in json.loads(sys.argv[1])]))
"""


@pytest.mark.slow
def test_fresh_process_with_hf_endpoint(local_hub, published_repo, hub_env, hub):
    """The user's path: HF_ENDPOINT set before import, HF_HOME's cache filled; that cache then
    serves an offline reload."""
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps([published_repo["first"]])],
        env={**hub_env, "HF_ENDPOINT": local_hub.endpoint},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (downloaded,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert downloaded == pytest.approx(published_repo["v1"], abs=1e-6)
    hub(local_hub.endpoint, offline=True, cache=f"{hub_env['HF_HOME']}/hub")
    cached = from_pretrained("acme/tiny", revision=published_repo["first"])
    assert head_bias_sum(cached) == pytest.approx(published_repo["v1"], abs=1e-6)


def test_download_options_reach_snapshot_download(local_hub, published_repo, hub, tmp_path):
    """token, cache_dir, force_download and local_files_only do what snapshot_download does
    with them, against the local Hub (the spy only records and passes everything on)."""
    import huggingface_hub

    hub(local_hub.endpoint)
    seen = []
    real = huggingface_hub.snapshot_download

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    mine = tmp_path / "my-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub, "snapshot_download", spy)
        with pytest.raises(HubAccessError, match="local_files_only=True"):
            from_pretrained("acme/tiny", cache_dir=mine, local_files_only=True)
        model = from_pretrained("acme/tiny", cache_dir=mine, token="hf_secret")
        assert head_bias_sum(model) == pytest.approx(published_repo["v2"])
        blobs = sorted((mine / "models--acme--tiny" / "blobs").iterdir())
        assert blobs and not (tmp_path / "cache").exists()  # the default cache stayed empty
        first_mtimes = [b.stat().st_mtime_ns for b in blobs]
        # cached now: no network needed with local_files_only, even with the Hub gone
        hub("http://127.0.0.1:9")
        cached = from_pretrained("acme/tiny", cache_dir=mine, local_files_only=True)
        assert head_bias_sum(cached) == pytest.approx(published_repo["v2"])
        hub(local_hub.endpoint)
        from_pretrained("acme/tiny", cache_dir=mine, force_download=True)
        assert [b.stat().st_mtime_ns for b in blobs] != first_mtimes  # downloaded again
    assert seen[1]["token"] == "hf_secret" and seen[1]["cache_dir"] == mine
    assert seen[-1]["force_download"] is True and seen[2]["local_files_only"] is True


def test_evaluate_compares_with_the_card_of_the_revision_it_evaluates(
    local_hub, zoo_folder, hub, tmp_path, monkeypatch, capsys
):
    """``nodezoo evaluate org/name --revision R`` reads R's card, not the latest one (mutation
    survivor of ``main_evaluate``, eighth run): the recomputed accuracy equals the first
    commit's card, and a later commit halved the card's value."""
    from nodezoo.zoo import evaluation
    from nodezoo.zoo.commands import main_evaluate

    card = json.loads((zoo_folder / "metrics.json").read_text())
    first = local_hub.commit_folder("acme/cards", zoo_folder, "first card")
    changed = tmp_path / "cards"
    shutil.copytree(zoo_folder, changed)
    (changed / "metrics.json").write_text(json.dumps({**card, "test/acc": card["test/acc"] / 2}))
    write_checksums(changed)
    local_hub.commit_folder("acme/cards", changed, "second card")
    hub(local_hub.endpoint)
    monkeypatch.setattr(evaluation, "evaluate", lambda ref, **kw: {"test/acc": card["test/acc"]})
    assert main_evaluate(["acme/cards", "--revision", first]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("All 1 metrics the card records")
    assert main_evaluate(["acme/cards"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("MISMATCH: test/acc differ")
