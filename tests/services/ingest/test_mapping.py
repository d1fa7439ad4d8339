"""OTLP requests (protobuf and JSON) to trace records, in every convention clients use."""

import gzip
import json
import time
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from services.ingest.encoding import decompress
from services.ingest.errors import PayloadTooLarge, UndecodableBody, UnsupportedMediaType
from services.ingest.mapping import is_generation, map_spans, requested_projects
from services.ingest.otlp import (
    JSON,
    PROTOBUF,
    decode_json,
    decode_protobuf,
    export_response,
    status_body,
)
from shared.events import TraceRecord
from tests.services.ingest.support import attribute, generation, otlp_json, span_json

TRACE = "5ba25ba5822992dcc9dc019528bc14cb"


def _decode(document: dict[str, Any]) -> Any:
    return decode_json(json.dumps(document).encode())


def _only_record(*spans: dict[str, Any], resource: dict[str, Any] | None = None) -> Any:
    decoded = _decode(otlp_json(*spans, resource=resource))
    assert decoded.rejected == []
    mapped = map_spans(decoded.spans, "shop")
    assert len(mapped.records) == 1
    return TraceRecord.model_validate(mapped.records[0])


def _pb_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_pb_value(item) for item in value]))
    return AnyValue(string_value=str(value))


def test_protobuf_request_maps_like_the_json_one() -> None:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=_pb_value("shop")))
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(TRACE)
    span.span_id = bytes.fromhex("85f21455e11e1c97")
    span.name = "chat"
    span.start_time_unix_nano = 1_700_000_000_000_000_000
    span.end_time_unix_nano = 1_700_000_000_500_000_000
    for key, value in generation("Where is my order?", "On its way.", tags=["vip"]).items():
        span.attributes.append(KeyValue(key=key, value=_pb_value(value)))
    decoded = decode_protobuf(request.SerializeToString())
    record = TraceRecord.model_validate(map_spans(decoded.spans, "shop").records[0])
    assert record.trace_id == TRACE
    assert record.span_id == "85f21455e11e1c97"
    assert record.prompt == "Where is my order?"
    assert record.response == "On its way."
    assert record.model == "SmolLM2-135M-Instruct"
    assert record.latency_ms == 500.0
    assert record.started_at.timestamp() == 1_700_000_000
    assert (record.usage.prompt_tokens, record.usage.completion_tokens, record.usage.total_tokens) == (
        12,
        7,
        19,
    )
    assert record.consent is True
    assert record.metadata["tags"] == ["vip"], "an attribute the mapping does not know is kept as metadata"
    assert record.metadata["resource"] == {"service.name": "shop"}


def test_langfuse_sdk_attributes() -> None:
    attributes = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "gpt-4o",
        "langfuse.observation.input": json.dumps(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
        ),
        "langfuse.observation.output": json.dumps({"role": "assistant", "content": "Hello."}),
        "langfuse.observation.usage_details": json.dumps({"input": 3, "output": 2}),
        "user.id": "u-1",
        "session.id": "s-1",
        "langfuse.trace.tags": ["t1", "t2"],
        "langfuse.trace.metadata.user_consent": '"true"',
        "langfuse.trace.metadata.kaizen.model_version": '"7"',
        "langfuse.observation.metadata.channel": '"web"',
    }
    record = _only_record(span_json(attributes, trace_id=TRACE))
    assert [(m.role, m.content) for m in record.input_messages] == [("system", "Be brief."), ("user", "Hi?")]
    assert record.prompt == "Hi?"
    assert record.response == "Hello."
    assert record.model == "gpt-4o"
    assert record.usage.total_tokens == 5
    assert (record.user_id, record.session_id, record.tags) == ("u-1", "s-1", ["t1", "t2"])
    assert record.consent is True
    assert record.model_version == "7"
    assert record.metadata["channel"] == "web"


def test_flattened_gen_ai_prompt_and_completion() -> None:
    attributes = {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "You help.",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Price of X?",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "It is $5.",
        "gen_ai.usage.prompt_tokens": "9",
        "kaizen.consent": "yes",
    }
    record = _only_record(span_json(attributes))
    assert record.prompt == "Price of X?"
    assert len(record.input_messages) == 2
    assert record.response == "It is $5."
    assert record.usage.prompt_tokens == 9
    assert record.consent is True
    assert record.metadata["gen_ai.system"] == "openai"


def test_openinference_llm_and_retriever_spans() -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    retriever = span_json(
        {
            "openinference.span.kind": "RETRIEVER",
            "retrieval.documents.1.document.content": "Shoes ship in 2 days.",
            "retrieval.documents.0.document.content": "Returns within 30 days.",
        },
        trace_id=trace,
        name="retrieve",
    )
    llm = span_json(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "llama-3",
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "Can I return shoes?",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "Yes, within 30 days.",
            "llm.token_count.prompt": 20,
            "llm.token_count.completion": 6,
            "llm.token_count.total": 26,
            "metadata": json.dumps({"user_consent": True}),
        },
        trace_id=trace,
        name="llm",
    )
    record = _only_record(retriever, llm)
    assert record.model == "llama-3"
    assert record.prompt == "Can I return shoes?"
    assert record.response == "Yes, within 30 days."
    assert record.contexts == ["Returns within 30 days.", "Shoes ship in 2 days."]
    assert record.usage.total_tokens == 26
    assert record.consent is True


def test_langfuse_retriever_and_trace_level_attributes_on_the_root_span() -> None:
    trace = "1af7651916cd43dd8448eb211c80319c"
    root = span_json(
        {"langfuse.observation.type": "span", "user.id": "u-9", "user_consent": True},
        trace_id=trace,
        name="turn",
    )
    retriever = span_json(
        {
            "langfuse.observation.type": "retriever",
            "langfuse.observation.output": json.dumps([{"page_content": "Doc A"}, "Doc B"]),
        },
        trace_id=trace,
    )
    llm = span_json(
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.input": "What do the docs say?",
            "langfuse.observation.output": "A and B.",
        },
        trace_id=trace,
    )
    record = _only_record(root, retriever, llm)
    assert record.contexts == ["Doc A", "Doc B"]
    assert record.user_id == "u-9"
    assert record.consent is True
    assert record.prompt == "What do the docs say?"


def test_a_model_attribute_alone_makes_a_generation_but_an_embedding_does_not() -> None:
    assert is_generation({"model": "my-model"})
    assert is_generation({"gen_ai.request.model": "m"})
    assert not is_generation({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "m"})
    assert not is_generation(
        {"langfuse.observation.type": "embedding", "langfuse.observation.model.name": "m"}
    )
    assert not is_generation({"http.method": "GET"})
    record = _only_record(span_json({"model": "my-model", "input.value": "q", "output.value": "a"}))
    assert (record.model, record.prompt, record.response) == ("my-model", "q", "a")


def test_the_last_generation_of_a_trace_is_its_record() -> None:
    trace = "2af7651916cd43dd8448eb211c80319c"
    first = span_json(generation("plan", "step 1"), trace_id=trace, duration_ms=900)
    time.sleep(0.002)
    last = span_json(generation("answer", "final answer"), trace_id=trace, duration_ms=100)
    record = _only_record(first, last)
    assert record.response == "final answer"
    assert record.metadata["kaizen.generations_in_trace"] == 2


@pytest.mark.parametrize(
    ("attributes", "consent"),
    [
        ({}, False),
        ({"user_consent": True}, True),
        ({"user_consent": "false"}, False),
        ({"kaizen.consent": 1}, True),
        ({"user_consent": "maybe"}, False),
        ({"langfuse.trace.metadata.kaizen.consent": '"true"'}, True),
        ({"user_consent": True, "langfuse.trace.metadata.user_consent": '"false"'}, False),
    ],
)
def test_consent_only_when_stated_and_never_refused(attributes: dict[str, Any], consent: bool) -> None:
    record = _only_record(span_json(generation("q", "a", consent=None, **attributes)))
    assert record.consent is consent


def test_error_status_model_version_and_on_policy_tokens() -> None:
    attributes = generation(
        "q",
        "",
        **{"kaizen.model_version": "12", "kaizen.completion_token_ids": [5, 6], "kaizen.reference": "ref"},
    )
    attributes["kaizen.completion_logprobs"] = [-0.5, -1.25]
    record = _only_record(span_json(attributes, status={"code": "STATUS_CODE_ERROR", "message": "timeout"}))
    assert (record.status, record.error) == ("error", "timeout")
    assert record.model_version == "12"
    assert record.completion_token_ids == [5, 6]
    assert record.completion_logprobs == [-0.5, -1.25]
    assert record.reference == "ref"


def test_a_trace_with_contexts_but_no_generation_is_a_contexts_only_record() -> None:
    decoded = _decode(otlp_json(span_json({"kaizen.contexts": ["ctx 1", "ctx 2"], "http.route": "/chat"})))
    mapped = map_spans(decoded.spans, "shop")
    assert mapped.records == []
    assert [TraceRecord.model_validate(r).contexts for r in mapped.contexts_only] == [["ctx 1", "ctx 2"]]
    assert mapped.contexts_only[0]["contexts_only"] is True
    assert map_spans(_decode(otlp_json(span_json({"http.route": "/x"}))).spans, "shop").contexts_only == []


def test_json_accepts_ints_as_strings_or_numbers_uppercase_hex_and_snake_case() -> None:
    span = span_json(generation("q", "a"), trace_id=TRACE.upper())
    span["startTimeUnixNano"] = 1_700_000_000_000_000_000
    span["end_time_unix_nano"] = "1700000000250000000"
    del span["endTimeUnixNano"]
    span["attributes"].append({"key": "n", "value": {"intValue": 3}})
    record = _only_record(span)
    assert record.trace_id == TRACE
    assert record.latency_ms == 250.0
    assert record.metadata["n"] == 3


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"traceId": "xyz"}, "traceId must be 32 hex characters"),
        ({"traceId": "0" * 32}, "traceId must not be all zero"),
        ({"spanId": "abcd"}, "spanId must be 16 hex characters"),
        ({"traceId": None}, "traceId is missing"),
        (
            {"attributes": {"user_consent": True}},
            "attributes must be a list of {key, value} objects, got an object",
        ),
        ({"attributes": [{"key": "a", "value": {"intValue": "ten"}}]}, "intValue must be an integer"),
        ({"attributes": [{"key": "a", "value": "plain"}]}, "a value must be an AnyValue object"),
        ({"startTimeUnixNano": "soon"}, "startTimeUnixNano must be an integer"),
        ({"status": {"code": 9}}, "status.code must be 0, 1 or 2"),
    ],
)
def test_a_wrong_span_is_rejected_alone_with_its_reason(change: dict[str, Any], reason: str) -> None:
    bad = span_json(generation("q", "a"), name="bad") | change
    good = span_json(generation("q", "a"), name="good")
    decoded = _decode(otlp_json(bad, good))
    assert [span.name for span in decoded.spans] == ["good"]
    assert len(decoded.rejected) == 1
    assert reason in decoded.rejected[0]
    assert "resourceSpans[0].scopeSpans[0].spans[0]" in decoded.rejected[0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'{"resourceSpans": {"a": 1}}', "resourceSpans must be a list"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": 3}]}]}',
            "resourceSpans[0].scopeSpans[0].spans must be a list",
        ),
    ],
)
def test_an_unreadable_json_body_names_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(UndecodableBody, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decode_json(body)


def test_protobuf_spans_with_wrong_id_lengths_are_rejected() -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    bad = spans.add()
    bad.trace_id, bad.span_id, bad.name = b"\x01" * 8, b"\x02" * 8, "short trace id"
    good = spans.add()
    good.trace_id, good.span_id, good.name = b"\x01" * 16, b"\x02" * 8, "fine"
    decoded = decode_protobuf(request.SerializeToString())
    assert [span.name for span in decoded.spans] == ["fine"]
    assert "traceId must be 16 bytes" in decoded.rejected[0]
    with pytest.raises(UndecodableBody, match="not a protobuf ExportTraceServiceRequest"):
        decode_protobuf(b"\xff\xff\xff garbage")


def test_projects_named_by_a_request_are_found() -> None:
    decoded = _decode(otlp_json(span_json({"x": 1}), resource={"kaizen.project_id": "other"}))
    assert requested_projects(decoded.spans) == {"other"}


def test_answers_follow_the_otlp_spec() -> None:
    assert export_response(PROTOBUF, 0, "") == b""
    partial = ExportTraceServiceResponse()
    partial.ParseFromString(export_response(PROTOBUF, 2, "two bad spans"))
    assert (partial.partial_success.rejected_spans, partial.partial_success.error_message) == (
        2,
        "two bad spans",
    )
    assert json.loads(export_response(JSON, 1, "bad")) == {
        "partialSuccess": {"rejectedSpans": "1", "errorMessage": "bad"}
    }
    assert json.loads(status_body(JSON, 400, "broken")) == {"code": 3, "message": "broken"}
    from google.rpc.status_pb2 import Status

    status = Status()
    status.ParseFromString(status_body(PROTOBUF, 413, "x" * 300))
    assert (status.code, status.message) == (8, "x" * 300)


def test_decompression_limits() -> None:
    payload = b"a" * 10_000
    assert decompress(gzip.compress(payload), "gzip", 20_000) == payload
    with pytest.raises(PayloadTooLarge, match="decompressed"):
        decompress(gzip.compress(payload), "gzip", 5_000)
    with pytest.raises(UndecodableBody, match="not valid gzip"):
        decompress(b"not gzip at all", "gzip", 20_000)
    with pytest.raises(UndecodableBody, match="truncated"):
        decompress(gzip.compress(payload)[:-12], "gzip", 20_000)
    with pytest.raises(UnsupportedMediaType, match="br"):
        decompress(payload, "br", 20_000)


def test_attribute_helper_builds_otlp_json() -> None:
    assert attribute("k", [1, "a"]) == {
        "key": "k",
        "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}]}},
    }
