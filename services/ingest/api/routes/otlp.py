"""OTLP/HTTP traces: ``POST /v1/traces`` and ``POST /api/public/otel/v1/traces`` (Langfuse's)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.ingest.api.deps import IntakeDep, ProjectDep, SettingsDep, read_body
from services.ingest.intake import otlp_media_type
from services.ingest.otlp import export_response

router = APIRouter(tags=["otlp"])
OTLP_PATHS = ("/v1/traces", "/api/public/otel/v1/traces")


@router.post(OTLP_PATHS[0], summary="Export traces (OTLP/HTTP, protobuf or JSON)")
@router.post(OTLP_PATHS[1], summary="Export traces (Langfuse's OTLP endpoint)")
async def export_traces(
    request: Request, project: ProjectDep, intake: IntakeDep, settings: SettingsDep
) -> Response:
    """200 once every accepted span's trace is durable in Kafka; ``partial_success`` names rejected spans."""
    content_type = request.headers.get("content-type")
    media_type = otlp_media_type(content_type)
    body = await read_body(request, settings.ingest.max_body_bytes)
    accepted = await intake.accept_traces(
        project, body, content_type, request.headers.get("content-encoding"), endpoint=request.url.path
    )
    return Response(
        export_response(media_type, accepted.rejected_spans, accepted.message), media_type=media_type
    )
