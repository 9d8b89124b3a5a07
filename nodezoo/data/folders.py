"""``ImageFolderDataModule``: a user's own images, one folder per class, for fine-tuning a zoo
classifier on them (and testing, evaluating and publishing the result like any zoo model).

Layout, torchvision's ``ImageFolder``::

    <data_dir>/train/<class name>/<image files>     required
    <data_dir>/val/<class name>/<image files>       optional: else val_size carved from train/
    <data_dir>/test/<class name>/<image files>      needed by test, evaluate and publish

Images (any format PIL reads) are converted to ``in_channels`` (1: grey, 3: RGB), resized so
the shorter side is ``image_size`` and centre-cropped to a square, so a model made for 28x28
grey images, such as the Fashion-MNIST zoo, takes them. Training augmentation is the built-in
sets' (:class:`.images.ImageDataModule`): a padded random crop and, if asked, a mirror.

Class indices follow train/'s folder names, sorted (``ImageFolder``'s rule), and val/ and test/
are read with that same mapping: torchvision would number a test folder that lacks a class from
its own folders, shifting every later label without a word. A class that train/ lacks is an error
(the model cannot predict it).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.datasets.folder import IMG_EXTENSIONS

from .images import DatasetNotFoundError, ImageDataModule, _Transformed

__all__ = ["ImageFolderDataModule"]


class _ClassFolder(datasets.ImageFolder):
    """``ImageFolder`` numbering its classes as given (train/'s), not by its own folders."""

    def __init__(self, root: Path, classes: list[str], **kwargs):
        self._given_classes = classes
        super().__init__(str(root), allow_empty=True, **kwargs)

    def find_classes(self, directory):
        return list(self._given_classes), {c: i for i, c in enumerate(self._given_classes)}


def _class_folders(split_dir: Path) -> list[str]:
    return sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())


class ImageFolderDataModule(ImageDataModule):
    """Train/val/test loaders over ``<data_dir>/{train,val,test}/<class>/`` (see the module
    docstring). ``val_size``: images carved from train/ for validation when there is no val/
    folder, a count or a fraction below 1 (with a generator seeded by ``seed``, the same split
    on every run and rank); with a val/ folder it is not used. ``num_classes`` and
    ``label_names`` are train/'s class folders; ``nodezoo fit`` checks the model's
    ``num_classes``, ``in_channels`` and ``image_size`` against them before training."""

    def __init__(
        self,
        data_dir: str = "data/images",
        image_size: int = 28,
        in_channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int | float = 0.1,
        seed: int = 0,
        augment: bool = True,
        crop_padding: int = 2,
        horizontal_flip: bool = False,
        pin_memory: bool = False,
    ):
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels}")
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        if val_size < 0:
            raise ValueError(
                f"val_size must be >= 0 (a count, or a fraction below 1), got {val_size}"
            )
        super().__init__(
            data_dir=data_dir, batch_size=batch_size, num_workers=num_workers,
            val_size=0, seed=seed, augment=augment, crop_padding=crop_padding,
            horizontal_flip=horizontal_flip, pin_memory=pin_memory,
        )  # fmt: skip
        self.requested_val_size = val_size  # a count or a fraction; val_size: the count
        self.image_size = image_size
        self.in_channels = in_channels
        self._classes: list[str] | None = None

    # ----------------------------------------------------------------------------- classes
    @property
    def label_names(self) -> tuple[str, ...]:
        """train/'s class folders, sorted: label i is the i-th name."""
        if self._classes is None:
            train_dir = self.data_dir / "train"
            if not train_dir.is_dir():
                raise DatasetNotFoundError(self._missing_message())
            classes = _class_folders(train_dir)
            if len(classes) < 2:
                raise DatasetNotFoundError(
                    f"'{train_dir}' has {len(classes)} class folder(s) "
                    f"({', '.join(classes) or 'none'}); a classifier needs at least two: one "
                    "sub-folder per class, holding its images.\n" + self._layout()
                )
            self._classes = classes
        return tuple(self._classes)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    # ----------------------------------------------------------------------------- files
    def _layout(self) -> str:
        return (
            f"Expected (torchvision's ImageFolder layout): '{self.data_dir}/train/<class name>/"
            "<image files>', and optionally val/ and test/ beside train/ with the same class "
            "folders. Point data_dir (--data.init_args.data_dir) at the folder that holds train/."
        )

    def _missing_message(self) -> str:
        return (
            f"No training images: '{self.data_dir / 'train'}' is not a folder.\n" + self._layout()
        )

    def prepare_data(self) -> None:
        """Nothing to download or unpack: the images are the user's."""

    def _base_transform(self):
        """PIL image as loaded (RGB: ImageFolder's loader converts every file) -> the model's
        geometry, still a PIL image for the augmentation."""
        steps = [transforms.Resize(self.image_size), transforms.CenterCrop(self.image_size)]
        if self.in_channels == 1:
            steps.insert(0, transforms.Grayscale(num_output_channels=1))
        return transforms.Compose(steps)

    def _split(self, name: str) -> Dataset | None:
        """The split's folder read with train/'s class indices; None if it has no folder."""
        split_dir = self.data_dir / name
        if name != "train" and not split_dir.is_dir():
            return None
        classes = list(self.label_names)
        unknown = sorted(set(_class_folders(split_dir)) - set(classes))
        if unknown:
            raise DatasetNotFoundError(
                f"'{split_dir}' has class folders that train/ lacks: {', '.join(unknown)}. The "
                "model can only predict train/'s classes; rename or remove them.\n" + self._layout()
            )
        dataset = _ClassFolder(split_dir, classes, transform=self._base_transform())
        if name == "train":  # every class needs images to learn from; val/ and test/ may lack some
            empty = sorted(set(classes) - {classes[i] for i in dataset.targets})
            if empty:
                raise DatasetNotFoundError(
                    f"'{split_dir}' has no images for the class(es) {', '.join(empty)} (files "
                    f"ending in {', '.join(IMG_EXTENSIONS)}).\n" + self._layout()
                )
        if len(dataset) == 0:
            raise DatasetNotFoundError(f"'{split_dir}' holds no images.\n" + self._layout())
        return dataset

    # ----------------------------------------------------------------------------- splits
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            train = self._split("train")
            val = self._split("val")
            if val is None:
                size = self.requested_val_size
                self.val_size = round(size * len(train)) if 0 < size < 1 else int(size)
                train, val = self._carve_validation(train)
            self.train_set = _Transformed(train, self.train_transform())
            self.val_set = _Transformed(val, self.eval_transform())
        if stage in (None, "test", "predict") and self.test_set is None:
            test = self._split("test")
            if test is None:
                raise DatasetNotFoundError(
                    f"No test images: '{self.data_dir / 'test'}' is not a folder; testing, "
                    "`nodezoo evaluate` and `nodezoo publish` need one.\n" + self._layout()
                )
            self.test_set = _Transformed(test, self.eval_transform())
