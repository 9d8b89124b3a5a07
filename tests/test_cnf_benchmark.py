"""benchmarks/cnf.py resumes a stopped run: the same table as a run that never stopped."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("zuko")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cnf.py"


@pytest.fixture(scope="module")
def cnf_bench():
    spec = importlib.util.spec_from_file_location("cnf_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["cnf_bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["cnf_bench"]


TINY = [
    "--datasets",
    "checkerboard",
    "--models",
    "nodezoo-cnf",
    "nodezoo-cnf-ckpt",
    "--steps",
    "4",
    "--steps-per-epoch",
    "2",
    "--batch-size",
    "32",
    "--n-test",
    "64",
    "--hidden",
    "8",
    "--layers",
    "1",
    "--tol",
    "1e-3",
    "--no-memory",
    "--resume-every",
    "1",
    "--tag",
    "t",
]


def nlls(folder: Path) -> dict:
    rows = json.loads((folder / "cnf_t.json").read_text())["datasets"][0]["rows"]
    return {name: row["test_nll"] for name, row in rows.items()}


def test_a_stopped_run_resumes_to_the_uninterrupted_result(cnf_bench, tmp_path, monkeypatch):
    cnf_bench.main([*TINY, "--results-dir", str(tmp_path / "whole")])
    whole = nlls(tmp_path / "whole")

    stopped = tmp_path / "stopped"
    train_epoch = cnf_bench.train_epoch

    def stop_in_second_epoch(c, opt, data, epoch, steps):
        if epoch == 1:
            raise KeyboardInterrupt
        train_epoch(c, opt, data, epoch, steps)

    monkeypatch.setattr(cnf_bench, "train_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        cnf_bench.main([*TINY, "--results-dir", str(stopped)])
    resume = stopped / ".cnf_t_checkerboard.resume.pt"
    assert resume.is_file() and not (stopped / "cnf_t.json").exists()

    epochs_trained = []
    monkeypatch.setattr(
        cnf_bench, "train_epoch", lambda *a: epochs_trained.append(a[3]) or train_epoch(*a)
    )
    cnf_bench.main([*TINY, "--results-dir", str(stopped)])
    assert epochs_trained == [1, 1]  # only the second epoch, once per model
    assert nlls(stopped) == pytest.approx(whole, rel=1e-6)
    assert not resume.exists()


def test_a_resume_state_of_other_settings_is_not_used(cnf_bench, tmp_path, capsys):
    state = {"settings": {"dataset": "checkerboard", "lr": 1.0}, "epoch": 1}
    cnf_bench.torch.save(state, tmp_path / ".cnf_t_checkerboard.resume.pt")
    cnf_bench.main([*TINY, "--results-dir", str(tmp_path)])  # its lr is 1e-3
    assert "has other settings: starting afresh" in capsys.readouterr().err
