"""What routes depend on, as ``Annotated`` aliases: the caller's project, the intake, the settings.

The dependencies are ``async`` although they never wait: FastAPI runs a plain ``def`` dependency in
its thread pool, four hand-offs per request. As coroutines, the HTTP intake alone used 69-78 us of CPU
a span instead of 86-90 (``python -m bench.ingest``, three alternating runs each).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic_core import from_json

from services.ingest.auth import KeyRing, Project
from services.ingest.encoding import decompress
from services.ingest.errors import PayloadTooLarge, UndecodableBody, UnsupportedMediaType
from services.ingest.intake import Intake
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings


async def get_settings(request: Request) -> IngestSettings:
    settings: IngestSettings = request.app.state.settings
    return settings


async def get_intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


async def get_metrics(request: Request) -> IngestMetrics:
    metrics: IngestMetrics = request.app.state.metrics
    return metrics


async def get_project(request: Request) -> Project:
    """The project of the request's API key (401 when there is none or it is wrong)."""
    keyring: KeyRing = request.app.state.keyring
    return keyring.authenticate(request.headers.get("authorization"))


SettingsDep = Annotated[IngestSettings, Depends(get_settings)]
IntakeDep = Annotated[Intake, Depends(get_intake)]
MetricsDep = Annotated[IngestMetrics, Depends(get_metrics)]
ProjectDep = Annotated[Project, Depends(get_project)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body as sent, refused with 413 as soon as it is over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, settings: IngestSettings) -> Any:
    """The request body (gzip or not) parsed as JSON: 415 for another content type, 400 when not JSON."""
    media = (request.headers.get("content-type") or "application/json").split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type {media!r} is not supported: send application/json")
    body = await read_body(request, settings.ingest.max_body_bytes)
    body = decompress(body, request.headers.get("content-encoding"), settings.ingest.max_decompressed_bytes)
    try:
        return from_json(body)
    except ValueError as exc:
        raise UndecodableBody(f"body is not valid JSON: {exc}") from None
