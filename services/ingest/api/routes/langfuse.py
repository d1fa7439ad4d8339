"""Langfuse's public API, the parts its SDKs call besides OTLP: scores, the ingestion batch, auth check.

- ``POST /api/public/scores``: one score (answered ``{"id"}``), or a list, as SDK v4+ sends from
  ``create_score`` (answered 202, or 207 with counts and errors when some were rejected).
- ``POST /api/public/ingestion``: a batch of events (older SDKs); ``score-create`` events are taken,
  others are refused one by one; answered 207 with ``successes`` and ``errors``.
- ``GET /api/public/projects``: the key's project, for the SDKs' ``auth_check()``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.api.deps import IntakeDep, MetricsDep, ProjectDep, SettingsDep, read_json
from services.ingest.errors import IngestError, InvalidFeedback, ProjectMismatch
from services.ingest.feedback import parse_langfuse_score
from shared.events import FeedbackRecord

router = APIRouter(prefix="/api/public", tags=["langfuse"])


@router.post("/scores", summary="Create scores (Langfuse create_score)")
async def create_scores(
    request: Request, project: ProjectDep, intake: IntakeDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    document = await read_json(request, settings)
    if isinstance(document, dict):
        record = parse_langfuse_score(document, project.project_id)
        await intake.accept_feedback([record])
        metrics.feedback.labels("langfuse", "accepted").inc()
        return JSONResponse({"id": record.feedback_id})
    if not isinstance(document, list):
        raise InvalidFeedback("body must be a score object or a list of score objects")
    records: list[FeedbackRecord] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(document):
        try:
            records.append(parse_langfuse_score(item, project.project_id))
        except IngestError as exc:
            metrics.feedback.labels("langfuse", type(exc).__name__).inc()
            errors.append({"message": f"scores[{index}]: {exc}"})
    await intake.accept_feedback(records)
    metrics.feedback.labels("langfuse", "accepted").inc(len(records))
    if errors:
        return JSONResponse(
            {"accepted": len(records), "rejected": len(errors), "errors": errors}, status_code=207
        )
    return JSONResponse({"message": "Accepted"}, status_code=202)


@router.post("/ingestion", summary="Ingest a batch of events (score-create)")
async def ingestion(
    request: Request, project: ProjectDep, intake: IntakeDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    document = await read_json(request, settings)
    batch = document.get("batch") if isinstance(document, dict) else None
    if not isinstance(batch, list):
        raise InvalidFeedback('body must be {"batch": [events]}')
    accepted: list[tuple[str, FeedbackRecord]] = []
    errors: list[dict[str, Any]] = []
    for index, event in enumerate(batch):
        event_id = str(event.get("id", index)) if isinstance(event, dict) else str(index)
        event_type = event.get("type") if isinstance(event, dict) else None
        if event_type != "score-create":
            errors.append(
                {
                    "id": event_id,
                    "status": 400,
                    "message": f"event type {event_type!r} is not accepted here: send traces over OTLP "
                    "to /api/public/otel/v1/traces, scores as score-create",
                    "error": "UnsupportedEventType",
                }
            )
            continue
        try:
            accepted.append((event_id, parse_langfuse_score(event.get("body"), project.project_id)))
        except IngestError as exc:
            metrics.feedback.labels("langfuse", type(exc).__name__).inc()
            status = 403 if isinstance(exc, ProjectMismatch) else 400
            errors.append(
                {"id": event_id, "status": status, "message": str(exc), "error": type(exc).__name__}
            )
    await intake.accept_feedback([record for _, record in accepted])
    metrics.feedback.labels("langfuse", "accepted").inc(len(accepted))
    return JSONResponse(
        {"successes": [{"id": event_id, "status": 201} for event_id, _ in accepted], "errors": errors},
        status_code=207,
    )


@router.get("/projects", summary="The API key's project (Langfuse auth_check)")
async def projects(project: ProjectDep) -> dict[str, Any]:
    return {
        "data": [
            {
                "id": project.project_id,
                "name": project.project_id,
                "organization": {"id": "kaizen", "name": "Kaizen"},
                "metadata": {},
            }
        ]
    }
