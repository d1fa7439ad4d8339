"""GRPO reward functions: the labeler's own reward components (``shared.rewards``), called in process.

A GRPO dataset item names the components that score it (its ``reward_components`` column, or the job's
default). Each component the dataset uses becomes one TRL reward function, built by the labeler's
``grpo_reward_function`` on a ``RewardScorer`` (so the trainer scores a completion exactly as the labeler
scores a trace); TRL logs each as ``rewards/kaizen_<component>/mean``. A function returns None for the
completions of items that do not name its component, and the scorer returns None where the component
cannot be computed (no reference, no contexts): TRL leaves a None out of the group baseline, as the
labeler leaves a missing component out of the composite.

The scorer computes the components of the deployment's reward configuration (``shared/rewards``'s YAML)
restricted to those the dataset uses, with their weights, rubric and options. Components that need the
LLM judge (ragas faithfulness and answer relevancy, rubric criteria) call the judge endpoint of the
trainer's settings (``KAIZEN_TRAINER__JUDGE__BASE_URL``, ...); without one, a dataset that asks for them
is broken (nothing could score its completions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.trainer.errors import DatasetBroken

if TYPE_CHECKING:
    from shared.rewards import JudgeEndpoint, RewardScorer

RewardFunction = Callable[..., list[float | None]]


def judge_endpoint(fields: dict[str, Any] | None) -> JudgeEndpoint | None:
    """The labeler's ``JudgeEndpoint`` from the trainer's settings, or None when none is configured."""
    if fields is None:
        return None
    from shared.rewards.judge import JudgeEndpoint

    return JudgeEndpoint.model_validate(fields)


def used_components(components_per_item: Sequence[Sequence[str]]) -> list[str]:
    """Every component the items name, in first-use order."""
    return list(dict.fromkeys(name for names in components_per_item for name in names))


def build_scorer(
    components: Sequence[str], *, judge: JudgeEndpoint | None = None, reward_config: Path | None = None
) -> RewardScorer:
    """The labeler's scorer, for these components only (no embeddings or judge unless they need them)."""
    from shared.rewards import RewardConfig, RewardScorer, load_reward_config
    from shared.rewards.config import CONTEXT_SIMILARITY, RAGAS_COMPONENTS, REFERENCE_SIMILARITY
    from shared.rewards.embeddings import SentenceEmbedder

    base = load_reward_config(reward_config)
    computable = set(base.component_names) | {"string_similarity", "rouge_l", *RAGAS_COMPONENTS}
    unknown = [name for name in components if name not in computable]
    if unknown:
        raise DatasetBroken(f"reward components {unknown} are neither computable nor in the rubric")
    raw = base.canonical()
    raw["rubric"]["criteria"] = {
        name: text for name, text in base.rubric.criteria.items() if name in components
    }
    raw["weights"] = {name: 1.0 for name in components if name not in raw["rubric"]["criteria"]}
    raw["gates"] = []
    config = RewardConfig.model_validate(raw)
    needs_embeddings = any(config.wants(name) for name in (CONTEXT_SIMILARITY, REFERENCE_SIMILARITY))
    embedder = SentenceEmbedder.shared() if needs_embeddings else None
    if config.needs_judge:
        if judge is None:
            needing = [
                name for name in components if name in RAGAS_COMPONENTS or name in config.rubric.criteria
            ]
            raise DatasetBroken(
                f"reward components {needing} need the LLM judge; the trainer has none configured"
            )
        return RewardScorer.create(config, judge=judge, embedder=embedder)
    return RewardScorer(config, embedder)


def _for_items_naming(component: str, score: RewardFunction) -> RewardFunction:
    """``score`` on the completions whose item names ``component``; None for the others."""

    def reward(
        prompts: list[Any],
        completions: list[Any],
        reward_components: list[list[str]] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        wanted = [
            index
            for index in range(len(completions))
            if reward_components is None or component in reward_components[index]
        ]
        scores: list[float | None] = [None] * len(completions)
        if not wanted:
            return scores
        subset = {
            name: [values[index] for index in wanted]
            for name, values in columns.items()
            if isinstance(values, list) and len(values) == len(completions)
        }
        found = score([prompts[i] for i in wanted], [completions[i] for i in wanted], **subset)
        for index, value in zip(wanted, found, strict=True):
            scores[index] = value
        return scores

    reward.__name__ = getattr(score, "__name__", component)
    return reward


def reward_functions(
    components_per_item: Sequence[Sequence[str]],
    *,
    judge: JudgeEndpoint | None = None,
    reward_config: Path | None = None,
) -> list[RewardFunction]:
    """One TRL reward function per component the dataset uses."""
    from shared.rewards import grpo_reward_function

    components = used_components(components_per_item)
    if not components:
        raise DatasetBroken("no GRPO item names a reward component")
    scorer = build_scorer(components, judge=judge, reward_config=reward_config)
    return [_for_items_naming(name, grpo_reward_function(scorer, name)) for name in components]
