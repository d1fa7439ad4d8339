"""Malformed requests: each gets the right status and a message naming the problem; nothing from a
rejected span reaches Kafka or the table; the intake keeps serving."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from google.rpc.status_pb2 import Status

from services.ingest.settings import IngestSettings
from shared.events import FEEDBACK_RAW, TRACE_INGESTED, TRACE_RAW
from shared.settings import KaizenSettings
from shared.store import TRACES
from tests.services.ingest.support import (
    Intake,
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
MAX_BODY = 64 * 1024
MAX_DECOMPRESSED = 256 * 1024
PROTOBUF = "application/x-protobuf"


@pytest.fixture
def ingest_settings(settings: KaizenSettings, key: Key, other_key: Key) -> IngestSettings:
    return ingest_settings_for(
        settings, key, other_key, max_body_bytes=MAX_BODY, max_decompressed_bytes=MAX_DECOMPRESSED
    )


@dataclass
class Case:
    name: str
    status: int
    problem: str
    path: str = "/v1/traces"
    json_body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: str = "own"  # own | none | wrong | other


def _trace(**attributes: Any) -> dict[str, Any]:
    """An OTLP/JSON request of one generation, marked with the trace id of a rejected request."""
    return otlp_json(span_json(generation("planted question", "planted answer", **attributes)))


def _span(change: dict[str, Any]) -> dict[str, Any]:
    return otlp_json(span_json(generation("planted question", "planted answer")) | change)


CASES = [
    Case(
        "garbage protobuf",
        400,
        "not a protobuf ExportTraceServiceRequest",
        content=b"\x0a\xff\xff\xffjunk",
        headers={"content-type": PROTOBUF},
    ),
    Case(
        "garbage json",
        400,
        "body is not valid JSON",
        content=b"{'resourceSpans': oops",
        headers={"content-type": "application/json"},
    ),
    Case(
        "json that is not a request", 400, "resourceSpans must be a list", json_body={"resourceSpans": "all"}
    ),
    Case(
        "wrong content type",
        415,
        "Content-Type 'text/plain' is not supported",
        content=b"hello",
        headers={"content-type": "text/plain"},
    ),
    Case("no content type", 415, "Content-Type '(none)' is not supported", content=b"{}"),
    Case(
        "bad trace id",
        400,
        "traceId must be 32 hex characters",
        json_body=_span({"traceId": "zz" * 16 + "0"}),
    ),
    Case("zero trace id", 400, "traceId must not be all zero", json_body=_span({"traceId": "0" * 32})),
    Case("bad span id", 400, "spanId must be 16 hex characters", json_body=_span({"spanId": "12ab"})),
    Case(
        "attributes as an object",
        400,
        "attributes must be a list of {key, value} objects, got an object",
        json_body=_span({"attributes": {"gen_ai.request.model": "m"}}),
    ),
    Case(
        "integer that is not one",
        400,
        "intValue must be an integer",
        json_body=_span(
            {"attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "many"}}]}
        ),
    ),
    Case("no auth", 401, "missing Authorization header", json_body=_trace(), auth="none"),
    Case("wrong secret", 401, "invalid API key", json_body=_trace(), auth="wrong"),
    Case(
        "naming another project",
        403,
        "cannot write to project 'someone-else'",
        json_body=otlp_json(span_json(generation("q", "a")), resource={"kaizen.project_id": "someone-else"}),
    ),
    Case(
        "key of another project",
        403,
        "cannot write to project '{own_project}'",
        auth="other",
        json_body=otlp_json(span_json(generation("q", "a")), resource={"kaizen.project_id": "{own_project}"}),
    ),
    Case(
        "oversized body",
        413,
        "over the limit of 65536 bytes",
        content=b"x" * (MAX_BODY + 1),
        headers={"content-type": "application/json"},
    ),
    Case(
        "broken gzip",
        400,
        "body is not valid gzip data",
        content=b"not gzip at all",
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    ),
    Case(
        "truncated gzip",
        400,
        "gzip body is truncated",
        content=gzip.compress(json.dumps(_trace()).encode())[:-12],
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    ),
    Case(
        "gzip bomb",
        413,
        "once decompressed",
        content=gzip.compress(b" " * (MAX_DECOMPRESSED * 4)),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    ),
    Case(
        "unknown encoding",
        415,
        "Content-Encoding 'br' is not supported",
        content=b"{}",
        headers={"content-type": "application/json", "content-encoding": "br"},
    ),
    Case(
        "feedback without a trace id",
        422,
        "trace_id is required",
        path="/v1/feedback",
        json_body={"kind": "thumbs", "value": "up"},
    ),
    Case(
        "rating out of range",
        422,
        "1.5 is out of range for rating: 0 to 1",
        path="/v1/feedback",
        json_body={"trace_id": hex_id(32), "kind": "rating", "value": 1.5},
    ),
    Case(
        "stars out of range",
        422,
        "0 is out of range for stars: 1 to 5",
        path="/v1/feedback",
        json_body={"trace_id": hex_id(32), "kind": "stars", "value": 0},
    ),
    Case(
        "unknown signal kind",
        422,
        "kind 'teleport' is unknown",
        path="/v1/feedback",
        json_body={"trace_id": hex_id(32), "kind": "teleport"},
    ),
    Case(
        "engage without dwell time",
        422,
        "dwell_ms is required for engage",
        path="/v1/feedback",
        json_body={"trace_id": hex_id(32), "kind": "engage"},
    ),
    Case(
        "one bad item spoils a feedback list",
        422,
        "feedback[1]: kind 'like' is unknown",
        path="/v1/feedback",
        json_body=[{"trace_id": hex_id(32), "kind": "copy"}, {"trace_id": hex_id(32), "kind": "like"}],
    ),
    Case(
        "feedback that is not json",
        400,
        "body is not valid JSON",
        path="/v1/feedback",
        content=b"thumbs up",
        headers={"content-type": "application/json"},
    ),
    Case(
        "feedback for another project",
        403,
        "cannot write to project 'someone-else'",
        path="/v1/feedback",
        json_body={"trace_id": hex_id(32), "kind": "copy", "project_id": "someone-else"},
    ),
    Case(
        "langfuse score without a trace",
        422,
        "traceId is required",
        path="/api/public/scores",
        json_body={"name": "helpfulness", "value": 0.5, "sessionId": "s-1"},
    ),
    Case(
        "langfuse score out of range",
        422,
        "7 is out of range for score",
        path="/api/public/scores",
        json_body={"traceId": hex_id(32), "name": "quality", "value": 7},
    ),
]


def _basic(public_key: str, secret_key: str) -> str:
    return "Basic " + base64.b64encode(f"{public_key}:{secret_key}".encode()).decode()


def _headers(case: Case, key: Key, other_key: Key) -> dict[str, str]:
    headers = dict(case.headers)
    if case.auth == "own":
        headers["authorization"] = _basic(key.public_key, key.secret_key)
    elif case.auth == "wrong":
        headers["authorization"] = _basic(key.public_key, "sk-lf-wrong")
    elif case.auth == "other":
        headers["authorization"] = _basic(other_key.public_key, other_key.secret_key)
    return headers


def _message(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith(PROTOBUF):
        status = Status()
        status.ParseFromString(response.content)
        return status.message
    document = response.json()
    return str(document.get("message") or document.get("detail"))


async def test_malformed_requests_get_the_right_status_and_say_why(
    intake: Intake, worker: None, key: Key, other_key: Key, ingest_settings: IngestSettings
) -> None:
    assert len(CASES) >= 15
    outcomes = []
    async with httpx.AsyncClient(base_url=intake.url, timeout=30) as http:
        for case in CASES:
            if case.json_body is not None:
                content = json.dumps(case.json_body).replace("{own_project}", key.project_id).encode()
                case.headers.setdefault("content-type", "application/json")
            else:
                content = case.content or b""
            response = await http.post(case.path, content=content, headers=_headers(case, key, other_key))
            outcomes.append((case.name, response.status_code, _message(response)))
        wrong = [
            (name, status, message)
            for (name, status, message), case in zip(outcomes, CASES, strict=True)
            if status != case.status or case.problem.replace("{own_project}", key.project_id) not in message
        ]
        assert not wrong, "\n".join(f"{name}: {status} {message!r}" for name, status, message in wrong)

        # The intake still serves, and what it stores is only what it accepted.
        good = otlp_json(span_json(generation("a fine question", "a fine answer")))
        accepted = await http.post("/v1/traces", json=good, auth=key.auth)
        assert accepted.status_code == 200, accepted.text
        feedback = await http.post(
            "/v1/feedback", json={"trace_id": hex_id(32), "kind": "copy"}, auth=key.auth
        )
        assert feedback.status_code == 200

    raw = events(await read_topic(ingest_settings, TRACE_RAW, at_least=1, settle_s=1.0))
    assert [event["record"]["prompt"] for event in raw] == ["a fine question"]
    assert len(events(await read_topic(ingest_settings, FEEDBACK_RAW, at_least=1, settle_s=0.5))) == 1
    rows = await wait_for_rows(ingest_settings, TRACES, 1, settle_s=1.0)
    assert [row["prompt"] for row in rows] == ["a fine question"]
    assert len(await read_topic(ingest_settings, TRACE_INGESTED, at_least=1, settle_s=0.5)) == 1


async def test_otlp_errors_are_google_rpc_status_in_the_request_encoding(intake: Intake, key: Key) -> None:
    async with httpx.AsyncClient(base_url=intake.url) as http:
        protobuf = await http.post(
            "/v1/traces", content=b"\xff\xff", headers={"content-type": PROTOBUF}, auth=key.auth
        )
        json_answer = await http.post("/api/public/otel/v1/traces", json={"resourceSpans": 1}, auth=key.auth)
        unauthenticated = await http.post("/v1/traces", content=b"", headers={"content-type": PROTOBUF})
    status = Status()
    status.ParseFromString(protobuf.content)
    assert (protobuf.status_code, status.code) == (400, 3)
    assert json_answer.status_code == 400
    assert json_answer.json()["code"] == 3
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"].startswith("Basic")
