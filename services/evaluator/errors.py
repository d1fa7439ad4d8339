"""The evaluator's errors: one base, so a caller can catch the evaluator's failures alone."""

from __future__ import annotations

from shared.errors import KaizenError


class EvaluationError(KaizenError):
    """An evaluation that cannot be run as asked (no items, a model that does not load, a bad table)."""


class ApprovalError(EvaluationError):
    """An approval that cannot be given (unknown version, not waiting for approval)."""
