"""UCI handwritten digits (the copy that ships with scikit-learn): a small real image set that
needs no download, for fine-tuning examples and tests.

1,797 grey 8x8 digits (values 0..16) from 43 writers. They are scaled to [0, 1] and resized to
``image_size`` (bilinear) so models built for 28x28 inputs, such as the Fashion-MNIST zoo
models, take them as they are. Train/val/test splits are drawn once with a fixed seed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .images import DatasetNotFoundError
from .splits import SplitsDataModule


def load_digits_images(image_size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as float images in [0, 1], ``(N, 1, image_size, image_size)``, and
    their labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DatasetNotFoundError(
            "The digits data set ships with scikit-learn, which is not installed: "
            "pip install scikit-learn"
        ) from err
    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if image_size != images.shape[-1]:
        images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False)
    return images.clamp(0.0, 1.0), torch.as_tensor(digits.target, dtype=torch.int64)


class DigitsDataModule(SplitsDataModule):
    """scikit-learn's digits as a LightningDataModule: ``test_size`` and ``val_size`` images are
    held out with a generator seeded by ``seed`` (the same split on every run and rank).
    ``data_dir`` is accepted for the recipe interface and unused: the data ship with
    scikit-learn."""

    num_classes = 10
    label_names = tuple(str(digit) for digit in range(10))
    in_channels = 1

    def __init__(
        self,
        data_dir: str = "data",
        image_size: int = 28,
        batch_size: int = 32,
        num_workers: int = 0,
        val_size: int = 200,
        test_size: int = 397,
        seed: int = 0,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if val_size < 0 or test_size < 1:
            raise ValueError(f"need val_size >= 0 and test_size >= 1, got {val_size}, {test_size}")
        self.save_hyperparameters()
        self.splits: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        images, labels = load_digits_images(hp.image_size)
        test, val = hp.test_size, hp.test_size + hp.val_size
        if val >= len(labels):
            raise ValueError(
                f"val_size + test_size = {val} leaves no training images: the data set has "
                f"{len(labels)}"
            )
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(hp.seed))
        for name, index in (
            ("test", order[:test]),
            ("val", order[test:val]),
            ("train", order[val:]),
        ):
            self.splits[name] = TensorDataset(images[index], labels[index])
