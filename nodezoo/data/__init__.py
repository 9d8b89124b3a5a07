"""LightningDataModules: torchvision image sets (and, from other modules, time series)."""

from .images import (
    CIFAR10DataModule,
    DatasetNotFoundError,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MNISTDataModule",
]
