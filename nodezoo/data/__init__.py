"""LightningDataModules: torchvision image sets (and, from other modules, time series)."""

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
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MNISTDataModule",
    "SpiralsDataModule",
    "TimeSeriesDataModule",
    "make_spirals",
]
