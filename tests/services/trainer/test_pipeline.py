"""dataset.ready in, checkpoint.trained out, over the real Kafka, Redis, MLflow and kernel server.

The consumer (``services.trainer.app``) and a worker (``services.trainer.worker``) run in the test's
event loop; the worker trains DPO with LoRA on the tiny random llama with the loss in the Rust kernel
service (the ``grpc`` backend).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient
from peft import PeftModel
from prometheus_client import CollectorRegistry

from services.trainer.app import create_app
from services.trainer.jobs import JobQueue
from services.trainer.settings import TrainerSettings
from services.trainer.worker import TrainingWorker
from shared.bus import create_broker, declare_publisher, ensure_topics, publish_event
from shared.events import CHECKPOINT_TRAINED, EVENT_TYPES, TRAINING_FAILED, DatasetReady
from shared.models import load_causal_lm, resolve_model_dir
from shared.settings import KaizenSettings
from shared.state import RedisState
from tests.services.trainer.support import (
    QUESTIONS,
    dataset_ready,
    dpo_rows,
    read_topic,
    trainer_settings,
    write_dataset,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@asynccontextmanager
async def running_trainer(settings: TrainerSettings) -> AsyncIterator[TrainingWorker]:
    """The consumer app and one worker, both in this event loop, stopped at the end."""
    await ensure_topics(settings, [model.topic for model in EVENT_TYPES])
    worker = TrainingWorker(settings, worker_id="test-worker", registry=CollectorRegistry())
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        async with create_app(settings, registry=CollectorRegistry()):
            yield worker
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 120)
        await worker.stop()


async def publish(settings: KaizenSettings, *events: DatasetReady) -> None:
    broker = create_broker(settings, "tests", registry=CollectorRegistry())
    publisher = declare_publisher(broker, settings, DatasetReady)
    async with broker:
        await broker.start()
        for event in events:
            await publish_event(publisher, event)


async def test_dataset_ready_trains_dpo_lora_through_the_kernel_service_once(
    settings: KaizenSettings, kernel_server: str, tmp_path: Path
) -> None:
    trainer = trainer_settings(settings, tmp_path / "work", max_steps=4, save_steps=2)
    trainer.kernels.backend = "grpc"
    trainer.kernels.address = kernel_server
    dataset_id = f"ds-{settings.project_id}"
    snapshot = write_dataset(trainer, dpo_rows(dataset_id, trainer.project_id, 8))
    ready = dataset_ready(trainer, dataset_id, snapshot)
    again = dataset_ready(trainer, dataset_id, snapshot)  # another event for the same dataset

    async with running_trainer(trainer):
        await publish(trainer, ready, again, ready)  # a duplicate and a redelivery
        published = await read_topic(trainer, CHECKPOINT_TRAINED, at_least=1, settle_s=3.0)

    assert len(published) == 1, "one dataset, one job, one checkpoint"
    event = published[0]
    assert event["dataset_id"] == dataset_id
    assert event["algorithm"] == "dpo"
    assert event["base_model"] == "tiny-random-llama"
    assert event["model_uri"] == f"models:/{trainer.mlflow.registered_model}/{event['model_version']}"

    client = MlflowClient(trainer.mlflow.tracking_uri)
    runs = client.search_runs(
        [client.get_run(event["run_id"]).info.experiment_id],
        filter_string=f"tags.`kaizen.dataset_id` = '{dataset_id}'",
    )
    assert [run.info.run_id for run in runs] == [event["run_id"]], "one MLflow run per job"
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset_id"] == dataset_id
    assert run.data.params["algorithm"] == "dpo"
    assert run.data.params["base_model"] == "tiny-random-llama"
    assert run.data.params["kernel_backend"] == "grpc"
    assert len(run.data.params["config_hash"]) == 16
    for metric in ("loss", "rewards/margins", "rewards/accuracies", "kl", "grad_norm", "tokens_per_s"):
        assert metric in run.data.metrics, metric
    losses = [
        m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"), key=lambda m: m.step)
    ]
    assert len(losses) == 4, losses
    assert losses[-1] < losses[0], f"the training loss went down: {losses}"
    assert run.data.metrics["rewards/margins"] > 0

    versions = client.search_model_versions(f"name = '{trainer.mlflow.registered_model}'")
    assert [v.version for v in versions] == [event["model_version"]], "one registered version"
    tags = versions[0].tags
    assert tags["kaizen.dataset_id"] == dataset_id
    assert tags["kaizen.algorithm"] == "dpo"
    assert tags["kaizen.base_model"] == "tiny-random-llama"

    # The adapter the event points at loads onto its base model and changes its answers' log-probs.
    mlflow.set_tracking_uri(trainer.mlflow.tracking_uri)  # resolve_model_dir asks MLflow's default server
    adapter_dir = await asyncio.to_thread(resolve_model_dir, event["model_uri"])
    base, tokenizer = load_causal_lm("tiny-random-llama")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTIONS[0]}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.no_grad():
        before = base(prompt).logits
        tuned = PeftModel.from_pretrained(base, adapter_dir)
        after = tuned(prompt).logits
    assert not torch.allclose(before, after), "the trained adapter changes the model"

    state = RedisState(trainer)
    try:
        record = await JobQueue(state).get(dataset_id)
    finally:
        await state.close()
    assert record is not None and record.status == "succeeded" and record.attempts == 1


async def test_empty_and_diverging_jobs_end_with_their_reason_on_the_run_and_on_training_failed(
    settings: KaizenSettings, tmp_path: Path
) -> None:
    trainer = trainer_settings(settings, tmp_path / "work", max_steps=3, learning_rate=1e30)
    empty_id, diverging_id = f"empty-{settings.project_id}", f"nan-{settings.project_id}"
    snapshot = write_dataset(trainer, dpo_rows(diverging_id, trainer.project_id, 8))

    async with running_trainer(trainer):
        await publish(
            trainer,
            dataset_ready(trainer, empty_id, snapshot),
            dataset_ready(trainer, diverging_id, snapshot),
        )
        failed = await read_topic(trainer, TRAINING_FAILED, at_least=2, settle_s=2.0)
        assert await read_topic_size(trainer) == 0

    reasons = {event["dataset_id"]: event for event in failed}
    assert set(reasons) == {empty_id, diverging_id}
    assert reasons[empty_id]["reason"] == "empty_dataset"
    assert "0 train items" in reasons[empty_id]["detail"]
    assert reasons[diverging_id]["reason"] == "nan_loss"
    client = MlflowClient(trainer.mlflow.tracking_uri)
    for dataset_id, event in reasons.items():
        run = client.get_run(event["run_id"])
        assert run.info.status == "FAILED", dataset_id
        assert run.data.tags["kaizen.failure_reason"] == event["reason"]
        assert run.data.tags["kaizen.failure_detail"] == event["detail"]
    assert client.search_model_versions(f"name = '{trainer.mlflow.registered_model}'") == []


async def read_topic_size(settings: KaizenSettings) -> int:
    """How many checkpoint.trained events exist (none may, after failures)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = settings.kafka.topic(CHECKPOINT_TRAINED)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return sum(ends.values())
