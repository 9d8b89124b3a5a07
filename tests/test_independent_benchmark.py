"""benchmarks/independent.py runs, and its accuracy table shows what solve_independent is for."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torchode")
pytest.importorskip("torchdiffeq")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "independent.py"


def test_quick_run_prints_both_tables():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--repeats", "1", "--clock", "cpu"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ")]
    accuracy = {(r[0].strip(), int(r[1])): float(r[2]) for r in rows if r[1].strip().isdigit()}
    assert len(accuracy) == 8
    # a per-sample solve's error on a sample does not depend on the batch; a joint one's does
    for name in ("nodezoo solve_independent (per sample)", "torchode (per sample)"):
        assert accuracy[(name, 16)] == accuracy[(name, 64)]
    joint = "nodezoo solve (joint)"
    assert accuracy[(joint, 64)] > accuracy[(joint, 16)]
    assert accuracy[(joint, 16)] > 2 * accuracy[("nodezoo solve_independent (per sample)", 16)]
    speed = [r for r in rows if r[0].strip().startswith("mlp")]
    assert len(speed) == 4 and {r[2].strip() for r in speed} == {"forward", "backprop"}
    gradients = {r[0].strip(): r for r in rows if r[0].strip().startswith(("nodezoo ", "torch"))}
    assert set(gradients) >= {"nodezoo backprop", "nodezoo checkpoint", "torchode adjoint"}
    assert float(gradients["nodezoo checkpoint"][4]) < 1e-3  # the same gradients, float32
