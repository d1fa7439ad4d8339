"""The torch backend, the reference of the parity tests, against TRL's own code and known values."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from shared.kernels.errors import KernelInputError
from shared.kernels.torch_backend import TorchBackend

trl_utils = pytest.importorskip("trl.trainer.utils")


def test_selective_log_softmax_is_trls(torch_backend: TorchBackend) -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 11, generator=generator, dtype=torch.float64) * 5
    labels = torch.randint(0, 11, (2, 5), generator=generator)
    for temperature in (1.0, 0.6):
        ours = torch_backend.selective_log_softmax(logits, labels, temperature=temperature).logps
        theirs = trl_utils.selective_log_softmax(logits, labels, temperature=temperature)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_group_statistics_match_trls_nanstd(torch_backend: TorchBackend) -> None:
    rewards = torch.tensor([1.0, 2.5, float("nan"), 4.0, 0.5, 0.25, -3.0, 2.0], dtype=torch.float64)
    out = torch_backend.group_advantages(rewards, num_generations=4, scale_rewards="group")
    grouped = rewards.view(-1, 4)
    std = trl_utils.nanstd(grouped, dim=1).repeat_interleave(4)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(4)
    torch.testing.assert_close(out.std, std, rtol=1e-12, atol=0)
    want = torch.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)
    torch.testing.assert_close(out.advantages, want, rtol=1e-12, atol=0)
    assert out.advantages[2] == 0.0  # the unscorable completion


def test_dpo_known_values(torch_backend: TorchBackend) -> None:
    zero = torch.zeros(3, dtype=torch.float64)
    out = torch_backend.dpo_loss(zero, zero, zero, zero, beta=0.1)
    assert out.loss.item() == pytest.approx(math.log(2))
    torch.testing.assert_close(
        out.grad_policy_chosen_logps, torch.full((3,), -0.1 * 0.5 / 3, dtype=torch.float64)
    )
    hinge = torch_backend.dpo_loss(zero + 20, zero, zero, zero, beta=0.1, loss_type="hinge")
    assert hinge.loss.item() == 0.0 and hinge.grad_policy_chosen_logps.abs().sum() == 0
    lengths = torch.tensor([0, 2, 4])
    ipo = torch_backend.dpo_loss(
        zero + 4,
        zero,
        zero,
        zero,
        beta=0.5,
        loss_type="ipo",
        chosen_lengths=lengths,
        rejected_lengths=lengths,
    )
    # per-token log-ratios 4/1, 4/2, 4/4 against the target 1 / (2 * 0.5) = 1
    assert ipo.loss.item() == pytest.approx(((4 - 1) ** 2 + (2 - 1) ** 2 + 0) / 3)
    assert ipo.metrics()["rewards/accuracies"] == 1.0


def test_grpo_on_policy_loss_is_minus_the_mean_advantage(torch_backend: TorchBackend) -> None:
    logps = -torch.rand(3, 4, dtype=torch.float64)
    advantages = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    out = torch_backend.grpo_loss(logps, advantages, torch.ones(3, 4), loss_type="grpo")
    assert out.loss.item() == pytest.approx(-advantages.mean().item())
    assert out.clip_ratio_region_mean == 0.0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda b, z: b.dpo_loss(z, z, z, z, loss_type="kto"), "loss_types"),
        (lambda b, z: b.dpo_loss(z, z, z, z, loss_type="ipo"), "chosen_lengths"),
        (lambda b, z: b.grpo_loss(z.view(1, 2), z[:1], z.view(1, 2), loss_type="sapo"), "loss_type"),
        (lambda b, z: b.group_advantages(z, num_generations=3), "num_generations"),
        (lambda b, z: b.group_advantages(z, num_generations=2, scale_rewards="rank"), "scale_rewards"),
    ],
)
def test_invalid_input_names_the_field_as_the_service_does(
    torch_backend: TorchBackend, call: Callable[[TorchBackend, torch.Tensor], object], field: str
) -> None:
    with pytest.raises(KernelInputError, match=rf"^{field}"):
        call(torch_backend, torch.zeros(2, dtype=torch.float64))
