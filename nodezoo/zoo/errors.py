"""The zoo's error types: user errors (``NodezooError``) whose message says what to do."""

from __future__ import annotations

from ..errors import NodezooError, WeightsMismatchError

__all__ = ["CorruptWeightsError", "HubAccessError", "WeightsMismatchError", "ZooError"]


class ZooError(NodezooError, ValueError):
    """A zoo reference, folder or config that cannot be used as given."""


class HubAccessError(ZooError):
    """The Hub could not be reached, has no such repo, or refused an upload."""


class CorruptWeightsError(ZooError):
    """A weights file that does not match its recorded SHA-256, cannot be read, or holds NaN/inf."""
