"""The worker's deterministic event ids are RFC 4122 version-5 UUIDs, as ``uuid.uuid5`` makes them."""

from __future__ import annotations

import random
import uuid

from services.ingest.landing import EVENT_NAMESPACE, feedback_event_id, trace_event_id


def test_event_ids_are_uuid5_of_the_project_and_id() -> None:
    rng = random.Random(5)
    alphabet = "0123456789abcdef-_/.:é√ 日本"
    for _ in range(5000):
        project = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        item = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        expected = uuid.uuid5(EVENT_NAMESPACE, f"trace.ingested/{project}/{item}")
        assert trace_event_id(project, item) == str(expected)
        assert uuid.UUID(trace_event_id(project, item)).version == 5
        assert feedback_event_id(project, item) == str(
            uuid.uuid5(EVENT_NAMESPACE, f"feedback.received/{project}/{item}")
        )
