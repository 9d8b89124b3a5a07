"""benchmarks/spirals_table2.py end to end on a tiny budget: it trains every row, saves each
checkpoint, and evaluating those checkpoints again gives the same table."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "spirals_table2.py"


@pytest.fixture(scope="module")
def table2():
    spec = importlib.util.spec_from_file_location("spirals_table2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trains_then_reloads_every_row(table2, tmp_path):
    models = ["rnn_no_gaps", "rnn", "latent_ode"]
    tiny = ["--steps", "3", "--n-train", "20", "--batch-size", "10", "--n-test", "6"]
    out = tmp_path / "trained.json"
    args = ["--models", *models, "--ckpt-dir", str(tmp_path), "--out", str(out), *tiny]
    trained = table2.main(args)
    for name in models:
        assert (tmp_path / f"{name}.ckpt").is_file()
        assert json.loads((tmp_path / f"{name}.json").read_text())["time/total_s"] >= 0
    reloaded = table2.main(["--models", *models, "--from-checkpoints", str(tmp_path), *tiny])
    for name in models:
        assert reloaded["results"][name] == pytest.approx(trained["results"][name], rel=1e-6)
    assert json.loads(out.read_text())["results"] == trained["results"]

    # Only the Δt variant sees the time gaps: the plain RNN's input is value and mask only.
    rnn = table2.load("rnn", tmp_path / "rnn.ckpt")
    plain = table2.load("rnn_no_gaps", tmp_path / "rnn_no_gaps.ckpt")
    assert rnn.hparams.time_gaps and not plain.hparams.time_gaps
    assert rnn.rnn.input_size == plain.rnn.input_size + 1

    # Each family's paper row comes once, before that family's own rows.
    lines = trained["markdown"].splitlines()[2:]
    labels = [line.split(" | ")[0].lstrip("| ") for line in lines]
    assert labels == [
        "RNN (paper)",
        "RNN (no Δt) (nodezoo)",
        "RNN (Δt) (nodezoo)",
        "Latent ODE (paper)",
        "Latent ODE (nodezoo)",
    ]
    assert "0.3937 | 0.3202 | 0.1813" in lines[0]
