"""Density-estimation data: FFJORD's 2-D toy densities and scikit-learn's UCI digits.

2-D sets (Grathwohl et al. 2019, after their ``toy_data.py``; our own numpy code):
``8gaussians``, ``pinwheel``, ``checkerboard``, ``two_spirals``, ``moons``, ``circles``. Being
samplers rather than finite sets, training draws fresh points every epoch: batch ``i`` of epoch
``e`` comes from a generator seeded by ``(seed, e, i)``, so a run is reproducible, resumable and
the same whatever the number of workers. Validation and test points are drawn once, from seeds
``seed + 1`` and ``seed + 2``.

Digits: the 1,797 8x8 images (values ``k`` in 0..16, 17 levels) as 64-dim vectors, split by
:class:`~nodezoo.data.digits.DigitsDataModule`'s fixed seeded split and dequantised as
``x = (k + u) / 17`` with ``u ~ U(0, 1)^64``, so ``x`` lies in ``[0, 1)^64``. Training draws
fresh noise on every access; validation/test noise is drawn once from ``seed``. Bits per
dimension: the density of ``k + u`` on ``[0, 17)^64`` is ``p(x) / 17^64``, so
``bpd = (NLL_x + 64 ln 17) / (64 ln 2)`` with ``NLL_x`` in nats per image
(:func:`nodezoo.models.cnf.nats_to_bits_per_dim`); a uniform model scores ``log2 17 ≈ 4.09``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .digits import DigitsDataModule
from .resume import evaluation_loader, training_loader
from .splits import SplitsDataModule


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    s = 1.0 / math.sqrt(2.0)
    centers = 4.0 * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)])
    points = rng.normal(size=(n, 2)) * 0.5 + centers[rng.integers(0, 8, size=n)]
    return points / 1.414


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    angles0 = np.linspace(0, 2 * np.pi, arms, endpoint=False)
    features = rng.normal(size=(n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    angles = angles0[rng.integers(0, arms, size=n)] + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    rotations = np.stack([cos, -sin, sin, cos], axis=1).reshape(n, 2, 2)
    return 2.0 * np.einsum("ti,tij->tj", features, rotations)


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.uniform(size=n) * 4 - 2
    x2 = rng.uniform(size=n) - rng.integers(0, 2, size=n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def _two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    half = n // 2
    s = np.sqrt(rng.uniform(size=(n - half, 1))) * 540 * (2 * np.pi) / 360
    arm = np.hstack([-np.cos(s) * s, np.sin(s) * s]) + rng.uniform(size=(n - half, 2)) * 0.5
    points = np.vstack([arm[:half] * -1, arm]) / 3  # the second arm is the first, mirrored
    return points + rng.normal(size=points.shape) * 0.1


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    theta = rng.uniform(0, np.pi, size=n)
    inner = rng.integers(0, 2, size=n).astype(bool)
    x = np.where(inner, 1 - np.cos(theta), np.cos(theta))
    y = np.where(inner, 1 - np.sin(theta) - 0.5, np.sin(theta))
    points = np.stack([x, y], 1) + rng.normal(size=(n, 2)) * 0.1
    return points * 2 + np.array([-1.0, -0.2])


def _circles(rng: np.random.Generator, n: int) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi, size=n)
    radius = np.where(rng.integers(0, 2, size=n).astype(bool), 0.5, 1.0)
    points = np.stack([np.cos(theta), np.sin(theta)], 1) * radius[:, None]
    return (points + rng.normal(size=(n, 2)) * 0.08) * 3


TOY_DENSITIES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "8gaussians": _eight_gaussians,
    "pinwheel": _pinwheel,
    "checkerboard": _checkerboard,
    "two_spirals": _two_spirals,
    "moons": _moons,
    "circles": _circles,
}


def _density_name(name: str) -> str:
    key = name.lower().replace("-", "_")
    if key not in TOY_DENSITIES:
        raise ValueError(f"Unknown 2-D density {name!r}; choose one of {', '.join(TOY_DENSITIES)}.")
    return key


def sample_toy(name: str, n: int, seed: int | list[int]) -> torch.Tensor:
    """``n`` points ``(n, 2)`` (float32) of the named 2-D density, determined by ``seed`` (an int
    or a list of ints, as numpy's ``default_rng`` takes)."""
    if n < 1:
        raise ValueError(f"Need n >= 1 points, got {n}.")
    points = TOY_DENSITIES[_density_name(name)](np.random.default_rng(seed), n)
    return torch.as_tensor(points, dtype=torch.float32)


class FreshBatches(Dataset):
    """Batch ``(epoch, i)`` of a 2-D density: ``batch_size`` points, seed ``(seed, epoch, i)``;
    ``n_batches`` of them per epoch."""

    def __init__(self, name: str, batch_size: int, seed: int, n_batches: int):
        self.name, self.batch_size, self.seed = _density_name(name), batch_size, seed
        self.n_batches = n_batches

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        epoch, i = key
        return sample_toy(self.name, self.batch_size, [self.seed, epoch, i])


class ToyDensityDataModule(pl.LightningDataModule):
    """A 2-D density (``dataset``) with fresh training points every epoch (see the module
    docstring): ``n_train`` points per epoch in batches of ``batch_size``; ``n_val``/``n_test``
    fixed points. ``test_seed`` (default ``seed + 2``) draws another test sample, e.g. to
    re-check a published NLL on points the model never saw."""

    dim = 2
    quantization_levels = None
    TEST_SEED_ARG = "test_seed"  # what ``nodezoo evaluate --seed`` sets: a fresh test sample

    def __init__(
        self,
        dataset: str = "checkerboard",
        n_train: int = 10_000,
        n_val: int = 2_000,
        n_test: int = 10_000,
        batch_size: int = 512,
        seed: int = 0,
        num_workers: int = 0,
        test_seed: int | None = None,
    ):
        super().__init__()
        _density_name(dataset)
        if min(n_train, n_val, n_test, batch_size) < 1:
            raise ValueError(
                f"n_train, n_val, n_test and batch_size must be >= 1, got {n_train}, {n_val}, "
                f"{n_test}, {batch_size}."
            )
        self.save_hyperparameters()
        self.splits: dict[str, torch.Tensor] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        self.splits["val"] = sample_toy(hp.dataset, hp.n_val, hp.seed + 1)
        self.splits["test"] = sample_toy(hp.dataset, hp.n_test, self.test_seed)

    @property
    def test_seed(self) -> int:
        """The seed of the test sample (``test_seed``, default ``seed + 2``)."""
        hp = self.hparams
        return hp.seed + 2 if hp.test_seed is None else hp.test_seed

    def train_dataloader(self) -> DataLoader:
        """Batches in order, each its own seeded draw: keys go to ``FreshBatches`` as they are
        (``resume.training_loader`` with ``seed_items=False``)."""
        hp = self.hparams
        batches = FreshBatches(
            hp.dataset, hp.batch_size, hp.seed, max(1, hp.n_train // hp.batch_size)
        )
        return training_loader(
            batches, self, batch_size=None, seed=hp.seed,
            shuffle=False, seed_items=False, num_workers=hp.num_workers,
        )  # fmt: skip

    def _fixed(self, name: str) -> DataLoader:
        self.setup()
        return evaluation_loader(self.splits[name], batch_size=self.hparams.batch_size, seed=0)

    def val_dataloader(self) -> DataLoader:
        return self._fixed("val")

    def test_dataloader(self) -> DataLoader:
        return self._fixed("test")


DIGIT_LEVELS = 17  # pixel values 0..16


class DequantisedDigits(Dataset):
    """Integer digit vectors ``(N, 64)``, each access dequantised afresh: ``(k + u) / 17``."""

    def __init__(self, pixels: torch.Tensor):
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> torch.Tensor:
        k = self.pixels[i]
        return (k + torch.rand_like(k)) / DIGIT_LEVELS


class DigitsDensityDataModule(SplitsDataModule):
    """UCI digits as 64-dim dequantised vectors in ``[0, 1)`` (see the module docstring). The
    train/val/test split is :class:`~nodezoo.data.digits.DigitsDataModule`'s for the same
    ``seed``, ``val_size`` and ``test_size``; ``noise_seed`` (default ``seed``) draws the fixed
    val/test dequantisation noise, so another value re-dequantises the same test images."""

    dim = 64
    quantization_levels = DIGIT_LEVELS
    TEST_SEED_ARG = "noise_seed"  # what ``nodezoo evaluate --seed`` sets: fresh dequantisation

    def __init__(
        self,
        batch_size: int = 256,
        val_size: int = 200,
        test_size: int = 397,
        seed: int = 0,
        num_workers: int = 0,
        noise_seed: int | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.save_hyperparameters()
        self.splits: dict[str, Dataset | torch.Tensor] = {}
        self._pixels: dict[str, torch.Tensor] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        images = DigitsDataModule(
            image_size=8, val_size=hp.val_size, test_size=hp.test_size, seed=hp.seed
        )
        images.setup()
        generator = torch.Generator().manual_seed(self.test_seed)
        for name, split in images.splits.items():
            pixels = torch.round(split.tensors[0].flatten(1) * 16.0)  # back to integers 0..16
            self._pixels[name] = pixels
            if name == "train":
                self.splits[name] = DequantisedDigits(pixels)
            else:
                noise = torch.rand(pixels.shape, generator=generator)
                self.splits[name] = (pixels + noise) / DIGIT_LEVELS  # batches of plain tensors

    @property
    def test_seed(self) -> int:
        """The seed of the val/test dequantisation noise (``noise_seed``, default ``seed``)."""
        hp = self.hparams
        return hp.seed if hp.noise_seed is None else hp.noise_seed

    def standardization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std of the dequantised training data, exactly: for
        ``x = (k + u) / 17`` they are ``(mean(k) + 1/2) / 17`` and ``sqrt(var(k) + 1/12) / 17``."""
        k = self.pixels("train")
        mean = (k.mean(0) + 0.5) / DIGIT_LEVELS
        std = torch.sqrt(k.var(0, unbiased=False) + 1 / 12) / DIGIT_LEVELS
        return mean, std

    def pixels(self, split: str) -> torch.Tensor:
        """The integer values ``(N, 64)`` of a split (for plots and checks)."""
        self.setup()
        return self._pixels[split]
