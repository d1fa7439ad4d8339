"""The trainer's errors: a job that cannot succeed says why, in one of the reasons of ``training.failed``."""

from __future__ import annotations

from shared.errors import KaizenError
from shared.events import TrainingFailureReason


class TrainerError(KaizenError):
    """Base of the trainer's own errors."""


class TrainingFailure(TrainerError):
    """A job that no retry can save (an empty or broken dataset, a NaN loss, out of memory).

    ``reason`` is the code carried by ``training.failed`` and tagged on the MLflow run; the message is
    the detail, with the numbers behind it.
    """

    def __init__(self, reason: TrainingFailureReason, detail: str, *, step: int | None = None) -> None:
        super().__init__(detail)
        self.reason: TrainingFailureReason = reason
        self.detail = detail
        self.step = step


class DatasetEmpty(TrainingFailure):
    def __init__(self, detail: str) -> None:
        super().__init__("empty_dataset", detail)


class DatasetBroken(TrainingFailure):
    def __init__(self, detail: str) -> None:
        super().__init__("broken_dataset", detail)


class NonFiniteLoss(TrainingFailure):
    def __init__(self, detail: str, step: int) -> None:
        super().__init__("nan_loss", detail, step=step)
