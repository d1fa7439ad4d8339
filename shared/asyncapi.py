"""The event catalogue: the AsyncAPI document FastStream generates, one channel per topic.

``make asyncapi`` writes it to docs/asyncapi.json; a test fails when the committed file is stale. Each
service's own app also generates its document (``faststream docs gen services.<name>.app:app``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from faststream.specification import AsyncAPI

from shared.bus import create_broker, declare_publisher
from shared.events import EVENT_TYPES
from shared.settings import KaizenSettings


def catalogue() -> dict[str, Any]:
    """The AsyncAPI 3.0 document with every Kaizen topic and its event schema."""
    settings = KaizenSettings()
    settings.kafka.topic_prefix = ""
    settings.kafka.bootstrap_servers = "127.0.0.1:9092"  # the local stack; the document must not vary
    broker = create_broker(settings, "catalogue")
    for event_type in EVENT_TYPES:
        declare_publisher(broker, settings, event_type)
    spec = AsyncAPI(
        broker,
        title="Kaizen events",
        version="1",
        description="Every topic of the Kaizen loop and the schema of its events (shared/events.py).",
    )
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document


def main() -> int:
    json.dump(catalogue(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
