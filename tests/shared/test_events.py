"""The event contracts: the envelope of DESIGN.md on every event, and the AsyncAPI catalogue."""

import json
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.asyncapi import catalogue
from shared.events import (
    EVENT_BY_TOPIC,
    EVENT_TYPES,
    AnyEvent,
    FeedbackRecord,
    TraceLabeled,
    dlq_topic,
)
from shared.samples import sample_events
from shared.settings import KafkaSettings

ENVELOPE = {"event_id", "type", "schema_version", "occurred_at", "producer", "project_id", "correlation_id"}
TOPICS = {
    "trace.raw",
    "feedback.raw",
    "trace.ingested",
    "feedback.received",
    "trace.labeled",
    "dataset.ready",
    "checkpoint.trained",
    "training.failed",
    "eval.passed",
    "eval.failed",
    "rollout.stage",
}
CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_one_model_per_topic_each_with_the_envelope() -> None:
    assert set(EVENT_BY_TOPIC) == TOPICS
    for model in EVENT_TYPES:
        assert set(model.model_fields) >= ENVELOPE, model.__name__
        assert model.model_fields["type"].default == model.topic
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_events_parse_back_from_json_by_type() -> None:
    adapter: TypeAdapter[object] = TypeAdapter(AnyEvent)
    for event in sample_events("p1"):
        again = adapter.validate_json(event.model_dump_json())
        assert again == event
        assert event.key() == event.correlation_id.encode()


def test_bad_events_name_the_field() -> None:
    good = next(e for e in sample_events("p1") if isinstance(e, TraceLabeled))
    raw = json.loads(good.model_dump_json())
    raw["composite_reward"] = 1.7
    with pytest.raises(ValidationError, match="composite_reward"):
        TraceLabeled.model_validate(raw)
    with pytest.raises(ValidationError, match="value"):
        FeedbackRecord(trace_id="t", project_id="p", kind="stars", value=5)
    with pytest.raises(ValidationError, match="kind"):
        FeedbackRecord(trace_id="t", project_id="p", kind="like")  # type: ignore[arg-type]


def test_topic_names_carry_the_deployment_prefix() -> None:
    kafka = KafkaSettings(topic_prefix="staging.")
    assert kafka.topic("trace.raw") == "staging.trace.raw"
    assert dlq_topic(kafka.topic("trace.raw")) == "staging.trace.raw.dlq"
    assert kafka.group("labeler") == "staging.labeler"


def test_asyncapi_catalogue_lists_every_topic_with_its_schema_and_is_current() -> None:
    document = catalogue()
    assert document["asyncapi"].startswith("3.")
    assert {channel["address"] for channel in document["channels"].values()} == TOPICS
    schemas = document["components"]["schemas"]
    for model in EVENT_TYPES:
        message = document["components"]["messages"][f"{model.topic}:Message"]
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        assert set(schemas[model.__name__]["properties"]) >= ENVELOPE
    committed = json.loads(CATALOGUE.read_text())
    assert committed == document, "docs/asyncapi.json is stale: run `make asyncapi`"
