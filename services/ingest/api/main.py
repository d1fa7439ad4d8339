"""The HTTP intake's FastAPI app: ``create_app(settings)``; ``python -m services.ingest.http`` serves it.

Domain errors become HTTP answers here and nowhere else: 400 undecodable body or spans, 401 no or
wrong key, 403 another project's data, 413 too large, 415 wrong content type or encoding, 422 invalid
feedback, 429 too much waiting for Kafka and 503 Kafka not answering (both with Retry-After). OTLP
routes answer errors with a ``google.rpc.Status`` in the request's encoding, as the OTLP spec says;
the others with ``{"detail": message}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry

from services.ingest.api.routes import feedback, health, langfuse, otlp
from services.ingest.auth import KeyRing
from services.ingest.bulk import BulkProducer
from services.ingest.errors import (
    IngestError,
    InvalidFeedback,
    InvalidSpans,
    Overloaded,
    PayloadTooLarge,
    ProjectMismatch,
    Unauthorized,
    Unavailable,
    UndecodableBody,
    UnsupportedMediaType,
)
from services.ingest.intake import Intake
from services.ingest.metrics import IngestMetrics
from services.ingest.otlp import PROTOBUF, status_body
from services.ingest.redaction import Redactor
from services.ingest.settings import IngestSettings
from shared.bus import ensure_topics
from shared.events import FEEDBACK_RAW, TRACE_RAW
from shared.telemetry import RequestMetrics

HTTP_STATUS: dict[type[IngestError], int] = {
    UndecodableBody: 400,
    InvalidSpans: 400,
    Unauthorized: 401,
    ProjectMismatch: 403,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    InvalidFeedback: 422,
    Overloaded: 429,
    Unavailable: 503,
}


def create_app(settings: IngestSettings | None = None, *, registry: CollectorRegistry = REGISTRY) -> FastAPI:
    """The intake app. Its keys are read now, so a bad key configuration stops the process at startup."""
    settings = settings or IngestSettings()
    logger = logging.getLogger("kaizen.ingest.http")
    keyring = KeyRing.from_settings(settings)
    redactor = Redactor(settings.ingest.redact_patterns)
    metrics = IngestMetrics.of(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(settings, [TRACE_RAW, FEEDBACK_RAW])
        producer = BulkProducer(settings, client_id="kaizen-ingest-http")
        await producer.start()
        app.state.intake = Intake(settings, producer, redactor, metrics, logger)
        logger.info(
            "ingest HTTP intake ready",
            extra={"projects": sorted(keyring.projects), "topic": settings.kafka.topic(TRACE_RAW)},
        )
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(
        title="Kaizen ingest",
        description="OTLP traces, feedback and Langfuse scores in; durable in Kafka before 200.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = keyring
    app.state.metrics = metrics
    app.state.registry = registry
    app.include_router(otlp.router)
    app.include_router(feedback.router)
    app.include_router(langfuse.router)
    app.include_router(health.router)

    @app.exception_handler(IngestError)
    async def ingest_error(request: Request, exc: IngestError) -> Response:
        return error_response(request, exc)

    app.add_middleware(RequestMetrics, service="ingest-http", registry=registry)
    return app


def error_response(request: Request, exc: IngestError) -> Response:
    status = next((code for kind, code in HTTP_STATUS.items() if isinstance(exc, kind)), 400)
    headers: dict[str, str] = {}
    if status in (429, 503):
        headers["Retry-After"] = str(request.app.state.settings.ingest.retry_after_s)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="kaizen", Bearer'
    message = str(exc)
    if request.url.path in otlp.OTLP_PATHS:
        content_type = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        media_type = PROTOBUF if content_type == PROTOBUF else "application/json"
        return Response(status_body(media_type, status, message), status, headers, media_type=media_type)
    return JSONResponse({"detail": message}, status, headers)
