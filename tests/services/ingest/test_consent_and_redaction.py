"""Over a mixed batch: no trace without consent reaches trace.ingested or the trainable table, and no planted
e-mail, card number, phone number or key survives redaction anywhere it lands."""

from __future__ import annotations

import json

import httpx
import pytest

from services.ingest.settings import IngestSettings
from shared.events import TRACE_INGESTED, TRACE_RAW
from shared.settings import KaizenSettings
from shared.store import TRACES, TRACES_NOTRAIN
from tests.services.ingest.support import (
    Key,
    events,
    generation,
    hex_id,
    ingest_settings_for,
    otlp_json,
    read_topic,
    span_json,
    wait_for_rows,
)

pytestmark = pytest.mark.integration
PLANTED = [
    "alice.smith@example.com",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "+1 415 555 0100",
    "sk-live-9aZ8bY7cX6dW5eV4fU3g",
]


@pytest.fixture
def ingest_settings(settings: KaizenSettings, key: Key, other_key: Key) -> IngestSettings:
    return ingest_settings_for(settings, key, other_key, keep_unconsented=True)


def _leaks(text: str) -> list[str]:
    return [secret for secret in PLANTED if secret in text]


async def test_mixed_batch_only_consented_traces_train_and_no_pii_survives(
    client: httpx.AsyncClient, worker: None, ingest_settings: IngestSettings
) -> None:
    consents: dict[str, bool] = {}
    spans = []
    stated = [True, False, None, "true", "no", True, 1, 0, True, False, True, None]
    for index, consent in enumerate(stated):
        trace_id = hex_id(32)
        consents[trace_id] = consent in (True, "true", 1)
        prompt = f"I'm {PLANTED[0]}, card {PLANTED[1]}, call me at {PLANTED[3]} (#{index})"
        response = f"Charged {PLANTED[2]}; your key {PLANTED[4]} was rotated."
        attributes = generation(prompt, response, consent=None)
        if consent is not None:
            attributes["user_consent"] = consent
        attributes["kaizen.contexts"] = [f"Customer record: {PLANTED[0]}, {PLANTED[1]}"]
        attributes["crm.note"] = f"escalated by {PLANTED[0]}"
        spans.append(span_json(attributes, trace_id=trace_id))
    # One more trace refuses consent in Langfuse trace metadata although the span itself says yes.
    refused = hex_id(32)
    consents[refused] = False
    spans.append(
        span_json(
            generation(
                "plain question", "plain answer", **{"langfuse.trace.metadata.user_consent": '"false"'}
            ),
            trace_id=refused,
        )
    )
    response = await client.post("/v1/traces", json=otlp_json(*spans))
    assert response.status_code == 200, response.text

    consented = {trace for trace, yes in consents.items() if yes}
    unconsented = set(consents) - consented
    assert len(consented) == 6 and len(unconsented) == 7

    trainable = await wait_for_rows(ingest_settings, TRACES, len(consented), settle_s=1.0)
    assert {row["trace_id"] for row in trainable} == consented
    assert all(row["consent"] for row in trainable)
    kept = await wait_for_rows(ingest_settings, TRACES_NOTRAIN, len(unconsented))
    assert {row["trace_id"] for row in kept} == unconsented
    announced = events(
        await read_topic(ingest_settings, TRACE_INGESTED, at_least=len(consented), settle_s=1.5)
    )
    assert sorted(event["trace_id"] for event in announced) == sorted(consented)
    assert all(event["consent"] for event in announced)

    for row in [*trainable, *kept]:
        stored = json.dumps(row, default=str)
        assert not _leaks(stored), f"PII survived in {row['trace_id']}: {_leaks(stored)}"
        if row["trace_id"] != refused:
            assert row["prompt"].startswith("I'm [EMAIL], card [CARD], call me at [PHONE]")
            assert row["response"] == "Charged [CARD]; your key [KEY] was rotated."
            assert row["contexts"] == ["Customer record: [EMAIL], [CARD]"]
            assert json.loads(row["metadata"])["crm.note"] == "escalated by [EMAIL]"
            assert row["redactions"] >= 8
    raw = await read_topic(ingest_settings, TRACE_RAW, at_least=len(consents), settle_s=0)
    assert not any(_leaks(record.value.decode()) for record in raw), "PII never reaches Kafka either"
