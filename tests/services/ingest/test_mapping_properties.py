"""Property: whatever attributes a readable span carries, the record the intake publishes is one the worker
accepts. The intake does not validate its records a second time (it builds them field by field), so this
is what keeps a 200 from ever promising a record the worker would dead-letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.landing import trace_columns
from services.ingest.mapping import CONSENT_KEYS, MODEL_KEYS, SESSION_KEYS, TAG_KEYS, USER_KEYS, map_spans
from services.ingest.otlp import decode_json
from services.ingest.redaction import Redactor, redact_fields
from services.ingest.validation import decode_events
from shared.events import TraceRaw
from shared.store import TRACES_SPEC
from tests.services.ingest.support import any_value

KNOWN_KEYS = [
    *MODEL_KEYS,
    *USER_KEYS,
    *SESSION_KEYS,
    *TAG_KEYS,
    *CONSENT_KEYS,
    "kaizen.model_version",
    "kaizen.reference",
    "kaizen.contexts",
    "kaizen.completion_token_ids",
    "kaizen.completion_logprobs",
    "langfuse.observation.type",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "langfuse.observation.usage_details",
    "langfuse.observation.level",
    "langfuse.observation.status_message",
    "langfuse.trace.metadata",
    "langfuse.trace.metadata.user_consent",
    "langfuse.observation.metadata",
    "langfuse.observation.metadata.note",
    "gen_ai.operation.name",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.total_tokens",
    "gen_ai.prompt.0.role",
    "gen_ai.prompt.0.content",
    "gen_ai.completion.0.content",
    "llm.input_messages.0.message.content",
    "llm.output_messages.1.message.role",
    "llm.token_count.prompt",
    "openinference.span.kind",
    "input.value",
    "output.value",
    "metadata",
    "retrieval.documents.0.document.content",
]

specials = st.sampled_from(
    [
        float("inf"),
        float("-inf"),
        float("nan"),
        1e30,
        -5,
        2**70,
        -(2**70),
        "1e400",
        "12",
        "-3",
        3.5,
        "",
        "[1, 2]",
    ]
)
scalars = st.one_of(
    specials,
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
json_texts = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
).map(json.dumps)
values = st.one_of(
    scalars,
    st.lists(specials, max_size=3),
    json_texts,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(min_size=1, max_size=8), scalars, max_size=3),
)
attributes = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20)), values, max_size=12
)
span_lists = st.lists(
    st.tuples(
        attributes, st.integers(min_value=0, max_value=2**63), st.integers(min_value=0, max_value=2**63)
    ),
    min_size=1,
    max_size=4,
)


def _request(spans: list[tuple[dict[str, Any], int, int]]) -> bytes:
    trace_id = "a" * 32
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": trace_id,
                                    "spanId": f"{index + 1:016x}",
                                    "name": "span",
                                    "startTimeUnixNano": str(start),
                                    "endTimeUnixNano": str(end),
                                    "attributes": [
                                        {"key": key, "value": any_value(value)}
                                        for key, value in attrs.items()
                                    ],
                                }
                                for index, (attrs, start, end) in enumerate(spans)
                            ]
                        }
                    ]
                }
            ]
        },
        allow_nan=True,
    ).encode()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_lists)
def test_every_mapped_record_passes_the_workers_validation(
    spans: list[tuple[dict[str, Any], int, int]],
) -> None:
    from pydantic_core import to_json

    decoded = decode_json(_request(spans))
    mapped = map_spans(decoded.spans, "shop")
    redactor = Redactor()
    values = []
    for fields in [*mapped.records, *mapped.contexts_only]:
        redact_fields(fields, redactor)
        envelope = {
            "event_id": "00000000-0000-4000-8000-000000000000",
            "type": "trace.raw",
            "occurred_at": "2026-01-01T00:00:00+00:00",
            "producer": "test",
            "project_id": "shop",
            "correlation_id": fields["trace_id"],
            "record": fields,
        }
        values.append(to_json(envelope, fallback=str))
    decoded_events = decode_events(values, TraceRaw)
    assert decoded_events.rejected == []
    # And the worker can write every record as a row of the traces table.
    records = [event.record for _, event in decoded_events.events]
    columns = trace_columns(records, datetime.now(UTC))
    schema = TRACES_SPEC.schema.as_arrow()
    assert list(columns) == schema.names  # every column of the table, none left to be null
    assert pa.Table.from_pydict(columns, schema=schema).num_rows == len(records)
