"""Helpers of the trainer tests: settings for a test, dataset rows written to Iceberg, topics read back."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.trainer.settings import TrainerSettings
from shared.events import DatasetReady, TableRef
from shared.settings import KaizenSettings
from shared.store import DATASETS, IcebergStore
from tests.fixtures.topics import read_events

REPO_ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 240.0

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
    "Which planet is closest to the sun?",
    "What is the boiling point of water at sea level?",
    "Who wrote Romeo and Juliet?",
    "What is the largest ocean on Earth?",
    "How many days are in a leap year?",
    "What gas do plants absorb from the air?",
    "What is the square root of 81?",
    "Which metal is liquid at room temperature?",
    "What is the tallest animal?",
    "In which continent is Kenya?",
    "What is H2O commonly called?",
    "How many sides does a hexagon have?",
    "What is the freezing point of water in Celsius?",
]
SHORT_ANSWERS = [
    "Paris.",
    "Eight.",
    "Blue.",
    "Mercury.",
    "100 °C.",
    "Shakespeare.",
    "The Pacific.",
    "366.",
    "Carbon dioxide.",
    "Nine.",
    "Mercury.",
    "The giraffe.",
    "Africa.",
    "Water.",
    "Six.",
    "0 °C.",
]
PADDING = (
    " To give you some more context on this, it is worth saying that this is a question many people ask, "
    "and there are a number of interesting details, caveats and historical notes that one could add here, "
    "so let me go through them carefully and at length before we move on to anything else at all."
)


def trainer_settings(settings: KaizenSettings, work_dir: Path, **training: Any) -> TrainerSettings:
    """Trainer settings on top of a test's isolated settings: its own registered model and work dir."""
    trainer = TrainerSettings(**settings.model_dump())
    trainer.mlflow.registered_model = f"kaizen-test-{uuid.uuid4().hex[:8]}"
    trainer.trainer.work_dir = work_dir
    trainer.trainer.poll_s = 0.2
    trainer.trainer.heartbeat_s = 1.0
    trainer.trainer.lease_s = 5.0
    for name, value in tiny_training(**training).items():
        setattr(trainer.training, name, value)
    return trainer


def tiny_training(**overrides: Any) -> dict[str, Any]:
    """A few quick steps on the tiny random llama."""
    values: dict[str, Any] = {
        "base_model": "tiny-random-llama",
        "batch_size": 4,
        "max_steps": 4,
        "save_steps": 2,
        "learning_rate": 5e-3,
        "max_length": 96,
        "num_generations": 2,
        "max_completion_length": 8,
        "reward_components": ["string_similarity"],
    }
    values.update(overrides)
    return values


def dpo_rows(
    dataset_id: str, project_id: str, count: int = 8, *, split: str = "train"
) -> list[dict[str, Any]]:
    """Preference pairs whose chosen answer is short and rejected answer long."""
    now = datetime.now(UTC)
    return [
        {
            "dataset_id": dataset_id,
            "project_id": project_id,
            "item_id": f"{dataset_id}-{index:03d}",
            "split": split,
            "kind": "dpo",
            "prompt": QUESTIONS[index % len(QUESTIONS)],
            "chosen": SHORT_ANSWERS[index % len(SHORT_ANSWERS)],
            "rejected": SHORT_ANSWERS[index % len(SHORT_ANSWERS)] + PADDING,
            "chosen_reward": 0.9,
            "rejected_reward": 0.3,
            "created_at": now,
        }
        for index in range(count)
    ]


def write_dataset(settings: KaizenSettings, rows: Sequence[dict[str, Any]]) -> int | None:
    return IcebergStore(settings).append(DATASETS, rows)


def dataset_ready(
    settings: KaizenSettings, dataset_id: str, snapshot_id: int | None, algorithm: str = "dpo", **sizes: int
) -> DatasetReady:
    return DatasetReady(
        producer="tests",
        project_id=settings.project_id,
        correlation_id=dataset_id,
        dataset_id=dataset_id,
        stored=TableRef(table=f"{settings.catalog.namespace}.datasets", snapshot_id=snapshot_id),
        sizes=sizes or {"train": 8},
        algorithm=algorithm,  # type: ignore[arg-type]
        trigger_reason="sample_count",
    )


async def read_topic(
    settings: KaizenSettings, logical_topic: str, *, at_least: int, settle_s: float = 1.0
) -> list[dict[str, Any]]:
    """The events of a topic from its beginning: ``at_least`` of them, and any more within ``settle_s``."""
    return await read_events(
        settings, logical_topic, at_least=at_least, settle_s=settle_s, timeout_s=TIMEOUT_S
    )


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.2)


def settings_env(settings: TrainerSettings) -> dict[str, str]:
    """The environment that gives a trainer process the same settings (``KAIZEN_*``) as ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAIZEN_")}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "KAIZEN_PROJECT_ID": settings.project_id,
        "KAIZEN_HOME": str(settings.home),
        "KAIZEN_LOG_LEVEL": "INFO",
        "KAIZEN_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "KAIZEN_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "KAIZEN_REDIS__URL": settings.redis.url,
        "KAIZEN_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "KAIZEN_CATALOG__NAMESPACE": settings.catalog.namespace,
        "KAIZEN_CATALOG__URI": settings.catalog.uri or "",
        "KAIZEN_CATALOG__WAREHOUSE": settings.catalog.warehouse or "",
        "KAIZEN_MLFLOW__TRACKING_URI": settings.mlflow.tracking_uri,
        "KAIZEN_MLFLOW__REGISTERED_MODEL": settings.mlflow.registered_model,
        "KAIZEN_KERNELS__BACKEND": settings.kernels.backend,
        "KAIZEN_KERNELS__ADDRESS": settings.kernels.address,
        "KAIZEN_TRAINER__WORK_DIR": str(settings.work_dir),
        "KAIZEN_TRAINER__POLL_S": str(settings.trainer.poll_s),
        "KAIZEN_TRAINER__HEARTBEAT_S": str(settings.trainer.heartbeat_s),
        "KAIZEN_TRAINER__LEASE_S": str(settings.trainer.lease_s),
        "KAIZEN_S3__ENDPOINT_URL": settings.s3.endpoint_url or "",
    }
    if settings.trainer.checkpoint_uri:
        env["KAIZEN_TRAINER__CHECKPOINT_URI"] = settings.trainer.checkpoint_uri
    for name, value in settings.training.to_dict().items():
        if value is not None:
            env[f"KAIZEN_TRAINING__{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env
