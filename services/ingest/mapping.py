"""Spans to Kaizen trace records: one record per trace, built from its generation.

A span is a generation when it says so, in any of the conventions in use:
``langfuse.observation.type = generation``, ``gen_ai.operation.name`` of a chat or completion,
``openinference.span.kind = LLM``; a span that says none of these is a generation when it names a
model. When a trace has several generations (an agent calling a model more than once), the one that
ended last, the answer the user saw, is the trace's record.

The record takes, from the generation first and from the other spans of its trace after:

- input and output from ``langfuse.observation.input/output``, ``gen_ai.input.messages`` /
  ``gen_ai.output.messages`` (+ ``gen_ai.system_instructions``), flattened ``gen_ai.prompt.N.*`` /
  ``gen_ai.completion.N.*``, ``llm.input_messages.N.*`` / ``llm.output_messages.N.*``, or
  OpenInference's ``input.value`` / ``output.value``;
- model, usage, user id, session id, tags, metadata, latency, status;
- retrieved contexts from the trace's retriever spans (Langfuse ``retriever`` observations,
  OpenInference ``RETRIEVER`` spans' ``retrieval.documents.N.document.content``) and ``kaizen.contexts``;
- consent from ``user_consent`` or ``kaizen.consent``, as attributes or metadata keys (no consent
  stated means no consent); the serving model version from ``kaizen.model_version``.

Attributes the mapping does not use are kept in ``metadata`` under their own names. A trace that has
retrieved contexts but no generation in this request becomes a contexts-only record, which the
worker joins to the generation when it comes.

Records come out as JSON-ready dicts with the fields of ``TraceRecord``: the intake serializes them
and validates the result with the very validator the worker uses (one call per request), which is
several times cheaper than building pydantic objects span by span. Each span's attributes are read
in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic_core import from_json, to_json

from services.ingest.otlp import STATUS_ERROR, Span

GENERATION_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "completion", "generation"})
MODEL_KEYS = (
    "langfuse.observation.model.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "llm.model_name",
    "model",
)
USER_KEYS = ("user.id", "langfuse.user.id", "enduser.id")
SESSION_KEYS = ("session.id", "langfuse.session.id", "gen_ai.conversation.id")
TAG_KEYS = ("langfuse.trace.tags", "tag.tags", "kaizen.tags")
CONSENT_KEYS = ("user_consent", "kaizen.consent")
MODEL_VERSION_KEY = "kaizen.model_version"
PROJECT_KEYS = ("kaizen.project_id",)
"""Resource or span attributes naming the project a client means to write (checked against its key)."""

_MAPPED = frozenset(
    {
        *MODEL_KEYS,
        *USER_KEYS,
        *SESSION_KEYS,
        *TAG_KEYS,
        *CONSENT_KEYS,
        MODEL_VERSION_KEY,
        *PROJECT_KEYS,
        "langfuse.observation.type",
        "langfuse.observation.input",
        "langfuse.observation.output",
        "langfuse.observation.usage_details",
        "langfuse.observation.level",
        "langfuse.observation.status_message",
        "langfuse.trace.metadata",
        "langfuse.observation.metadata",
        "langfuse.internal.is_app_root",
        "langfuse.internal.as_root",
        "gen_ai.operation.name",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens",
        "gen_ai.usage.total_tokens",
        "llm.token_count.prompt",
        "llm.token_count.completion",
        "llm.token_count.total",
        "openinference.span.kind",
        "input.value",
        "output.value",
        "input.mime_type",
        "output.mime_type",
        "metadata",
        "kaizen.contexts",
        "kaizen.reference",
        "kaizen.completion_token_ids",
        "kaizen.completion_logprobs",
    }
)
_MAPPED_PREFIXES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
    "langfuse.trace.metadata.",
    "langfuse.observation.metadata.",
    "retrieval.documents.",
)
_TRUE = frozenset({"true", "1", "yes", "y", "on", "granted", "given"})
_FALSE = frozenset({"false", "0", "no", "n", "off", "denied", "revoked", "withdrawn"})


Fields = dict[str, Any]
"""A trace record as a JSON-ready dict with ``TraceRecord``'s fields."""


@dataclass(slots=True)
class MappedTraces:
    """What a request's spans become."""

    records: list[Fields] = field(default_factory=list)
    contexts_only: list[Fields] = field(default_factory=list)
    generation_spans: int = 0
    retriever_spans: int = 0
    other_spans: int = 0


@dataclass(slots=True)
class _Scan:
    """One span's attributes, sorted in one pass: mapped keys, flattened families, metadata, the rest."""

    known: dict[str, Any]
    families: dict[str, dict[str, Any]]
    trace_metadata: dict[str, Any]
    observation_metadata: dict[str, Any]
    unknown: dict[str, Any]


_TRACE_METADATA = "langfuse.trace.metadata."
_OBSERVATION_METADATA = "langfuse.observation.metadata."
_FAMILIES = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
    "retrieval.documents.",
)


def _scan(attributes: dict[str, Any]) -> _Scan:
    known: dict[str, Any] = {}
    families: dict[str, dict[str, Any]] = {}
    trace_metadata: dict[str, Any] = {}
    observation_metadata: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in _MAPPED:
            known[key] = value
        elif not key.startswith(_MAPPED_PREFIXES):
            unknown[key] = value
        elif key.startswith(_TRACE_METADATA):
            trace_metadata[key[len(_TRACE_METADATA) :]] = _maybe_json(value)
        elif key.startswith(_OBSERVATION_METADATA):
            observation_metadata[key[len(_OBSERVATION_METADATA) :]] = _maybe_json(value)
        else:
            for family in _FAMILIES:
                if key.startswith(family):
                    families.setdefault(family, {})[key[len(family) :]] = value
                    break
    whole = known.get("langfuse.trace.metadata")
    if whole is not None:
        decoded = _maybe_json(whole)
        trace_metadata = {**decoded, **trace_metadata} if isinstance(decoded, dict) else trace_metadata
    whole = known.get("langfuse.observation.metadata")
    if whole is not None:
        decoded = _maybe_json(whole)
        if isinstance(decoded, dict):
            observation_metadata = {**decoded, **observation_metadata}
    observation_metadata.update(_json_dict(known.get("metadata")))
    return _Scan(known, families, trace_metadata, observation_metadata, unknown)


def is_generation(attributes: dict[str, Any]) -> bool:
    """Whether a span is an LLM generation, by the first convention it speaks."""
    observation_type = attributes.get("langfuse.observation.type")
    if observation_type is not None:
        return bool(observation_type == "generation")
    operation = attributes.get("gen_ai.operation.name")
    if operation is not None:
        return str(operation) in GENERATION_OPERATIONS
    kind = attributes.get("openinference.span.kind")
    if kind is not None:
        return str(kind).upper() == "LLM"
    return any(attributes.get(key) for key in MODEL_KEYS)


def is_retriever(attributes: dict[str, Any]) -> bool:
    if attributes.get("langfuse.observation.type") == "retriever":
        return True
    kind = attributes.get("openinference.span.kind")
    return (kind is not None and str(kind).upper() == "RETRIEVER") or attributes.get(
        "gen_ai.operation.name"
    ) == "retrieval"


def requested_projects(spans: Iterable[Span]) -> set[str]:
    """Projects that spans (or their resources) name explicitly, to be checked against the caller's key."""
    named: set[str] = set()
    for span in spans:
        for attributes in (span.resource, span.attributes):
            for key in PROJECT_KEYS:
                value = attributes.get(key)
                if value:
                    named.add(str(value))
    return named


def map_spans(spans: Sequence[Span], project_id: str) -> MappedTraces:
    """The trace records (and contexts-only records) of a request's spans, for one project."""
    by_trace: dict[str, list[tuple[Span, _Scan]]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append((span, _scan(span.attributes)))
    mapped = MappedTraces()
    for trace_id, trace_spans in by_trace.items():
        generations: list[tuple[Span, _Scan]] = []
        retrievers: list[tuple[Span, _Scan]] = []
        for span, scan in trace_spans:
            if is_generation(scan.known):
                generations.append((span, scan))
            elif is_retriever(scan.known):
                retrievers.append((span, scan))
            else:
                mapped.other_spans += 1
        mapped.generation_spans += len(generations)
        mapped.retriever_spans += len(retrievers)
        contexts = _contexts(trace_spans, retrievers)
        if generations:
            generation = max(generations, key=lambda pair: (pair[0].end_ns, pair[0].start_ns))
            mapped.records.append(
                _record(trace_id, project_id, generation, trace_spans, contexts, len(generations))
            )
        elif contexts:
            mapped.contexts_only.append(
                {"trace_id": trace_id, "project_id": project_id, "contexts": contexts, "contexts_only": True}
            )
    return mapped


def _record(
    trace_id: str,
    project_id: str,
    generation: tuple[Span, _Scan],
    trace_spans: list[tuple[Span, _Scan]],
    contexts: list[str],
    generation_count: int,
) -> Fields:
    span, scan = generation
    known = scan.known
    # Trace-level facts: any span of the trace may carry them; the generation's own come last and win.
    trace_level: dict[str, list[Any]] = {}
    trace_metadata: dict[str, Any] = {}
    for other, other_scan in trace_spans:
        if other is not span:
            _trace_level(other_scan, trace_level, trace_metadata)
    _trace_level(scan, trace_level, trace_metadata)
    metadata_view = {**trace_metadata, **scan.observation_metadata}

    messages, response = _conversation(known, scan.families)
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if not prompt and messages:
        prompt = messages[-1]["content"]

    metadata: dict[str, Any] = {**scan.unknown, **metadata_view}
    if span.resource:
        metadata["resource"] = span.resource
    if span.scope:
        metadata["otel.scope"] = span.scope
    if generation_count > 1:
        metadata["kaizen.generations_in_trace"] = generation_count

    status_error = span.status_code == STATUS_ERROR or known.get("langfuse.observation.level") == "ERROR"
    error = span.status_message or known.get("langfuse.observation.status_message") or None
    start_ns, end_ns = span.start_ns, span.end_ns
    started_at = datetime.fromtimestamp(start_ns / 1e9, UTC) if start_ns else datetime.now(UTC)
    return {
        "trace_id": trace_id,
        "span_id": span.span_id,
        "project_id": project_id,
        "name": span.name or None,
        "model": str(_first(known, MODEL_KEYS) or "unknown"),
        "model_version": _text_or_none(
            _last(trace_level, MODEL_VERSION_KEY) or metadata_view.get(MODEL_VERSION_KEY)
        ),
        "input_messages": messages,
        "prompt": prompt,
        "response": response,
        "contexts": contexts,
        "reference": _text_or_none(known.get("kaizen.reference")),
        "user_id": _text_or_none(_last_of(trace_level, USER_KEYS)),
        "session_id": _text_or_none(_last_of(trace_level, SESSION_KEYS)),
        "tags": _tags(trace_level),
        "metadata": metadata,
        "usage": _usage(known),
        "latency_ms": (end_ns - start_ns) / 1e6 if start_ns and end_ns >= start_ns else None,
        "status": "error" if status_error else "ok",
        "error": str(error) if status_error and error else None,
        "consent": _consent(trace_level, metadata_view),
        "started_at": started_at.isoformat(),
        "completion_token_ids": _int_list(known.get("kaizen.completion_token_ids")),
        "completion_logprobs": _float_list(known.get("kaizen.completion_logprobs")),
    }


_TRACE_LEVEL_KEYS = (*USER_KEYS, *SESSION_KEYS, *TAG_KEYS, *CONSENT_KEYS, MODEL_VERSION_KEY)


def _trace_level(scan: _Scan, trace_level: dict[str, list[Any]], trace_metadata: dict[str, Any]) -> None:
    known = scan.known
    for key in _TRACE_LEVEL_KEYS:
        value = known.get(key)
        if value is not None and value != "":
            trace_level.setdefault(key, []).append(value)
    if scan.trace_metadata:
        trace_metadata.update(scan.trace_metadata)


# ---------------------------------------------------------------------------------------------
# Input and output


def _conversation(known: dict[str, Any], families: dict[str, dict[str, Any]]) -> tuple[list[Message], str]:
    """The prompt as chat messages and the response text, from the first convention present."""
    messages: list[Message] = []
    response = ""
    if "langfuse.observation.input" in known or "langfuse.observation.output" in known:
        messages = _messages(_maybe_json(known.get("langfuse.observation.input")))
        response = _output_text(_maybe_json(known.get("langfuse.observation.output")))
    elif "gen_ai.input.messages" in known or "gen_ai.output.messages" in known:
        system = _maybe_json(known.get("gen_ai.system_instructions"))
        if system:
            messages.append(_chat("system", _content_text(system)))
        messages += _messages(_maybe_json(known.get("gen_ai.input.messages")))
        response = _output_text(_maybe_json(known.get("gen_ai.output.messages")))
    elif "gen_ai.prompt." in families or "gen_ai.completion." in families:
        messages = _flattened(families.get("gen_ai.prompt.", {}), "role", "content")
        completions = _flattened(families.get("gen_ai.completion.", {}), "role", "content")
        response = "\n".join(m["content"] for m in completions)
    elif "llm.input_messages." in families or "llm.output_messages." in families:
        messages = _flattened(families.get("llm.input_messages.", {}), "message.role", "message.content")
        outputs = _flattened(families.get("llm.output_messages.", {}), "message.role", "message.content")
        response = "\n".join(m["content"] for m in outputs)
    if not messages and "input.value" in known:
        messages = _messages(_maybe_json(known.get("input.value")))
    if not response and "output.value" in known:
        response = _output_text(_maybe_json(known.get("output.value")))
    return messages, response


Message = dict[str, str]


def _chat(role: Any, content: str) -> Message:
    return {"role": str(role), "content": content}


def _messages(value: Any) -> list[Message]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [_chat("user", value)]
    if isinstance(value, dict):
        for key in ("messages", "input", "prompt", "query", "question"):
            if key in value:
                return _messages(value[key])
        if "content" in value or "parts" in value:
            return [_message(value)]
        return [_chat("user", _dumps(value))]
    if isinstance(value, list):
        if all(isinstance(item, str) for item in value):
            return [_chat("user", item) for item in value]
        return [_message(item) for item in value]
    return [_chat("user", _dumps(value))]


def _message(item: Any) -> Message:
    if isinstance(item, dict):
        role = item.get("role") or item.get("type") or "user"
        content = item.get("content")
        if content is None and "parts" in item:
            content = item["parts"]
        if content is None and "text" in item:
            content = item["text"]
        return _chat(role, _content_text(content))
    return _chat("user", _content_text(item))


def _content_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                kind = part.get("type", "text")
                if kind == "text" or "text" in part:
                    text = part.get("text", part.get("content"))
                    if isinstance(text, str):
                        texts.append(text)
                elif "content" in part and isinstance(part["content"], str):
                    texts.append(part["content"])
        return "\n".join(texts)
    if isinstance(content, dict):
        for key in ("text", "content", "value"):
            if isinstance(content.get(key), str):
                return str(content[key])
    return _dumps(content)


def _output_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "choices" in value and isinstance(value["choices"], list) and value["choices"]:
            return _output_text(value["choices"][0])
        if "message" in value:
            return _output_text(value["message"])
        for key in ("content", "parts", "text", "output", "response", "completion"):
            if key in value:
                return _content_text(value[key])
        return _dumps(value)
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            assistant = [item for item in value if item.get("role") in (None, "assistant", "model")]
            return "\n".join(_output_text(item) for item in (assistant or value))
        return "\n".join(_content_text(item) for item in value)
    return _dumps(value)


def _flattened(family: dict[str, Any], role_key: str, content_key: str) -> list[Message]:
    """Messages from a flattened family: ``<n>.<role_key>`` / ``<n>.<content_key>`` (prefix removed)."""
    by_index: dict[int, dict[str, Any]] = {}
    parts_prefix = content_key.rsplit(".", 1)[0] + ".contents."
    for key, value in family.items():
        position, _, rest = key.partition(".")
        if not position.isdigit():
            continue
        slot = by_index.setdefault(int(position), {})
        if rest == role_key:
            slot["role"] = value
        elif rest == content_key:
            slot["content"] = value
        elif rest.startswith(parts_prefix) and rest.endswith(".text"):
            slot.setdefault("parts", []).append(value)
    messages = []
    for index in sorted(by_index):
        slot = by_index[index]
        content = slot.get("content")
        if content is None and "parts" in slot:
            content = "\n".join(str(part) for part in slot["parts"])
        messages.append(_chat(slot.get("role", "user"), _content_text(content)))
    return messages


# ---------------------------------------------------------------------------------------------
# Contexts


def _contexts(trace_spans: list[tuple[Span, _Scan]], retrievers: list[tuple[Span, _Scan]]) -> list[str]:
    contexts: list[str] = []
    for _, scan in sorted(retrievers, key=lambda pair: pair[0].start_ns):
        documents = _flattened_documents(scan.families.get("retrieval.documents.", {}))
        if documents:
            contexts += documents
        elif "langfuse.observation.output" in scan.known:
            contexts += _documents(_maybe_json(scan.known["langfuse.observation.output"]))
        elif "output.value" in scan.known:
            contexts += _documents(_maybe_json(scan.known["output.value"]))
    for _, scan in trace_spans:
        value = scan.known.get("kaizen.contexts")
        if value is not None:
            contexts += _documents(_maybe_json(value))
    if not contexts:
        return contexts
    return list(dict.fromkeys(context for context in contexts if context))


def _flattened_documents(family: dict[str, Any]) -> list[str]:
    found: dict[int, str] = {}
    for key, value in family.items():
        index, _, rest = key.partition(".")
        if rest == "document.content" and index.isdigit():
            found[int(index)] = str(value)
    return [found[index] for index in sorted(found)]


def _documents(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in ("documents", "contexts", "results", "docs"):
            if key in value:
                return _documents(value[key])
        for key in ("page_content", "content", "text", "document"):
            if key in value:
                return _documents(value[key])
        return [_dumps(value)]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out += _documents(item)
        return out
    return [str(value)]


# ---------------------------------------------------------------------------------------------
# Small values


_PROMPT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt")
_COMPLETION_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
_TOTAL_TOKENS = ("gen_ai.usage.total_tokens", "llm.token_count.total")
_DETAIL_PROMPT = ("input", "prompt_tokens", "promptTokens")
_DETAIL_COMPLETION = ("output", "completion_tokens", "completionTokens")
_DETAIL_TOTAL = ("total", "total_tokens", "totalTokens")


def _usage(attributes: dict[str, Any]) -> dict[str, int | None]:
    details = _json_dict(attributes.get("langfuse.observation.usage_details"))
    prompt = _either(_count(attributes, _PROMPT_TOKENS), details, _DETAIL_PROMPT)
    completion = _either(_count(attributes, _COMPLETION_TOKENS), details, _DETAIL_COMPLETION)
    total = _either(_count(attributes, _TOTAL_TOKENS), details, _DETAIL_TOTAL)
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _either(found: int | None, details: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    return found if found is not None else _count(details, keys)


def _count(attributes: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    """The first of ``keys`` that holds a count (an integer from 0 up to Iceberg's long)."""
    if not attributes:
        return None
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            number = _as_int(value)
            if number is not None and number >= 0:
                return number
    return None


INT64_MAX = 2**63 - 1


def _as_int(value: Any) -> int | None:
    """An integer that fits Iceberg's long, from an int, an integral float or a decimal string."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if isinstance(value, float) and number != value:
        return None
    return number if -INT64_MAX - 1 <= number <= INT64_MAX else None


def _consent(trace_level: dict[str, list[Any]], metadata: dict[str, Any]) -> bool:
    """True only when consent is stated and never refused, anywhere in the trace."""
    stated: list[Any] = []
    for key in CONSENT_KEYS:
        stated += trace_level.get(key, [])
        if key in metadata:
            stated.append(metadata[key])
    verdicts = [_as_bool(value) for value in stated]
    return bool(verdicts) and all(verdict is True for verdict in verdicts)


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().strip('"').lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def _tags(trace_level: dict[str, list[Any]]) -> list[str]:
    tags: list[str] = []
    for key in TAG_KEYS:
        for value in trace_level.get(key, []):
            decoded = _maybe_json(value)
            items = decoded if isinstance(decoded, list) else [decoded]
            for item in items:
                text = str(item)
                if text and text not in tags:
                    tags.append(text)
    return tags


def _first(attributes: dict[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _last(trace_level: dict[str, list[Any]], key: str) -> Any:
    values = trace_level.get(key)
    return values[-1] if values else None


def _last_of(trace_level: dict[str, list[Any]], keys: Sequence[str]) -> Any:
    found = None
    for key in keys:
        value = _last(trace_level, key)
        if value is not None and found is None:
            found = value
    return found


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = _maybe_json(value) if isinstance(value, str) else value
    return str(text) if text is not None and text != "" else None


def _int_list(value: Any) -> list[int] | None:
    """A list of token ids, or None when any item is not an integer of Iceberg's long."""
    value = _maybe_json(value)
    if not isinstance(value, list):
        return None
    numbers = [_as_int(item) for item in value]
    return None if any(number is None for number in numbers) else numbers  # type: ignore[return-value]


def _float_list(value: Any) -> list[float] | None:
    """A list of log-probs, or None when any item is not a finite number."""
    value = _maybe_json(value)
    if not isinstance(value, list):
        return None
    try:
        numbers = [float(item) for item in value if not isinstance(item, bool)]
    except (TypeError, ValueError):
        return None
    if len(numbers) != len(value) or not all(math.isfinite(number) for number in numbers):
        return None
    return numbers


def _json_dict(value: Any) -> dict[str, Any]:
    decoded = _maybe_json(value)
    return decoded if isinstance(decoded, dict) else {}


def _maybe_json(value: Any) -> Any:
    """A string that holds JSON (an object, a list or a JSON-encoded string) decoded; anything else as is."""
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        try:
            return from_json(value)
        except ValueError:
            return value
    return value


def _dumps(value: Any) -> str:
    return to_json(value, fallback=str).decode()
