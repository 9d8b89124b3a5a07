"""Learning-rate schedules that span a fit: how many optimizer steps it will take, and the Adam
set-up the density and time-series models share.

Why not ``trainer.estimated_stepping_batches``: called from ``configure_optimizers``, Lightning's
property runs the fit loop's data set-up, which builds the training iterator there and then,
before a checkpoint is restored; the fit goes on with that iterator, so a resumed run would start
its epoch again from the first batch, whatever ``nodezoo.data.resume`` knows (the same bug
keeps Lightning's own stateful loaders from resuming: Lightning-AI/pytorch-lightning#20550, open
in 2.6 with fixes proposed). This counts the
batches of a loader the data module builds (and nobody iterates) with Lightning's rules instead:
``limit_train_batches``, ``accumulate_grad_batches``, ``max_epochs``, ``max_steps``. Without a
data module (loaders passed to ``fit``) it asks Lightning.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

ADAM_SCHEDULES = ("constant", "cosine")


def planned_optimizer_steps(trainer: pl.Trainer) -> float:
    """The fit's optimizer steps: ``trainer.estimated_stepping_batches``, computed without
    building the fit's training iterator early (see the module docstring)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        return trainer.estimated_stepping_batches
    epochs = trainer.max_epochs
    if (
        trainer.train_dataloader is not None  # already built: nothing to avoid
        or epochs is None
        or epochs < 0
        or trainer.overfit_batches
    ):
        return trainer.estimated_stepping_batches
    try:
        length = len(datamodule.train_dataloader())
    except TypeError:  # no length (an iterable data set): Lightning knows what to do
        return trainer.estimated_stepping_batches
    limit = trainer.limit_train_batches
    batches = min(length, limit) if isinstance(limit, int) else int(length * limit)
    if batches == 0:  # Lightning raises its own error for a limit below one batch
        return trainer.estimated_stepping_batches
    steps = math.ceil(batches / trainer.accumulate_grad_batches) * max(epochs, 1)
    return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps


def adam_with_schedule(module: pl.LightningModule):
    """``configure_optimizers``'s answer for a module whose hparams hold ``lr``, ``weight_decay``
    and ``lr_schedule``: Adam, and with ``"cosine"`` a per-step cosine decay to lr / 50 over the
    whole fit (``planned_optimizer_steps``)."""
    hp = module.hparams
    if hp.lr_schedule not in ADAM_SCHEDULES:
        raise ValueError(
            f"lr_schedule={hp.lr_schedule!r} is not one of {', '.join(ADAM_SCHEDULES)}."
        )
    opt = torch.optim.Adam(module.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    if hp.lr_schedule == "constant":
        return opt
    steps = max(1, int(planned_optimizer_steps(module.trainer)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=hp.lr / 50)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
