"""One evaluation, top to bottom: items, answers of both models, scores, preferences, rules, the gate.

``evaluate`` takes a ``checkpoint.trained`` event and returns an ``Evaluation``: the verdicts, the reason,
the summary metrics and the evaluation table (one row per item: the prompt, both answers, every score).
It imports no broker; ``services.evaluator.recording`` writes the result to MLflow and the worker
publishes it.

The champion is the version holding the alias ``champion``. While no version holds it (the first turn of
the loop) the champion is ``champion_fallback`` from the settings, by default the candidate's own base
model: the first adapter must beat the model it was trained from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.evaluator import gate
from services.evaluator.errors import EvaluationError
from services.evaluator.generation import Decoding, generate_with
from services.evaluator.pairwise import PairwiseJudge, Preference, composite_preference
from services.evaluator.sets import SET_NAMES, EvalItem, evaluation_items
from services.evaluator.settings import EvaluatorSettings
from shared.evalsets import check_rules
from shared.events import CheckpointTrained, GateVerdict
from shared.registry import CHAMPION, ModelRegistry
from shared.rewards import RewardInput, RewardScorer, load_reward_config
from shared.rewards.judge import JudgeClient
from shared.store import IcebergStore

log = logging.getLogger("kaizen.evaluator.evaluation")

CANDIDATE, CHAMPION_ROLE = "candidate", "champion"


@dataclass(frozen=True)
class Champion:
    """What the candidate is compared with: a registered version, or the fallback model spec."""

    spec: str
    version: str | None

    @property
    def label(self) -> str:
        return f"version {self.version}" if self.version else f"base model {self.spec!r}"


@dataclass
class Evaluation:
    """The outcome of one evaluation: what the gate decided, why, and the numbers behind it."""

    model_version: str
    registered_model: str
    champion: Champion
    passed: bool
    verdicts: list[GateVerdict]
    reason: str
    metrics: dict[str, float]
    table: list[dict[str, Any]] = field(default_factory=list)

    @property
    def candidate_metrics(self) -> dict[str, float]:
        """The candidate's summary (what the events carry): everything not about the champion."""
        return {name: value for name, value in self.metrics.items() if not name.startswith("champion.")}


def find_champion(registry: ModelRegistry, event: CheckpointTrained, fallback: str | None) -> Champion:
    found = registry.version(CHAMPION, event.registered_model)
    if found is not None:
        return Champion(spec=f"models:/{event.registered_model}/{found.version}", version=str(found.version))
    return Champion(spec=fallback or event.base_model, version=None)


async def judge_client(settings: EvaluatorSettings, scorer: RewardScorer) -> JudgeClient | None:
    """The judge client pairwise preferences go through: the scorer's, or one of its own."""
    if not settings.evaluator.judge_enabled:
        return None
    return scorer.judge or JudgeClient(settings.judge)


def _metric_columns(rows: Sequence[dict[str, float | None]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [name for name in row if name not in names]
    return names


async def evaluate(
    settings: EvaluatorSettings,
    event: CheckpointTrained,
    *,
    scorer: RewardScorer,
    store: IcebergStore | None = None,
    registry: ModelRegistry | None = None,
) -> Evaluation:
    """Evaluate the candidate of ``event`` against the champion (see the module doc)."""
    import mlflow

    options = settings.evaluator
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)  # models:/ URIs resolve against this server
    registry = registry or ModelRegistry(settings)
    store = store or IcebergStore(settings)

    items = await asyncio.to_thread(evaluation_items, options, store, event.dataset_id)
    champion = await asyncio.to_thread(find_champion, registry, event, options.champion_fallback)
    if champion.version == event.model_version:
        raise EvaluationError(f"version {event.model_version} is the champion already; nothing to compare")
    log.info(
        "evaluating",
        extra={
            "model_version": event.model_version,
            "champion": champion.label,
            "items": {name: sum(item.set_name == name for item in items) for name in SET_NAMES},
        },
    )

    # Answers: the same prompts, the same decoding, one model in memory at a time.
    decoding = Decoding.of(options)
    answers = {
        CANDIDATE: await asyncio.to_thread(
            generate_with, event.model_uri, items, decoding, options.device, options.precision
        ),
        CHAMPION_ROLE: await asyncio.to_thread(
            generate_with, champion.spec, items, decoding, options.device, options.precision
        ),
    }

    # Scores: the reward components and the composite of the scored sets, for both models in one batch.
    scored = [index for index, item in enumerate(items) if item.scored]
    inputs = [
        RewardInput(items[i].prompt, answers[role][i], items[i].contexts, items[i].reference)
        for role in (CANDIDATE, CHAMPION_ROLE)
        for i in scored
    ]
    components = await scorer.score(inputs, use_judge=options.judge_enabled)
    for row in components:
        row[gate.COMPOSITE] = scorer.composite(row).composite_reward
    by_role = {CANDIDATE: components[: len(scored)], CHAMPION_ROLE: components[len(scored) :]}
    metric_names = _metric_columns(components)

    # Pairwise preference in both orders (or, without a judge, by composite reward).
    client = await judge_client(settings, scorer)
    preferences: list[Preference]
    if client is not None:
        pairwise = PairwiseJudge(client)
        preferences = list(
            await asyncio.gather(
                *(
                    pairwise.compare(
                        items[i].prompt,
                        answers[CANDIDATE][i],
                        answers[CHAMPION_ROLE][i],
                        items[i].contexts,
                        items[i].reference,
                    )
                    for i in scored
                )
            )
        )
        how = "pairwise judge, both orders"
        if client is not scorer.judge:
            await client.close()
    else:
        preferences = [
            composite_preference(c[gate.COMPOSITE], b[gate.COMPOSITE])
            for c, b in zip(by_role[CANDIDATE], by_role[CHAMPION_ROLE], strict=True)
        ]
        how = "composite reward, no judge"

    # Rule checks of the regression set.
    rules = {
        role: {
            i: check_rules(items[i].regression_item(), answers[role][i])
            for i, item in enumerate(items)
            if not item.scored
        }
        for role in (CANDIDATE, CHAMPION_ROLE)
    }
    rule_rates = {
        role: (
            sum(all(rule.passed for rule in results) for results in rules[role].values()) / len(rules[role])
            if rules[role]
            else None
        )
        for role in rules
    }

    # The gate.
    series = {
        role: {name: [row.get(name) for row in by_role[role]] for name in metric_names} for role in by_role
    }
    compared = options.compared_metrics or metric_names
    unknown = [name for name in compared if name not in metric_names]
    if unknown:
        raise EvaluationError(f"compared_metrics names metrics that are not computed: {unknown}")
    judged = client is not None
    verdicts = [
        *gate.absolute_verdicts(series[CANDIDATE], options, judged),
        gate.win_rate_verdict([p.score for p in preferences], options, how),
        *gate.no_worse_verdicts(series[CANDIDATE], series[CHAMPION_ROLE], compared, options),
        gate.rules_verdict(rule_rates[CANDIDATE], rule_rates[CHAMPION_ROLE], options.rule_tolerance),
    ]
    passed = all(verdict.passed for verdict in verdicts)

    metrics: dict[str, float] = {}
    for role, prefix in ((CANDIDATE, ""), (CHAMPION_ROLE, "champion.")):
        for name in metric_names:
            mean = gate.mean_present(series[role][name])
            if mean is not None:
                metrics[f"{prefix}{name}"] = mean
        if rule_rates[role] is not None:
            metrics[f"{prefix}{gate.RULE_PASS_RATE}"] = float(rule_rates[role] or 0.0)
    win_rate = gate.mean_present([p.score for p in preferences])
    if win_rate is not None:
        metrics[gate.WIN_RATE] = win_rate
    for outcome in ("win", "tie", "loss"):
        metrics[f"pairwise.{outcome}s"] = float(sum(p.outcome == outcome for p in preferences))
    for name in SET_NAMES:
        metrics[f"items.{name}"] = float(sum(item.set_name == name for item in items))

    table = _table(items, answers, scored, by_role, preferences, rules, metric_names)
    return Evaluation(
        model_version=event.model_version,
        registered_model=event.registered_model,
        champion=champion,
        passed=passed,
        verdicts=verdicts,
        reason=gate.reason(verdicts),
        metrics=metrics,
        table=table,
    )


def _table(
    items: Sequence[EvalItem],
    answers: dict[str, list[str]],
    scored: Sequence[int],
    by_role: dict[str, list[dict[str, float | None]]],
    preferences: Sequence[Preference],
    rules: dict[str, dict[int, list[Any]]],
    metric_names: Sequence[str],
) -> list[dict[str, Any]]:
    """One row per item: the prompt, both answers, every score, the preference and the rule results."""
    position = {index: n for n, index in enumerate(scored)}
    rows = []
    for i, item in enumerate(items):
        row: dict[str, Any] = {
            "set": item.set_name,
            "item_id": item.item_id,
            "prompt": item.prompt,
            "contexts": list(item.contexts),
            "reference": item.reference,
            "candidate_answer": answers[CANDIDATE][i],
            "champion_answer": answers[CHAMPION_ROLE][i],
        }
        if i in position:
            n = position[i]
            for role in (CANDIDATE, CHAMPION_ROLE):
                for name in metric_names:
                    row[f"{role}_{name}"] = by_role[role][n].get(name)
            preference = preferences[n]
            row |= {
                "preference": preference.outcome,
                "preference_score": preference.score,
                "judge_candidate_first": preference.candidate_first,
                "judge_champion_first": preference.champion_first,
            }
        else:
            for role in (CANDIDATE, CHAMPION_ROLE):
                results = rules[role][i]
                row[f"{role}_rules_passed"] = all(rule.passed for rule in results)
                row[f"{role}_rules_failed"] = [rule.rule for rule in results if not rule.passed]
        rows.append(row)
    return rows


def create_scorer(settings: EvaluatorSettings) -> RewardScorer:
    """The labeler's reward components with the same configuration (and the judge when enabled)."""
    config = load_reward_config(settings.evaluator.reward_config)
    judge = settings.judge if settings.evaluator.judge_enabled else None
    return RewardScorer.create(config, judge=judge)
