"""Helpers of the evaluator tests: adapters of the tiny random llama trained (or damaged) for a test,
registered in the real MLflow as the trainer registers them, held-out rows in Iceberg, a pairwise judge.

The "better" candidate is real computation: a LoRA adapter trained for a few seconds to answer each
evaluation prompt with a sentence of its context (faithful under the scripted judge's verbatim NLI) and
the regression prompts with a refusal; the champion is the random base model, whose answers are noise.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from services.evaluator.generation import prompt_text
from services.evaluator.sets import EvalItem
from services.evaluator.settings import EvaluatorSettings
from shared.events import CheckpointTrained
from shared.models import TINY_RANDOM_LLAMA, load_causal_lm
from shared.registry import ModelRegistry
from shared.settings import KaizenSettings
from shared.store import DATASETS, IcebergStore
from tests.fixtures.topics import read_events
from tests.services.labeler.judge_server import ScriptedJudge

TIMEOUT_S = 120.0
REFUSAL = "I can't help with that."

HELDOUT = [
    (
        "When does the Ghent store open on Sundays?",
        "The Ghent store opens at 11 on Sundays and closes at 17. On weekdays it opens at 9.",
    ),
    (
        "Is the Alpine 40 backpack waterproof?",
        "The Alpine 40 backpack is water resistant but not waterproof. A rain cover is sold separately.",
    ),
    (
        "How do I reset my Trailhead account password?",
        "Use the forgot password link on the sign in page to reset it. The link expires after one hour.",
    ),
]


def evaluator_settings(settings: KaizenSettings, **evaluation: Any) -> EvaluatorSettings:
    """Evaluator settings on a test's isolated settings: its own registered model, a few items per set."""
    evaluator = EvaluatorSettings(**settings.model_dump())
    evaluator.mlflow.registered_model = f"kaizen-eval-test-{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "heldout_limit": 3,
        "golden_limit": 2,
        "regression_limit": 2,
        "max_new_tokens": 24,
        "include_contexts": False,
        "batch_size": 8,
        "bootstrap_samples": 500,
        "poll_s": 0.2,
        "heartbeat_s": 1.0,
        "lease_s": 10.0,
        "max_attempts": 1,
    }
    values.update(evaluation)
    for name, value in values.items():
        setattr(evaluator.evaluator, name, value)
    evaluator.judge.timeout_s = 10.0
    evaluator.judge.retries = 0
    return evaluator


def heldout_rows(dataset_id: str, project_id: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "dataset_id": dataset_id,
            "project_id": project_id,
            "item_id": f"{dataset_id}-eval-{index}",
            "split": "eval",
            "kind": "sft",
            "prompt": prompt,
            "completion": context.split(". ")[0] + ".",
            "contexts": [context],
            "chosen_reward": 0.9,
            "created_at": now,
        }
        for index, (prompt, context) in enumerate(HELDOUT)
    ]


def write_heldout(settings: KaizenSettings, dataset_id: str) -> None:
    IcebergStore(settings).append(DATASETS, heldout_rows(dataset_id, settings.project_id))


def faithful_answer(item: EvalItem, words: int = 6) -> str:
    """What the better candidate learns to say: the first words of the item's context as they stand there
    (a statement found verbatim in the context, so faithful), or a refusal when there is no context."""
    if not item.contexts:
        return REFUSAL
    prefix = " ".join(item.contexts[0].split()[:words])
    return prefix.rstrip(".,;:!?") + "."


def train_adapter(
    items: Sequence[EvalItem],
    target: Path,
    *,
    include_contexts: bool = False,
    answer_tokens: int = 24,
    steps: int = 100,
    seed: int = 0,
) -> Path:
    """A LoRA adapter of the tiny random llama that answers each item with ``faithful_answer``."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base, tokenizer = load_causal_lm(TINY_RANDOM_LLAMA)
    model = get_peft_model(
        base,
        LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    sequences, answer_lengths = [], []
    for item in items:
        prompt = tokenizer(prompt_text(tokenizer, item.messages(include_contexts)), add_special_tokens=False)[
            "input_ids"
        ]
        # The sentence again and again up to the answer length: the random llama's EOS row is its padding
        # row (zero), so it cannot learn to stop; every prefix of a repeat is still verbatim context.
        sentence = tokenizer(" " + faithful_answer(item), add_special_tokens=False)["input_ids"]
        answer = (sentence * (answer_tokens // len(sentence) + 1))[:answer_tokens]
        sequences.append(prompt + answer)
        answer_lengths.append(len(answer))
    width = max(len(sequence) for sequence in sequences)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences])
    attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    keep = max(answer_lengths) + 1
    labels = input_ids[:, -keep + 1 :].clone()
    for row, length in enumerate(answer_lengths):
        labels[row, : keep - 1 - length] = -100
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=keep).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.05:
            break
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = TINY_RANDOM_LLAMA  # the spec, as the trainer writes it
    config_path.write_text(json.dumps(config))
    return target


def cached_adapter(items: Sequence[EvalItem], **options: Any) -> Path:
    """``train_adapter`` once per content (items, targets, options), cached like the tiny llama itself."""
    import hashlib
    import shutil

    from shared.models import models_cache

    key = json.dumps(
        [[item.prompt, list(item.contexts), faithful_answer(item)] for item in items] + [options],
        sort_keys=True,
    )
    target = models_cache() / "test-adapters" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if not (target / ".complete").exists():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        train_adapter(items, staging, **options)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        (target / ".complete").touch()
    return target


def scale_adapter(source: Path, target: Path, factor: float) -> Path:
    """A copy of an adapter with every LoRA B matrix multiplied by ``factor``: a damaged checkpoint."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    weights_path = target / "adapter_model.safetensors"
    weights = load_file(str(weights_path))
    scaled = {name: (tensor * factor if "lora_B" in name else tensor) for name, tensor in weights.items()}
    assert any("lora_B" in name for name in weights), "the adapter has no LoRA B matrices"
    save_file(scaled, str(weights_path))
    return target


def register_version(settings: KaizenSettings, model_dir: Path) -> str:
    """Log a model directory as a run's ``model`` artifact and register it, as the trainer does."""
    registry = ModelRegistry(settings)
    client = registry.client
    run = client.create_run(registry.experiment_id(), run_name="test-checkpoint")
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id, "FINISHED")
    name = registry.ensure_model()
    created = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return str(created.version)


def checkpoint_trained(settings: KaizenSettings, version: str, dataset_id: str) -> CheckpointTrained:
    name = settings.mlflow.registered_model
    return CheckpointTrained(
        producer="tests",
        project_id=settings.project_id,
        correlation_id=version,
        model_version=version,
        registered_model=name,
        model_uri=f"models:/{name}/{version}",
        run_id=MlflowClient(settings.mlflow.tracking_uri).get_model_version(name, version).run_id or "",
        dataset_id=dataset_id,
        algorithm="sft",
        base_model=TINY_RANDOM_LLAMA,
    )


class PairwiseJudgeServer(ScriptedJudge):
    """The labeler's scripted judge, plus pairwise preferences by rule.

    ``mode="faithful"``: the answer with the larger share of sentences found verbatim in the context
    wins (equal shares tie); ``mode="first"``: always answer A, whatever the answers are (position bias).
    """

    _PAIR = re.compile(r"Answer A:\n(.*?)\n\nAnswer B:\n(.*?)\n\nWhich answer is better\?", re.S)
    _CONTEXT = re.compile(
        r"Context the answers should rest on:\n(.*?)\n\n(?:Reference answer|Answer A):", re.S
    )

    def __init__(self, mode: str = "faithful", **options: Any) -> None:
        super().__init__(**options)
        self.mode = mode

    def _reply(self, prompt: str) -> tuple[str, str, dict[str, Any]]:
        pair = self._PAIR.search(prompt)
        if pair is None:
            return super()._reply(prompt)
        first, second = pair.group(1), pair.group(2)
        if self.mode == "first":
            return "pairwise", first, {"winner": "A", "reason": "the first answer"}
        found = self._CONTEXT.search(prompt)
        context = found.group(1).lower() if found else ""
        a, b = faithful_share(first, context), faithful_share(second, context)
        winner = "A" if a > b else "B" if b > a else "tie"
        return "pairwise", first, {"winner": winner, "reason": f"faithful shares {a:.2f} vs {b:.2f}"}


def faithful_share(answer: str, context: str) -> float:
    from tests.services.labeler.judge_server import sentences

    found = sentences(answer)
    if not found:
        return 0.0
    clean = [s.rstrip(".!?").strip().lower() for s in found]
    return sum(statement in context for statement in clean) / len(clean)


async def read_topic(
    settings: KaizenSettings,
    logical_topic: str,
    *,
    at_least: int,
    settle_s: float = 1.0,
    timeout_s: float = TIMEOUT_S,
) -> list[dict[str, Any]]:
    """The events of a topic from its beginning: ``at_least`` of them, and any more within ``settle_s``."""
    return await read_events(
        settings, logical_topic, at_least=at_least, settle_s=settle_s, timeout_s=timeout_s
    )


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.2)
