"""Event ids as text (``services.ingest.ids``) are the standard library's UUIDs, character for character."""

from __future__ import annotations

import random
import uuid

from services.ingest.ids import name_id, random_id
from services.ingest.landing import EVENT_NAMESPACE, feedback_event_id, trace_event_id


def test_named_ids_are_uuid5() -> None:
    rng = random.Random(5)
    alphabet = "0123456789abcdef-_/.:é√ 日本"
    for _ in range(5000):
        project = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        item = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert name_id(EVENT_NAMESPACE, item) == str(uuid.uuid5(EVENT_NAMESPACE, item))
        assert trace_event_id(project, item) == str(
            uuid.uuid5(EVENT_NAMESPACE, f"trace.ingested/{project}/{item}")
        )
        assert feedback_event_id(project, item) == str(
            uuid.uuid5(EVENT_NAMESPACE, f"feedback.received/{project}/{item}")
        )
    assert name_id(uuid.NAMESPACE_DNS, "python.org") == "886313e1-3b8a-5372-9b90-0c9aee199e5d"


def test_random_ids_are_distinct_uuid4() -> None:
    ids = [random_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2000]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
