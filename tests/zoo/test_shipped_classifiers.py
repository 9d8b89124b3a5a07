"""The shipped image-classifier zoo folders: their cards' test metrics are what their weights
give on the real test set now (the spirals folders have the same check in test_spirals_zoo.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nodezoo.zoo import evaluate
from nodezoo.zoo.folder import read_metrics
from nodezoo.zoo.registry import zoo_names, zoo_root

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
SHIPPED = (
    *(f"{m}-fashion-mnist" for m in ("odenet", "odenet-rnode", "rknet", "resnet", "revnet", "mlp")),
    "odenet-fashion-mnist-to-digits",  # scikit-learn's digits
)

pytestmark = pytest.mark.skipif(
    not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed"
)


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("shipped_fashion")
    yield str(data_dir)
    shutil.rmtree(data_dir)  # the unpacked IDX files, ~55 MB


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_classifier_reproduces_its_card(name, fashion_dir):
    if name not in zoo_names():
        pytest.skip(f"{name} is not shipped in this checkout")
    if name.endswith("digits"):
        pytest.importorskip("sklearn")
    folder = zoo_root() / name
    shipped = read_metrics(folder)
    # with the suite's one thread (tests/conftest.py), as the builds publish
    fresh = evaluate(folder, data_dir=fashion_dir)  # the recipe's batches, as publish measured
    assert fresh["test/samples"] == (397 if "digits" in name else 10000)
    assert shipped.get("test/samples", fresh["test/samples"]) == fresh["test/samples"]
    assert fresh["model/params"] == shipped["model/params"]
    for key in ("test/acc", "test/loss", "test/nfe_forward"):
        if key in shipped or key in fresh:
            assert fresh[key] == pytest.approx(shipped[key], rel=1e-5), key
