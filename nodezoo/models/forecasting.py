"""``ForecastingModel``: what every time-series model shares, so they are compared on equal terms.

A subclass supplies ``loss(batch) -> (loss, logs)`` and ``predict(obs_t, obs_x, query_t, ...)``;
this base does the Lightning loop over the shared batch format (:mod:`nodezoo.nn.recurrent`),
the optimiser, and the predictive RMSE on each batch's targets (pooled over the epoch, so it is
the RMSE of all target values rather than a mean of per-batch RMSEs).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torchmetrics import SumMetric

from ..nn.recurrent import check_batch, masked_squared_error
from ..zoo.pretrained import PretrainedMixin
from .schedule import adam_with_schedule


class ForecastingModel(PretrainedMixin, pl.LightningModule):
    """Base class; subclasses call ``super().__init__()`` then ``save_hyperparameters()`` with
    ``lr``, ``weight_decay`` and ``lr_schedule`` among their init args. Zoo methods
    (``from_pretrained``, ``save_pretrained``, ``push_to_hub``) come from ``PretrainedMixin``."""

    def __init__(self) -> None:
        super().__init__()
        self._sse = torch.nn.ModuleDict({s: SumMetric() for s in ("val", "test")})
        self._count = torch.nn.ModuleDict({s: SumMetric() for s in ("val", "test")})

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def predict(self, obs_t, obs_x, query_t, n_samples: int = 1, obs_mask=None):
        raise NotImplementedError

    # ---- Lightning ----
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        check_batch(batch)
        loss, logs = self.loss(batch)
        size = batch["obs_x"].shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        for name, value in logs.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=False, batch_size=size)
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        check_batch(batch)
        size = batch["obs_x"].shape[0]
        loss, _ = self.loss(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        mean, _ = self.predict(
            batch["obs_t"], batch["obs_x"], batch["target_t"], 0, batch["obs_mask"]
        )
        sse, count = masked_squared_error(mean, batch["target_x"], batch["target_mask"])
        self._sse[stage].update(sse)
        self._count[stage].update(count.to(sse.dtype))

    def _log_rmse(self, stage: str) -> None:
        count = self._count[stage].compute()
        if count > 0:
            rmse = torch.sqrt(self._sse[stage].compute() / count)
            self.log(f"{stage}/rmse", rmse, prog_bar=True)
        self._sse[stage].reset()
        self._count[stage].reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_rmse("val")

    def on_test_epoch_end(self) -> None:
        self._log_rmse("test")

    def configure_optimizers(self):
        return adam_with_schedule(self)
