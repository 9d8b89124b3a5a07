"""``SplitsDataModule``: the loaders of a data module whose splits are in-memory datasets.

Subclasses build ``self.splits`` (``{"train", "val", "test"}`` -> ``Dataset``) in ``setup`` and
have ``batch_size`` and ``num_workers`` hyperparameters; the loaders are the same for all of them.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from .resume import evaluation_loader, training_loader


class SplitsDataModule(pl.LightningDataModule):
    def _loader(self, name: str, train: bool) -> DataLoader:
        """Training: resumable order, seeded items (``resume.training_loader``)."""
        self.setup()
        hp = self.hparams
        if train:
            return training_loader(
                self.splits[name], self, batch_size=hp.batch_size, seed=hp.seed,
                num_workers=hp.num_workers,
            )  # fmt: skip
        return evaluation_loader(
            self.splits[name], batch_size=hp.batch_size, seed=hp.seed, num_workers=hp.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
