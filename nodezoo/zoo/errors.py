"""The zoo's error types: user errors whose message says what to do."""

from __future__ import annotations

__all__ = ["HubAccessError", "WeightsMismatchError", "ZooError"]


class ZooError(ValueError):
    """A zoo reference, folder or config that cannot be used as given."""


class WeightsMismatchError(ZooError):
    """Saved weights do not fit the model: missing or unexpected keys, or wrong shapes."""


class HubAccessError(ZooError):
    """The Hub could not be reached, has no such repo, or refused an upload."""
