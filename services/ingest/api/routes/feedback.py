"""Kaizen's feedback endpoint: ``POST /v1/feedback`` with one feedback object or a list of them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.ingest.api.deps import IntakeDep, MetricsDep, ProjectDep, SettingsDep, read_json
from services.ingest.errors import IngestError, InvalidFeedback
from services.ingest.feedback import parse_feedback

router = APIRouter(tags=["feedback"])


@router.post("/v1/feedback", summary="Send explicit ratings or implicit signals about traces")
async def send_feedback(
    request: Request, project: ProjectDep, intake: IntakeDep, settings: SettingsDep, metrics: MetricsDep
) -> dict[str, Any]:
    """200 once the feedback is durable in Kafka. A list is taken whole or not at all (422 names the item)."""
    document = await read_json(request, settings)
    items = document if isinstance(document, list) else [document]
    records = []
    for index, item in enumerate(items):
        try:
            records.append(parse_feedback(item, project.project_id))
        except IngestError as exc:
            metrics.feedback.labels("kaizen", type(exc).__name__).inc()
            where = f"feedback[{index}]: " if isinstance(document, list) else ""
            raise type(exc)(f"{where}{exc}") from None
    if not records:
        raise InvalidFeedback("no feedback in the request")
    await intake.accept_feedback(records)
    metrics.feedback.labels("kaizen", "accepted").inc(len(records))
    return {"accepted": len(records), "feedback_ids": [record.feedback_id for record in records]}
