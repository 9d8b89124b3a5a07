"""Every shipped zoo folder's card and config are what the current code renders from the
folder's own files (weights, metrics.json, recipe.yaml): re-rendering changes no byte, so a card
cannot drift from its data, and a card-format change must re-render the folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodezoo.zoo.folder import CONFIG_NAME, FOLDER_FILES
from nodezoo.zoo.publish import build_folder

# This checkout's folders (an editable install may map nodezoo.model_cards to another checkout).
MODEL_CARDS = Path(__file__).resolve().parents[2] / "model_cards"
NAMES = sorted(p.name for p in MODEL_CARDS.iterdir() if (p / CONFIG_NAME).is_file())


@pytest.mark.parametrize("name", NAMES)
def test_shipped_folder_is_its_own_rendering(name, tmp_path):
    shipped = MODEL_CARDS / name
    out = build_folder(shipped, tmp_path / name, evaluate_missing=False)
    for file in FOLDER_FILES:
        if not (shipped / file).exists() and not (out / file).exists():
            continue  # an optional file (card.png) neither has
        if file.endswith(".png"):
            assert_same_picture(out / file, shipped / file)
        else:
            assert (out / file).read_bytes() == (shipped / file).read_bytes(), f"{name}/{file}"


def assert_same_picture(drawn: Path, shipped: Path) -> None:
    """The picture is drawn from values the weights give (densities, samples, flows), whose last
    bits differ between CPUs: re-drawing cnf-checkerboard's card on an Intel Xeon changed 77 of
    its 903,960 pixels by one level of 255 against the AMD EPYC that drew it. So: same size,
    no pixel off by more than 2 levels, fewer than 0.1% off at all."""
    new = np.asarray(Image.open(drawn).convert("RGBA"), dtype=np.int16)
    old = np.asarray(Image.open(shipped).convert("RGBA"), dtype=np.int16)
    assert new.shape == old.shape, shipped
    off = np.abs(new - old).max(axis=-1)
    assert off.max() <= 2 and (off > 0).mean() < 1e-3, (shipped, off.max(), (off > 0).sum())
