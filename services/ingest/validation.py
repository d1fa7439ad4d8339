"""Validation of raw events, the same for what the HTTP intake made and what apps put on Kafka."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from shared.events import FeedbackRaw, TraceRaw, TraceRecord

INT64_MAX = 2**63 - 1

E = TypeVar("E", TraceRaw, FeedbackRaw)


@dataclass(slots=True)
class Rejected:
    """A message that can never be landed, and why (it goes to the dead-letter topic)."""

    index: int
    reason: str


@dataclass(slots=True)
class Decoded(Generic[E]):
    events: list[tuple[int, E]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def decode_events(
    values: Sequence[bytes], model: type[E], known_projects: frozenset[str] | None = None
) -> Decoded[E]:
    """Validate raw messages as ``model``; the invalid ones are returned with the reason.

    The whole batch is validated in one call when it is all valid (the usual case); otherwise each
    message alone, to tell the good from the bad.
    """
    decoded: Decoded[E] = Decoded()
    adapter = _adapter(model)
    try:
        events = adapter.validate_json(b"[" + b",".join(values) + b"]")
        decoded.events = list(enumerate(events))
    except ValidationError:
        single = _adapter_one(model)
        for index, value in enumerate(values):
            try:
                decoded.events.append((index, single.validate_json(value)))
            except ValidationError as exc:
                decoded.rejected.append(Rejected(index, _validation_summary(exc)))
    good: list[tuple[int, E]] = []
    for index, event in decoded.events:
        problem = _envelope_problem(event, known_projects)
        if problem:
            decoded.rejected.append(Rejected(index, problem))
        else:
            good.append((index, event))
    decoded.events = good
    return decoded


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}
_ONE_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(model: type[E]) -> TypeAdapter[list[E]]:
    if model not in _ADAPTERS:
        _ADAPTERS[model] = TypeAdapter(list[model])  # type: ignore[valid-type]
    return _ADAPTERS[model]


def _adapter_one(model: type[E]) -> TypeAdapter[E]:
    if model not in _ONE_ADAPTERS:
        _ONE_ADAPTERS[model] = TypeAdapter(model)
    return _ONE_ADAPTERS[model]


def _validation_summary(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or 'message'}: {error['msg']}"
        for error in exc.errors()[:5]
    ]
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return "invalid event: " + "; ".join(problems) + more


def _envelope_problem(event: TraceRaw | FeedbackRaw, known_projects: frozenset[str] | None) -> str | None:
    record = event.record
    if record.project_id != event.project_id:
        return f"record.project_id {record.project_id!r} differs from the envelope's {event.project_id!r}"
    if known_projects and event.project_id not in known_projects:
        return f"unknown project {event.project_id!r}: no API key is configured for it"
    if isinstance(record, TraceRecord):
        if len(record.trace_id) > 256:
            return "record.trace_id is longer than 256 characters"
        counts = (record.usage.prompt_tokens, record.usage.completion_tokens, record.usage.total_tokens)
        if any(count is not None and count > INT64_MAX for count in counts):
            return "record.usage: token counts must fit a 64-bit integer"
        if record.completion_token_ids and any(
            abs(token) > INT64_MAX for token in record.completion_token_ids
        ):
            return "record.completion_token_ids must fit 64-bit integers"
    elif len(record.trace_id) > 256 or len(record.feedback_id) > 256:
        return "record.trace_id or record.feedback_id is longer than 256 characters"
    return None
