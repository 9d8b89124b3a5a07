"""LightningDataModules: torchvision image sets, a user's own image folders, time series and
densities."""

from .density import DigitsDensityDataModule, ToyDensityDataModule, sample_toy
from .digits import DigitsDataModule
from .folders import ImageFolderDataModule
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
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SpiralsDataModule",
    "TimeSeriesDataModule",
    "ToyDensityDataModule",
    "make_spirals",
    "sample_toy",
]
