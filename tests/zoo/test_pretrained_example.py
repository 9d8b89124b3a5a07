"""The README's main job (examples/pretrained_odenet.py) on a tiny zoo folder from a real run."""

import importlib.util
import json
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pretrained_odenet.py"


def test_pretrained_example_evaluates_and_plots(zoo_folder, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("pretrained_odenet", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "demo.png"
    metrics = module.main(["--model", str(zoo_folder), "--out", str(out), "--batch-size", "16"])
    card = json.loads((zoo_folder / "metrics.json").read_text())
    assert abs(metrics["test/acc"] - card["test/acc"]) < 1e-6  # same numbers as the card
    assert metrics["test/nfe_forward"] > 0
    assert out.stat().st_size > 5000
    assert "test accuracy" in capsys.readouterr().out
