"""What the README promises runs after the main install (`pip install -e .`) needs only the
main dependencies; published numbers quoted in recipes match their cards."""

from __future__ import annotations

import json
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def main_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}


def test_digits_finetune_needs_no_extra():
    source = (ROOT / "nodezoo" / "data" / "digits.py").read_text()
    assert "from sklearn" in source  # the digits come from scikit-learn
    assert "scikit-learn" in main_dependencies()


def test_finetune_recipe_quotes_the_cards_accuracy():
    metrics = ROOT / "model_cards" / "odenet-fashion-mnist-to-digits" / "metrics.json"
    card = json.loads(metrics.read_text())
    recipe = (ROOT / "recipes/finetune/odenet_fashion_mnist_to_digits.yaml").read_text()
    assert f"3e-3 {100 * card['test/acc']:.2f}%" in recipe
