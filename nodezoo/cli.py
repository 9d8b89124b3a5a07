"""The ``nodezoo`` command.

``nodezoo fit|validate|test|predict --config recipes/<dataset>/<model>.yaml`` runs Lightning's
``LightningCLI`` on a recipe; every recipe key can be overridden on the command line
(``--trainer.max_epochs 1``, ``--data.init_args.batch_size 32``) and ``--print_config`` shows the
merged result. ``main`` dispatches on the first word through ``COMMANDS`` so that zoo verbs
(list, evaluate, publish, compare) sit beside the Lightning ones; a verb's module is imported
only when that verb runs. User errors (``nodezoo.errors.NodezooError``) from any verb are caught
here, once: one ``nodezoo <verb>: error: ...`` line and exit code 2.

Everything a run writes lands under ``trainer.default_root_dir`` (the run directory) unless a
recipe says otherwise: checkpoints in ``<run dir>/checkpoints``, the logger's files and the
merged ``config.yaml`` in ``<run dir>``, so one override moves a whole run.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from jsonargparse import ArgumentError, Namespace
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from .callbacks import LastCheckpoint
from .errors import USER_ERROR_EXIT, NodezooError

__all__ = ["COMMANDS", "LIGHTNING_SUBCOMMANDS", "NodezooCLI", "main"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
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


Command = Callable[[Sequence[str]], int]
# Verb -> function(args after the verb) -> exit code, or the ``"module:function"`` path of one
# (imported when the verb runs). A new verb is one entry here.
COMMANDS: dict[str, Command | str] = {
    **{name: partial(run_lightning, name) for name in LIGHTNING_SUBCOMMANDS},
    "list": "nodezoo.zoo.commands:main_list",
    "evaluate": "nodezoo.zoo.commands:main_evaluate",
    "publish": "nodezoo.zoo.commands:main_publish",
    "compare": "nodezoo.reports.commands:main_compare",
}


def resolve_command(command: Command | str) -> Command:
    if isinstance(command, str):
        module, _, name = command.partition(":")
        return getattr(importlib.import_module(module), name)
    return command


def usage() -> str:
    verbs = ", ".join(COMMANDS)
    return (
        "usage: nodezoo <command> [options]\n"
        f"commands: {verbs}\n"
        "  e.g. nodezoo fit --config recipes/fashion_mnist/odenet.yaml --trainer.max_epochs 1\n"
        "  nodezoo <command> --help lists a command's options."
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    command = COMMANDS.get(verb)
    if command is None:
        print(f"nodezoo: error: unknown command {verb!r}.\n{usage()}", file=sys.stderr)
        return USER_ERROR_EXIT
    try:
        return resolve_command(command)(rest) or 0
    except NodezooError as err:  # user errors: the message says what to do
        print(f"nodezoo {verb}: error: {one_line(err)}", file=sys.stderr)
        return USER_ERROR_EXIT


def one_line(err: BaseException) -> str:
    """The error's message on one line (a recipe error quotes jsonargparse's multi-line one)."""
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
