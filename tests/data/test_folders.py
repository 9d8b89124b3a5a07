"""``ImageFolderDataModule`` on real image files (PNG and JPEG written with PIL): the model's
geometry, labels by train/'s class folders in every split, and errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nodezoo.data import DatasetNotFoundError, ImageFolderDataModule

CLASSES = ("boot", "cat", "dog")  # sorted: labels 0, 1, 2
GREY = {"boot": 30, "cat": 130, "dog": 230}  # each class its own brightness


def write_images(split_dir: Path, counts: dict[str, int], size=(40, 30), mode="RGB") -> None:
    """``counts[c]`` images of class ``c``: flat images of the class's grey level (alternately
    PNG and JPEG, landscape, in ``mode``)."""
    for name, n in counts.items():
        folder = split_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            value = GREY[name]
            image = Image.new(mode, size, value if mode == "L" else (value,) * len(mode))
            image.save(folder / f"{i}.{'png' if i % 2 == 0 else 'jpg'}")


def labels_and_levels(loader) -> tuple[list[int], list[float]]:
    labels, levels = [], []
    for x, y in loader:
        labels += y.tolist()
        levels += x.mean(dim=(1, 2, 3)).mul(255).tolist()
    return labels, levels


def level_class(level: float) -> str:
    return min(GREY, key=lambda c: abs(GREY[c] - level))


@pytest.fixture
def folder(tmp_path) -> Path:
    # created in a non-sorted order: the labels must not depend on it
    write_images(tmp_path / "train", {"dog": 8, "boot": 8, "cat": 8})
    return tmp_path


def test_batches_have_the_models_geometry_and_labels_follow_the_class_folders(folder):
    data = ImageFolderDataModule(str(folder), image_size=28, in_channels=1, batch_size=5,
                                 val_size=0.25, seed=3)  # fmt: skip
    assert data.label_names == CLASSES and data.num_classes == 3
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set)) == (18, 6)  # 24 images, a quarter held out
    x, _ = next(iter(data.train_dataloader()))
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    labels, levels = labels_and_levels(data.val_dataloader())
    assert len(labels) == 6 and all(
        CLASSES[label] == level_class(level) for label, level in zip(labels, levels, strict=True)
    )


def test_val_size_counts_images_or_a_fraction_and_the_split_is_seeded(folder):
    def val_items(val_size, seed):
        data = ImageFolderDataModule(str(folder), val_size=val_size, seed=seed)
        data.setup("validate")
        return sorted(data.val_set.subset.indices)

    assert len(val_items(5, 0)) == 5 and len(val_items(0.5, 0)) == 12
    assert len(val_items(1, 0)) == 1  # 1 is one image, not all of them
    data = ImageFolderDataModule(str(folder))
    data.setup("fit")
    assert len(data.val_set) == 2  # the default: a tenth of the 24, rounded
    assert val_items(5, 0) == val_items(5, 0) != val_items(5, 1)
    with pytest.raises(ValueError, match="val_size=24 leaves no training images"):
        val_items(24, 0)


def test_val_and_test_folders_keep_trains_class_indices(folder):
    # test/ lacks two classes: torchvision alone would number its one folder 0
    write_images(folder / "test", {"dog": 3})
    write_images(folder / "val", {"cat": 2, "dog": 2})
    data = ImageFolderDataModule(str(folder), batch_size=4, val_size=0.9)  # val/ wins
    data.setup("fit")
    train_set = data.train_set
    data.setup("test")
    assert data.train_set is train_set  # each split is built once
    assert len(data.train_set) == 24  # nothing carved from train/
    val_labels, val_levels = labels_and_levels(data.val_dataloader())
    assert val_labels == [1, 1, 2, 2]
    assert [level_class(v) for v in val_levels] == ["cat", "cat", "dog", "dog"]
    assert labels_and_levels(data.test_dataloader())[0] == [2, 2, 2]
    predicting = ImageFolderDataModule(str(folder), batch_size=4)
    predicting.setup("predict")
    assert labels_and_levels(predicting.predict_dataloader())[0] == [2, 2, 2]


def test_rgb_models_get_three_channels_from_grey_files_and_any_size_is_cropped_square(tmp_path):
    write_images(tmp_path / "train", {"boot": 2, "cat": 2}, size=(17, 50), mode="L")
    data = ImageFolderDataModule(str(tmp_path), image_size=12, in_channels=3, val_size=0,
                                 batch_size=4, augment=False)  # fmt: skip
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (4, 3, 12, 12)
    for image, label in zip(x, y, strict=True):  # grey in, equal channels out, class's level
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
        assert level_class(image.mean().item() * 255) == CLASSES[label]


def first_training_batch(folder, **args):
    data = ImageFolderDataModule(str(folder), val_size=0, batch_size=24, **args)
    data.setup("fit")
    return next(iter(data.train_dataloader()))[0]


def test_padded_random_crops_are_the_training_augmentation(folder):
    # a flat image shifted by up to 2 pixels shows the zero padding in some of the 24
    assert (first_training_batch(folder, crop_padding=2).amin(dim=(1, 2, 3)) == 0).any()
    for off in ({"augment": False}, {"crop_padding": 0}):
        assert (first_training_batch(folder, **off).amin(dim=(1, 2, 3)) > 0).all()


def test_mirrors_only_when_asked(tmp_path):
    for name in CLASSES[:2]:  # bright on the left half, dark on the right
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(12):
            image = Image.new("L", (28, 28), 0)
            image.paste(200, (0, 0, 14, 28))
            image.save(tmp_path / "train" / name / f"{i}.png")

    def bright_right_halves(**args) -> int:
        x = first_training_batch(tmp_path, crop_padding=0, **args)
        return int((x[..., 14:].mean(dim=(1, 2, 3)) > x[..., :14].mean(dim=(1, 2, 3))).sum())

    assert bright_right_halves() == 0
    assert 0 < bright_right_halves(horizontal_flip=True) < 24


def test_loader_workers_are_the_ones_asked_for(folder):
    data = ImageFolderDataModule(str(folder), num_workers=2)
    data.setup("fit")
    assert data.train_dataloader().num_workers == data.val_dataloader().num_workers == 2


@pytest.mark.parametrize(
    ("make", "stage", "message"),
    [
        (lambda root: None, "fit", "is not a folder.*ImageFolder layout.*train/<class name>"),
        (lambda root: write_images(root / "train", {"cat": 3}), "fit",
         "has 1 class folder.*at least two"),
        (lambda root: (write_images(root / "train", {"cat": 3}),
                       (root / "train" / "dog").mkdir()), "fit",
         "no images for the class\\(es\\) dog"),
        (lambda root: (write_images(root / "train", {"cat": 3, "dog": 3}),
                       write_images(root / "test", {"boot": 1})), "test",
         "class folders that train/ lacks: boot"),
        (lambda root: write_images(root / "train", {"cat": 3, "dog": 3}), "test",
         "No test images.*nodezoo evaluate"),
        (lambda root: (write_images(root / "train", {"cat": 3, "dog": 3}),
                       (root / "test" / "cat").mkdir(parents=True)), "test",
         "test' holds no images.*ImageFolder layout"),
    ],
    ids=["no-train", "one-class", "empty-class", "unknown-test-class", "no-test", "empty-test"],
)  # fmt: skip
def test_bad_folders_say_what_is_wrong(tmp_path, make, stage, message):
    make(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=f"(?s){message}"):
        ImageFolderDataModule(str(tmp_path), val_size=0).setup(stage)


@pytest.mark.parametrize(
    ("args", "message"),
    [({"in_channels": 2}, "1 \\(grey\\) or 3 \\(RGB\\)"), ({"val_size": -1}, "val_size"),
     ({"image_size": 0}, "image_size")],
)  # fmt: skip
def test_bad_arguments_are_refused(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        ImageFolderDataModule(str(tmp_path), **args)


def test_the_images_reach_the_model_as_in_a_real_file(folder):
    """The loader's pixels are the file's, resized: a 28x28 grey PNG comes through unchanged."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(28, 28), dtype=np.uint8)
    target = folder / "test" / "cat"
    target.mkdir(parents=True)
    Image.fromarray(pixels, mode="L").save(target / "x.png")
    data = ImageFolderDataModule(str(folder))
    data.setup("test")
    ((x, y),) = data.test_dataloader()
    assert y.tolist() == [1]
    assert torch.equal(x[0, 0], torch.from_numpy(pixels).float() / 255)
