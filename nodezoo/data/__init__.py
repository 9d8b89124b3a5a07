"""LightningDataModules: torchvision image sets (and, from other modules, time series)."""

from .density import DigitsDensityDataModule, ToyDensityDataModule, sample_toy
from .digits import DigitsDataModule
from .images import (
    CIFAR10DataModule,
    DatasetNotFoundError,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)
from .spirals import SpiralsDataModule, make_spirals
from .timeseries import TimeSeriesDataModule

__all__ = [
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "DigitsDensityDataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MNISTDataModule",
    "SpiralsDataModule",
    "TimeSeriesDataModule",
    "ToyDensityDataModule",
    "make_spirals",
    "sample_toy",
]
