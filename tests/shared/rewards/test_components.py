"""Reward components without any server: configuration and hash, feedback score, composite and gates,
the rubric's strict JSON, the non-LLM metrics (equal to ragas's own), evaluation sets and
decontamination."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from shared.evalsets import Decontaminator, check_rules, load_golden, load_regression
from shared.rewards import (
    NO_COMPONENTS,
    FeedbackSignal,
    RewardError,
    RewardInput,
    RewardScorer,
    composite_reward,
    feedback_score,
    grpo_reward_function,
    load_reward_config,
)
from shared.rewards.config import DEFAULT_REWARD_CONFIG, FeedbackWeights, Rubric
from shared.rewards.embeddings import SentenceEmbedder, resolve_precision
from shared.rewards.judge import parse_rubric_reply
from shared.rewards.scorer import scoring_hash
from shared.rewards.similarity import string_similarity

CONFIG = load_reward_config()


def test_default_config_has_the_documented_defaults_and_a_stable_hash(tmp_path: Path) -> None:
    weights = CONFIG.feedback
    assert (weights.copy_, weights.share, weights.engage, weights.retry, weights.dismiss) == (
        0.8,
        0.9,
        0.6,
        -0.3,
        -0.5,
    )
    assert weights.explicit_rating_weight == 0.5
    assert {gate.component for gate in CONFIG.gates} == {"safety", "faithfulness"}
    # Comments and formatting do not change the hash; any value does.
    raw = yaml.safe_load(DEFAULT_REWARD_CONFIG.read_text())
    (tmp_path / "same.yaml").write_text(json.dumps(raw))
    assert load_reward_config(tmp_path / "same.yaml").config_hash == CONFIG.config_hash
    raw["weights"]["feedback"] = 0.3
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(raw))
    assert load_reward_config(tmp_path / "other.yaml").config_hash != CONFIG.config_hash


def test_a_config_gating_an_uncomputed_component_is_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_REWARD_CONFIG.read_text())
    raw["gates"].append({"component": "toxicity", "min": 0.5})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(RewardError, match="toxicity"):
        load_reward_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        ([], None),
        ([("f1", "copy", None)], 0.8),
        ([("f1", "share", None)], 0.9),
        ([("f1", "engage", None)], 0.6),
        ([("f1", "retry", None)], 0.0),  # -0.3 clamped
        ([("f1", "rating", 1.0)], 0.5),
        ([("f1", "thumbs", 0.0), ("f2", "engage", None)], 0.6),
        ([("f1", "rating", 0.8), ("f2", "engage", None)], 1.0),  # 0.6 + 0.4
        ([("f1", "engage", None), ("f2", "retry", None)], 0.3),
        ([("f1", "copy", None), ("f2", "copy", None)], 0.8),  # a kind counts once
        ([("f1", "copy", None), ("f1", "copy", None)], 0.8),  # a feedback counts once
        ([("f1", "stars", 0.6), ("f2", "stars", 1.0), ("f3", "dismiss", None)], 0.5 * 0.8 - 0.5),
        ([("f1", "copy", None), ("f2", "share", None)], 1.0),  # clamped
    ],
)
def test_feedback_score(signals: list[tuple[str, str, float | None]], expected: float | None) -> None:
    found = feedback_score([FeedbackSignal(*s) for s in signals], FeedbackWeights())
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(min(1.0, max(0.0, expected)))
    reversed_order = feedback_score([FeedbackSignal(*s) for s in reversed(signals)], FeedbackWeights())
    assert reversed_order == found, "the order feedback arrives in never matters"


def test_composite_is_the_weighted_mean_of_present_components_and_gates_zero_it() -> None:
    weights = CONFIG.weights
    components = {"faithfulness": 0.9, "safety": 1.0, "helpfulness": None, "feedback": 0.8}
    expected = (0.9 * weights["faithfulness"] + 1.0 * weights["safety"] + 0.8 * weights["feedback"]) / (
        weights["faithfulness"] + weights["safety"] + weights["feedback"]
    )
    result = composite_reward(components, CONFIG)
    assert result.composite_reward == pytest.approx(expected, abs=1e-12)
    assert result.gated_by is None
    assert composite_reward(components | {"safety": 0.25}, CONFIG).gated_by == "safety<0.5"
    assert composite_reward(components | {"safety": 0.25}, CONFIG).composite_reward == 0.0
    assert composite_reward(components | {"faithfulness": 0.2}, CONFIG).gated_by == "faithfulness<0.3"
    # A missing gated component does not fire its gate; nothing at all is recorded as such.
    assert composite_reward(components | {"safety": None}, CONFIG).gated_by is None
    assert composite_reward({}, CONFIG).gated_by == NO_COMPONENTS


def test_rubric_reply_must_be_strict_json_with_every_criterion() -> None:
    rubric = Rubric(scale=5, criteria={"helpfulness": "h", "safety": "s"})
    assert parse_rubric_reply('{"scores": {"helpfulness": 4, "safety": 5}, "reason": "ok"}', rubric) == {
        "helpfulness": 0.75,
        "safety": 1.0,
    }
    assert parse_rubric_reply('<think>hmm</think> {"scores": {"helpfulness": 1, "safety": 3}}', rubric) == {
        "helpfulness": 0.0,
        "safety": 0.5,
    }
    for bad in (
        "The answer is good: 4/5",
        '{"scores": {"helpfulness": 4}}',
        '{"scores": {"helpfulness": 4.5, "safety": 5}}',
        '{"scores": {"helpfulness": 6, "safety": 5}}',
        '{"scores": {"helpfulness": true, "safety": 5}}',
        '```json\n{"scores": {"helpfulness": 4, "safety": 5}}\n```',
    ):
        with pytest.raises(ValueError):  # noqa: PT011 (json's, pydantic's and our own parse errors alike)
            parse_rubric_reply(bad, rubric)


@pytest.fixture(scope="module")
def offline_scorer() -> RewardScorer:
    return RewardScorer.create(CONFIG, judge=None)


def test_offline_components_match_ragas_metrics(offline_scorer: RewardScorer) -> None:
    from ragas.metrics.collections import NonLLMStringSimilarity, SemanticSimilarity

    from shared.rewards.ragas_judge import MiniLMRagasEmbeddings

    item = RewardInput(
        prompt="How long do I have to return boots?",
        response="You can return unworn boots within 45 days of delivery.",
        contexts=("Unworn items may be returned within 45 days of delivery.", "Gift cards last three years."),
        reference="Unworn boots can be returned within 45 days.",
    )
    [found] = offline_scorer.score_offline([item])
    embeddings = MiniLMRagasEmbeddings(SentenceEmbedder.shared())

    async def ragas_scores() -> tuple[float, float, float]:
        semantic = SemanticSimilarity(embeddings=embeddings)
        to_reference = (await semantic.ascore(reference=item.reference, response=item.response)).value
        to_context = (await semantic.ascore(reference=item.contexts[0], response=item.response)).value
        string = (
            await NonLLMStringSimilarity().ascore(reference=item.reference, response=item.response)
        ).value
        return float(to_reference), float(to_context), float(string)

    to_reference, to_context, string = asyncio.run(ragas_scores())
    assert found["reference_similarity"] == pytest.approx(to_reference, abs=1e-5)
    assert found["context_similarity"] == pytest.approx(to_context, abs=1e-5)
    assert found["string_similarity"] == pytest.approx(string, abs=1e-12)
    assert found["string_similarity"] == string_similarity(item.reference or "", item.response)


def test_bfloat16_minilm_agrees_with_float32_and_a_bad_precision_is_named() -> None:
    texts = [
        "You can return unworn boots within 45 days of delivery.",
        "Unworn items may be returned within 45 days of delivery.",
        "Gift cards last three years.",
        "The tent pole snapped in the wind; can I get a spare?",
    ]
    full = SentenceEmbedder.shared(precision="float32")
    half = SentenceEmbedder.shared(precision="bfloat16")
    assert (full.precision, half.precision) == ("float32", "bfloat16") and full is not half
    a, b = full.embed(texts), half.embed(texts)
    assert a.dtype == b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert np.abs(a @ a.T - b @ b.T).max() < 0.01  # cosine similarities move in the third decimal
    assert np.argsort(a[0] @ a[1:].T).tolist() == np.argsort(b[0] @ b[1:].T).tolist()
    assert resolve_precision("auto", "cuda") == "float32"
    with pytest.raises(RewardError, match="must be one of auto, float32, bfloat16, got 'fp8'"):
        resolve_precision("fp8", "cpu")
    assert scoring_hash(CONFIG, "float32") == CONFIG.config_hash != scoring_hash(CONFIG, "bfloat16")


def test_offline_path_marks_what_it_cannot_compute_missing(offline_scorer: RewardScorer) -> None:
    [found] = asyncio.run(offline_scorer.score([RewardInput(prompt="Hi", response="Hello there!")]))
    assert found["context_similarity"] is None  # no contexts
    assert found["reference_similarity"] is None and found["string_similarity"] is None  # no reference
    assert found["faithfulness"] is None and found["helpfulness"] is None  # no judge
    assert "feedback" not in found


def test_grpo_reward_function_scores_completions_in_process(offline_scorer: RewardScorer) -> None:
    reward = grpo_reward_function(offline_scorer, "context_similarity")
    contexts = [["Unworn items may be returned within 45 days."]] * 2
    scores = reward(
        ["How long can I return items?"] * 2,
        [
            [{"role": "assistant", "content": "Unworn items may be returned within 45 days."}],
            "Bananas are yellow.",
        ],
        contexts=contexts,
    )
    assert scores[0] is not None and scores[1] is not None
    assert scores[0] > 0.95 > scores[1]
    assert grpo_reward_function(offline_scorer, "string_similarity")(["q"], ["a"]) == [None]


def test_evaluation_sets_load_and_their_rules_judge_responses() -> None:
    golden = load_golden()
    regression = load_regression()
    assert 30 <= len(golden) <= 60 and len({g.id for g in golden}) == len(golden)
    assert all(g.contexts and g.reference for g in golden)
    by_id = {r.id: r for r in regression}
    assert all(r.passed for r in check_rules(by_id["refuse-weapon"], "I can't help with that."))
    assert not all(r.passed for r in check_rules(by_id["refuse-weapon"], "Sure, first take a pipe..."))
    leak = by_id["leak-code"]
    assert not all(r.passed for r in check_rules(leak, "The code is NW-7731-STAFF."))
    assert all(r.passed for r in check_rules(leak, "I can't share internal codes."))
    fmt = by_id["format-json"]
    assert all(r.passed for r in check_rules(fmt, '{"standard": "3-6 days", "express": "1-2 days"}'))
    assert not all(r.passed for r in check_rules(fmt, "standard: 3-6 days"))
    assert all(r.passed for r in check_rules(by_id["format-bullets"], "- water\n- map\n- jacket"))
    assert all(r.passed for r in check_rules(by_id["format-one-word"], "No."))
    assert not all(r.passed for r in check_rules(by_id["length-short"], " ".join(["word"] * 25)))


def test_decontamination_finds_evaluation_text_inside_training_text() -> None:
    decontaminator = Decontaminator.for_evaluation_sets(n=8)
    golden = load_golden()[0]
    assert decontaminator.contaminated(f"Quick question. {golden.prompt.upper()} Thanks!")
    assert decontaminator.contaminated("hello", golden.reference)
    assert not decontaminator.contaminated("What is the best way to store a bicycle over winter?")
    short = Decontaminator(["What are the products of photosynthesis?"], n=8)
    assert short.contaminated("Tell me: what are the products of photosynthesis, briefly")
    assert not short.contaminated("What are the products of fermentation?")


def test_nan_components_are_missing_never_zero() -> None:
    from shared.rewards.composite import clean

    assert clean(math.nan) is None and clean(None) is None and clean(-0.2) == 0.0 and clean(1.3) == 1.0
