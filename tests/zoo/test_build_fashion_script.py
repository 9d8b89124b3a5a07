"""``model_cards/build_fashion_mnist.sh``'s bookkeeping, with a stand-in ``nodezoo`` on PATH
that records its calls (the real commands are tested elsewhere): which runs it trains and
resumes, the zoo names it publishes under, that each model is published as it finishes, that
two builds never train one run at once, and that a run outside the five recipes' hash refuses
to resume under a changed recipe."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "model_cards" / "build_fashion_mnist.sh"

pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs util-linux flock")

STAND_IN = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1" = compare ]; then  # the table the script copies onto the cards
    while [ "$#" -gt 0 ]; do
        [ "$1" = --out ] && mkdir -p "$2" && echo "| table |" > "$2/table.md"
        shift
    done
fi
"""


@pytest.fixture
def build(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nodezoo").write_text(STAND_IN)
    (bin_dir / "nodezoo").chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "RUNS": str(tmp_path / "runs"),
        "OUT": str(tmp_path / "out"),
        "REPORT": str(tmp_path / "report"),
    }

    def run(wait: bool = True, **extra: str):
        process = subprocess.Popen(
            ["bash", str(SCRIPT)], env={**env, **extra}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if not wait:
            return process
        _, err = process.communicate(timeout=60)
        return process.returncode, err

    def logged() -> list[str]:
        return calls.read_text().splitlines() if calls.exists() else []

    return run, logged, tmp_path / "runs"


def test_trains_then_publishes_under_kebab_case_zoo_names(build, tmp_path):
    run, logged, runs = build
    code, err = run(MODELS="odenet odenet_rnode", TRAIN_ONLY="1")
    assert code == 0, err
    fits = [c for c in logged() if c.startswith("fit ")]
    assert len(fits) == 2
    # each model is published as soon as it is trained, before the next one starts
    assert [c.split()[0] for c in logged()] == ["fit", "publish", "fit", "publish"]
    assert not any("--comparison" in c or c.startswith("compare") for c in logged())
    assert "--trainer.logger.init_args.name odenet-rnode-fashion-mnist" in fits[1]
    assert f"--trainer.default_root_dir {runs}/odenet_rnode" in fits[1]
    assert (runs / "odenet" / "done").exists() and (runs / "odenet_rnode" / "done").exists()
    assert not (runs / "odenet" / "recipe.sha256").exists()  # covered by the folder's hash
    assert (runs / "odenet_rnode" / "recipe.sha256").exists()

    code, err = run(MODELS="odenet odenet_rnode")
    assert code == 0, err
    later = logged()[len(fits) * 2 :]
    assert not any(c.startswith("fit ") for c in later)  # done runs are not trained again
    publishes = [c for c in later if c.startswith("publish ")]
    assert len(publishes) == 4  # test metrics first, then again with the comparison
    assert f"--out {tmp_path}/out/odenet-rnode-fashion-mnist" in publishes[1]
    assert "--name odenet-rnode-fashion-mnist" in publishes[1]
    assert "--comparison" in publishes[3]
    compare = next(c for c in later if c.startswith("compare "))
    assert "out/odenet-fashion-mnist" in compare and "out/odenet-rnode-fashion-mnist" in compare


def test_a_stopped_run_resumes_and_a_changed_recipe_stops_the_build(build):
    run, logged, runs = build
    (runs / "odenet_rnode" / "checkpoints").mkdir(parents=True)
    (runs / "odenet_rnode" / "checkpoints" / "last.ckpt").write_text("")
    code, err = run(MODELS="odenet_rnode", TRAIN_ONLY="1")
    assert code == 0, err
    assert [c for c in logged() if c.startswith("fit ")][-1].endswith("--ckpt_path last")

    (runs / "odenet_rnode" / "done").unlink()
    (runs / "odenet_rnode" / "recipe.sha256").write_text("0000000\n")
    code, err = run(MODELS="odenet_rnode", TRAIN_ONLY="1")
    assert code == 3
    assert "was started with another recipes/fashion_mnist/odenet_rnode.yaml" in err
    assert len([c for c in logged() if c.startswith("fit ")]) == 1  # nothing trained under it


def test_a_second_build_waits_for_the_run_another_one_is_training(build):
    run, logged, runs = build
    folder = runs / "odenet"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "w") as lock:  # another build is training this run
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = run(wait=False, MODELS="odenet", TRAIN_ONLY="1")
        time.sleep(2)
        assert waiting.poll() is None and not logged()  # blocked, trained nothing
        (folder / "done").touch()  # the other build finishes the run
    assert waiting.wait(timeout=60) == 0
    assert not logged()  # and this one found it done
