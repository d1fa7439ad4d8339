"""The real Langfuse Python SDK, unmodified, pointed at the intake with its base url and keys."""

from __future__ import annotations

import asyncio
import json

import pytest
from langfuse import Langfuse, propagate_attributes

from services.ingest.settings import IngestSettings
from shared.events import FEEDBACK_RECEIVED, TRACE_INGESTED
from shared.store import TRACES
from tests.services.ingest.support import Intake, Key, events, read_topic, wait_for_rows

pytestmark = pytest.mark.integration


async def test_a_langfuse_generation_and_its_score_land(
    intake: Intake, worker: None, key: Key, ingest_settings: IngestSettings
) -> None:
    langfuse = Langfuse(public_key=key.public_key, secret_key=key.secret_key, base_url=intake.url)
    try:
        assert await asyncio.to_thread(langfuse.auth_check)
        with (
            langfuse.start_as_current_observation(name="support-turn", as_type="span"),
            propagate_attributes(
                user_id="user-42",
                session_id="session-7",
                tags=["support"],
                metadata={"user_consent": "true", "kaizen.model_version": "3"},
            ),
            langfuse.start_as_current_observation(
                name="answer",
                as_type="generation",
                model="SmolLM2-135M-Instruct",
                input=[
                    {"role": "system", "content": "Answer from the policy."},
                    {"role": "user", "content": "How long do I have to return shoes?"},
                ],
            ) as generation,
        ):
            generation.update(
                output="You have 30 days to return unworn shoes.",
                usage_details={"input": 21, "output": 9},
            )
            trace_id = generation.trace_id
        langfuse.create_score(name="helpfulness", value=0.8, trace_id=trace_id, comment="clear answer")
        await asyncio.to_thread(langfuse.flush)
    finally:
        await asyncio.to_thread(langfuse.shutdown)

    [row] = await wait_for_rows(ingest_settings, TRACES, 1)
    assert row["trace_id"] == trace_id
    assert row["prompt"] == "How long do I have to return shoes?"
    assert json.loads(row["input_messages"])[0] == {"role": "system", "content": "Answer from the policy."}
    assert row["response"] == "You have 30 days to return unworn shoes."
    assert (row["model"], row["model_version"]) == ("SmolLM2-135M-Instruct", "3")
    assert (row["user_id"], row["session_id"], row["tags"]) == ("user-42", "session-7", ["support"])
    assert (row["prompt_tokens"], row["completion_tokens"], row["consent"]) == (21, 9, True)
    assert row["project_id"] == key.project_id

    [ingested] = events(await read_topic(ingest_settings, TRACE_INGESTED, at_least=1))
    assert (ingested["trace_id"], ingested["model"], ingested["model_version"]) == (
        trace_id,
        "SmolLM2-135M-Instruct",
        "3",
    )
    assert (ingested["user_id"], ingested["session_id"], ingested["consent"]) == (
        "user-42",
        "session-7",
        True,
    )

    [score] = events(await read_topic(ingest_settings, FEEDBACK_RECEIVED, at_least=1))
    assert (score["trace_id"], score["kind"], score["name"], score["value"]) == (
        trace_id,
        "score",
        "helpfulness",
        0.8,
    )
    assert score["project_id"] == key.project_id
