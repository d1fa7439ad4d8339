"""Feedback normalization: explicit ratings to [0, 1], implicit signals, Langfuse scores."""

from typing import Any

import pytest

from services.ingest.errors import InvalidFeedback, ProjectMismatch
from services.ingest.feedback import parse_feedback, parse_langfuse_score

TRACE = "5ba25ba5822992dcc9dc019528bc14cb"


@pytest.mark.parametrize(
    ("kind", "value", "normalized"),
    [
        ("rating", 0.8, 0.8),
        ("score", 0, 0.0),
        ("thumbs", "up", 1.0),
        ("thumbs", "down", 0.0),
        ("thumbs", True, 1.0),
        ("thumbs", -1, 0.0),
        ("stars", 1, 0.0),
        ("stars", 4, 0.75),
        ("stars", "5", 1.0),
    ],
)
def test_explicit_feedback_is_normalized(kind: str, value: Any, normalized: float) -> None:
    record = parse_feedback({"trace_id": TRACE, "kind": kind, "value": value}, "shop")
    assert (record.kind, record.value, record.project_id) == (kind, normalized, "shop")
    assert record.raw_value is not None


@pytest.mark.parametrize("kind", ["copy", "share", "retry", "dismiss"])
def test_implicit_signals_carry_no_value(kind: str) -> None:
    record = parse_feedback({"trace_id": TRACE, "kind": kind, "user_id": "u1"}, "shop")
    assert (record.kind, record.value, record.user_id) == (kind, None, "u1")


def test_engage_carries_its_dwell_time_and_a_resent_feedback_keeps_its_id() -> None:
    document = {"trace_id": TRACE, "kind": "engage", "dwell_ms": 5400, "feedback_id": "fb-1"}
    record = parse_feedback(document, "shop")
    assert (record.dwell_ms, record.feedback_id) == (5400, "fb-1")
    assert parse_feedback(document, "shop").feedback_id == "fb-1"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"kind": "thumbs", "value": "up"}, "trace_id is required"),
        ({"trace_id": TRACE, "kind": "rating", "value": 1.5}, "1.5 is out of range for rating: 0 to 1"),
        ({"trace_id": TRACE, "kind": "stars", "value": 6}, "6 is out of range for stars: 1 to 5"),
        ({"trace_id": TRACE, "kind": "thumbs", "value": "sideways"}, "is not a thumb"),
        ({"trace_id": TRACE, "kind": "teleport"}, "kind 'teleport' is unknown"),
        ({"trace_id": TRACE, "kind": "engage"}, "dwell_ms is required for engage"),
        ({"trace_id": TRACE, "kind": "copy", "value": 1}, "takes no value"),
        ({"trace_id": TRACE, "kind": "rating"}, "value is required"),
        ({"trace_id": TRACE, "kind": "rating", "value": "high"}, "value must be a number"),
        ("thumbs up", "feedback must be a JSON object"),
    ],
)
def test_invalid_feedback_names_the_problem(document: Any, problem: str) -> None:
    with pytest.raises(InvalidFeedback) as raised:
        parse_feedback(document, "shop")
    assert problem in str(raised.value)


def test_feedback_for_another_project_is_refused() -> None:
    with pytest.raises(ProjectMismatch, match="cannot write to project 'bank'"):
        parse_feedback({"trace_id": TRACE, "kind": "copy", "project_id": "bank"}, "shop")


@pytest.mark.parametrize(
    ("score", "kind", "value"),
    [
        ({"name": "helpfulness", "value": 0.9}, "score", 0.9),
        ({"name": "correct", "value": 1.0, "dataType": "BOOLEAN"}, "thumbs", 1.0),
        ({"name": "vibe", "value": "negative", "dataType": "CATEGORICAL"}, "thumbs", 0.0),
        ({"name": "stars", "value": 3}, "stars", 0.5),
        ({"name": "copy", "value": 1}, "copy", None),
    ],
)
def test_langfuse_scores_become_feedback(score: dict[str, Any], kind: str, value: float | None) -> None:
    record = parse_langfuse_score({"traceId": TRACE, "id": "s-1", **score}, "shop")
    assert (record.kind, record.value, record.name, record.feedback_id) == (kind, value, score["name"], "s-1")


@pytest.mark.parametrize(
    ("score", "problem"),
    [
        ({"name": "helpfulness", "value": 0.9}, "traceId is required"),
        ({"traceId": TRACE, "name": "quality", "value": 7}, "7 is out of range for score: 0 to 1"),
        ({"traceId": TRACE, "name": "summary", "value": "fine", "dataType": "TEXT"}, "dataType TEXT"),
        ({"traceId": TRACE, "value": 1}, "name is required"),
    ],
)
def test_unusable_scores_are_refused(score: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidFeedback, match=problem):
        parse_langfuse_score(score, "shop")
