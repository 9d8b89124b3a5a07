"""``quiet_trainer``: the ``pl.Trainer`` most tests want, made in one place."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

QUIET = dict(
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    accelerator="cpu",
)


def quiet_trainer(**kwargs) -> pl.Trainer:
    """A CPU trainer that writes and prints nothing of its own (no logger, checkpoints,
    progress bar or model summary); ``kwargs`` add to those settings or override them. A
    ``ModelCheckpoint`` among the callbacks turns checkpointing on (Lightning refuses one with
    it off)."""
    settings = dict(QUIET)
    if any(isinstance(c, ModelCheckpoint) for c in kwargs.get("callbacks") or ()):
        settings["enable_checkpointing"] = True
    return pl.Trainer(**{**settings, **kwargs})
