"""A training job whose worker is killed (SIGKILL of the real worker process) resumes from its last
checkpoint, in the same MLflow run, and ends at the same step count, on another node: the second worker
has a disk of its own and finds the checkpoint in S3 (the stack's S3 endpoint)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import IO

import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry

from services.trainer.checkpoints import CheckpointStore, s3_client
from services.trainer.job import job_dir, job_path
from services.trainer.jobs import JobQueue, JobRecord
from services.trainer.settings import TrainerSettings
from services.trainer.worker import TrainingWorker
from shared.bus import ensure_topics
from shared.events import CHECKPOINT_TRAINED, EVENT_TYPES
from shared.settings import KaizenSettings
from shared.state import RedisState
from tests.services.trainer.support import (
    REPO_ROOT,
    dataset_ready,
    dpo_rows,
    read_topic,
    settings_env,
    trainer_settings,
    until,
    write_dataset,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MAX_STEPS = 8


def start_worker(settings: TrainerSettings, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """The worker with its real entry point, in a process of its own."""
    env = settings_env(settings)
    if "KAIZEN_CACHE" in os.environ:
        env["KAIZEN_CACHE"] = os.environ["KAIZEN_CACHE"]
    return subprocess.Popen(
        [sys.executable, "-m", "services.trainer.worker"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )


async def test_killed_job_resumes_from_its_checkpoint_and_ends_at_the_same_step(
    settings: KaizenSettings, tmp_path: Path
) -> None:
    trainer = trainer_settings(
        settings, tmp_path / "node-1", max_steps=MAX_STEPS, save_steps=2, learning_rate=1e-3
    )
    bucket = f"kaizen-test-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(s3_client(trainer).create_bucket, Bucket=bucket)
    trainer.trainer.checkpoint_uri = f"s3://{bucket}/checkpoints"
    dataset_id = f"ds-{settings.project_id}"
    snapshot = write_dataset(trainer, dpo_rows(dataset_id, trainer.project_id, 8))
    ready = dataset_ready(trainer, dataset_id, snapshot)
    await ensure_topics(trainer, [model.topic for model in EVENT_TYPES])
    state = RedisState(trainer)
    queue = JobQueue(state)
    assert await queue.submit(ready)

    async def record() -> JobRecord:
        found = await queue.get(dataset_id)
        assert found is not None
        return found

    log = (tmp_path / "worker.log").open("ab")
    worker = start_worker(trainer, log)
    try:
        # Past the checkpoint at step 2 (step 3 is under way): kill the worker mid-job.
        async def past_a_checkpoint() -> bool:
            if worker.poll() is not None:
                raise AssertionError(
                    f"the worker exited early:\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
                )
            return (await record()).step >= 3

        await until(past_a_checkpoint)
        worker.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(worker.wait) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()
    killed = await record()
    assert killed.status == "running" and killed.step < MAX_STEPS, "killed mid-job"
    assert killed.run_id is not None
    checkpoints = sorted(p.name for p in job_dir(trainer, ready).glob("checkpoint-*"))
    assert checkpoints, "a checkpoint was saved before the kill"
    assert trainer.trainer.checkpoint_uri is not None
    store = CheckpointStore(trainer, trainer.trainer.checkpoint_uri, job_path(ready))
    assert await asyncio.to_thread(store.complete_steps), "and copied to S3"

    # A new worker on another node (an empty disk) finds the job orphaned once its lease expires, and
    # finishes it from the checkpoint in S3.
    elsewhere = trainer.model_copy(deep=True)
    elsewhere.trainer.work_dir = tmp_path / "node-2"
    resumed = TrainingWorker(elsewhere, worker_id="second-worker", registry=CollectorRegistry())
    await resumed.start()
    task = asyncio.create_task(resumed.run())
    try:
        published = await read_topic(trainer, CHECKPOINT_TRAINED, at_least=1, settle_s=1.0)
    finally:
        resumed.stopping.set()
        await asyncio.wait_for(task, 120)
        await resumed.stop()

    final = await record()
    await state.close()
    assert final.status == "succeeded"
    assert final.attempts == 2, "\n".join(final.history)
    assert final.run_id == killed.run_id, "the same MLflow run"
    assert final.resumed_from_step is not None and 2 <= final.resumed_from_step <= killed.step
    assert len(published) == 1
    assert published[0]["metrics"]["global_step"] == MAX_STEPS, "it ends at the same step count"
    state_file = job_dir(elsewhere, ready) / f"checkpoint-{MAX_STEPS}" / "trainer_state.json"
    assert json.loads(state_file.read_text())["global_step"] == MAX_STEPS
    client = MlflowClient(trainer.mlflow.tracking_uri)
    steps = {m.step for m in client.get_metric_history(final.run_id, "loss")}
    assert steps == set(range(1, MAX_STEPS + 1)), "every step's loss is on the one run"
    assert client.get_run(final.run_id).info.status == "FINISHED"
