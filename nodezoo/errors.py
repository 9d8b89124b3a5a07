"""The one base class of user errors: input a user can fix, with a message that says how.

Zoo, report, recipe, run-file and data errors all derive from ``NodezooError``; the ``nodezoo``
command catches it once and prints ``nodezoo <verb>: error: <message>`` with exit code 2 (no
traceback). Anything else is a bug and keeps its traceback. Each subclass also derives from the
built-in error it refines (``ValueError``, ``FileNotFoundError``), so ``except ValueError`` in
user code keeps working.
"""

from __future__ import annotations

__all__ = [
    "USER_ERROR_EXIT",
    "NodezooError",
    "ResumeError",
    "RunFileError",
    "WeightsMismatchError",
]

# The exit code of the ``nodezoo`` command for a user error (argparse uses 2 for bad options).
USER_ERROR_EXIT = 2


class NodezooError(Exception):
    """A user error; its message names what was wrong and what to do instead."""


class RunFileError(NodezooError, ValueError):
    """A file a training run left behind (checkpoint, summary, run config) cannot be used."""


class WeightsMismatchError(NodezooError, ValueError):
    """Saved weights do not fit the model: missing or unexpected keys, or wrong shapes."""


class ResumeError(NodezooError, ValueError):
    """A run resumed from a checkpoint with settings its saved training state cannot follow."""
