"""The OpenAI-compatible serving gateway, on Ray Serve.

``POST /v1/chat/completions`` (streaming and not) and ``GET /v1/models``, as the official ``openai``
client expects them. One base model is in memory; registered versions are LoRA adapters on it, loaded
by MLflow version through Ray Serve's model multiplexing (least recently used ones are unloaded).

Each request is served by the champion or the canary, by the routing table the controller keeps in
Redis (re-read every ``gateway.routing_refresh_s``): a caller is pinned by the hash of its session id
(``X-Kaizen-Session`` or ``metadata.session_id``), else its user (``X-Kaizen-User``, the ``user`` field,
or ``metadata.user_id``); a request with neither is assigned at random. In shadow mode users only see
the champion and the canary answers a mirrored copy in the background. On Kubernetes
(``KAIZEN_SERVE_ALIAS``) each gateway serves one alias and the HTTPRoute splits the traffic.

Every response names the version that produced it: the ``model`` field is ``<name>:<version>``, the
``system_fingerprint`` is ``kaizen-<version>`` and the ``X-Kaizen-Model-Version`` header carries it
(``base`` for the base model). ``X-Kaizen-Trace-Id`` is the trace id to send feedback for.

Every completion's trace goes to the ingest service over OTLP/HTTP (the OpenTelemetry SDK's exporter):
GenAI attributes, ``kaizen.model_version``, token counts, latency (the span's duration), the consent
the caller gave (``X-Kaizen-Consent: true`` or ``metadata.consent``; none given is no consent), and
the completion's token ids and log-probs. Failed generations are traced with status error.

``python -m services.rollout.gateway`` serves it on ``gateway.host:gateway.port``.
"""

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.rollout.engine import ChatEngine, Completion, EngineError, Sampling, StopFilter
from services.rollout.routing import BASE_VERSION, Routing, assign_arm, mirrored, read_routing
from services.rollout.settings import RolloutSettings
from shared.state import RedisState
from shared.telemetry import HttpMetrics

log = logging.getLogger("kaizen.rollout.gateway")
VERSION_HEADER = "X-Kaizen-Model-Version"
TRACE_HEADER = "X-Kaizen-Trace-Id"
TRUE = {"1", "true", "yes", "on"}


# ---------------------------------------------------------------------------------------------
# The request, as the OpenAI API defines it (fields we do not use are accepted and ignored).


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        if any(part.type != "text" for part in self.content):
            kinds = sorted({part.type for part in self.content if part.type != "text"})
            raise ValueError(f"message content parts of type {kinds} are not supported: text only")
        return "".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="One choice per request.")
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _text_only(cls, messages: list[Message]) -> list[Message]:
        for message in messages:
            message.text()
        return messages


class CallerContext(BaseModel):
    """Who is asking, from headers and body: the sticky key and the consent for the trace."""

    user_id: str | None = None
    session_id: str | None = None
    consent: bool = False
    contexts: list[str] = []
    """Retrieved contexts the app passed in ``metadata.kaizen_contexts`` (a list, or a JSON-encoded one:
    the openai client types metadata values as strings); the labeler scores faithfulness against them."""
    reference: str | None = None
    """A reference answer from ``metadata.kaizen_reference``, when the app has one."""

    @property
    def sticky_key(self) -> str:
        if self.session_id:
            return f"session:{self.session_id}"
        if self.user_id:
            return f"user:{self.user_id}"
        return f"anonymous:{uuid.uuid4().hex}"

    @classmethod
    def of(cls, request: ChatRequest, headers: Any) -> "CallerContext":
        metadata = request.metadata or {}
        consent = headers.get("x-kaizen-consent")
        if consent is None:
            consent = metadata.get("consent", metadata.get("kaizen_consent"))
        return cls(
            user_id=headers.get("x-kaizen-user") or request.user or _text(metadata.get("user_id")),
            session_id=headers.get("x-kaizen-session") or _text(metadata.get("session_id")),
            consent=str(consent).strip().lower() in TRUE if consent is not None else False,
            contexts=_contexts(metadata.get("kaizen_contexts")),
            reference=_text(metadata.get("kaizen_reference")),
        )


def _contexts(value: Any) -> list[str]:
    """``metadata.kaizen_contexts`` as a list of strings; anything else is a clear 400."""
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"metadata.kaizen_contexts is not a JSON list of strings: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("metadata.kaizen_contexts must be a list of strings")
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def openai_error(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status
    )


# ---------------------------------------------------------------------------------------------
# Traces to ingest


class CompletionTracer:
    """One OTLP span per completion, exported in batches to ``<ingest_url>/v1/traces``."""

    def __init__(self, settings: RolloutSettings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        options = settings.gateway
        credentials = f"{options.ingest_public_key}:{options.ingest_secret_key.get_secret_value()}"
        exporter = OTLPSpanExporter(
            endpoint=f"{(options.ingest_url or '').rstrip('/')}/v1/traces",
            headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()},
            timeout=10,
        )
        self.provider = TracerProvider(
            resource=Resource.create(
                {"service.name": "kaizen-gateway", "kaizen.project_id": settings.project_id}
            )
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=options.trace_export_interval_ms)
        )
        self.tracer = self.provider.get_tracer("kaizen.rollout.gateway")
        self.project_id = settings.project_id

    def begin(self, served_model: str, started_ns: int) -> Any:
        """Open the completion's span now, so its trace id can go out in the response headers."""
        return self.tracer.start_span(f"chat {served_model}", start_time=started_ns)

    def record(
        self,
        span: Any,
        *,
        served_model: str,
        version: str,
        messages: list[dict[str, str]],
        caller: CallerContext,
        ended_ns: int,
        completion: Completion | None,
        error: str | None = None,
        shadow: bool = False,
    ) -> None:
        """Finish the completion's span with everything the trace carries; the processor exports it."""
        from opentelemetry.trace import Status, StatusCode

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": served_model,
            "gen_ai.response.model": f"{served_model}:{version}",
            "gen_ai.input.messages": json.dumps(
                [{"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]} for m in messages]
            ),
            "kaizen.model_version": version,
            "kaizen.consent": caller.consent,
            "kaizen.project_id": self.project_id,
        }
        if caller.user_id:
            attributes["user.id"] = caller.user_id
        if caller.session_id:
            attributes["session.id"] = caller.session_id
        if caller.contexts:
            attributes["kaizen.contexts"] = caller.contexts
        if caller.reference:
            attributes["kaizen.reference"] = caller.reference
        if shadow:
            attributes["kaizen.tags"] = ["shadow"]
        if completion is not None:
            attributes |= {
                "gen_ai.output.messages": json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": completion.text}]}]
                ),
                "gen_ai.response.finish_reasons": [completion.finish_reason],
                "gen_ai.usage.input_tokens": completion.prompt_tokens,
                "gen_ai.usage.output_tokens": completion.completion_tokens,
                "gen_ai.usage.total_tokens": completion.prompt_tokens + completion.completion_tokens,
                "kaizen.completion_token_ids": completion.completion_token_ids,
                "kaizen.completion_logprobs": completion.completion_logprobs,
            }
        span.set_attributes(attributes)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=ended_ns)

    def shutdown(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()


# ---------------------------------------------------------------------------------------------
# The gateway itself (no Ray here: the deployment below wraps it)


class Gateway:
    """Routing, generation and tracing of chat completions."""

    def __init__(self, settings: RolloutSettings, engine: ChatEngine) -> None:
        import mlflow

        # Adapters are resolved as models:/<name>/<version> against the deployment's tracking server.
        mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        self.settings = settings
        self.options = settings.gateway
        self.engine = engine
        self.served_model = self.options.served_model_name or settings.mlflow.registered_model
        self.state = RedisState(settings)
        self.routing = Routing(registered_model=settings.mlflow.registered_model)
        self.routing_read_at = 0.0
        self.tracer = CompletionTracer(settings) if self.options.ingest_url else None
        self.background: set[asyncio.Task[None]] = set()
        self.warmed: set[str] = set()

    async def current_routing(self) -> Routing:
        now = time.monotonic()
        if now - self.routing_read_at >= self.options.routing_refresh_s:
            self.routing = await read_routing(self.state)
            self.routing_read_at = now
            self._warm(self.routing)
        return self.routing

    def _warm(self, routing: Routing) -> None:
        """Load the adapters of the versions the routing names, in the background, as soon as it names
        them: a canary's first users would otherwise wait for its adapter to download and load, and at
        a 5% stage those few answers are all the canary's latency there is to compare."""
        for version in (routing.champion_version, routing.canary_version):
            if version is None or version == BASE_VERSION or version in self.warmed:
                continue
            self.warmed.add(version)

            async def load(version: str = version) -> None:
                try:
                    await self.load(version)
                except Exception as exc:  # the first request loads it again, and says why it cannot
                    self.warmed.discard(version)
                    log.warning("could not load a routed version ahead of its requests: %r", exc)

            task = asyncio.create_task(load())
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def pick(self, caller: CallerContext) -> tuple[str, bool]:
        """The version that answers this caller, and whether a copy is mirrored to the canary."""
        routing = await self.current_routing()
        alias = self.settings.serve_alias
        if alias == "champion":
            return routing.champion_version, False
        if alias == "challenger":
            return routing.canary_version or routing.champion_version, False
        key = caller.sticky_key
        arm = assign_arm(routing, key)
        version = (
            routing.canary_version if arm == "canary" and routing.canary_version else routing.champion_version
        )
        return version, mirrored(routing, key)

    def model_uri(self, version: str) -> str:
        name = self.routing.registered_model or self.settings.mlflow.registered_model
        return f"models:/{name}/{version}"

    async def load(self, version: str) -> None:
        """Make sure ``version``'s adapter is loaded (the Ray deployment multiplexes this)."""
        if version != BASE_VERSION:
            await asyncio.to_thread(self.engine.load_adapter, version, self.model_uri(version))

    def sampling(self, request: ChatRequest) -> Sampling:
        limit = self.options.max_new_tokens
        wanted = request.max_completion_tokens or request.max_tokens or limit
        if wanted > limit:
            raise EngineError(f"max_tokens {wanted} is above this gateway's limit of {limit}")
        stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
        return Sampling(wanted, request.temperature, request.top_p, request.seed, stop)

    def _begin(self, started_ns: int) -> tuple[Any, str]:
        """The completion's span (None when tracing is off) and its trace id."""
        if self.tracer is None:
            return None, uuid.uuid4().hex
        span = self.tracer.begin(self.served_model, started_ns)
        return span, format(span.get_span_context().trace_id, "032x")

    def _trace(self, span: Any, **fields: Any) -> None:
        completion: Completion | None = fields.get("completion")
        version = str(fields.get("version"))
        outcome = "shadow" if fields.get("shadow") else ("error" if completion is None else "ok")
        METRICS.completions.labels(version, outcome).inc()
        if completion is not None:
            METRICS.tokens.labels(version, "prompt").inc(completion.prompt_tokens)
            METRICS.tokens.labels(version, "completion").inc(completion.completion_tokens)
        if self.tracer is not None and span is not None:
            self.tracer.record(span, served_model=self.served_model, **fields)

    def _mirror(
        self, version: str, messages: list[dict[str, str]], sampling: Sampling, caller: CallerContext
    ) -> None:
        async def run() -> None:
            span, _ = self._begin(time.time_ns())
            try:
                await self.load(version)
                completion = await asyncio.wrap_future(self.engine.submit(messages, version, sampling))
                self._trace(
                    span,
                    version=version,
                    messages=messages,
                    caller=caller,
                    ended_ns=completion.ended_ns,
                    completion=completion,
                    shadow=True,
                )
            except Exception as exc:
                self._trace(
                    span,
                    version=version,
                    messages=messages,
                    caller=caller,
                    ended_ns=time.time_ns(),
                    completion=None,
                    error=repr(exc),
                    shadow=True,
                )

        task = asyncio.create_task(run())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def _response_model(self, version: str) -> str:
        return f"{self.served_model}:{version}"

    async def complete(
        self, request: ChatRequest, caller: CallerContext, version: str, mirror: bool
    ) -> tuple[dict[str, Any], str]:
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        sampling = self.sampling(request)
        started = time.time_ns()
        span, trace_id = self._begin(started)
        try:
            await self.load(version)
            completion = await asyncio.wrap_future(self.engine.submit(messages, version, sampling))
        except Exception as exc:
            self._trace(
                span,
                version=version,
                messages=messages,
                caller=caller,
                ended_ns=time.time_ns(),
                completion=None,
                error=repr(exc),
            )
            raise
        self._trace(
            span,
            version=version,
            messages=messages,
            caller=caller,
            ended_ns=completion.ended_ns,
            completion=completion,
        )
        if mirror:
            routing = self.routing
            if routing.canary_version is not None:
                self._mirror(routing.canary_version, messages, sampling, caller)
        body = {
            "id": f"chatcmpl-{trace_id}",
            "object": "chat.completion",
            "created": started // 1_000_000_000,
            "model": self._response_model(version),
            "system_fingerprint": f"kaizen-{version}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "finish_reason": completion.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            },
        }
        return body, trace_id

    async def stream(
        self, request: ChatRequest, caller: CallerContext, version: str, mirror: bool
    ) -> tuple[AsyncIterator[bytes], str]:
        """Server-sent events of ``chat.completion.chunk``; the trace is emitted when the stream ends.

        The trace id is drawn up front so the response headers can carry it.
        """
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        sampling = self.sampling(request)
        await self.load(version)
        started = time.time_ns()
        span, trace_id = self._begin(started)
        completion_id = f"chatcmpl-{trace_id}"
        pieces, future = self.engine.stream(messages, version, sampling)
        model = self._response_model(version)

        def chunk(
            delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None
        ) -> bytes:
            document: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": started // 1_000_000_000,
                "model": model,
                "system_fingerprint": f"kaizen-{version}",
                "choices": []
                if usage is not None
                else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                document["usage"] = usage
            return f"data: {json.dumps(document)}\n\n".encode()

        async def events() -> AsyncIterator[bytes]:
            sentinel = object()
            iterator = iter(pieces)
            stops = StopFilter(sampling.stop)
            yield chunk({"role": "assistant", "content": ""})
            try:
                while True:
                    piece = await asyncio.to_thread(next, iterator, sentinel)
                    if piece is sentinel:
                        break
                    text = stops.feed(str(piece))
                    if text:
                        yield chunk({"content": text})
                tail = stops.flush()
                if tail:
                    yield chunk({"content": tail})
                completion: Completion = await asyncio.wrap_future(future)
            except Exception as exc:
                self._trace(
                    span,
                    version=version,
                    messages=messages,
                    caller=caller,
                    ended_ns=time.time_ns(),
                    completion=None,
                    error=repr(exc),
                )
                error = {"error": {"message": str(exc), "type": "server_error", "param": None, "code": None}}
                yield f"data: {json.dumps(error)}\n\n".encode()
                return
            self._trace(
                span,
                version=version,
                messages=messages,
                caller=caller,
                ended_ns=completion.ended_ns,
                completion=completion,
            )
            yield chunk({}, completion.finish_reason)
            if request.stream_options is not None and request.stream_options.include_usage:
                total = completion.prompt_tokens + completion.completion_tokens
                yield chunk(
                    {},
                    usage={
                        "prompt_tokens": completion.prompt_tokens,
                        "completion_tokens": completion.completion_tokens,
                        "total_tokens": total,
                    },
                )
            yield b"data: [DONE]\n\n"
            if mirror and self.routing.canary_version is not None:
                self._mirror(self.routing.canary_version, messages, sampling, caller)

        return events(), trace_id

    async def models(self) -> dict[str, Any]:
        routing = await self.current_routing()
        created = int(time.time())
        versions = [routing.champion_version] + ([routing.canary_version] if routing.canary_version else [])
        data = [{"id": self.served_model, "object": "model", "created": created, "owned_by": "kaizen"}]
        data += [
            {"id": self._response_model(v), "object": "model", "created": created, "owned_by": "kaizen"}
            for v in versions
        ]
        return {"object": "list", "data": data}

    async def close(self) -> None:
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)
        await self.state.close()


# ---------------------------------------------------------------------------------------------
# HTTP: thin routes over the gateway, served by Ray Serve


api = FastAPI(title="Kaizen gateway", description="OpenAI-compatible chat completions, canaried.")
CHAT_ROUTE = "/v1/chat/completions"


class GatewayMetrics:
    """What the gateway serves, by version (the request counts come from ``RequestMetrics``)."""

    def __init__(self) -> None:
        self.completions = Counter(
            "kaizen_gateway_completions",
            "Completions by served version and outcome (ok, error, shadow: a mirrored canary copy)",
            ["version", "outcome"],
        )
        self.tokens = Counter(
            "kaizen_gateway_tokens", "Prompt and completion tokens by served version", ["version", "kind"]
        )


METRICS = GatewayMetrics()


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    HttpMetrics.of().requests.labels("gateway", request.url.path, "400").inc()
    problems = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'] if part != 'body')}: {item['msg']}"
        for item in error.errors()
    )
    return openai_error(400, f"invalid request: {problems}")


def _deployment(max_adapters: int) -> Any:
    from ray import serve

    @serve.deployment(name="kaizen-gateway")
    @serve.ingress(api)
    class GatewayDeployment:
        def __init__(self, settings_json: str) -> None:
            settings = RolloutSettings.model_validate_json(settings_json)
            options = settings.gateway
            engine = ChatEngine(
                options.base_model,
                max_batch_size=options.max_batch_size,
                batch_wait_ms=options.batch_wait_ms,
                precision=options.precision,
            )
            self.gateway = Gateway(settings, engine)
            self.gateway.load = self.load_adapter  # type: ignore[method-assign]
            lower_priority(options.niceness)

        @serve.multiplexed(max_num_models_per_replica=max_adapters)  # type: ignore[untyped-decorator]
        async def load_version(self, version: str) -> "_LoadedAdapter":
            await Gateway.load(self.gateway, version)
            return _LoadedAdapter(self.gateway.engine, version)

        async def load_adapter(self, version: str) -> None:
            await self.load_version(version)

        @api.get("/healthz")
        async def healthz(self) -> dict[str, str]:
            return {"status": "ok"}

        @api.get("/readyz")
        async def readyz(self) -> dict[str, str]:
            await self.gateway.current_routing()
            return {"status": "ready"}

        @api.get("/metrics")
        async def metrics(self) -> Response:
            # The process's registry, looked up here: a module global named in this class would reach the
            # replica as a pickled copy of the driver's.
            import prometheus_client

            return Response(generate_latest(prometheus_client.REGISTRY), media_type=CONTENT_TYPE_LATEST)

        @api.get("/v1/models")
        async def models(self) -> dict[str, Any]:
            return await self.gateway.models()

        @api.post(CHAT_ROUTE, response_model=None)
        async def chat(self, body: ChatRequest, request: Request) -> Response:
            # Counted here: Serve's ingress does not run the app's own ASGI middleware.
            started = time.perf_counter()
            response = await self.answer(body, request)
            http = HttpMetrics.of()
            http.requests.labels("gateway", CHAT_ROUTE, str(response.status_code)).inc()
            http.seconds.labels("gateway", CHAT_ROUTE).observe(time.perf_counter() - started)
            return response

        async def answer(self, body: ChatRequest, request: Request) -> Response:
            try:
                caller = CallerContext.of(body, request.headers)
            except ValueError as exc:
                return openai_error(400, str(exc), param="metadata")
            version, mirror = await self.gateway.pick(caller)
            try:
                if body.stream:
                    events, trace_id = await self.gateway.stream(body, caller, version, mirror)
                    return StreamingResponse(
                        events,
                        media_type="text/event-stream",
                        headers={VERSION_HEADER: version, TRACE_HEADER: trace_id},
                    )
                document, trace_id = await self.gateway.complete(body, caller, version, mirror)
            except EngineError as exc:
                return openai_error(400 if "max_tokens" in str(exc) else 503, str(exc))
            return JSONResponse(document, headers={VERSION_HEADER: version, TRACE_HEADER: trace_id})

    return GatewayDeployment


class _LoadedAdapter:
    """What the multiplexer caches per version; unloading it removes the adapter from the base model."""

    def __init__(self, engine: ChatEngine, version: str) -> None:
        self.engine = engine
        self.version = version

    def __del__(self) -> None:
        if self.version != BASE_VERSION:
            self.engine.unload_adapter(self.version)


def application(settings: RolloutSettings) -> Any:
    """The Ray Serve application of the gateway for these settings."""
    deployment = _deployment(settings.gateway.max_adapters).options(
        num_replicas=settings.gateway.replicas,
        max_ongoing_requests=settings.gateway.max_ongoing_requests,
        ray_actor_options={"num_cpus": settings.gateway.num_cpus},
    )
    return deployment.bind(settings_payload(settings))


def settings_payload(settings: RolloutSettings) -> str:
    """The settings as JSON for the replicas, secrets included (pydantic masks them in a plain dump)."""
    document = settings.model_dump(mode="json")
    document["gateway"]["ingest_secret_key"] = settings.gateway.ingest_secret_key.get_secret_value()
    if settings.s3.secret_access_key is not None:
        document["s3"]["secret_access_key"] = settings.s3.secret_access_key.get_secret_value()
    return json.dumps(document)


def lower_priority(niceness: int) -> None:
    """Raise the nice value of every thread of this process to at least ``niceness``.

    Linux keeps a nice value per thread (a thread started later inherits its creator's), so setting the
    process's alone would leave threads already running, such as Ray's and the event loop's, where they were.
    """
    tasks = Path("/proc/self/task")
    threads = [int(task.name) for task in tasks.iterdir()] if tasks.is_dir() else [0]
    for thread in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
                os.setpriority(os.PRIO_PROCESS, thread, niceness)


def start_ray(num_cpus: float | None = None) -> None:
    """Start (or join) Ray with the repository importable by its workers."""
    import ray

    if ray.is_initialized():
        return
    # Ray starts its workers (the Serve replica that generates) at niceness 15 by default, so any busy
    # process beside them on the host (a trainer, an evaluator) takes the CPU and requests time out, and a
    # replica loading its model on a busy host takes minutes. They start at 0; a replica lowers its own
    # priority to gateway.niceness once its model is loaded.
    os.environ.setdefault("RAY_worker_niceness", "0")
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([root, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)])
    # Ray gives its raylet a fixed 30 s to register; on a saturated machine it can miss that, so the
    # start is tried again (after shutting down what the failed attempt left) before giving up.
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                runtime_env={
                    "env_vars": {
                        "PYTHONPATH": path,
                        **{
                            name: value for name, value in os.environ.items() if name.startswith("RAY_SERVE_")
                        },
                    }
                },
                log_to_driver=False,
            )
            return
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            log.warning("ray did not start in time; trying again", extra={"attempt": attempt})
            ray.shutdown()


def spare_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve(settings: RolloutSettings, *, blocking: bool = False) -> str:
    """Deploy the gateway on Ray Serve at ``gateway.host:gateway.port``; returns its base URL."""
    from ray import serve as ray_serve

    options = settings.gateway
    proxy_port = options.port
    if options.direct_ingress:
        options.port = options.port or spare_port(options.host)
        # Each replica serves HTTP itself on port + i (Ray Serve's direct ingress, read by Ray's processes
        # from the environment they inherit); Serve's proxy still runs, on a spare port, unused.
        os.environ |= {
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(options.port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(options.port + options.replicas),
        }
        proxy_port = spare_port(options.host)
    # The handlers run on the replica's own event loop. Serve's default runs them on a second loop in
    # another thread, and every request's ASGI messages then hop between the two loops (about 2 ms of the
    # gateway's overhead in bench.rollout). The handlers never block: generation runs in the engine's thread.
    os.environ.setdefault("RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD", "0")
    # Serve kills a proxy that is not ready within 5 s (10 s for a health check), and the start fails
    # with it; on a saturated machine (every service loading a model at once) that is not long enough.
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    os.environ.setdefault("RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S", "60")
    start_ray(max(2.0, options.num_cpus * options.replicas + 1))
    ray_serve.start(http_options={"host": options.host, "port": proxy_port})
    ray_serve.run(application(settings), name="kaizen-gateway", route_prefix="/", blocking=blocking)
    return f"http://{settings.gateway.host}:{settings.gateway.port}"


def main() -> int:
    from shared.telemetry import configure_logging

    settings = RolloutSettings()
    configure_logging("gateway", settings.log_level)
    log.info("starting the gateway", extra={"port": settings.gateway.port, "alias": settings.serve_alias})
    serve(settings, blocking=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
