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

    # the resume state lives outside the results (a build keeps it out of the work tree)
    where = ["--results-dir", str(stopped), "--resume-dir", str(tmp_path / "states")]
    monkeypatch.setattr(cnf_bench, "train_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        cnf_bench.main([*TINY, *where])
    resume = tmp_path / "states" / ".cnf_t_checkerboard.resume.pt"
    assert resume.is_file() and not (stopped / "cnf_t.json").exists()
    assert not list(stopped.glob(".cnf_*"))

    epochs_trained = []
    monkeypatch.setattr(
        cnf_bench, "train_epoch", lambda *a: epochs_trained.append(a[3]) or train_epoch(*a)
    )
    cnf_bench.main([*TINY, *where])
    assert epochs_trained == [1, 1]  # only the second epoch, once per model
    assert nlls(stopped) == pytest.approx(whole, rel=1e-6)
    assert not resume.exists()


def test_a_resume_state_of_other_settings_is_not_used(cnf_bench, tmp_path, capsys):
    state = {"settings": {"dataset": "checkerboard", "lr": 1.0}, "epoch": 1}
    cnf_bench.torch.save(state, tmp_path / ".cnf_t_checkerboard.resume.pt")
    cnf_bench.main([*TINY, "--results-dir", str(tmp_path)])  # its lr is 1e-3
    assert "has other settings: starting afresh" in capsys.readouterr().err


def test_nodezoo_compare_tabulates_a_benchmark_result(cnf_bench, tmp_path):
    """The benchmark's JSON is a ``nodezoo compare`` input: a row per model and data set with
    its NLL, parameters, NFE and epoch time, as the JSON has them."""
    import csv

    from nodezoo.reports.commands import main_compare

    cnf_bench.main([*TINY, "--results-dir", str(tmp_path)])
    result = json.loads((tmp_path / "cnf_t.json").read_text())["datasets"][0]["rows"]
    out = tmp_path / "compare"
    argv = [str(tmp_path / "cnf_t.json"), "--out", str(out), "--no-tolerance-sweep"]
    assert main_compare(argv) == 0
    rows = {r["name"]: r for r in csv.DictReader((out / "table.csv").open())}
    assert sorted(rows) == ["nodezoo-cnf [checkerboard]", "nodezoo-cnf-ckpt [checkerboard]"]
    for model, expected in result.items():
        row = rows[f"{model} [checkerboard]"]
        assert float(row["test_nll"]) == expected["test_nll"]
        assert int(row["params"]) == expected["params"]
        assert float(row["nfe_forward"]) == expected["nfe_forward"]
        assert float(row["time_per_epoch_s"]) == expected["epoch_wall_s"]
        assert (row["model"], row["epochs"], row["source"]) == (model, "2", "benchmark")
    assert "| nodezoo-cnf [checkerboard] | nodezoo-cnf |" in (out / "table.md").read_text()


def test_a_json_that_is_not_a_benchmark_result_is_a_clear_error(tmp_path):
    from nodezoo.reports.sources import ReportError, load_records

    other = tmp_path / "metrics.json"
    other.write_text('{"test/acc": 0.9}')
    with pytest.raises(ReportError, match=r"is not a benchmarks/cnf.py result .*KeyError"):
        load_records([str(other)])
