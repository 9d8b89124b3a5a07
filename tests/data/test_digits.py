"""scikit-learn's digits as a data module: real images, fixed splits, clear errors."""

from __future__ import annotations

import builtins

import pytest
import torch

pytest.importorskip("sklearn")

from nodezoo.data import DatasetNotFoundError, DigitsDataModule


def test_splits_are_disjoint_fixed_by_seed_and_images_in_range():
    dm = DigitsDataModule(batch_size=50, val_size=100, test_size=300, seed=3)
    dm.setup()
    sizes = {name: len(split) for name, split in dm.splits.items()}
    assert sizes == {"train": 1397, "val": 100, "test": 300}
    images, labels = next(iter(dm.test_dataloader()))
    predicted, _ = next(iter(dm.predict_dataloader()))  # the test images, in order
    assert torch.equal(predicted, images)
    assert images.shape == (50, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert set(labels.tolist()) <= set(range(10))
    # every image once: no overlap between the splits
    flat = torch.cat([s.tensors[0].flatten(1) for s in dm.splits.values()])
    assert torch.unique(flat, dim=0).shape[0] >= 1797 - 20  # the set has a few exact duplicates
    same = DigitsDataModule(val_size=100, test_size=300, seed=3)
    same.setup()
    assert torch.equal(same.splits["test"].tensors[1], dm.splits["test"].tensors[1])
    other = DigitsDataModule(val_size=100, test_size=300, seed=4)
    other.setup()
    assert not torch.equal(other.splits["test"].tensors[1], dm.splits["test"].tensors[1])


def test_native_size_keeps_the_original_pixels():
    from sklearn.datasets import load_digits

    dm = DigitsDataModule(image_size=8, test_size=10, val_size=0)
    dm.setup()
    x, y = dm.splits["test"][0]
    index = next(
        i
        for i, img in enumerate(load_digits().images)
        if torch.equal(torch.as_tensor(img, dtype=torch.float32) / 16, x[0])
    )
    assert int(load_digits().target[index]) == int(y)


def test_bad_sizes_and_missing_scikit_learn_are_clear(monkeypatch):
    with pytest.raises(ValueError, match="leaves no training images"):
        DigitsDataModule(val_size=900, test_size=900).setup()
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(DatasetNotFoundError, match="pip install scikit-learn"):
        DigitsDataModule().setup()
