"""Image classification data: one LightningDataModule over torchvision's dataset classes.

Every image set is the same recipe (train/validation split carved from the training set with a
fixed seed, the paper's random-crop augmentation, float images in [0, 1], no normalisation because
the model normalises), so one base class does the work and each data set only names its
torchvision class, its image geometry and how a user gets its files.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import ClassVar

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset, random_split
from torchvision import datasets, transforms

from ..errors import NodezooError
from .resume import evaluation_loader, training_loader

__all__ = [
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MNISTDataModule",
]


class DatasetNotFoundError(NodezooError, FileNotFoundError):
    """The data set's files are not on disk; the message says how to get them."""


class _Transformed(Dataset):
    """Applies a transform to a (sub)set of an un-transformed dataset.

    The training and validation splits share one loaded copy of the training files but need
    different transforms (augmentation only for training).
    """

    def __init__(self, subset: Dataset, transform):
        self.subset, self.transform = subset, transform

    def __len__(self) -> int:
        return len(self.subset)

    def __getitem__(self, index: int):
        image, label = self.subset[index]
        return self.transform(image), label


class ImageDataModule(pl.LightningDataModule):
    """Train/val/test loaders over a torchvision image classification data set.

    Subclasses set the class attributes only. ``val_size`` images are carved from the training
    set with a generator seeded by ``seed``, so every run (and every DDP rank) sees the same
    split; the test set is only ever used by ``test``/``predict``. ``system_dir`` is a folder
    holding the raw ``.gz`` files (for instance a distribution package); they are unpacked into
    ``<data_dir>/<Dataset>/raw/`` on first use so torchvision's class loads them.
    Training augmentation (``augment``): a random crop of the image padded by ``crop_padding``
    pixels (the paper's 4; 0 turns it off) and, where ``horizontal_flip`` says so (default: the
    data set's convention, on for CIFAR-10), a random left-right mirror.
    """

    dataset_class: ClassVar[type[datasets.VisionDataset]]
    num_classes: ClassVar[int] = 10
    label_names: ClassVar[tuple[str, ...]]  # class names in label order (published on cards)
    in_channels: ClassVar[int]
    image_size: ClassVar[int]
    flips_by_default: ClassVar[bool] = False  # mirror images are still the same class
    default_system_dir: ClassVar[str | None] = None
    how_to_get: ClassVar[str] = ""

    def __init__(
        self,
        data_dir: str = "data",
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: int = 5000,
        seed: int = 0,
        augment: bool = True,
        crop_padding: int = 4,
        horizontal_flip: bool | None = None,
        pin_memory: bool = False,
        system_dir: str | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0 (0: no random crop), got {crop_padding}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.download = download
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.seed = seed
        self.augment = augment
        self.crop_padding = crop_padding
        self.horizontal_flip = self.flips_by_default if horizontal_flip is None else horizontal_flip
        self.pin_memory = pin_memory
        self.system_dir = system_dir if system_dir is not None else self.default_system_dir
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # ----------------------------------------------------------------------------- transforms
    def train_transform(self):
        if not self.augment:
            return self.eval_transform()
        steps = []
        if self.crop_padding:
            steps.append(transforms.RandomCrop(self.image_size, padding=self.crop_padding))
        if self.horizontal_flip:
            steps.append(transforms.RandomHorizontalFlip())
        return transforms.Compose([*steps, transforms.ToTensor()])

    def eval_transform(self):
        return transforms.ToTensor()

    # ----------------------------------------------------------------------------- files
    @property
    def raw_dir(self) -> Path:
        """Where torchvision's MNIST-family classes look for the unpacked IDX files."""
        return self.data_dir / self.dataset_class.__name__ / "raw"

    def _unpack_idx_files(self) -> None:
        """Unpack ``*.gz`` IDX files found in ``raw_dir`` or ``system_dir`` into ``raw_dir``.

        torchvision reads the unpacked files and only unpacks them itself while downloading;
        this lets a user (or a distribution package) supply the ``.gz`` files and train offline.
        """
        resources = getattr(self.dataset_class, "resources", None)
        if not isinstance(resources, list):  # not an IDX (MNIST-family) data set
            return
        for gz_name, _md5 in resources:
            target = self.raw_dir / gz_name.removesuffix(".gz")
            if target.is_file():
                continue
            sources = [self.raw_dir / gz_name]
            if self.system_dir:
                sources.append(Path(self.system_dir) / gz_name)
            source = next((s for s in sources if s.is_file()), None)
            if source is None:
                continue
            self.raw_dir.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            with gzip.open(source, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(partial, target)  # atomic: a concurrent reader never sees half a file

    def prepare_data(self) -> None:
        """Runs once per node (rank 0): unpack supplied files, or download if asked to."""
        self._unpack_idx_files()
        if self.download:
            self.dataset_class(str(self.data_dir), train=True, download=True)
            self.dataset_class(str(self.data_dir), train=False, download=True)

    def _load(self, train: bool):
        try:
            return self.dataset_class(str(self.data_dir), train=train, download=False)
        except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
            raise DatasetNotFoundError(self._missing_message()) from err

    def _missing_message(self) -> str:
        name = self.dataset_class.__name__
        lines = [
            f"{name} was not found (or is incomplete) under '{self.data_dir}'. To get it, either:",
            "  - set `download: true` in the recipe's data section (or pass "
            "`--data.init_args.download true`) to download it from the internet, or",
        ]
        lines += [
            f"  - {line}"
            for line in self.how_to_get.format(
                raw_dir=self.raw_dir, data_dir=self.data_dir, system_dir=self.system_dir
            ).splitlines()
        ]
        lines.append(
            f"  - or point `data_dir` (--data.init_args.data_dir) at a folder holding {name}."
        )
        return "\n".join(lines)

    # ----------------------------------------------------------------------------- splits
    def setup(self, stage: str | None = None) -> None:
        self._unpack_idx_files()  # harmless if prepare_data already ran; needed if it did not
        if stage in (None, "fit", "validate") and self.train_set is None:
            train, val = self._carve_validation(self._load(train=True))
            self.train_set = _Transformed(train, self.train_transform())
            self.val_set = _Transformed(val, self.eval_transform())
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = _Transformed(self._load(train=False), self.eval_transform())

    def _carve_validation(self, full_train: Dataset) -> tuple[Subset, Subset]:
        """(training, validation) subsets: ``val_size`` items drawn by a generator seeded by
        ``seed``, the same on every run and rank."""
        if self.val_size >= len(full_train):
            raise ValueError(
                f"val_size={self.val_size} leaves no training images: the training set has "
                f"{len(full_train)} images"
            )
        generator = torch.Generator().manual_seed(self.seed)
        sizes = [len(full_train) - self.val_size, self.val_size]
        train_part, val_part = random_split(range(len(full_train)), sizes, generator)
        return Subset(full_train, list(train_part)), Subset(full_train, list(val_part))

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        """Training: resumable order and seeded augmentation (``resume.training_loader``)."""
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        workers = dict(num_workers=self.num_workers, pin_memory=self.pin_memory,
                       persistent_workers=self.num_workers > 0)  # fmt: skip
        if train:
            return training_loader(
                dataset, self, batch_size=self.batch_size, seed=self.seed, **workers
            )
        return evaluation_loader(dataset, batch_size=self.batch_size, seed=self.seed, **workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)


def _idx_how_to_get(dataset_class) -> str:
    files = ", ".join(name for name, _ in dataset_class.resources)
    return f"put the IDX files ({files}) in '{{raw_dir}}', gzipped or unpacked"


class MNISTDataModule(ImageDataModule):
    """MNIST (the paper's Table 1): 28×28 grey digits, 60k train (55k + 5k val), 10k test."""

    dataset_class = datasets.MNIST
    label_names = tuple(datasets.MNIST.classes)
    in_channels, image_size = 1, 28
    how_to_get = _idx_how_to_get(datasets.MNIST)


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST: MNIST's format, harder images; uses the Debian package's files if present."""

    dataset_class = datasets.FashionMNIST
    label_names = tuple(datasets.FashionMNIST.classes)
    in_channels, image_size = 1, 28
    default_system_dir = "/usr/share/datasets/fashion-mnist"
    how_to_get = (
        "install the Debian/Ubuntu package with `sudo apt-get install dataset-fashion-mnist` "
        "(its files in {system_dir} are used automatically), or\n"
        + _idx_how_to_get(datasets.FashionMNIST)
    )


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 32×32 colour images; augmentation adds a horizontal flip to the random crop."""

    dataset_class = datasets.CIFAR10
    # torchvision reads these from the data files; they are fixed by the data set
    label_names = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    in_channels, image_size = 3, 32
    flips_by_default = True
    how_to_get = (
        "put cifar-10-python.tar.gz in '{data_dir}' and set `download: true` (torchvision then "
        "only checks and unpacks it), or unpack it so that '{data_dir}/cifar-10-batches-py' exists"
    )
