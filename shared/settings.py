"""Settings shared by every Kaizen service.

Each service builds its own ``Settings`` class from these pieces (``class IngestSettings(KaizenSettings)``).
Every value comes from the environment with the prefix ``KAIZEN_``; nested groups use a double
underscore: ``KAIZEN_KAFKA__BOOTSTRAP_SERVERS``, ``KAIZEN_CATALOG__URI``. The defaults point at the
local stack that ``scripts/stack up`` starts, so a developer needs no configuration at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import KaizenError

DEV_PLACEHOLDER_SECRET = "kaizen-dev-only"
"""The value development secrets default to; anywhere but development it stops the service at startup."""


class SettingsError(KaizenError, ValueError):
    """A configuration that cannot work (a placeholder secret in production, an unknown catalog type)."""


class KafkaSettings(BaseModel):
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated Kafka bootstrap servers (host:port)."
    )
    topic_prefix: str = Field(
        "",
        description=(
            "Prefix put before every topic and consumer group name; tests use a uuid so they never see "
            "each other."
        ),
    )
    handler_retries: int = Field(
        3, ge=0, description="Times a failing handler is retried before its message goes to <topic>.dlq."
    )
    retry_backoff_s: float = Field(
        0.2, ge=0, description="First pause between handler retries; doubles on every retry."
    )
    partitions: int = Field(
        3, ge=1, description="Partitions for topics Kaizen creates (consumer replicas never exceed this)."
    )
    replication_factor: int = Field(1, ge=1, description="Replication factor for topics Kaizen creates.")

    def topic(self, name: str) -> str:
        """The physical topic name of a logical topic (``trace.raw`` -> ``<prefix>trace.raw``)."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """The physical consumer group id of a logical consumer name."""
        return f"{self.topic_prefix}{name}"


class RedisSettings(BaseModel):
    url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (redis:// or rediss://).")
    key_prefix: str = Field("kaizen:", description="Prefix of every key Kaizen writes.")


class S3Settings(BaseModel):
    endpoint_url: str | None = Field(
        "http://127.0.0.1:9100",
        description="S3-compatible endpoint; empty for AWS itself (credentials from the usual AWS chain).",
    )
    region: str = Field("us-east-1", description="S3 region.")
    access_key_id: str | None = Field("kaizen", description="Access key id; empty to use the AWS chain.")
    secret_access_key: SecretStr | None = Field(
        SecretStr(DEV_PLACEHOLDER_SECRET), description="Secret access key; empty to use the AWS chain."
    )
    bucket: str = Field("kaizen", description="Bucket for the warehouse and artifacts when they live on S3.")


class CatalogSettings(BaseModel):
    type: Literal["sql", "rest", "glue"] = Field("sql", description="Iceberg catalog implementation.")
    name: str = Field("kaizen", description="Catalog name.")
    uri: str | None = Field(
        None,
        description=(
            "Catalog URI: a SQLAlchemy URL for sql (default: SQLite under the data dir, or "
            "postgresql+psycopg2://...), the REST endpoint for rest, unused for glue."
        ),
    )
    warehouse: str | None = Field(
        None,
        description="Warehouse location: file:///path (default: under the data dir) or s3://bucket/prefix.",
    )
    namespace: str = Field("kaizen", description="Iceberg namespace holding traces, labels and datasets.")
    commit_retries: int = Field(8, ge=0, description="Retries of an append that lost a commit race.")
    properties: dict[str, str] = Field(
        default_factory=dict, description="Extra catalog properties passed to pyiceberg as they are."
    )


class MlflowSettings(BaseModel):
    tracking_uri: str = Field("http://127.0.0.1:5000", description="MLflow tracking server URI.")
    registered_model: str = Field("kaizen-chat", description="Registered model name of the served model.")
    experiment_prefix: str = Field("kaizen", description="Experiments are named <prefix>/<project_id>.")


class KernelSettings(BaseModel):
    address: str = Field("127.0.0.1:50051", description="host:port of the Rust kernel service.")
    backend: Literal["torch", "grpc"] = Field(
        "torch",
        description="Where the trainer's loss math runs: in process (torch) or in the kernel service (grpc).",
    )
    deadline_s: float = Field(30.0, gt=0, description="Deadline of one kernel call in seconds.")
    retries: int = Field(3, ge=0, description="Retries of a call that found the service UNAVAILABLE.")
    max_message_bytes: int = Field(
        64 * 1024 * 1024, gt=0, description="Largest gRPC message sent or received."
    )


class KaizenSettings(BaseSettings):
    """What every service needs: where the stack is, which project it serves, how it logs."""

    model_config = SettingsConfigDict(
        env_prefix="KAIZEN_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    environment: Literal["development", "production"] = Field(
        "development", description="Anything but development refuses placeholder secrets."
    )
    project_id: str = Field("default", description="Project whose data this process handles.")
    home: Path = Field(
        Path(".kaizen"),
        description="Local state: stack data, logs, the default catalog and warehouse, caches.",
    )
    log_level: str = Field("INFO", description="Log level of every Kaizen logger.")
    metrics_port: int | None = Field(
        None, description="Port of this process's Prometheus /metrics endpoint; none to not serve one."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    redis: RedisSettings = Field(default_factory=RedisSettings)  # type: ignore[arg-type]
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)  # type: ignore[arg-type]
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)  # type: ignore[arg-type]
    kernels: KernelSettings = Field(default_factory=KernelSettings)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _resolve(self) -> KaizenSettings:
        self.home = self.home.expanduser().resolve()
        # A broker named the way Kafka's own tools name it is honoured when Kaizen's variable is unset.
        if "KAIZEN_KAFKA__BOOTSTRAP_SERVERS" not in os.environ and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            self.kafka.bootstrap_servers = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        if self.catalog.type == "sql" and self.catalog.uri is None:
            self.catalog.uri = f"sqlite:///{self.home / 'catalog.db'}"
        if self.catalog.warehouse is None:
            self.catalog.warehouse = (self.home / "warehouse").as_uri()
        if self.environment != "development":
            secret = self.s3.secret_access_key
            if secret is not None and secret.get_secret_value() == DEV_PLACEHOLDER_SECRET:
                raise SettingsError(
                    "KAIZEN_S3__SECRET_ACCESS_KEY is the development placeholder; set a real secret "
                    "(or leave it empty to use the AWS credential chain) outside development"
                )
        return self
