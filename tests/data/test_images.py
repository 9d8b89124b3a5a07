"""The image data modules load real-format files through torchvision's own dataset classes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from image_files import write_tiny_cifar10, write_tiny_idx
from torchvision import datasets

from nodezoo.data import (
    CIFAR10DataModule,
    DatasetNotFoundError,
    FashionMNISTDataModule,
    MNISTDataModule,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _first_batch(loader):
    images, labels = next(iter(loader))
    return images, labels


@pytest.mark.parametrize("module_class", [MNISTDataModule, FashionMNISTDataModule])
def test_idx_sets_load_through_torchvision(tmp_path, module_class):
    raw = tmp_path / module_class.dataset_class.__name__ / "raw"
    write_tiny_idx(raw, n_train=40, n_test=12)
    dm = module_class(data_dir=str(tmp_path), batch_size=8, val_size=10, system_dir="/nonexistent")
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 12)
    images, labels = _first_batch(dm.train_dataloader())
    assert images.shape == (8, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert labels.dtype == torch.int64 and int(labels.max()) < dm.num_classes
    assert (dm.num_classes, dm.in_channels, dm.image_size) == (10, 1, 28)


def test_split_is_fixed_by_seed_and_val_is_not_augmented(tmp_path):
    write_tiny_idx(tmp_path / "MNIST" / "raw", n_train=40, n_test=4)

    def val_indices(seed):
        dm = MNISTDataModule(data_dir=str(tmp_path), val_size=10, seed=seed)
        dm.setup("fit")
        return dm, dm.val_set.subset.indices

    dm, first = val_indices(0)
    assert first == val_indices(0)[1]
    assert first != val_indices(1)[1]
    # validation images are exactly the stored pixels / 255 (no random crop)
    index = first[0]
    expected = dm.val_set.subset.dataset.data[index].float() / 255
    torch.testing.assert_close(dm.val_set[0][0][0], expected)
    # training images are augmented: padding 4 + crop shifts the digit in some draws
    train_index = dm.train_set.subset.indices[0]
    stored = dm.train_set.subset.dataset.data[train_index].float() / 255
    draws = [dm.train_set[0][0][0] for _ in range(20)]
    assert any(not torch.equal(d, stored) for d in draws)


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` moved by (dy, dx) pixels with zeros shifted in (what pad + crop does)."""
    h, w = image.shape
    out = torch.zeros_like(image)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@pytest.mark.parametrize(
    ("crop_padding", "horizontal_flip"), [(0, False), (2, False), (0, True), (1, True)]
)
def test_augmentation_is_a_shift_within_the_padding_and_an_optional_mirror(
    tmp_path, crop_padding, horizontal_flip
):
    write_tiny_idx(tmp_path / "MNIST" / "raw", n_train=12, n_test=2)
    dm = MNISTDataModule(
        data_dir=str(tmp_path),
        val_size=2,
        crop_padding=crop_padding,
        horizontal_flip=horizontal_flip,
    )
    dm.setup("fit")
    stored = dm.train_set.subset.dataset.data[dm.train_set.subset.indices[0]].float() / 255
    mirrors = [stored, stored.flip(-1)] if horizontal_flip else [stored]
    r = range(-crop_padding, crop_padding + 1)
    allowed = [_shifted(m, dy, dx) for m in mirrors for dy in r for dx in r]
    draws = [dm.train_set[0][0][0] for _ in range(40)]
    for draw in draws:
        assert any(torch.equal(draw, a) for a in allowed)
    distinct = {tuple(d.flatten().tolist()) for d in draws}
    assert (len(distinct) == 1) == (crop_padding == 0 and not horizontal_flip)
    with pytest.raises(ValueError, match="crop_padding"):
        MNISTDataModule(data_dir=str(tmp_path), crop_padding=-1)


def test_cifar10_pickled_batches(tmp_path, monkeypatch):
    md5 = write_tiny_cifar10(tmp_path, per_batch=8)
    # torchvision checks every batch's md5 against the real files' sums: point it at ours
    monkeypatch.setattr(
        datasets.CIFAR10,
        "train_list",
        [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)],
    )
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(
        datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": md5["batches.meta"]}
    )
    dm = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=4, val_size=8)
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (32, 8, 8)
    images, _ = _first_batch(dm.train_dataloader())
    assert images.shape == (4, 3, 32, 32)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert dm.in_channels == 3 and dm.image_size == 32


def test_cifar10_with_wrong_checksums_is_reported_as_missing(tmp_path):
    write_tiny_cifar10(tmp_path)  # the real md5 sums do not match these tiny files
    with pytest.raises(DatasetNotFoundError, match="download: true"):
        CIFAR10DataModule(data_dir=str(tmp_path)).setup("fit")


@pytest.mark.parametrize(
    ("module_class", "hint"),
    [
        (MNISTDataModule, "MNIST/raw"),
        (FashionMNISTDataModule, "apt-get install dataset-fashion-mnist"),
        (CIFAR10DataModule, "cifar-10-python.tar.gz"),
    ],
)
def test_missing_data_says_how_to_get_it(tmp_path, module_class, hint):
    dm = module_class(data_dir=str(tmp_path / "empty"), system_dir=str(tmp_path / "none"))
    with pytest.raises(DatasetNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "download: true" in message and hint in message


def test_system_dir_files_are_unpacked_into_data_dir(tmp_path):
    system = write_tiny_idx(tmp_path / "system", n_train=20, n_test=4)
    dm = FashionMNISTDataModule(data_dir=str(tmp_path / "data"), val_size=5, system_dir=str(system))
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 15
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"val_size": -1}, {"num_workers": -2}])
def test_bad_arguments_are_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        MNISTDataModule(**bad)


def test_val_size_must_leave_training_images(tmp_path):
    write_tiny_idx(tmp_path / "MNIST" / "raw", n_train=10, n_test=2)
    with pytest.raises(ValueError, match="val_size=10"):
        MNISTDataModule(data_dir=str(tmp_path), val_size=10).setup("fit")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("real_fashion")
    dm = FashionMNISTDataModule(data_dir=str(data_dir), batch_size=256)  # default system_dir
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) + len(dm.val_set) == 60000 and len(dm.val_set) == 5000
    assert len(dm.test_set) == 10000
    images, labels = _first_batch(dm.val_dataloader())
    assert images.dtype == torch.float32 and 0.0 <= images.min() and images.max() <= 1.0
    assert images.max() == 1.0  # real images use the whole range
    assert set(labels.tolist()) <= set(range(10))
    shutil.rmtree(data_dir)  # ~55 MB unpacked
