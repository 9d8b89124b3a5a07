"""``SplitsDataModule``: the loaders of a data module whose splits are in-memory datasets.

Subclasses build ``self.splits`` (``{"train", "val", "test"}`` -> ``Dataset``) in ``setup`` and
have ``batch_size`` and ``num_workers`` hyperparameters; the loaders are the same for all of them.
"""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader


class SplitsDataModule(pl.LightningDataModule):
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.splits[name],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
