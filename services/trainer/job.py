"""One training job, top to bottom: configure, track, load, build, train, save, register.

``run_training`` is what a worker runs for a claimed job (``services.trainer.worker``); as a program,
``python -m services.trainer.job --dataset-id <id>`` runs the job of one dataset to its end (a
Kubernetes Job per dataset uses this), resuming it from its last checkpoint when it ran before.

1. configure: the deployment's ``TrainingConfig`` resolved for this dataset's algorithm and this device;
   the resolved configuration is logged, hashed, and saved with every checkpoint.
2. track: one MLflow run per job, in the project's experiment (params: dataset id, config hash, base model,
   algorithm and every config field); a resumed job logs to the same run.
3. load: the dataset's rows from its Iceberg snapshot; the base model and tokenizer (offline).
4. build: TRL's trainer for the algorithm, with LoRA (PEFT) unless configured otherwise and the loss
   math in the kernel backend (``KAIZEN_KERNELS__BACKEND``).
5. train: checkpoints every ``save_steps`` optimizer steps; per-step metrics to MLflow (loss, reward
   margins and accuracies, KL, grad norm, tokens/s); a killed job resumes from its last complete
   checkpoint and ends at the same step count.
6. save: the adapter (or the full model) and the tokenizer, logged as the run's ``model`` artifact.
7. register: a version of the registered model, tagged with dataset id, algorithm, base model and config
   hash. The caller publishes ``checkpoint.trained`` with it.

A failure no retry can fix (``TrainingFailure``: empty or broken dataset, NaN loss, out of memory) is
tagged on the run (``kaizen.failure_reason``, ``kaizen.failure_detail``), the run ends FAILED, and the
error goes up to the caller, which publishes ``training.failed``.

Hardware: on a CPU the defaults are float32, no gradient checkpointing, two items per micro-batch; on a
GPU, bf16 where supported, gradient checkpointing, the whole batch per micro-batch (accelerate places the
model). Several GPUs or nodes: launch the same program with accelerate or torchrun, e.g.
``accelerate launch --num_processes 4 -m services.trainer.job --dataset-id ds-1`` (or
``torchrun --nproc-per-node 4 -m services.trainer.job --dataset-id ds-1``); every rank trains its shard
of each batch, and only the main process tracks, saves and registers.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from services.trainer.checkpoints import CheckpointStore
from services.trainer.config import TrainingConfig
from services.trainer.errors import NonFiniteLoss, TrainerError, TrainingFailure
from services.trainer.settings import TrainerSettings
from shared.events import DatasetReady

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

    from shared.kernels.backend import KernelBackend

log = logging.getLogger("kaizen.trainer.job")

CONFIG_FILE = "kaizen_config.json"
MODEL_ARTIFACT = "model"
TAG_DATASET = "kaizen.dataset_id"
TAG_ALGORITHM = "kaizen.algorithm"
TAG_BASE_MODEL = "kaizen.base_model"
TAG_CONFIG_HASH = "kaizen.config_hash"
TAG_FAILURE_REASON = "kaizen.failure_reason"
TAG_FAILURE_DETAIL = "kaizen.failure_detail"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class JobInterrupted(TrainerError):
    """The job stopped before its last step because its worker is stopping; it resumes later."""


class LeaseLost(TrainerError):
    """Another worker may own the job now: this one stops at once, without saving anything."""


class JobHooks(Protocol):
    """What the job tells its runner, and asks it, while it trains (called from the training thread)."""

    def started(self, run_id: str, max_steps: int, resumed_from_step: int | None) -> None: ...

    def progress(self, step: int) -> None: ...

    def should_stop(self) -> bool: ...

    def lease_lost(self) -> bool: ...


class NoHooks:
    def started(self, run_id: str, max_steps: int, resumed_from_step: int | None) -> None:
        return None

    def progress(self, step: int) -> None:
        return None

    def should_stop(self) -> bool:
        return False

    def lease_lost(self) -> bool:
        return False


@dataclass
class JobResult:
    """A trained, saved and registered checkpoint."""

    run_id: str
    registered_model: str
    model_version: str
    model_uri: str
    global_step: int
    max_steps: int
    resumed_from_step: int | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class JobContext:
    """What a job knows about itself before it starts: the event and, on a resume, its MLflow run."""

    event: DatasetReady
    run_id: str | None = None
    on_run: Callable[[str], None] | None = None


def job_path(event: DatasetReady) -> str:
    """``<project>/<dataset>``, made safe for paths and object keys."""
    project = re.sub(r"[^A-Za-z0-9._-]", "_", event.project_id)
    return f"{project}/{re.sub(r'[^A-Za-z0-9._-]', '_', event.dataset_id)[:100]}"


def job_dir(settings: TrainerSettings, event: DatasetReady) -> Path:
    """Where the job of this dataset keeps its checkpoints: stable, so a restarted job finds them."""
    return settings.work_dir / job_path(event)


def _step(checkpoint: Path | None) -> int | None:
    match = _CHECKPOINT.match(checkpoint.name) if checkpoint is not None else None
    return int(match.group(1)) if match else None


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint that was saved to its end (its trainer_state.json is written last).

    A checkpoint cut short by a kill is removed, so the Trainer never resumes from (or rotates) it.
    """
    if not output_dir.is_dir():
        return None
    found = sorted(
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if path.is_dir() and (match := _CHECKPOINT.match(path.name))
    )
    for step, path in reversed(found):
        if (path / "trainer_state.json").is_file():
            return path
        log.warning("removing an incomplete checkpoint", extra={"checkpoint": str(path), "step": step})
        shutil.rmtree(path, ignore_errors=True)
    return None


# ---------------------------------------------------------------------------------------------
# MLflow


class RunTracker:
    """The job's MLflow run: params once, metrics per step, artifacts, the registered version."""

    def __init__(self, settings: TrainerSettings, client: MlflowClient | None = None) -> None:
        from shared.registry import ModelRegistry

        self.settings = settings
        self.registry = ModelRegistry(settings, client)
        self.client = self.registry.client
        self.run_id: str | None = None

    def start(self, event: DatasetReady, config: TrainingConfig, run_id: str | None) -> str:
        """Open the job's run, or reopen it when the job resumes."""
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        experiment_id = self.registry.experiment_id(event.project_id)
        run = self.client.create_run(
            experiment_id,
            run_name=f"{config.algorithm}-{event.dataset_id}",
            tags={
                TAG_DATASET: event.dataset_id,
                TAG_ALGORITHM: str(config.algorithm),
                TAG_BASE_MODEL: config.base_model,
                TAG_CONFIG_HASH: config.config_hash(),
                "kaizen.trigger_reason": event.trigger_reason,
                "kaizen.project_id": event.project_id,
            },
        )
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, event: DatasetReady, config: TrainingConfig, extra: dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = {
            "dataset_id": event.dataset_id,
            "config_hash": config.config_hash(),
            "base_model": config.base_model,
            "algorithm": str(config.algorithm),
            "snapshot_id": str(event.stored.snapshot_id),
            **{f"training.{name}": json.dumps(value) for name, value in config.to_dict().items()},
            **{name: str(value) for name, value in extra.items()},
        }
        existing = self.client.get_run(self._run()).data.params
        fresh = [Param(key, value[:6000]) for key, value in params.items() if key not in existing]
        for start in range(0, len(fresh), 100):
            self.client.log_batch(self._run(), params=fresh[start : start + 100])
        self.client.log_dict(self._run(), config.to_dict(), CONFIG_FILE)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(_metric_name(key), float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, int | float) and math.isfinite(value)
        ]
        if batch:
            self.client.log_batch(self._run(), metrics=batch)

    def register(self, model_dir: Path, event: DatasetReady, config: TrainingConfig) -> tuple[str, str, str]:
        """Log the saved model as the run's artifact and register it once; (name, version, uri)."""
        run_id = self._run()
        self.client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT)
        name = self.registry.ensure_model()
        tags = {
            TAG_DATASET: event.dataset_id,
            TAG_ALGORITHM: str(config.algorithm),
            TAG_BASE_MODEL: config.base_model,
            TAG_CONFIG_HASH: config.config_hash(),
            "kaizen.run_id": run_id,
        }
        existing = [v for v in self.client.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
        if existing:  # a job that crashed after registering: the same version, not a second one
            version = str(existing[0].version)
        else:
            artifact_uri = self.client.get_run(run_id).info.artifact_uri
            created = self.client.create_model_version(
                name, source=f"{artifact_uri}/{MODEL_ARTIFACT}", run_id=run_id, tags=tags
            )
            version = str(created.version)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)
        return name, version, f"models:/{name}/{version}"

    def finish(self) -> None:
        self.client.set_terminated(self._run(), "FINISHED")

    def fail(self, reason: str, detail: str) -> None:
        run_id = self._run()
        self.client.set_tag(run_id, TAG_FAILURE_REASON, reason)
        self.client.set_tag(run_id, TAG_FAILURE_DETAIL, detail[:4900])
        self.client.set_terminated(run_id, "FAILED")

    def _run(self) -> str:
        if self.run_id is None:
            raise TrainerError("the job's MLflow run has not started")
        return self.run_id


def _metric_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)


# ---------------------------------------------------------------------------------------------
# Callbacks: the Trainer tells the job what happens.


class JobCallback(TrainerCallback):  # type: ignore[misc]
    """Per-step metrics to MLflow, progress and stop requests to the runner, the config in checkpoints."""

    def __init__(
        self,
        tracker: RunTracker | None,
        hooks: JobHooks,
        config: TrainingConfig,
        run_id: str,
        is_main: bool,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.checkpoints = checkpoints
        self.tracker = tracker
        self.hooks = hooks
        self.config = config
        self.run_id = run_id
        self.is_main = is_main
        self.resumed_from: int | None = None
        self.last_time = time.monotonic()
        self.last_tokens = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last_time = time.monotonic()
        self.hooks.started(self.run_id, int(state.max_steps), self.resumed_from)

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        for key in ("loss", "grad_norm"):
            value = logs.get(key)
            if isinstance(value, int | float) and not math.isfinite(value):
                raise NonFiniteLoss(f"{key} was {value} at step {state.global_step}", step=state.global_step)
        if "num_tokens" in logs:
            now, tokens = time.monotonic(), float(logs["num_tokens"])
            fresh = tokens - self.last_tokens if tokens >= self.last_tokens else tokens
            if now > self.last_time:
                logs["tokens_per_s"] = fresh / (now - self.last_time)
            self.last_time, self.last_tokens = now, tokens
        if self.tracker is not None and self.is_main:
            self.tracker.log_metrics(logs, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.hooks.lease_lost():
            raise LeaseLost("the job's lease was lost; another worker may own it now")
        self.hooks.progress(int(state.global_step))
        if self.hooks.should_stop():
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.is_main and checkpoint.is_dir():
            (checkpoint / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2, sort_keys=True))
            if self.checkpoints is not None:
                self.checkpoints.upload(checkpoint)


# ---------------------------------------------------------------------------------------------
# Build


def build_trainer(
    config: TrainingConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Any,
    backend: KernelBackend,
    output_dir: Path,
    *,
    callbacks: list[Any] | None = None,
    kernels: Any = None,
    reward_funcs: list[Any] | None = None,
) -> Trainer:
    """TRL's trainer for ``config.algorithm``, with LoRA unless ``use_lora`` is off, loss in ``backend``."""
    from peft import LoraConfig

    from services.trainer.trainers import KaizenDPOTrainer, KaizenGRPOTrainer, KaizenSFTTrainer

    common: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "bf16": bool(config.bf16),
        "use_cpu": not _device_flags()[0],  # transformers refuses bf16 on a CPU unless told it is one
        "activation_checkpointing": bool(config.gradient_checkpointing),
        "logging_steps": config.logging_steps,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "seed": config.seed,
        "data_seed": config.seed,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": _device_flags()[0],
    }
    peft_config = None
    if config.use_lora:
        names = config.lora_target_modules
        targets: str | list[str] = (
            names if names == "all-linear" else [name.strip() for name in names.split(",") if name.strip()]
        )
        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
    shared: dict[str, Any] = {
        "model": model,
        "train_dataset": train_dataset,
        "processing_class": tokenizer,
        "peft_config": peft_config,
        "callbacks": callbacks or [],
        "backend": backend,
        "kernels": kernels,
    }
    trainer: Trainer
    if config.algorithm == "dpo":
        from trl.trainer.dpo_config import DPOConfig

        dpo_args = DPOConfig(
            **common,
            beta=config.beta,
            loss_type=list(config.dpo_loss_type),
            loss_weights=config.dpo_loss_weights,
            label_smoothing=config.label_smoothing,
            max_length=config.max_length,
        )
        trainer = KaizenDPOTrainer(args=dpo_args, **shared)
    elif config.algorithm == "grpo":
        from trl.trainer.grpo_config import GRPOConfig

        grpo_args = GRPOConfig(
            **common,
            num_generations=config.num_generations,
            max_completion_length=config.max_completion_length,
            loss_type=config.grpo_loss_type,
            beta=config.grpo_beta,
            epsilon=config.epsilon,
            epsilon_high=config.epsilon_high,
            scale_rewards=config.scale_rewards,
            temperature=config.temperature,
        )
        trainer = KaizenGRPOTrainer(args=grpo_args, reward_funcs=reward_funcs or [], **shared)
    else:
        from trl.trainer.sft_config import SFTConfig

        sft_args = SFTConfig(
            **common, max_length=config.max_length, completion_only_loss=config.completion_only_loss
        )
        trainer = KaizenSFTTrainer(args=sft_args, **shared)
    trainer.remove_callback(PrinterCallback)  # the job logs through its own callback and logger, no prints
    return trainer


def _device_flags() -> tuple[bool, bool]:
    import torch

    cuda = torch.cuda.is_available()
    return cuda, bool(cuda and torch.cuda.is_bf16_supported())


def _final_metrics(trainer: Trainer) -> dict[str, float]:
    """The last value of each logged metric (the evaluator reads loss and reward margins from here)."""
    metrics: dict[str, float] = {}
    for entry in trainer.state.log_history:
        for key, value in entry.items():
            if isinstance(value, int | float) and math.isfinite(value) and key not in ("epoch", "step"):
                metrics[key] = float(value)
    metrics["global_step"] = float(trainer.state.global_step)
    return metrics


def _save(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, config: TrainingConfig, target: Path) -> Path:
    """The adapter (or full model) and tokenizer, with the config; base_model names the spec, not a path."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    tokenizer.save_pretrained(str(staging))
    adapter_config = staging / "adapter_config.json"
    if adapter_config.is_file():
        content = json.loads(adapter_config.read_text())
        content["base_model_name_or_path"] = config.base_model
        adapter_config.write_text(json.dumps(content, indent=2, sort_keys=True))
    (staging / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, MemoryError | torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ---------------------------------------------------------------------------------------------
# The job


def run_training(
    settings: TrainerSettings,
    context: JobContext,
    hooks: JobHooks | None = None,
    backend: KernelBackend | None = None,
) -> JobResult:
    """Run (or resume) the training job of ``context.event`` to a registered model version."""
    import mlflow
    from accelerate import PartialState

    from services.trainer.data import read_dataset, to_hf_dataset
    from shared.kernels.backend import make_backend
    from shared.models import load_causal_lm
    from shared.store import IcebergStore

    hooks = hooks or NoHooks()
    event = context.event
    is_main = PartialState().is_main_process

    # 1. configure
    cuda, bf16_supported = _device_flags()
    config = settings.training.resolve(event.algorithm, cuda=cuda, bf16_supported=bf16_supported)
    output_dir = job_dir(settings, event)
    output_dir.mkdir(parents=True, exist_ok=True)
    log.info(
        "training job configured",
        extra={
            "dataset_id": event.dataset_id,
            "config": config.to_dict(),
            "config_hash": config.config_hash(),
        },
    )

    # 2. track
    tracker = RunTracker(settings) if is_main else None
    run_id = tracker.start(event, config, context.run_id) if tracker is not None else (context.run_id or "")
    if context.on_run is not None and run_id:
        context.on_run(run_id)
    own_backend = backend is None
    backend = backend or make_backend(settings.kernels)
    try:
        # 3. load (an MLflow base model URI is resolved against this deployment's tracking server)
        mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
        loaded = read_dataset(IcebergStore(settings), event.dataset_id, event.stored.snapshot_id)
        model, tokenizer = load_causal_lm(config.base_model)
        conversational = bool(getattr(tokenizer, "chat_template", None))
        train_dataset = to_hf_dataset(
            loaded,
            str(config.algorithm),
            conversational=conversational,
            min_items=config.min_train_items,
            default_components=config.reward_components,
        )
        if tracker is not None:
            tracker.log_params(
                event,
                config,
                {
                    "train_items": loaded.sizes["train"],
                    "eval_items": loaded.sizes["eval"],
                    "kernel_backend": backend.name,
                    "trigger_reason": event.trigger_reason,
                },
            )

        # 4. build
        checkpoints = (
            CheckpointStore(
                settings, settings.trainer.checkpoint_uri, job_path(event), keep=config.save_total_limit
            )
            if settings.trainer.checkpoint_uri and is_main
            else None
        )
        callback = JobCallback(tracker, hooks, config, run_id, is_main, checkpoints)
        reward_funcs = None
        if config.algorithm == "grpo":
            from services.trainer.rewards import judge_endpoint, reward_functions

            reward_funcs = reward_functions(
                train_dataset["reward_components"],
                judge=judge_endpoint(settings.trainer.judge),
                reward_config=settings.trainer.reward_config,
            )
        trainer = build_trainer(
            config,
            model,
            tokenizer,
            train_dataset,
            backend,
            output_dir,
            callbacks=[callback],
            kernels=settings.kernels,
            reward_funcs=reward_funcs,
        )

        # 5. train
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoints is not None:  # a checkpoint saved on another node
            checkpoint = checkpoints.download_latest(output_dir, _step(checkpoint)) or checkpoint
        resumed_from = _step(checkpoint)
        callback.resumed_from = resumed_from
        log.info("training", extra={"dataset_id": event.dataset_id, "resumed_from_step": resumed_from})
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if trainer.state.global_step < trainer.state.max_steps:
            raise JobInterrupted(
                f"stopped at step {trainer.state.global_step} of {trainer.state.max_steps}; it resumes later"
            )

        # 6. save, 7. register
        metrics = _final_metrics(trainer)
        result = JobResult(
            run_id=run_id,
            registered_model=settings.mlflow.registered_model,
            model_version="",
            model_uri="",
            global_step=trainer.state.global_step,
            max_steps=trainer.state.max_steps,
            resumed_from_step=resumed_from,
            metrics=metrics,
        )
        if is_main and tracker is not None:
            final_dir = _save(trainer, tokenizer, config, output_dir / "final")
            name, version, uri = tracker.register(final_dir, event, config)
            result.registered_model, result.model_version, result.model_uri = name, version, uri
            tracker.finish()
        return result
    except TrainingFailure as failure:
        if tracker is not None:
            tracker.fail(failure.reason, failure.detail)
        raise
    except (JobInterrupted, LeaseLost):
        raise
    except Exception as exc:
        if _out_of_memory(exc):
            oom = TrainingFailure("out_of_memory", f"{type(exc).__name__}: {exc}")
            if tracker is not None:
                tracker.fail(oom.reason, oom.detail)
            raise oom from exc
        raise
    finally:
        if own_backend:
            backend.close()


# ---------------------------------------------------------------------------------------------
# As a program: run one dataset's job (a Kubernetes Job per dataset, or by hand).


def main(argv: list[str] | None = None) -> int:
    """``python -m services.trainer.job --dataset-id ID``: run that dataset's queued job to its end.

    Exit status 0 when the job succeeded or failed for good (its outcome is published), 75 when it
    should be retried (another worker holds it, or the attempt failed for a passing reason).
    """
    import asyncio

    from services.trainer.worker import run_one
    from shared.telemetry import configure_logging

    parser = argparse.ArgumentParser(prog="python -m services.trainer.job", description=main.__doc__)
    parser.add_argument("--dataset-id", required=True, help="Dataset whose training job to run.")
    options = parser.parse_args(argv)
    settings = TrainerSettings()
    configure_logging("trainer-job", settings.log_level)
    return asyncio.run(run_one(settings, options.dataset_id))


if __name__ == "__main__":
    raise SystemExit(main())
