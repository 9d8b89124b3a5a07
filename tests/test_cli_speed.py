"""`nodezoo --help`, `list` and `evaluate --help` import neither Lightning nor W&B (they cost
several seconds on a fresh process); only the verbs that train or evaluate load them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from nodezoo.cli import main
main(["--help"])
main(["list"])
try:
    main(["evaluate", "--help"])
except SystemExit:
    pass
heavy = sorted(m for m in ("pytorch_lightning", "lightning_fabric", "wandb", "torchvision")
               if m in sys.modules)
print("HEAVY", heavy)
"""


def test_help_list_and_evaluate_help_skip_lightning_and_wandb():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "HEAVY []" in out, out
