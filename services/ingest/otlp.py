"""OTLP/HTTP trace requests in, plain spans out; and the answers the OTLP spec asks for.

Both encodings of ``ExportTraceServiceRequest`` are read: binary protobuf, and JSON as the OTLP spec
writes it (trace and span ids in hex, enums as numbers or names, 64-bit integers as strings or
numbers, lowerCamelCase field names; snake_case is accepted too). What comes out is one ``Span`` per
span, attributes as plain Python values, the resource's attributes shared by its spans.

A body that cannot be read at all is ``UndecodableBody`` (HTTP 400). A span that can be read but is
wrong (ids of the wrong length, attributes that are not a list, a value of the wrong type) is
rejected on its own, with a reason naming where it is and what is wrong; the other spans go on
(``partial_success``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from pydantic_core import from_json, to_json

from services.ingest.errors import UndecodableBody

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


@dataclass(slots=True)
class Span:
    """One span as the mapping needs it."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    scope: str


@dataclass(slots=True)
class DecodedSpans:
    """The readable spans of a request, and why the others were rejected."""

    spans: list[Span] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.spans) + len(self.rejected)


class SpanRejected(ValueError):
    """One span is wrong; the message says where and what."""


# ---------------------------------------------------------------------------------------------
# Protobuf


def decode_protobuf(body: bytes) -> DecodedSpans:
    """Spans of a binary ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise UndecodableBody(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from None
    decoded = DecodedSpans()
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _pb_attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope.name
            for i, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
                    decoded.rejected.append(
                        f"{where} ({span.name!r}): traceId must be 16 bytes and not all zero, "
                        f"got {len(trace_id)} bytes"
                    )
                    continue
                if len(span_id) != 8 or span_id == _ZERO_SPAN:
                    decoded.rejected.append(
                        f"{where} ({span.name!r}): spanId must be 8 bytes and not all zero, "
                        f"got {len(span_id)} bytes"
                    )
                    continue
                if parent and len(parent) != 8:
                    decoded.rejected.append(
                        f"{where} ({span.name!r}): parentSpanId must be empty or 8 bytes, "
                        f"got {len(parent)} bytes"
                    )
                    continue
                decoded.spans.append(
                    Span(
                        trace_id=trace_id.hex(),
                        span_id=span_id.hex(),
                        parent_span_id=parent.hex() if parent else None,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_pb_attributes(span.attributes),
                        status_code=span.status.code,
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope,
                    )
                )
    return decoded


def _pb_attributes(attributes: Any) -> dict[str, Any]:
    return {attribute.key: _pb_value(attribute.value) for attribute in attributes}


def _pb_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _pb_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


# ---------------------------------------------------------------------------------------------
# JSON


def decode_json(body: bytes) -> DecodedSpans:
    """Spans of a JSON ``ExportTraceServiceRequest`` (OTLP/JSON)."""
    try:
        document = from_json(body)
    except ValueError as exc:
        raise UndecodableBody(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UndecodableBody(
            f"body must be a JSON object (an ExportTraceServiceRequest), got {_json_type(document)}"
        )
    decoded = DecodedSpans()
    for r, resource_spans in enumerate(_json_list(document, "resourceSpans", "resourceSpans")):
        where = f"resourceSpans[{r}]"
        if not isinstance(resource_spans, dict):
            raise UndecodableBody(f"{where} must be an object, got {_json_type(resource_spans)}")
        resource_doc = resource_spans.get("resource") or {}
        scopes = _json_list(resource_spans, "scopeSpans", f"{where}.scopeSpans")
        try:
            if not isinstance(resource_doc, dict):
                raise SpanRejected(f"{where}.resource must be an object, got {_json_type(resource_doc)}")
            resource = _json_attributes(resource_doc.get("attributes"), f"{where}.resource.attributes")
        except SpanRejected as exc:
            # A resource that cannot be read takes all its spans with it.
            for scope_spans in scopes:
                spans = scope_spans.get("spans") if isinstance(scope_spans, dict) else None
                if isinstance(spans, list):
                    decoded.rejected.extend(str(exc) for _ in spans)
            continue
        for s, scope_spans in enumerate(scopes):
            scope_where = f"{where}.scopeSpans[{s}]"
            if not isinstance(scope_spans, dict):
                raise UndecodableBody(f"{scope_where} must be an object, got {_json_type(scope_spans)}")
            scope_doc = scope_spans.get("scope")
            scope = str(scope_doc.get("name", "")) if isinstance(scope_doc, dict) else ""
            for i, span_doc in enumerate(_json_list(scope_spans, "spans", f"{scope_where}.spans")):
                try:
                    decoded.spans.append(_json_span(span_doc, f"{scope_where}.spans[{i}]", resource, scope))
                except SpanRejected as exc:
                    decoded.rejected.append(str(exc))
    return decoded


def _json_list(document: dict[str, Any], name: str, where: str) -> list[Any]:
    value = document.get(name)
    if value is None:
        value = document.get(_snake(name))
    if value is None:
        return []
    if not isinstance(value, list):
        raise UndecodableBody(f"{where} must be a list, got {_json_type(value)}")
    return value


def _json_span(doc: Any, where: str, resource: dict[str, Any], scope: str) -> Span:
    if not isinstance(doc, dict):
        raise SpanRejected(f"{where} must be an object, got {_json_type(doc)}")
    name = doc.get("name", "")
    if not isinstance(name, str):
        raise SpanRejected(f"{where}.name must be a string, got {_json_type(name)}")
    trace_id = _hex_id(_get(doc, "traceId"), 32, f"{where} ({name!r}).traceId", required=True)
    span_id = _hex_id(_get(doc, "spanId"), 16, f"{where} ({name!r}).spanId", required=True)
    parent = _hex_id(_get(doc, "parentSpanId"), 16, f"{where} ({name!r}).parentSpanId", required=False)
    status = doc.get("status") or {}
    if not isinstance(status, dict):
        raise SpanRejected(f"{where}.status must be an object, got {_json_type(status)}")
    code = status.get("code", 0)
    if isinstance(code, str):
        code = _STATUS_NAMES.get(code, code)
    if code not in (0, 1, 2):
        raise SpanRejected(f"{where}.status.code must be 0, 1 or 2 (or STATUS_CODE_*), got {code!r}")
    message = status.get("message", "")
    return Span(
        trace_id=trace_id or "",
        span_id=span_id or "",
        parent_span_id=parent,
        name=name,
        start_ns=_uint64(_get(doc, "startTimeUnixNano"), f"{where}.startTimeUnixNano"),
        end_ns=_uint64(_get(doc, "endTimeUnixNano"), f"{where}.endTimeUnixNano"),
        attributes=_json_attributes(doc.get("attributes"), f"{where}.attributes"),
        status_code=int(code),
        status_message=message if isinstance(message, str) else str(message),
        resource=resource,
        scope=scope,
    )


def _get(doc: dict[str, Any], name: str) -> Any:
    value = doc.get(name)
    return doc.get(_snake(name)) if value is None else value


def _snake(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in name)


def _hex_id(value: Any, length: int, where: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise SpanRejected(f"{where} is missing")
        return None
    if not isinstance(value, str):
        raise SpanRejected(f"{where} must be a hex string of {length} characters, got {_json_type(value)}")
    if len(value) != length:
        raise SpanRejected(f"{where} must be {length} hex characters, got {len(value)}: {value[:40]!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise SpanRejected(f"{where} is not hex: {value[:40]!r}") from None
    if not any(raw):
        if required:
            raise SpanRejected(f"{where} must not be all zero")
        return None
    return value.lower()


def _uint64(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpanRejected(f"{where} must be an integer (or a decimal string), got {_json_type(value)}")
    try:
        number = int(value)
    except ValueError:
        raise SpanRejected(f"{where} must be an integer (or a decimal string), got {value!r}") from None
    if not 0 <= number < 2**64:
        raise SpanRejected(f"{where} is out of the uint64 range: {number}")
    return number


def _json_attributes(attributes: Any, where: str) -> dict[str, Any]:
    if attributes is None:
        return {}
    if not isinstance(attributes, list):
        raise SpanRejected(f"{where} must be a list of {{key, value}} objects, got {_json_type(attributes)}")
    out: dict[str, Any] = {}
    for index, attribute in enumerate(attributes):
        if not isinstance(attribute, dict) or not isinstance(attribute.get("key"), str):
            raise SpanRejected(
                f"{where}[{index}] must be an object with a string key, got {_json_type(attribute)}"
            )
        key = attribute["key"]
        out[key] = _json_value(attribute.get("value"), f"{where}[{index}] ({key!r})")
    return out


def _json_value(value: Any, where: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpanRejected(f'{where}: a value must be an AnyValue object such as {{"stringValue": ...}}')
    if not value:
        return None
    if len(value) != 1:
        raise SpanRejected(f"{where}: an AnyValue holds exactly one of its fields, got {sorted(value)}")
    kind, content = next(iter(value.items()))
    if kind in ("stringValue", "string_value"):
        if not isinstance(content, str):
            raise SpanRejected(f"{where}: stringValue must be a string, got {_json_type(content)}")
        return content
    if kind in ("intValue", "int_value"):
        if isinstance(content, bool) or not isinstance(content, int | str):
            raise SpanRejected(f"{where}: intValue must be an integer or a decimal string, got {content!r}")
        try:
            return int(content)
        except ValueError:
            raise SpanRejected(
                f"{where}: intValue must be an integer or a decimal string, got {content!r}"
            ) from None
    if kind in ("doubleValue", "double_value"):
        if isinstance(content, bool) or not isinstance(content, int | float | str):
            raise SpanRejected(f"{where}: doubleValue must be a number, got {content!r}")
        try:
            return float(content)
        except ValueError:
            raise SpanRejected(f"{where}: doubleValue must be a number, got {content!r}") from None
    if kind in ("boolValue", "bool_value"):
        if not isinstance(content, bool):
            raise SpanRejected(f"{where}: boolValue must be true or false, got {content!r}")
        return content
    if kind in ("arrayValue", "array_value"):
        values = content.get("values", []) if isinstance(content, dict) else None
        if not isinstance(values, list):
            raise SpanRejected(f'{where}: arrayValue must be {{"values": [AnyValue, ...]}}')
        return [_json_value(item, f"{where}.arrayValue[{n}]") for n, item in enumerate(values)]
    if kind in ("kvlistValue", "kvlist_value"):
        values = content.get("values", []) if isinstance(content, dict) else None
        if not isinstance(values, list):
            raise SpanRejected(f'{where}: kvlistValue must be {{"values": [{{key, value}}, ...]}}')
        return _json_attributes(values, f"{where}.kvlistValue")
    if kind in ("bytesValue", "bytes_value"):
        if not isinstance(content, str):
            raise SpanRejected(f"{where}: bytesValue must be a base64 string")
        try:
            base64.b64decode(content, validate=True)
        except binascii.Error:
            raise SpanRejected(f"{where}: bytesValue is not base64") from None
        return content
    raise SpanRejected(f"{where}: unknown AnyValue field {kind!r}")


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


# ---------------------------------------------------------------------------------------------
# Answers


def export_response(media_type: str, rejected: int, message: str) -> bytes:
    """The body of a 200: ``ExportTraceServiceResponse``, with ``partial_success`` when spans were refused."""
    if media_type == PROTOBUF:
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
        return response.SerializeToString()
    if not rejected:
        return b"{}"
    return to_json({"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}})


# google.rpc.Code values for the HTTP statuses the intake answers with.
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 422: 3, 429: 8, 503: 14}


def status_body(media_type: str, http_status: int, message: str) -> bytes:
    """The body of an error answer: a ``google.rpc.Status`` in the request's encoding (OTLP spec)."""
    code = _RPC_CODES.get(http_status, 2)
    if media_type == PROTOBUF:
        # google.rpc.Status {int32 code = 1; string message = 2;}, encoded by hand: opentelemetry-proto
        # does not ship the googleapis protos.
        text = message.encode()
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return to_json({"code": code, "message": message})


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
