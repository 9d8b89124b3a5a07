"""``ImageClassifier``: one LightningModule for the paper's five image classifiers.

The backbone is chosen by name (see :mod:`nodezoo.models.backbones`); everything else —
normalisation, head, loss, metrics, optimiser and schedule — is shared, so the backbones are
compared on equal terms. NFE, memory and time are logged by callbacks, not here.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..errors import ResumeError
from ..nn.ode_block import configure_regularisation, regularisation_loss
from ..nn.regularisation import RegularisationConfig
from ..runs import ode_blocks
from ..solvers import SolverConfig
from ..zoo.pretrained import PretrainedMixin, load_pretrained_weights
from .backbones import build_backbone, resolve_solver
from .schedule import planned_optimizer_steps

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("multistep", "cosine", "onecycle", "constant")
# The paper's schedule (x0.1 at epochs 60, 100, 140 of 160) as fractions of the run.
DEFAULT_MILESTONE_FRACTIONS = (60 / 160, 100 / 160, 140 / 160)


class ImageClassifier(PretrainedMixin, pl.LightningModule):
    """Classifies float images in [0, 1] of shape ``(B, in_channels, image_size, image_size)``.

    ``backbone``: ``odenet`` | ``rknet`` | ``resnet`` | ``revnet`` | ``mlp``. ``width`` is the
    channel count (the hidden size for ``mlp``), ``depth`` the number of residual/reversible
    blocks for ``resnet``/``revnet``. ``solver`` is a ``SolverConfig`` dict laid over the
    backbone's default (odenet: dopri5 1e-3 adjoint; rknet: dopri5 1e-3 backprop).
    ``mean``/``std`` normalise inside the model, so checkpoints take raw [0, 1] images.
    ``lr_milestones=None`` with ``multistep`` scales the paper's 60/100/140-of-160 epochs to
    the trainer's ``max_epochs``. ``onecycle`` (Smith & Topin 2019) steps every batch: a warm-up
    over the first ``lr_warmup`` fraction of the run from ``lr / 25`` to ``lr``, then a cosine
    decay to ``lr / 2.5e5``; it is what makes a one-epoch run useful. ``pretrained`` (a zoo
    name, folder or Hub repo id) starts from that model's weights (all but the head when
    ``num_classes`` differs or ``pretrained_head`` is False): fine-tuning. Set
    ``pretrained_head=False`` when the new data's classes are not the pretrained model's (digits
    after clothing): its head maps features to the old labels, a worse start than a fresh one.
    ``regularisation`` (a ``RegularisationConfig`` dict: ``kinetic``, ``jacobian``, ``steer``)
    regularises the ODE block's dynamics in training; the weighted integrals are added to the
    training loss.
    """

    def __init__(
        self,
        backbone: str = "odenet",
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        width: int = 64,
        depth: int = 6,
        solver: dict[str, Any] | None = None,
        augment_channels: int = 0,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: str = "multistep",
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        lr_warmup: float = 0.25,
        pretrained: str | None = None,
        pretrained_head: bool = True,
        regularisation: dict[str, Any] | None = None,
    ):
        super().__init__()
        solver_config = resolve_solver(backbone, solver)
        _check_choice("optimizer", optimizer, OPTIMIZERS)
        _check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        if not 0.0 < lr_warmup < 1.0:
            raise ValueError(f"lr_warmup is a fraction of the run in (0, 1), got {lr_warmup}.")
        self.save_hyperparameters()
        # Plain data only, fully resolved, so a checkpoint or config.json rebuilds the same solver.
        self.hparams.solver = None if solver_config is None else solver_config.to_dict()

        mean_t, std_t = _normalisation(mean, std, in_channels)
        self.register_buffer("mean", mean_t, persistent=False)
        self.register_buffer("std", std_t, persistent=False)
        self.features, self.num_features = build_backbone(
            backbone, in_channels, image_size, width, depth, solver_config, augment_channels
        )
        self.head = nn.Linear(self.num_features, num_classes)
        if regularisation is not None:
            reg = RegularisationConfig.from_dict(regularisation)
            configure_regularisation(self, reg)
            self.hparams.regularisation = reg.to_dict()
        self._make_metrics(num_classes)
        if pretrained is not None:  # weights of a zoo model: strictly, the head if it fits
            load_pretrained_weights(self, pretrained, head=pretrained_head)

    # ---- model API (timm-style) ----
    @property
    def solver(self) -> SolverConfig | None:
        """The ODE block's solver (None for discrete backbones). The block is the one source of
        truth: config.json and checkpoints record this, whoever changed it."""
        blocks = ode_blocks(self)
        return blocks[0].solver if blocks else None

    @solver.setter
    def solver(self, value: SolverConfig | dict) -> None:
        blocks = ode_blocks(self)
        if not blocks:
            raise ValueError(f"backbone={self.hparams.backbone!r} has no ODE block to solve.")
        config = SolverConfig.from_dict(value)
        for block in blocks:
            block.solver = config
        self.hparams.solver = config.to_dict()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.features((x - self.mean) / self.std)

    def logits_along_trajectory(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits from the ODE state at each time in ``t`` (``(len(t), B, num_classes)``):
        how the prediction forms as the features flow from t0 to t1. ODE backbones only."""
        if self.hparams.backbone not in ("odenet", "rknet"):
            raise ValueError(
                f"logits_along_trajectory needs an ODE backbone, not {self.hparams.backbone!r}."
            )
        self._check_input(x)
        stem, stage, neck = self.features
        augment, block = stage
        z0 = augment(stem((x - self.mean) / self.std))
        zs = block(z0, t.to(z0))
        logits = self.head(neck(zs.flatten(0, 1)))
        return logits.view(len(t), x.shape[0], -1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head with ``num_classes`` outputs (for fine-tuning); metrics follow."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        old = self.head
        self.head = nn.Linear(self.num_features, num_classes).to(old.weight)
        self.hparams.num_classes = num_classes
        self._make_metrics(num_classes)

    def _make_metrics(self, num_classes: int) -> None:
        device = self.mean.device
        self.train_acc = MulticlassAccuracy(num_classes, average="micro").to(device)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro").to(device)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro").to(device)

    def _check_input(self, x: torch.Tensor) -> None:
        hp = self.hparams
        expected = f"(B, {hp.in_channels}, {hp.image_size}, {hp.image_size})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Expected a tensor of images {expected}, got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(
                f"Images have dtype {x.dtype}; convert them to float in [0, 1] first "
                "(e.g. x.float() / 255, or torchvision's ToTensor)."
            )
        if x.dim() != 4 or tuple(x.shape[1:]) != (hp.in_channels, hp.image_size, hp.image_size):
            raise ValueError(f"Expected images of shape {expected}, got {tuple(x.shape)}.")

    # ---- Lightning ----
    def _step(self, batch, stage: str, metric: MulticlassAccuracy) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        training = stage == "train"
        kwargs = dict(on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        self.log(f"{stage}/loss", loss, on_step=training, sync_dist=not training, **kwargs)
        self.log(f"{stage}/acc", metric, on_step=False, **kwargs)
        reg = regularisation_loss(self) if training else None
        return loss if reg is None else loss + reg

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx):
        return self._step(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(dim=-1)

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(
                self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        else:
            cls = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
            opt = cls(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_schedule == "constant":
            return opt
        if hp.lr_schedule == "onecycle":
            total = self._total_steps()
            # torch divides by zero when the warm-up ends on step 0 (warmup * total == 1):
            # a run too short for 1.5 warm-up steps starts at the peak instead.
            warmup = hp.lr_warmup if hp.lr_warmup * total >= 1.5 else 0.5 / total
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=hp.lr, total_steps=total, pct_start=warmup
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if hp.lr_schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self._max_epochs())
        else:
            milestones = hp.lr_milestones
            if milestones is None:
                epochs = self._max_epochs()
                milestones = [round(f * epochs) for f in DEFAULT_MILESTONE_FRACTIONS]
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma=hp.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_train_start(self) -> None:
        """A resumed one-cycle run: the schedule restored from the checkpoint has a fixed length,
        and stepping past it fails deep inside OneCycleLR; say so before the first step."""
        if self.hparams.lr_schedule != "onecycle" or not self._trainer.lr_scheduler_configs:
            return
        saved = self._trainer.lr_scheduler_configs[0].scheduler.total_steps
        wanted = self._total_steps()
        if wanted > saved:
            raise ResumeError(
                f"this one-cycle run was planned for {saved} optimizer steps (the max_epochs/"
                f"max_steps it started with) and cannot be stretched to {wanted}: the schedule "
                "restored from the checkpoint ends there. Resume with the original "
                "--trainer.max_epochs/--trainer.max_steps; to train longer, publish the "
                "checkpoint (`nodezoo publish CKPT --out DIR`) and start a new run with "
                "--model.init_args.pretrained DIR."
            )

    def _max_epochs(self) -> int:
        trainer = self._trainer
        epochs = getattr(trainer, "max_epochs", None)
        if epochs is None or epochs < 1:
            raise ValueError(
                f"lr_schedule={self.hparams.lr_schedule!r} needs the run length: give the "
                "Trainer max_epochs (or set lr_milestones / use lr_schedule='constant')."
            )
        return epochs

    def _total_steps(self) -> int:
        trainer = self._trainer
        steps = None if trainer is None else planned_optimizer_steps(trainer)
        if steps is None or not 0 < steps < float("inf"):
            raise ValueError(
                "lr_schedule='onecycle' needs the run length: give the Trainer max_epochs or "
                "max_steps."
            )
        return int(steps)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}.")


def _normalisation(mean, std, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std as (1, C, 1, 1); identity when not given."""
    mean = [0.0] * channels if mean is None else list(mean)
    std = [1.0] * channels if std is None else list(std)
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean and std need one value per input channel ({channels}), "
            f"got {len(mean)} and {len(std)}."
        )
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {std}.")
    shape = (1, channels, 1, 1)
    return torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
