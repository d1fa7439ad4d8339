"""The ingest service's errors. The HTTP edge turns each into its status code; nothing else does."""

from __future__ import annotations

from shared.errors import KaizenError


class IngestError(KaizenError):
    """Base of everything the ingest service refuses or fails at on purpose."""


class UndecodableBody(IngestError):
    """The body cannot be read as what its content type says (400)."""


class UnsupportedMediaType(IngestError):
    """A content type or content encoding the endpoint does not speak (415)."""


class PayloadTooLarge(IngestError):
    """The body, as sent or decompressed, is over the configured limit (413)."""


class InvalidSpans(IngestError):
    """Every span of an OTLP request was rejected (400); the message names the problems."""


class InvalidFeedback(IngestError):
    """A feedback or score that cannot be accepted (422); the message names the field."""


class Unauthorized(IngestError):
    """No credentials, or credentials that match no key (401)."""


class ProjectMismatch(IngestError):
    """A key of one project tried to write another project's data (403)."""


class Overloaded(IngestError):
    """Too many records wait for Kafka: come back later (429 with Retry-After)."""


class Unavailable(IngestError):
    """Kafka did not acknowledge in time: nothing is promised, send again (503 with Retry-After)."""
