"""Settings of the ingest service (HTTP intake and worker): ``KAIZEN_INGEST__*`` on top of Kaizen's own.

API keys come from ``KAIZEN_INGEST__API_KEYS`` (a JSON list) and/or a keys file
(``KAIZEN_INGEST__KEYS_FILE``, YAML or JSON); both hold only sha256 hashes of the secrets
(``python -m services.ingest.auth new-key --project shop`` makes a key pair and its entry).
In development, with no key configured, the key ``pk-kaizen-dev`` / ``kaizen-dev-only`` writes the
deployment's own project; anywhere else that placeholder stops the service at startup.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from shared.settings import KaizenSettings


class ApiKey(BaseModel):
    """One project's API key: the public half in clear, the secret only as its sha256."""

    project_id: str = Field(
        min_length=1, description="The project every record sent with this key belongs to."
    )
    public_key: str = Field(
        min_length=1, description="Public half (Langfuse's pk-lf-...), the Basic auth user."
    )
    secret_sha256: str = Field(
        description="Hex sha256 of the secret key (Basic auth password, or the Bearer token)."
    )
    name: str | None = Field(None, description="What the key is for, for people reading the configuration.")

    @field_validator("secret_sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower().removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("secret_sha256 must be the 64 hex characters of a sha256 digest")
        return value


class IngestOptions(BaseModel):
    """Everything the ingest service reads beyond the shared settings."""

    host: str = Field("127.0.0.1", description="Address the HTTP intake binds (0.0.0.0 in containers).")
    port: int = Field(4318, ge=0, le=65535, description="HTTP intake port (4318 is OTLP/HTTP's own).")
    http_workers: int = Field(1, ge=1, description="uvicorn worker processes of the HTTP intake.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, gt=0, description="Largest request body accepted as sent (413 above it)."
    )
    max_decompressed_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="Largest body after gzip/deflate decompression (413 above it)."
    )
    max_inflight_records: int = Field(
        50_000,
        gt=0,
        description="Records waiting for Kafka's acknowledgement above which requests get 429 + Retry-After.",
    )
    publish_timeout_s: float = Field(
        15.0, gt=0, description="How long a request waits for Kafka's acknowledgement before answering 503."
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 429 and 503 answers.")
    api_keys: list[ApiKey] = Field(default_factory=list, description="API keys, one or more per project.")
    keys_file: Path | None = Field(
        None, description="YAML or JSON file with more API keys: a list, or {keys: [...]}, of ApiKey entries."
    )
    redact_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra PII patterns, name -> regular expression; matches become [NAME].",
    )
    batch_max_records: int = Field(
        5000, gt=0, description="Most records the worker lands in one Iceberg commit."
    )
    batch_timeout_ms: int = Field(200, gt=0, description="How long the worker waits for a batch to start.")
    fetch_min_bytes: int = Field(
        1024 * 1024,
        gt=0,
        description="Bytes the broker gathers before answering a fetch: fewer, bigger Iceberg commits.",
    )
    fetch_max_wait_ms: int = Field(
        500, gt=0, description="Longest the broker holds a fetch to gather fetch_min_bytes (adds latency)."
    )
    dedup_ttl_s: int = Field(
        14 * 24 * 3600, gt=0, description="How long a trace or feedback id is remembered for deduplication."
    )
    contexts_ttl_s: int = Field(
        3600, gt=0, description="How long retrieved contexts wait for their trace's generation to arrive."
    )
    keep_unconsented: bool = Field(
        False, description="Keep traces without consent in the no-train table (never in `traces`)."
    )
    announce_scan_margin_s: float = Field(
        30.0,
        ge=0,
        description="Clock-skew margin when trace.ingested is searched after a crash mid-announcement.",
    )


class IngestSettings(KaizenSettings):
    """The ingest service's settings: the shared ones plus ``ingest``."""

    ingest: IngestOptions = Field(default_factory=IngestOptions)  # type: ignore[arg-type]
