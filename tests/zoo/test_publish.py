"""Publishing: checkpoint -> folder + card, the card's numbers against a fresh evaluation,
uploads through a stub Hub, and the error paths (no token, offline, HTTP failures)."""

from __future__ import annotations

import json

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import constants

from nodezoo.cli import main
from nodezoo.runs import read_checkpoint
from nodezoo.zoo import HubAccessError, from_pretrained
from nodezoo.zoo.commands import main_evaluate, main_list, main_publish
from nodezoo.zoo.evaluation import evaluate
from nodezoo.zoo.hub import upload_folder

FOLDER_FILES = {
    "README.md",
    "config.json",
    "model.safetensors",
    "metrics.json",
    "recipe.yaml",
    "SHA256SUMS",
}


def front_matter(card: str) -> dict:
    _, meta, _ = card.split("---\n", 2)
    return yaml.safe_load(meta)


def test_lightning_checkpoint_loads_weights_only(trained_run):
    checkpoint = torch.load(trained_run["checkpoint"], map_location="cpu", weights_only=True)
    assert "optimizer_states" in checkpoint  # a real training checkpoint, optimiser included
    assert read_checkpoint(trained_run["checkpoint"])["state_dict"].keys() == (
        trained_run["model"].state_dict().keys()
    )


def test_folder_has_hub_layout_and_weights_only(trained_run, zoo_folder):
    assert {p.name for p in zoo_folder.iterdir()} == FOLDER_FILES
    from safetensors.torch import load_file

    weights = load_file(str(zoo_folder / "model.safetensors"))
    assert weights.keys() == trained_run["model"].state_dict().keys()  # no optimiser state
    assert yaml.safe_load((zoo_folder / "recipe.yaml").read_text()) == trained_run["recipe"]


def test_card_comes_from_the_run(trained_run, zoo_folder):
    max_epochs = trained_run["recipe"]["trainer"]["max_epochs"]
    card = (zoo_folder / "README.md").read_text()
    metrics = json.loads((zoo_folder / "metrics.json").read_text())
    lightning = trained_run["test_metrics"]
    assert metrics["test/acc"] == lightning["test/acc"]  # the run's own number, not re-measured
    assert metrics["run/epochs"] == 1
    meta = front_matter(card)
    assert meta["library_name"] == "nodezoo"
    assert meta["datasets"] == ["zalando-datasets/fashion_mnist"]
    (result,) = meta["model-index"][0]["results"]
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values == {"accuracy": metrics["test/acc"], "loss": metrics["test/loss"]}
    assert f"| Test accuracy | {100 * metrics['test/acc']:.2f}% |" in card
    assert f"| Parameters | {metrics['model/params']:,} |" in card
    assert "NFE per forward pass (test set" in card
    assert f"trained for 1 of the recipe's {max_epochs} epochs" in card
    assert "nodezoo fit --config recipe.yaml" in card
    assert "@inproceedings{chen2018neural" in card


def test_card_numbers_match_a_fresh_evaluation(zoo_folder):
    """Lightning's test loop measured the card's accuracy and loss; evaluate recomputes them from
    the folder alone (and the test-set NFE the publish step measured)."""
    metrics = json.loads((zoo_folder / "metrics.json").read_text())
    fresh = evaluate(zoo_folder)
    assert fresh["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert fresh["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    assert fresh["test/nfe_forward"] == metrics["test/nfe_forward"]
    assert fresh["model/params"] == metrics["model/params"]


def test_cli_evaluate_json_and_list(zoo_folder, tmp_path, monkeypatch, capsys):
    assert main_evaluate([str(zoo_folder), "--json", "--limit-batches", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test/samples"] == 16  # one batch of the recipe's 16
    from nodezoo.zoo import registry

    monkeypatch.setattr(registry, "zoo_root", lambda: zoo_folder.parent)
    assert main_list([]) == 0
    assert zoo_folder.name in capsys.readouterr().out


def test_cli_publish_out_and_bad_source(trained_run, tmp_path, capsys):
    out = tmp_path / "published"
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"test": {"acc": 0.5, "nfe_forward": 7.0}}))
    args = [str(trained_run["checkpoint"]), "--out", str(out), "--metrics", str(metrics)]
    assert main_publish(args) == 0
    assert json.loads((out / "metrics.json").read_text())["test/acc"] == 0.5
    assert "## Compared with baselines" not in (out / "README.md").read_text()
    table = tmp_path / "table.md"
    table.write_text("| Model | Test error |\n|---|---|\n| ODE-Net | 12.34% |\n")
    assert main_publish([*args, "--comparison", str(table)]) == 0
    card = (out / "README.md").read_text()
    assert card.count("| ODE-Net | 12.34% |") == 1  # in its own section, not a results row
    section = card.split("## Compared with baselines", 1)[1]
    assert (
        section.lstrip().startswith("| Model | Test error |") and "| ODE-Net | 12.34% |" in section
    )
    assert main(["publish", *args, "--comparison", str(tmp_path / "missing.md")]) == 2
    assert main(["publish", str(tmp_path / "nope.ckpt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nodezoo publish: error:" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ uploads (stub)
@pytest.fixture
def hub_at(monkeypatch, tmp_path):
    """Point huggingface_hub at ``endpoint`` in-process, with no token file and online."""

    def point(endpoint: str, token: str | None = "hf_stub_token"):
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
        if token:
            monkeypatch.setenv("HF_TOKEN", token)
        else:
            monkeypatch.delenv("HF_TOKEN", raising=False)

    return point


def test_upload_sends_the_folder(zoo_folder, stub_hub, hub_at):
    hub_at(stub_hub.endpoint)
    url = upload_folder(zoo_folder, "acme/tiny-odenet", private=True)
    assert url.endswith("/commit/abc123")
    assert stub_hub.created[0]["name"] == "tiny-odenet"
    assert stub_hub.created[0]["visibility"] == "private"
    assert set(stub_hub.files) == FOLDER_FILES
    for name, data in stub_hub.files.items():
        assert data == (zoo_folder / name).read_bytes(), name
    # huggingface_hub fetches its agent-harness registry (at most daily, no token) on its own.
    ours = [(path, auth) for _, path, auth in stub_hub.requests if path != "/api/agent-harnesses"]
    assert ours and all(auth == "Bearer hf_stub_token" for _, auth in ours)
    assert "library_name: nodezoo" in stub_hub.validated[0]


def test_push_to_hub_from_a_model(zoo_folder, stub_hub, hub_at):
    hub_at(stub_hub.endpoint)
    model = from_pretrained(zoo_folder)
    model.push_to_hub("acme/pushed", metrics={"test/acc": 0.25})
    assert json.loads(stub_hub.files["metrics.json"])["test/acc"] == 0.25
    assert b"name: pushed" in stub_hub.files["README.md"]


def test_no_token_is_a_clear_error(zoo_folder, stub_hub, hub_at, capsys):
    hub_at(stub_hub.endpoint, token=None)
    assert huggingface_hub.get_token() is None
    assert main(["publish", str(zoo_folder), "--repo-id", "acme/x"]) == 2
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "Traceback" not in err
    assert stub_hub.requests == []  # nothing was sent


def test_offline_is_a_clear_error(zoo_folder, stub_hub, hub_at, monkeypatch):
    hub_at(stub_hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubAccessError, match="HF_HUB_OFFLINE is set"):
        upload_folder(zoo_folder, "acme/x")
    assert stub_hub.requests == []


def test_http_failure_is_a_clear_error(zoo_folder, stub_hub, hub_at, capsys):
    hub_at(stub_hub.endpoint)
    stub_hub.fail_with = 500
    assert main(["publish", str(zoo_folder), "--repo-id", "acme/x"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 500" in err and "Traceback" not in err


def test_unreachable_endpoint_is_a_clear_error(zoo_folder, hub_at, free_port):
    """httpx's ConnectError is caught as huggingface_hub.errors.HTTPError."""
    hub_at(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(HubAccessError, match="ConnectError"):
        upload_folder(zoo_folder, "acme/x")


@pytest.mark.online
def test_real_hub_round_trip(zoo_folder, tmp_path):
    """Opt-in: uploads to the real Hub when HF_TOKEN is set, reads it back, deletes the repo."""
    import os
    import uuid

    if not os.environ.get("HF_TOKEN"):
        pytest.skip("HF_TOKEN is not set")
    api = huggingface_hub.HfApi()
    user = api.whoami()["name"]
    repo_id = f"{user}/nodezoo-test-{uuid.uuid4().hex[:8]}"
    try:
        upload_folder(zoo_folder, repo_id, private=True)
        model = from_pretrained(repo_id)
        x = torch.rand(2, 1, 28, 28)
        with torch.no_grad():
            assert torch.equal(model(x), from_pretrained(zoo_folder)(x))
    finally:
        api.delete_repo(repo_id, missing_ok=True)
