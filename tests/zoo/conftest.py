"""Zoo fixtures: a tiny real training run, a local Hub (olah) and a stub upload server.

The run is a real Lightning fit (a few steps) of a tiny ODE-Net on tiny Fashion-MNIST-format IDX
files, with its checkpoint, a summary.json (as the RunSummary callback writes) and the merged
recipe, so publishing, cards and evaluation are tested on what a real run leaves behind.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

TINY_MODEL_ARGS = {
    "backbone": "odenet",
    "num_classes": 10,
    "in_channels": 1,
    "image_size": 28,
    "width": 8,
    "solver": {"method": "dopri5", "rtol": 1e-2, "atol": 1e-2, "gradient": "adjoint"},
    "optimizer": "adam",
    "lr": 0.01,
    "lr_schedule": "constant",
}
RECIPE_MAX_EPOCHS = 3  # the tiny run stops after 1 epoch: the card must say it was shortened


def tiny_recipe(data_dir: Path, model_args: dict | None = None) -> dict:
    """A recipe in LightningCLI's layout for the tiny run."""
    return {
        "seed_everything": 0,
        "model": {
            "class_path": "nodezoo.models.classifier.ImageClassifier",
            "init_args": dict(model_args or TINY_MODEL_ARGS),
        },
        "data": {
            "class_path": "nodezoo.data.FashionMNISTDataModule",
            "init_args": {
                "data_dir": str(data_dir),
                "batch_size": 16,
                "val_size": 16,
                "num_workers": 0,
                "augment": False,
            },
        },
        "trainer": {"max_epochs": RECIPE_MAX_EPOCHS, "limit_train_batches": 2},
    }


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_fashion_dir) -> dict:
    """Run dir of a real short fit + test: checkpoints/last.ckpt, config.yaml, summary.json."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint
    from trainers import quiet_trainer

    from nodezoo.data import FashionMNISTDataModule
    from nodezoo.models.classifier import ImageClassifier

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("run")
    recipe = tiny_recipe(tiny_fashion_dir)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    pl.seed_everything(0, verbose=False)
    model = ImageClassifier(**recipe["model"]["init_args"])
    data = FashionMNISTDataModule(**recipe["data"]["init_args"])
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        default_root_dir=run_dir,
        callbacks=[ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    fit_s = time.perf_counter() - start
    (test_metrics,) = trainer.test(model, datamodule=data, verbose=False)
    summary = {  # what a RunSummary callback records
        "model": {"params": sum(p.numel() for p in model.parameters())},
        "test": {k.split("/", 1)[1]: v for k, v in test_metrics.items()},
        "run": {"epochs": trainer.current_epoch, "hardware": "CPU (test)"},
        "time": {"total_s": fit_s},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return {
        "run_dir": run_dir,
        "checkpoint": run_dir / "checkpoints" / "last.ckpt",
        "test_metrics": test_metrics,
        "recipe": recipe,
        "model": model,
    }


@pytest.fixture(scope="session")
def zoo_folder(trained_run, tmp_path_factory) -> Path:
    """The zoo folder published (--out) from the tiny run."""
    from nodezoo.zoo.publish import build_folder

    out = tmp_path_factory.mktemp("zoo") / "tiny-odenet-fashion-mnist"
    return build_folder(trained_run["checkpoint"], out)


# ------------------------------------------------------------------------------ local Hub (olah)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A function returning a TCP port on 127.0.0.1 that nothing listens on (just now)."""
    return _free_port


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "nodezoo tests",
        "GIT_AUTHOR_EMAIL": "tests@nodezoo.invalid",
        "GIT_COMMITTER_NAME": "nodezoo tests",
        "GIT_COMMITTER_EMAIL": "tests@nodezoo.invalid",
    }
    result = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


class LocalHub:
    """olah serving plain git repos at ``mirrors/models/<org>/<name>`` through the Hub API."""

    def __init__(self, endpoint: str, mirrors: Path):
        self.endpoint, self.mirrors = endpoint, mirrors

    def commit_folder(self, repo_id: str, folder: Path, message: str) -> str:
        """Commit ``folder``'s files to the repo (created on first use); returns the sha."""
        repo = self.mirrors / "models" / repo_id
        if not (repo / ".git").is_dir():
            repo.mkdir(parents=True)
            _git(repo, "init", "-q", "-b", "main")
        for item in folder.iterdir():
            shutil.copy2(item, repo / item.name)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", message)
        return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """olah on a free port (offline mode: serves only the local git mirrors); stopped by PID."""
    if shutil.which("olah-cli") is None or shutil.which("git") is None:
        pytest.skip("olah-cli or git is not installed (pip install olah)")
    root = tmp_path_factory.mktemp("olah")
    port = _free_port()
    (root / "mirrors" / "models").mkdir(parents=True)
    config = root / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'repos-path = "{root / "repos"}"\nmirrors-path = ["{root / "mirrors"}"]\n'
        "[accessibility]\noffline = true\n"
    )
    log = open(root / "olah.log", "w")  # closed at teardown
    proc = subprocess.Popen(
        ["olah-cli", "-c", str(config)], cwd=root, stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/api/models/none/none", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers (404/401 for an unknown repo)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"olah did not start: {(root / 'olah.log').read_text()[-2000:]}")
            time.sleep(0.2)
    yield LocalHub(endpoint, root / "mirrors")
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def hub_env(tmp_path) -> dict[str, str]:
    """Environment for client subprocesses: empty HF cache in tmp_path, no token, one thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST_"))}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        OMP_NUM_THREADS="1",
    )
    return env


# ------------------------------------------------------------------------------ upload stub
PR_NUMBER = 7  # the stub's one pull request


class StubHubHandler(BaseHTTPRequestHandler):
    """A STUB of the Hub's write API, only what ``create_repo`` + ``create_branch`` +
    ``upload_folder`` call: POST /api/repos/create, POST /api/models/<repo>/branch/<name>,
    POST /api/validate-yaml (README metadata, always valid), GET /api/models/<repo>/tree/<rev>
    (lists ``remote_files``, for ``delete_patterns``), POST /api/models/<repo>/preupload/<rev>
    (everything "regular"), POST /api/models/<repo>/commit/<rev> (NDJSON with base64 files and
    deleted paths; ``?create_pr=1`` answers with a pull request URL), and for pull requests
    POST /api/models/<repo>/discussions + GET .../discussions/<num> (always PR number 7, whose
    branch is refs/pr/7). ``fail_with`` makes every request answer that status instead. It
    checks nothing a real Hub would (names, rights)."""

    server: StubHub

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        stub = self.server
        stub.requests.append(("GET", self.path, self.headers.get("authorization")))
        if stub.fail_with:
            return self._reply(stub.fail_with, {"error": "stub failure"})
        if "/discussions/" in self.path:
            repo = self.path.split("/api/models/")[1].split("/discussions/")[0]
            return self._reply(
                200,
                {
                    "num": PR_NUMBER,
                    "title": "stub pull request",
                    "author": {"name": "stub"},
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "status": "open",
                    "repo": {"name": repo, "type": "model"},
                    "isPullRequest": True,
                    "events": [],
                    "changes": {"base": "refs/heads/main"},
                    "filesWithConflicts": [],
                },
            )
        if "/tree/" in self.path:
            listing = [
                {"type": "file", "path": name, "oid": "0" * 40, "size": 1}
                for name in stub.remote_files
            ]
            body = json.dumps(listing).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        return self._reply(404, {"error": f"stub does not implement GET {self.path}"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stub = self.server
        stub.requests.append(("POST", self.path, self.headers.get("authorization")))
        if stub.fail_with:
            return self._reply(stub.fail_with, {"error": "stub failure"})
        if self.path.endswith("/discussions"):
            stub.pull_requests.append(json.loads(body))
            return self._reply(200, {"num": PR_NUMBER})
        if "/branch/" in self.path:
            stub.branches.append(self.path.rsplit("/branch/", 1)[1])
            return self._reply(200, {})
        if self.path == "/api/repos/create":
            request = json.loads(body)
            stub.created.append(request)
            name = f"{request.get('organization')}/{request['name']}"
            return self._reply(200, {"url": f"{stub.endpoint}/{name}", "name": name})
        if self.path == "/api/validate-yaml":  # the card's metadata, checked before commit
            stub.validated.append(json.loads(body)["content"])
            return self._reply(200, {"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(body)["files"]
            return self._reply(
                200,
                {
                    "files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in files
                    ]
                },
            )
        if "/commit/" in self.path:
            stub.commits.append(self.path)
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    stub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    stub.deleted.append(item["value"]["path"])
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            reply = {"commitUrl": f"{stub.endpoint}/{repo}/commit/abc123", "commitOid": "abc123"}
            if "create_pr=1" in self.path:
                reply["pullRequestUrl"] = f"{stub.endpoint}/{repo}/discussions/7"
            return self._reply(200, reply)
        return self._reply(404, {"error": f"stub does not implement {self.path}"})


class StubHub(ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), StubHubHandler)
        self.endpoint = f"http://127.0.0.1:{self.server_address[1]}"
        self.requests: list = []
        self.created: list = []
        self.validated: list = []
        self.files: dict[str, bytes] = {}
        self.remote_files: list[str] = []  # already in the repo (for delete_patterns)
        self.deleted: list[str] = []
        self.commits: list[str] = []  # commit request paths (revision, create_pr)
        self.branches: list[str] = []
        self.pull_requests: list[dict] = []  # what create_pull_request sent
        self.fail_with: int | None = None


@pytest.fixture
def stub_hub():
    server = StubHub()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
