"""``planned_optimizer_steps`` is Lightning's ``estimated_stepping_batches``, counted without
building the fit's training iterator before a checkpoint is restored; ``adam_with_schedule`` is the
Adam set-up the CNF and the time-series models share."""

import pytest
import torch
from trainers import quiet_trainer

from nodezoo.data import ToyDensityDataModule
from nodezoo.models import CNF, LatentODE
from nodezoo.models.schedule import planned_optimizer_steps


class Counted(Exception):
    pass


class Recording(CNF):
    """Compares the two counts where a model needs them, then stops the fit."""

    def configure_optimizers(self):
        ours = planned_optimizer_steps(self.trainer)
        built_early = self.trainer.train_dataloader is not None
        raise Counted(ours, self.trainer.estimated_stepping_batches, built_early)


@pytest.mark.parametrize(
    ("limit", "accumulate", "epochs", "max_steps", "overfit"),
    [(1.0, 1, 3, -1, 0), (0.5, 1, 2, -1, 0), (4, 3, 5, -1, 0), (1.0, 2, 7, 10, 0),
     (0.25, 1, 1, 100, 0), (1.0, 1, 3, -1, 2)],
)  # fmt: skip
def test_planned_steps_are_lightnings_estimate(limit, accumulate, epochs, max_steps, overfit):
    data = ToyDensityDataModule("moons", n_train=2600, batch_size=100)  # 26 batches
    trainer = quiet_trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        limit_train_batches=limit,
        accumulate_grad_batches=accumulate,
        overfit_batches=overfit,
    )
    with pytest.raises(Counted) as info:
        trainer.fit(Recording(dim=2, hidden=4, layers=1, lr_schedule="cosine"), datamodule=data)
    ours, lightnings, built_early = info.value.args
    assert ours == lightnings
    # our count left the fit's data set-up to the fit (with overfit_batches Lightning counts)
    assert built_early == bool(overfit)


def test_cosine_schedule_ends_at_a_fiftieth_of_lr():
    """The CNF's (and the time-series models') cosine decay spans the fit's optimizer steps,
    one scheduler step per optimizer step, and lands on lr / 50 at the last."""
    data = ToyDensityDataModule("moons", n_train=400, batch_size=100)  # 4 batches
    trainer = quiet_trainer(max_epochs=2)
    model = CNF(dim=2, hidden=4, layers=1, lr=0.01, lr_schedule="cosine")
    trainer.fit(model, datamodule=data)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.T_max == 8 and scheduler.last_epoch == 8
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 / 50)


def test_time_series_models_share_the_adam_schedules():
    model = LatentODE(obs_dim=2, latent_dim=2, encoder_hidden=4, lr=0.02, weight_decay=1e-4)
    opt = model.configure_optimizers()  # constant: Adam alone
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 0.02 and opt.defaults["weight_decay"] == 1e-4
    bad = LatentODE(obs_dim=2, latent_dim=2, encoder_hidden=4, lr_schedule="onecycle")
    with pytest.raises(ValueError, match="lr_schedule='onecycle' is not one of constant, cosine"):
        bad.configure_optimizers()
