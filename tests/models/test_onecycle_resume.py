"""Resuming a one-cycle run for longer than it was planned is refused before training, with
what to do instead (it used to die inside OneCycleLR after the first extra step)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from trainers import quiet_trainer

from nodezoo.data import FashionMNISTDataModule
from nodezoo.errors import ResumeError
from nodezoo.models.classifier import ImageClassifier

MODEL_ARGS = {"backbone": "mlp", "width": 8, "optimizer": "adam", "lr": 0.01}


def fit(tmp_path, data_dir, max_epochs: int, ckpt_path=None) -> pl.Trainer:
    torch.manual_seed(0)
    trainer = quiet_trainer(
        max_epochs=max_epochs,
        enable_checkpointing=True,
        limit_train_batches=2,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    model = ImageClassifier(**MODEL_ARGS, lr_schedule="onecycle")
    data = FashionMNISTDataModule(data_dir=str(data_dir), batch_size=8, val_size=16)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return trainer


def test_resuming_a_one_cycle_run_for_longer_says_what_to_do(tmp_path, tiny_fashion_dir):
    fit(tmp_path, tiny_fashion_dir, max_epochs=1).save_checkpoint(tmp_path / "last.ckpt")
    with pytest.raises(ResumeError, match=r"planned for 2 optimizer steps .* stretched to 4"):
        fit(tmp_path, tiny_fashion_dir, max_epochs=2, ckpt_path=tmp_path / "last.ckpt")
    # the same length resumes (nothing left to do) without an error
    fit(tmp_path, tiny_fashion_dir, max_epochs=1, ckpt_path=tmp_path / "last.ckpt")


def test_readme_resume_line_warns_about_one_cycle():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "a one-cycle schedule (`lr_schedule: onecycle`) cannot be stretched" in " ".join(
        readme.split()
    )
