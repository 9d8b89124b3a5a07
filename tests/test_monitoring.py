"""Monitoring values equal a hand count on a tiny run, and the KL warm-up is linear throughout.

The tiny model's vector field counts its own calls, split by phase (training forward, backward,
validation), so ``SolverStatsMonitor``'s per-epoch means are checked against counts taken
outside the solver's statistics.
"""

from __future__ import annotations

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from trainers import quiet_trainer

from nodezoo.callbacks import SolverStatsMonitor
from nodezoo.models.latent_ode import LatentODE
from nodezoo.nn.ode_block import ODEBlock

BATCHES, EPOCHS = 3, 2


class CountingField(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.phase, self.calls = "train", {}

    def forward(self, t, y):
        self.calls[self.phase] = self.calls.get(self.phase, 0) + 1
        return torch.tanh(self.lin(y)) * (1 + 3 * t)


class Tiny(pl.LightningModule):
    """An ODE block on random 2-D points; every batch differs, so does its NFE."""

    def __init__(self):
        super().__init__()
        self.field = CountingField()
        solver = dict(method="dopri5", rtol=1e-5, atol=1e-5, gradient="adjoint")
        self.block = ODEBlock(self.field, solver)
        self.counts = {"train": [], "backward": [], "val": []}

    def _loss(self, batch):
        return self.block(batch[0])[-1].pow(2).mean()

    def training_step(self, batch, batch_idx):
        self.field.phase, self.field.calls = "train", {}
        return self._loss(batch)

    def on_before_backward(self, loss):
        self.field.phase = "backward"

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.counts["train"].append(self.field.calls.get("train", 0))
        self.counts["backward"].append(self.field.calls.get("backward", 0))

    def validation_step(self, batch, batch_idx):
        self.field.phase, self.field.calls = "val", {}
        self._loss(batch)
        self.counts["val"].append(self.field.calls["val"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _loader(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCHES * 4, 2, generator=g) * torch.arange(1, BATCHES * 4 + 1).view(-1, 1)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4)


def test_nfe_is_the_per_epoch_mean_of_a_hand_count(tmp_path):
    torch.manual_seed(0)
    model, logger = Tiny(), CSVLogger(tmp_path)
    trainer = quiet_trainer(
        max_epochs=EPOCHS,
        logger=logger,
        callbacks=[SolverStatsMonitor()],
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    trainer.fit(model, _loader(0), _loader(1))
    rows = list(csv.DictReader(open(f"{logger.log_dir}/metrics.csv")))
    logged = {
        key: [float(r[key]) for r in rows if r.get(key)]
        for key in ("nfe/forward", "nfe/backward", "nfe/forward_eval")
    }
    hand = {
        "nfe/forward": model.counts["train"],
        "nfe/backward": model.counts["backward"],
        "nfe/forward_eval": model.counts["val"],
    }
    for key, counts in hand.items():
        assert len(counts) == EPOCHS * BATCHES
        per_epoch = [counts[e * BATCHES : (e + 1) * BATCHES] for e in range(EPOCHS)]
        assert logged[key] == pytest.approx([sum(c) / BATCHES for c in per_epoch]), key
    # the batches really differ, so a sum, a last value or a maximum would not pass
    assert len(set(model.counts["train"])) > 1 and len(set(model.counts["backward"])) > 1


@pytest.mark.parametrize(
    "step, beta", [(0, 0.0), (1, 0.1), (3, 0.3), (5, 0.5), (9, 0.9), (10, 1.0), (25, 1.0)]
)
def test_kl_warmup_is_linear_at_interior_steps(step, beta, monkeypatch):
    model = LatentODE(
        obs_dim=2,
        latent_dim=2,
        encoder_hidden=4,
        field_hidden=4,
        decoder_hidden=4,
        kl_warmup_steps=10,
    )
    monkeypatch.setattr(LatentODE, "global_step", property(lambda self: step))
    model.train()
    assert model.kl_weight() == pytest.approx(beta)
    model.eval()
    assert model.kl_weight() == 1.0  # evaluation reports the true ELBO
