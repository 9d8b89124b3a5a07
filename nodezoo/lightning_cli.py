"""The Lightning side of the ``nodezoo`` command: ``LightningCLI`` with nodezoo's run layout.

Imported only when ``nodezoo fit|validate|test|predict`` runs (by :mod:`nodezoo.cli`), so that
``nodezoo --help``, ``list`` and ``evaluate`` do not pay for importing Lightning's CLI stack.
Everything a run writes lands under ``trainer.default_root_dir`` (the run directory) unless a
recipe says otherwise: checkpoints in ``<run dir>/checkpoints``, the logger's files and the
merged ``config.yaml`` in ``<run dir>``, so one override moves a whole run.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from jsonargparse import ArgumentError, Namespace
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from .callbacks import LastCheckpoint, RandomState
from .errors import NodezooError

__all__ = ["NodezooCLI", "RecipeError", "check_model_matches_data", "run_lightning"]

# Geometry the data module states and an image model must agree with.
SHARED_DATA_ATTRIBUTES = ("num_classes", "in_channels", "image_size")


class RecipeError(NodezooError, ValueError):
    """A recipe whose parts contradict each other."""


class NodezooCLI(LightningCLI):
    """LightningCLI with two checkpoint sections and run-dir defaults.

    ``best_checkpoint`` keeps the best model by a validation metric (written after validation).
    ``last_checkpoint`` writes ``last.ckpt`` every ``every_n_train_steps`` steps and at the end,
    whatever the metrics, so a run killed mid-epoch resumes with ``--ckpt_path last`` and loses
    at most that many steps. (One ``ModelCheckpoint`` cannot do both: with a monitored metric it
    defers every save until that metric exists, i.e. until the first validation.) They are
    top-level sections rather than entries of ``trainer.callbacks`` so that single keys such as
    ``--last_checkpoint.every_n_train_steps`` can be overridden; entries of a list cannot.
    ``RandomState`` is added to every trainer: with it (and the data modules' resumable training
    order, ``nodezoo.data.resume``) a resumed run ends as one that never stopped.
    """

    CHECKPOINT_SECTIONS = ("best_checkpoint", "last_checkpoint")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "best_checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_dir = Path(config.trainer.default_root_dir or ".")
        for section in self.CHECKPOINT_SECTIONS:
            if config[section].dirpath is None:
                config[section].dirpath = str(run_dir / "checkpoints")
        loggers = config.trainer.logger
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            init_args = (
                getattr(logger, "init_args", None) if isinstance(logger, Namespace) else None
            )
            if init_args is not None and init_args.get("save_dir") in (None, ".", "./"):
                init_args.save_dir = str(run_dir)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as err:  # a class rejected its init args: say which
            raise RecipeError(f"the recipe's classes could not be built:\n{err}") from err
        check_model_matches_data(self.model, self.datamodule)
        if not any(isinstance(c, RandomState) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(RandomState())
        quiet_wandb_init(getattr(self.trainer, "loggers", []))


class DropTips(logging.Filter):
    """Drops Lightning's "Tip: try installing litlogger/litmodels" advertisements."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_lightning() -> None:
    """Silence what a user cannot act on: Lightning's install tips."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, DropTips) for f in logger.filters):
        logger.addFilter(DropTips())


def quiet_wandb_init(loggers) -> None:
    """Lightning's WandbLogger passes ``anonymous=None`` to ``wandb.init``, which makes W&B warn
    "the anonymous setting has no effect"; an unset setting is dropped before the run starts
    (``wandb.init`` runs lazily, on first use). W&B prints "git root ... does not exist" when
    the save dir is not made yet: it is made here; outside a git work tree the probe is off."""
    for logger in loggers:
        init = getattr(logger, "_wandb_init", None)
        if not isinstance(init, dict):
            continue
        if init.get("anonymous") is None:
            init.pop("anonymous", None)
        if init.get("dir"):  # W&B probes git from the run's save dir: it must exist first
            Path(init["dir"]).mkdir(parents=True, exist_ok=True)
        if not _inside_git_work_tree(Path.cwd()):
            os.environ.setdefault("WANDB_DISABLE_GIT", "true")


def _inside_git_work_tree(path: Path) -> bool:
    return any((p / ".git").exists() for p in (path, *path.parents))


def check_model_matches_data(model, datamodule) -> None:
    """Raise ``RecipeError`` when the model's image geometry differs from the data's."""
    hparams = getattr(model, "hparams", {})
    mismatches = [
        f"model.init_args.{name}={hparams[name]} but {type(datamodule).__name__} has "
        f"{name}={getattr(datamodule, name)}"
        for name in SHARED_DATA_ATTRIBUTES
        if name in hparams and hasattr(datamodule, name)
        if hparams[name] != getattr(datamodule, name)
    ]
    if mismatches:
        raise RecipeError(
            "the model does not fit the data: " + "; ".join(mismatches) + ". Set the model's "
            "values to the data's (in the recipe or with --model.init_args.<name>)."
        )


def run_lightning(subcommand: str, args: Sequence[str]) -> int:
    """Run one LightningCLI subcommand; ``args`` are the words after it."""
    # ``args`` is sys.argv[1:] when run from the shell; Lightning warns about passing both.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    quiet_lightning()
    try:
        NodezooCLI(
            model_class=None,  # any LightningModule, chosen by class_path in the recipe
            datamodule_class=None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},  # a rerun in the same run dir must not fail
            auto_configure_optimizers=False,  # models own their optimiser (it is in hparams)
            parser_kwargs={
                # without it, argparse takes --trainer.max_epoch for --trainer.max_epochs
                "allow_abbrev": False,
                # raise instead of printing ~80 lines of usage before the error
                "exit_on_error": False,
            },
            args=[subcommand, *args],
        )
    except ArgumentError as err:  # a typo in the recipe or the options: say it first, short
        raise RecipeError(f"{err} (`nodezoo {subcommand} --help` lists the options)") from None
    return 0
