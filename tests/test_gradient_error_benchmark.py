"""benchmarks/gradient_error.py runs on real-format data and reports every contender; its
errors are relative errors against the tight solve, so the reference itself would score 0."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gradient_error.py"


def test_small_run_reports_every_contender(tiny_fashion_dir):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--batches", "2", "--batch", "4",
         "--data", str(tiny_fashion_dir / "FashionMNIST" / "raw")],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    rows = {
        r[0].strip(): r
        for r in (line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| "))
        if not r[0].strip().startswith("solver")
    }
    assert set(rows) == {
        "adjoint", "adjoint, warm start", "backprop", "backprop, warm start",
        "adjoint, warm start, tol 3e-4", "backprop, warm start, tol 3e-4",
    }  # fmt: skip
    for row in rows.values():
        median, largest, nfe = float(row[1]), float(row[2]), float(row[4])
        assert 0 < median <= largest < 1 and nfe > 0
    # the first batch of a warm contender is its cold twin's (nothing learnt yet)
    first = {name: row[3].split()[0] for name, row in rows.items()}
    assert first["adjoint, warm start"] == first["adjoint"]
    assert first["backprop, warm start"] == first["backprop"]
