"""The users' preference: exact scores on hand-computed answers, reactions, and refused configurations."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from demo.workload.preference import (
    PreferenceConfig,
    PreferenceScore,
    UserProfile,
    content_words,
    expected_feedback,
    feedback_value,
    length_score,
    load_preference,
    react,
    score_answer,
)
from demo.workload.prompts import WorkloadError
from tests.demo.chat_server import RAMBLING

CONTEXTS = [
    "Returning an order costs a flat 6 euros, subtracted from the refund. Trailhead members return for free."
]
GROUNDED = "Returns cost a flat 6 euros, taken from your refund; Trailhead members return free."


@pytest.fixture(scope="module")
def preference() -> PreferenceConfig:
    return load_preference()


def test_the_bundled_preference_is_grounded_and_under_60_words(preference: PreferenceConfig) -> None:
    assert preference.length.max_words == 60
    assert preference.grounding.weight > 0 and preference.length.weight > 0
    assert set(preference.reactions.signals) == {"copy", "share", "engage", "retry", "dismiss"}


def test_a_grounded_short_answer_scores_as_computed_by_hand(preference: PreferenceConfig) -> None:
    # Content words of the answer (stopwords a, from, your dropped): returns cost flat 6 euros taken
    # refund trailhead members return free = 11; found in the context: flat 6 euros refund trailhead
    # members return free = 8 (returns/returning, cost/costs and taken are not). 14 words.
    score = score_answer(GROUNDED, CONTEXTS, preference)
    assert (score.overlap, score.words) == (8, 14)
    assert score.support == pytest.approx(8 / 11)
    assert score.grounding == pytest.approx(8 / 11)  # overlap 8 >= min_overlap 3
    assert score.length == 1.0
    assert score.preference == pytest.approx(0.6 * 8 / 11 + 0.4 * 1.0)


def test_an_ungrounded_long_answer_scores_as_computed_by_hand(preference: PreferenceConfig) -> None:
    score = score_answer(RAMBLING, CONTEXTS, preference)
    # Of the rambling answer's content words only "free" is in the context: overlap 1 < 3.
    assert score.overlap == 1
    assert score.support == pytest.approx(1 / len(content_words(RAMBLING)))
    assert score.words == len(RAMBLING.split()) > 120
    assert score.length == 0.0  # at least zero_words (120)
    assert score.grounding == pytest.approx(score.support * 1 / 3)
    assert score.preference == pytest.approx(0.6 * score.grounding)
    assert score.preference < 0.02 < 0.8 < score_answer(GROUNDED, CONTEXTS, preference).preference


def test_terse_echoes_and_empty_answers_are_not_grounded(preference: PreferenceConfig) -> None:
    echo = score_answer("Free.", CONTEXTS, preference)
    assert (echo.support, echo.overlap) == (1.0, 1)
    assert echo.grounding == pytest.approx(1 / 3)
    assert echo.length == pytest.approx(1 / 5)
    assert echo.preference == pytest.approx(0.6 / 3 + 0.4 / 5)
    empty = score_answer("", CONTEXTS, preference)
    assert (empty.preference, empty.grounding, empty.words) == (0.0, 0.0, 0)


def test_length_falls_linearly_from_60_to_120_words(preference: PreferenceConfig) -> None:
    config = preference.length
    assert [length_score(n, config) for n in (0, 2, 5, 60, 61, 90, 119, 120, 500)] == pytest.approx(
        [0.0, 0.4, 1.0, 1.0, 59 / 60, 0.5, 1 / 60, 0.0, 0.0]
    )


def test_reactions_follow_the_perceived_quality(preference: PreferenceConfig) -> None:
    good = PreferenceScore(preference=0.95, grounding=1.0, length=1.0, support=1.0, overlap=5, words=20)
    bad = PreferenceScore(preference=0.05, grounding=0.0, length=0.1, support=0.0, overlap=0, words=140)
    profile = UserProfile(bias=0.0, rating_style="stars")
    config = preference.reactions
    good_kinds: list[str] = []
    bad_kinds: list[str] = []
    for index in range(200):
        good_kinds += [r.kind for r in react(good, profile, random.Random(f"g{index}"), config)]
        bad_kinds += [r.kind for r in react(bad, profile, random.Random(f"b{index}"), config)]
    assert {"copy", "engage", "stars"} <= set(good_kinds) and not {"retry", "dismiss"} & set(good_kinds)
    assert {"retry", "dismiss", "stars"} <= set(bad_kinds) and not {"copy", "share"} & set(bad_kinds)
    engage = next(
        r
        for index in range(200)
        for r in react(good, profile, random.Random(f"g{index}"), config)
        if r.kind == "engage"
    )
    assert engage.dwell_ms is not None and engage.dwell_ms > 20 / 230 * 60_000 * 0.5
    high = expected_feedback(good, config, users=64, seed=1)
    low = expected_feedback(bad, config, users=64, seed=1)
    assert high is not None and low is not None and high > 0.8 > 0.2 > low
    assert expected_feedback(good, config, users=64, seed=1) == high


def test_ratings_are_normalized_as_ingest_normalizes_them(preference: PreferenceConfig) -> None:
    config = preference.reactions.model_copy(update={"rate_probability": 1.0, "noise_sd": 0.0, "signals": {}})
    score = PreferenceScore(preference=0.7, grounding=0.7, length=1.0, support=0.7, overlap=4, words=10)
    thumbs = react(score, UserProfile(0.0, "thumbs"), random.Random(0), config)
    stars = react(score, UserProfile(0.0, "stars"), random.Random(0), config)
    points = react(score, UserProfile(-0.2, "score"), random.Random(0), config)
    assert [(r.kind, r.value, r.raw_value) for r in thumbs] == [("thumbs", 1.0, "up")]
    assert [(r.kind, r.value, r.raw_value) for r in stars] == [("stars", 0.75, 4)]  # 1 + round(2.8)
    assert [(r.kind, r.value, r.raw_value) for r in points] == [("score", 0.5, 0.5)]
    # The labeler's formula: 0.5 * mean rating (no implicit signal).
    assert feedback_value(stars) == pytest.approx(0.375)
    assert feedback_value([]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nlength: {max_words: 200}\n", "max_words < zero_words"),
        ("version: 1\ngrounding: {weight: 0.5, min_overlapp: 3}\n", "grounding.min_overlapp"),
        ("version: 1\nreactions: {signals: {like: {probability: 0.5}}}\n", "reactions.signals.like"),
        ("version: 1\nreactions: {rate_probability: 1.5}\n", "reactions.rate_probability"),
        ("version: 1\ngrounding: {weight: 0}\nlength: {weight: 0}\n", "must be > 0"),
        ("grounding: {weight: 1}\n", "version: Field required"),
        ("- a\n- b\n", "must hold a mapping, not list"),
        ("version: [1\n", "is not valid YAML"),
    ],
)
def test_a_broken_preference_file_is_refused_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "preference.yaml"
    path.write_text(text)
    with pytest.raises(WorkloadError) as raised:
        load_preference(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)
