"""The rollout service's errors: one base class, subclasses where a caller tells them apart."""

from __future__ import annotations

from shared.errors import KaizenError


class RolloutError(KaizenError):
    """A rollout operation that cannot be done; the message says why."""


class NoRollout(RolloutError):
    """A control (pause, resume, abort, promote) was asked of a rollout that is not running."""
