"""The two kernel backends agree: on the same batch, Kaizen's trainer gives the same loss and the same LoRA
gradients whether the loss math runs in process (``torch``) or in the Rust kernel service (``grpc``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset

from services.trainer import losses
from services.trainer.config import TrainingConfig
from services.trainer.job import build_trainer
from shared.kernels.backend import KernelBackend
from shared.kernels.grpc_backend import GrpcBackend
from shared.kernels.torch_backend import TorchBackend
from shared.models import load_causal_lm
from shared.settings import KernelSettings
from tests.services.trainer.support import PADDING, QUESTIONS, SHORT_ANSWERS

pytestmark = pytest.mark.integration
RELATIVE = 1e-4


@pytest.fixture(scope="module")
def grpc_backend(kernel_server: str) -> Any:
    backend = GrpcBackend.from_settings(KernelSettings(address=kernel_server, backend="grpc"))  # type: ignore[call-arg]
    yield backend
    backend.close()


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm().clamp(min=1e-30))


def _dpo_loss_and_lora_grads(
    backend: KernelBackend, loss_type: list[str], tmp_path: Path
) -> tuple[float, dict[str, torch.Tensor], dict[str, float]]:
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm("tiny-random-llama")
    config = TrainingConfig(
        base_model="tiny-random-llama",
        batch_size=2,
        micro_batch_size=2,
        max_steps=1,
        max_length=96,
        dpo_loss_type=loss_type,
        label_smoothing=0.1 if "robust" in loss_type else 0.0,
        save_steps=100,
    ).resolve("dpo", cuda=False)
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": question}],
                "chosen": [{"role": "assistant", "content": answer}],
                "rejected": [{"role": "assistant", "content": answer + PADDING}],
            }
            for question, answer in zip(QUESTIONS[:2], SHORT_ANSWERS[:2], strict=True)
        ]
    )
    trainer = build_trainer(config, model, tokenizer, dataset, backend, tmp_path / backend.name)
    # LoRA starts with B = 0, which would leave A without gradient: give B seeded values first.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {
        name: parameter.grad.detach().clone()
        for name, parameter in trainer.model.named_parameters()
        if "lora_" in name and parameter.grad is not None
    }
    metrics = {
        key: values[-1] for key, values in trainer._metrics["train"].items() if key.startswith("rewards/")
    }
    return float(loss.detach()), grads, metrics


@pytest.mark.parametrize("loss_type", [["sigmoid"], ["ipo"], ["hinge"], ["robust"], ["sigmoid", "ipo"]])
def test_dpo_loss_and_lora_gradients_match_across_backends(
    loss_type: list[str], grpc_backend: GrpcBackend, tmp_path: Path
) -> None:
    torch_loss, torch_grads, torch_metrics = _dpo_loss_and_lora_grads(TorchBackend(), loss_type, tmp_path)
    grpc_loss, grpc_grads, grpc_metrics = _dpo_loss_and_lora_grads(grpc_backend, loss_type, tmp_path)

    assert grpc_loss == pytest.approx(torch_loss, rel=RELATIVE)
    assert len(torch_grads) == 2 * 7 * 2, "A and B of every linear layer of both blocks get a gradient"
    assert set(grpc_grads) == set(torch_grads)
    for name, want in torch_grads.items():
        assert want.abs().max() > 0, f"{name} has no gradient: the comparison would be empty"
        assert _relative_error(grpc_grads[name], want) <= RELATIVE, name
        torch.testing.assert_close(
            grpc_grads[name], want, rtol=RELATIVE, atol=RELATIVE * float(want.abs().max())
        )
    assert grpc_metrics == pytest.approx(torch_metrics, rel=RELATIVE, abs=1e-7)


def test_grpo_and_cross_entropy_bridges_match_across_backends(grpc_backend: GrpcBackend) -> None:
    generator = torch.Generator().manual_seed(3)
    logps = -torch.rand(4, 9, generator=generator, dtype=torch.float32) * 3
    old = logps + torch.randn(4, 9, generator=generator) * 0.2
    ref = logps + torch.randn(4, 9, generator=generator) * 0.2
    mask = (torch.rand(4, 9, generator=generator) > 0.2).float()
    advantages = torch.randn(4, generator=generator)
    logits = torch.randn(37, 50, generator=generator)
    labels = torch.randint(0, 50, (37,), generator=generator)
    labels[::5] = -100

    def run(backend: KernelBackend, loss_type: str) -> tuple[float, torch.Tensor, float, torch.Tensor]:
        policy = logps.clone().requires_grad_()
        loss, _ = losses.grpo_loss(
            backend,
            policy,
            advantages,
            mask,
            old_per_token_logps=old,
            ref_per_token_logps=ref,
            loss_type=loss_type,
            beta=0.04,
            epsilon_low=0.2,
            epsilon_high=0.28,
            delta=None,
            max_completion_length=9,
            normalizer=None,
            use_bias_correction_kl=False,
        )
        loss.backward()
        scores = logits.clone().requires_grad_()
        # 600 bytes per message forces the rows into several chunks
        ce = losses.cross_entropy(backend, scores, labels, normalizer=30.0, max_message_bytes=600)
        ce.backward()
        assert policy.grad is not None and scores.grad is not None
        return float(loss.detach()), policy.grad, float(ce.detach()), scores.grad

    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        want = run(TorchBackend(), loss_type)
        got = run(grpc_backend, loss_type)
        assert got[0] == pytest.approx(want[0], rel=RELATIVE), loss_type
        assert _relative_error(got[1], want[1]) <= RELATIVE, loss_type
        assert got[2] == pytest.approx(want[2], rel=RELATIVE)
        assert _relative_error(got[3], want[3]) <= RELATIVE
    reference = torch.nn.functional.cross_entropy(logits, labels, reduction="sum") / 30.0
    assert want[2] == pytest.approx(float(reference), rel=1e-5), "the chunks add up to the whole loss"
