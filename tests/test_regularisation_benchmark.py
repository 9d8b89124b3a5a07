"""benchmarks/regularisation.py --runs: a stopped setting resumes from its last.ckpt with the
steps it had already recorded, a finished one is read back, a folder of other settings is
refused."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "regularisation.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))  # its sibling helper module _measure
    spec = importlib.util.spec_from_file_location("regularisation_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(SCRIPT.parent))


def tiny(data_dir: Path, runs: Path, epochs: int = 2) -> list[str]:
    """48 training images of batch 32: 2 steps per epoch; a width-8 model."""
    return [
        "--epochs", str(epochs), "--val-size", "16", "--test-size", "8", "--width", "8",
        "--data-dir", str(data_dir), "--weights", "--steer", "--kinetic", "0.01",
        "--only", "kinetic 0.01", "--checkpoint-every", "1", "--runs", str(runs),
    ]  # fmt: skip


def test_a_stopped_setting_resumes_and_a_finished_one_is_reused(
    bench, tiny_fashion_dir, tmp_path, monkeypatch, capsys
):
    runs = tmp_path / "runs"
    real_end = bench.StepRecorder.on_train_batch_end

    def stop_at_step_3(self, trainer, *args):
        real_end(self, trainer, *args)
        if len(self.nfe_forward) == 3:
            raise RuntimeError("session over")  # after step 3, before its checkpoint

    monkeypatch.setattr(bench.StepRecorder, "on_train_batch_end", stop_at_step_3)
    with pytest.raises(RuntimeError, match="session over"):
        bench.main(tiny(tiny_fashion_dir, runs))
    folder = runs / "kinetic_0.01"
    assert (folder / "checkpoints" / "last.ckpt").exists() and not (folder / "row.json").exists()

    recorded = []  # what the resumed run starts from: the 2 steps of the checkpoint

    def record_resume(self, trainer, *args):
        if not recorded:
            recorded.append((trainer.global_step, len(self.nfe_forward)))
        real_end(self, trainer, *args)

    monkeypatch.setattr(bench.StepRecorder, "on_train_batch_end", record_resume)
    bench.main(tiny(tiny_fashion_dir, runs))
    assert recorded == [(3, 2)]  # step 3 is run again, counted once
    row = json.loads((folder / "row.json").read_text())
    assert (row["steps"], row["epochs"]) == (4, 2)
    assert row["nfe_forward"] >= 14 and row["kinetic_first"] > 0  # dopri5: >= 2 steps of 7
    assert row["s_per_step_cpu"] > 0
    capsys.readouterr()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished setting was trained again")

    monkeypatch.setattr(bench, "run_setting", no_training)
    bench.main(tiny(tiny_fashion_dir, runs))
    out = capsys.readouterr()
    assert "done earlier" in out.err and "| kinetic 0.01 |" in out.out

    with pytest.raises(SystemExit, match="holds a run of other settings"):
        bench.main(tiny(tiny_fashion_dir, runs, epochs=3))


def test_the_warm_start_setting_trains_with_the_solver_flag_and_nothing_else(
    bench, tiny_fashion_dir, tmp_path, monkeypatch
):
    runs = tmp_path / "runs"
    seen = []
    real_fit = bench.pl.Trainer.fit

    def fit(self, model, *args, **kwargs):
        blocks = [m for m in model.modules() if isinstance(m, bench.ODEBlock)]
        seen.append([(b.solver.warm_start, b.regularisation.active) for b in blocks])
        return real_fit(self, model, *args, **kwargs)

    monkeypatch.setattr(bench.pl.Trainer, "fit", fit)
    argv = tiny(tiny_fashion_dir, runs, epochs=1)
    argv[argv.index("--only") + 1] = "warm start"
    bench.main([*argv, "--warm-start"])
    assert seen == [[(True, False)]]
    row = json.loads((runs / "warm_start" / "row.json").read_text())
    assert row["solver"] == {"warm_start": True} and row["regularisation"] is None
    marker = json.loads((runs / "warm_start" / "run.json").read_text())
    assert marker["solver"] == {"warm_start": True} and marker["setting"] == "warm start"
    combined = bench.settings([], [0.01], [], warm_start=True)
    assert combined["kinetic 0.01 + warm start"] == ({"kinetic": 0.01}, {"warm_start": True})
    assert list(combined) == ["none", "kinetic 0.01", "warm start", "kinetic 0.01 + warm start"]


def test_combined_files_share_their_common_row_once_and_refuse_two_different_ones(bench):
    none = {"setting": "none", "test_acc": 0.9}
    first = {"rows": [none, {"setting": "kinetic 0.01", "test_acc": 0.89}]}
    second = {"rows": [dict(none), {"setting": "warm start", "test_acc": 0.9}]}
    rows = bench.combined_rows([first, second])
    assert [r["setting"] for r in rows] == ["none", "kinetic 0.01", "warm start"]
    other = {"rows": [{"setting": "none", "test_acc": 0.8}]}
    with pytest.raises(SystemExit, match="two different runs of 'none'"):
        bench.combined_rows([first, other])
