"""Feedback in every shape it comes in, normalized to ``FeedbackRecord``.

Kaizen's own (``POST /v1/feedback``, an object or a list of them)::

    {"trace_id": "...", "kind": "thumbs", "value": "up"}          explicit: rating (0..1), thumbs
    {"trace_id": "...", "kind": "stars", "value": 4}               (up/down, true/false, 1/0), stars (1..5),
    {"trace_id": "...", "kind": "engage", "dwell_ms": 5400}        score (0..1); implicit: copy, share,
                                                                   retry, dismiss, engage (dwell_ms)

Explicit values are normalized to [0, 1] (stars: (n - 1) / 4); the value as sent is kept in
``raw_value``. Langfuse scores (``create_score``) become feedback too: BOOLEAN scores are thumbs, a
score named like a Kaizen kind (``thumbs``, ``stars``, ``copy``...) is that kind, any other NUMERIC
score is a ``score`` in [0, 1]; categorical up/down, good/bad, positive/negative are thumbs.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, get_args

from pydantic import ValidationError

from services.ingest.errors import InvalidFeedback, ProjectMismatch
from shared.events import (
    EXPLICIT_FEEDBACK_KINDS,
    IMPLICIT_FEEDBACK_KINDS,
    FeedbackKind,
    FeedbackRecord,
)

KINDS: tuple[str, ...] = get_args(FeedbackKind)
_THUMBS_UP = frozenset(
    {"up", "thumbs_up", "thumbsup", "+1", "1", "true", "yes", "good", "positive", "like", "👍"}
)
_THUMBS_DOWN = frozenset(
    {"down", "thumbs_down", "thumbsdown", "-1", "0", "false", "no", "bad", "negative", "dislike", "👎"}
)
_MAX_TEXT = 10_000


def parse_feedback(document: Any, project_id: str) -> FeedbackRecord:
    """A Kaizen feedback object as a record of ``project_id``; ``InvalidFeedback`` names what is wrong."""
    if not isinstance(document, dict):
        raise InvalidFeedback(f"feedback must be a JSON object, got {type(document).__name__}")
    named = document.get("project_id", document.get("projectId"))
    if named is not None and named != project_id:
        raise ProjectMismatch(
            f"this API key belongs to project {project_id!r} and cannot write to project {named!r}"
        )
    trace_id = document.get("trace_id", document.get("traceId"))
    if not isinstance(trace_id, str) or not trace_id.strip():
        raise InvalidFeedback("trace_id is required: the id of the trace the feedback is about")
    kind = document.get("kind")
    if kind not in KINDS:
        raise InvalidFeedback(f"kind {kind!r} is unknown: use one of {', '.join(KINDS)}")
    value, raw = _normalize(kind, document.get("value"))
    dwell_ms = document.get("dwell_ms", document.get("dwellMs"))
    if kind == "engage":
        if dwell_ms is None:
            raise InvalidFeedback(
                "dwell_ms is required for engage: how long the user engaged, in milliseconds"
            )
        if isinstance(dwell_ms, bool) or not isinstance(dwell_ms, int | float) or dwell_ms < 0:
            raise InvalidFeedback(f"dwell_ms must be a number of milliseconds >= 0, got {dwell_ms!r}")
    return _record(
        feedback_id=document.get("feedback_id", document.get("id")),
        trace_id=trace_id.strip(),
        project_id=project_id,
        kind=kind,
        value=value,
        raw_value=raw,
        name=document.get("name"),
        dwell_ms=dwell_ms,
        user_id=document.get("user_id", document.get("userId")),
        comment=document.get("comment"),
        occurred_at=document.get("occurred_at", document.get("timestamp")),
    )


def parse_langfuse_score(document: Any, project_id: str) -> FeedbackRecord:
    """A Langfuse score body (``create_score``) as a feedback record."""
    if not isinstance(document, dict):
        raise InvalidFeedback(f"a score must be a JSON object, got {type(document).__name__}")
    trace_id = document.get("traceId", document.get("trace_id"))
    if not isinstance(trace_id, str) or not trace_id.strip():
        raise InvalidFeedback(
            "traceId is required: Kaizen keeps scores of traces only (not of sessions or runs)"
        )
    name = document.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidFeedback("name is required: the score's name")
    value = document.get("value")
    data_type = str(document.get("dataType") or document.get("data_type") or "").upper()
    lowered = name.strip().lower()
    if lowered in KINDS:
        kind = lowered
    elif data_type == "BOOLEAN" or (data_type == "CATEGORICAL" and _thumb(value) is not None):
        kind = "thumbs"
    elif data_type in ("", "NUMERIC"):
        kind = "score"
    else:
        raise InvalidFeedback(
            f"score {name!r}: dataType {data_type} carries no rating Kaizen can use "
            "(send NUMERIC in 0..1, BOOLEAN, or name the score thumbs, stars, rating, copy, ...)"
        )
    if kind in IMPLICIT_FEEDBACK_KINDS:
        value = None
    normalized, raw = _normalize(kind, value, where=f"score {name!r}")
    dwell_ms = None
    if kind == "engage":
        dwell_ms = _number(document.get("value"), f"score {name!r}: an engage score's value (dwell ms)")
        if dwell_ms < 0:
            raise InvalidFeedback(f"score {name!r}: dwell time must be >= 0 ms, got {dwell_ms}")
    return _record(
        feedback_id=document.get("id"),
        trace_id=trace_id.strip(),
        project_id=project_id,
        kind=kind,
        value=normalized,
        raw_value=raw,
        name=name,
        dwell_ms=dwell_ms,
        user_id=None,
        comment=document.get("comment"),
        occurred_at=document.get("timestamp"),
    )


def _normalize(kind: str, value: Any, where: str = "value") -> tuple[float | None, float | str | None]:
    """The value in [0, 1] (explicit kinds) or None (implicit), and the value as sent."""
    if kind in IMPLICIT_FEEDBACK_KINDS:
        if value is not None and kind != "engage":
            raise InvalidFeedback(f"{where}: {kind} is an implicit signal and takes no value, got {value!r}")
        return None, None
    assert kind in EXPLICIT_FEEDBACK_KINDS
    if value is None:
        raise InvalidFeedback(f"{where} is required for {kind} feedback")
    raw: float | str = value if isinstance(value, str) else float(_number(value, where))
    if kind == "thumbs":
        thumb = _thumb(value)
        if thumb is None:
            raise InvalidFeedback(f"{where} {value!r} is not a thumb: use up/down, true/false or 1/0")
        return thumb, raw
    number = _number(value, where)
    if kind == "stars":
        if not 1 <= number <= 5:
            raise InvalidFeedback(f"{where} {number:g} is out of range for stars: 1 to 5")
        return (number - 1) / 4, raw
    if not 0 <= number <= 1:
        raise InvalidFeedback(f"{where} {number:g} is out of range for {kind}: 0 to 1")
    return number, raw


def _thumb(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return 1.0 if value == 1 else 0.0 if value in (0, -1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _THUMBS_UP:
            return 1.0
        if text in _THUMBS_DOWN:
            return 0.0
    return None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise InvalidFeedback(f"{where} must be a number, got {value!r}") from None
    else:
        raise InvalidFeedback(f"{where} must be a number, got {type(value).__name__}")
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidFeedback(f"{where} must be a finite number")
    return number


def _record(**fields: Any) -> FeedbackRecord:
    for name in ("feedback_id", "user_id", "comment", "name"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidFeedback(f"{name} must be a string, got {type(value).__name__}")
        if isinstance(value, str) and len(value) > _MAX_TEXT:
            raise InvalidFeedback(f"{name} is longer than {_MAX_TEXT} characters")
    if fields.get("feedback_id") is None:
        fields.pop("feedback_id")
    occurred = fields.pop("occurred_at")
    if occurred is not None:
        fields["occurred_at"] = occurred
    try:
        record = FeedbackRecord(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidFeedback(problems) from None
    if record.occurred_at.tzinfo is None:
        record = record.model_copy(update={"occurred_at": record.occurred_at.replace(tzinfo=UTC)})
    return record
