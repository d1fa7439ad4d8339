"""Invariant tests: a short loss trajectory per algorithm, pinned, on the tiny random llama.

Each trains three optimizer steps through Kaizen's trainer (the loss math in the in-process ``torch``
kernel backend) on a fixed, seeded dataset, and compares the logged losses with the values below. A
change in TRL, transformers, PEFT, the kernel backend or Kaizen's bridge that moves the numbers fails
here, loudly: re-pin only once the change is understood.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from services.trainer.config import TrainingConfig
from services.trainer.job import build_trainer
from services.trainer.rewards import reward_functions
from shared.kernels.torch_backend import TorchBackend
from shared.models import load_causal_lm
from tests.services.trainer.support import PADDING, QUESTIONS, SHORT_ANSWERS

pytestmark = pytest.mark.slow

PINNED: dict[str, dict[str, list[float]]] = {
    "dpo": {"loss": [0.693147, 0.427148, 0.314138], "grad_norm": [1.142884, 0.731811, 0.562609]},
    # On-policy GRPO's loss is ~0 by construction (the ratio is 1 and the advantages are centred); its
    # gradient is not, so the gradient norm and the reward carry the trajectory.
    "grpo": {
        "loss": [0.0, 0.0, 0.0],
        "grad_norm": [0.316593, 0.389808, 0.30258],
        "reward": [0.177427, 0.191483, 0.19525],
    },
    "sft": {"loss": [10.699715, 10.665174, 10.530148], "grad_norm": [1.423062, 1.035201, 0.639048]},
}
RTOL = 1e-4
ATOL = 1e-5


def records(algorithm: str) -> list[dict[str, Any]]:
    def user(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    def assistant(text: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": text}]

    pairs = list(zip(QUESTIONS[:8], SHORT_ANSWERS[:8], strict=True))
    if algorithm == "dpo":
        return [
            {"prompt": user(q), "chosen": assistant(a), "rejected": assistant(a + PADDING)} for q, a in pairs
        ]
    if algorithm == "sft":
        return [{"prompt": user(q), "completion": assistant(a)} for q, a in pairs]
    return [
        {
            "prompt": user(q),
            "reward_components": ["string_similarity"],
            "contexts": [],
            "reference": f"The answer is {a} as everybody knows",
        }
        for q, a in pairs
    ]


def trajectory(algorithm: str, tmp_path: Path) -> dict[str, list[float]]:
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm("tiny-random-llama")
    config = TrainingConfig(
        base_model="tiny-random-llama",
        batch_size=4,
        micro_batch_size=1,  # the trajectory was pinned one item per forward pass
        max_steps=3,
        learning_rate=5e-3,
        max_length=96,
        num_generations=2,
        max_completion_length=12,
        save_steps=100,
        seed=7,
    ).resolve(algorithm, cuda=False)
    dataset = Dataset.from_list(records(algorithm))
    rewards = reward_functions(dataset["reward_components"]) if algorithm == "grpo" else None
    trainer = build_trainer(
        config, model, tokenizer, dataset, TorchBackend(), tmp_path / algorithm, reward_funcs=rewards
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    keys = PINNED[algorithm]
    return {key: [round(float(entry[key]), 6) for entry in logged] for key in keys}


@pytest.mark.parametrize("algorithm", ["dpo", "grpo", "sft"])
def test_loss_trajectory_is_pinned(algorithm: str, tmp_path: Path) -> None:
    got = trajectory(algorithm, tmp_path)
    for key, expected in PINNED[algorithm].items():
        assert len(got[key]) == 3, got
        assert got[key] == pytest.approx(expected, rel=RTOL, abs=ATOL), f"{algorithm} {key} moved: {got[key]}"


def test_full_fine_tuning_trains_every_weight_against_a_frozen_reference(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm("tiny-random-llama")
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    config = TrainingConfig(
        base_model="tiny-random-llama",
        use_lora=False,
        batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        save_steps=100,
    ).resolve("dpo", cuda=False)
    trainer = build_trainer(
        config, model, tokenizer, Dataset.from_list(records("dpo")[:4]), TorchBackend(), tmp_path
    )
    trainer.train()
    assert trainer.ref_model is not None, "without LoRA, DPO keeps a frozen copy as its reference"
    changed = [
        name
        for name, parameter in trainer.model.named_parameters()
        if not torch.equal(parameter, before[name])
    ]
    assert len(changed) == len(before), "every weight trains"
    assert all(torch.equal(p, before[n]) for n, p in trainer.ref_model.named_parameters()), (
        "the reference stays"
    )


def test_bf16_on_a_cpu_trains_under_autocast(tmp_path: Path) -> None:
    """``bf16: true`` without a GPU trains (transformers refuses bf16 on a CPU unless told it is one)."""
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm("tiny-random-llama")
    config = TrainingConfig(
        base_model="tiny-random-llama",
        batch_size=2,
        max_steps=2,
        learning_rate=5e-3,
        max_length=96,
        save_steps=100,
        bf16=True,
    ).resolve("dpo", cuda=False)
    trainer = build_trainer(
        config, model, tokenizer, Dataset.from_list(records("dpo")[:4]), TorchBackend(), tmp_path
    )
    assert trainer.args.bf16 and trainer.args.use_cpu
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses), losses
