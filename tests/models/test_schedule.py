"""``planned_optimizer_steps`` is Lightning's ``estimated_stepping_batches``, counted without
building the fit's training iterator before a checkpoint is restored."""

import pytest
import pytorch_lightning as pl

from nodezoo.data import ToyDensityDataModule
from nodezoo.models import CNF
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
    trainer = pl.Trainer(
        max_epochs=epochs, max_steps=max_steps, limit_train_batches=limit,
        accumulate_grad_batches=accumulate, overfit_batches=overfit, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu",
    )  # fmt: skip
    with pytest.raises(Counted) as info:
        trainer.fit(Recording(dim=2, hidden=4, layers=1, lr_schedule="cosine"), datamodule=data)
    ours, lightnings, built_early = info.value.args
    assert ours == lightnings
    # our count left the fit's data set-up to the fit (with overfit_batches Lightning counts)
    assert built_early == bool(overfit)
