"""The ``nodezoo`` command.

``nodezoo fit|validate|test|predict --config recipes/<dataset>/<model>.yaml`` runs Lightning's
``LightningCLI`` on a recipe; every recipe key can be overridden on the command line
(``--trainer.max_epochs 1``, ``--data.init_args.batch_size 32``) and ``--print_config`` shows the
merged result. A leading ``--threads N`` sets torch's CPU threads for any verb (small fields such
as the CNFs' run fastest on one: ``nodezoo --threads 1 evaluate cnf-checkerboard``).
``main`` dispatches on the first word through ``COMMANDS`` so that zoo verbs
(list, evaluate, publish, compare) sit beside the Lightning ones; a verb's module is imported
only when that verb runs (the Lightning ones from :mod:`nodezoo.lightning_cli`), so ``--help``
and ``list`` stay fast. User errors (``nodezoo.errors.NodezooError``) from any verb are caught
here, once: one ``nodezoo <verb>: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from functools import partial

import torch  # loaded with the package anyway (``nodezoo/__init__`` imports the solvers)

from .errors import USER_ERROR_EXIT, NodezooError

__all__ = ["COMMANDS", "LIGHTNING_SUBCOMMANDS", "main"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_lightning(subcommand: str, args: Sequence[str]) -> int:
    """Run one LightningCLI subcommand (Lightning is imported only now)."""
    from .lightning_cli import run_lightning as run

    return run(subcommand, args)


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
        "usage: nodezoo [--threads N] <command> [options]\n"
        f"commands: {verbs}\n"
        "  e.g. nodezoo fit --config recipes/fashion_mnist/odenet.yaml --trainer.max_epochs 1\n"
        "  nodezoo <command> --help lists a command's options.\n"
        "  --threads N: torch's CPU threads for the command (small ODE fields run fastest on 1)."
    )


def take_threads(args: list[str]) -> tuple[int | None, list[str]]:
    """A leading ``--threads N`` (or ``--threads=N``) and the arguments after it."""
    if not args or not (args[0] == "--threads" or args[0].startswith("--threads=")):
        return None, args
    if args[0] == "--threads":
        value, rest = (args[1] if len(args) > 1 else ""), args[2:]
    else:
        value, rest = args[0].partition("=")[2], args[1:]
    if not (value.isdigit() and int(value) >= 1):
        raise NodezooError(f"--threads needs a whole number of at least 1, got {value!r}.")
    return int(value), rest


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        threads, args = take_threads(args)
    except NodezooError as err:
        print(f"nodezoo: error: {err}\n{usage()}", file=sys.stderr)
        return USER_ERROR_EXIT
    if threads is not None:
        torch.set_num_threads(threads)
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
