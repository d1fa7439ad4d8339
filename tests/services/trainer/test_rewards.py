"""GRPO rewards are the labeler's components, scored in process, per item's own list of components."""

from __future__ import annotations

import pytest

from services.trainer.errors import DatasetBroken
from services.trainer.rewards import reward_functions
from shared.rewards.similarity import string_similarity


def test_each_component_scores_the_items_that_name_it() -> None:
    (similarity,) = reward_functions([["string_similarity"], []])
    completions = [
        [{"role": "assistant", "content": "Paris is the capital."}],
        [{"role": "assistant", "content": "Rome."}],
        [{"role": "assistant", "content": "Lyon."}],
    ]
    scores = similarity(
        prompts=[[{"role": "user", "content": "Capital of France?"}]] * 3,
        completions=completions,
        reward_components=[["string_similarity"], ["string_similarity"], ["rouge_l"]],
        reference=["Paris is the capital.", "", "Paris."],
        contexts=[[], [], []],
    )
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] is None, "no reference: the component is missing, not 0"
    assert scores[2] is None, "the item did not ask for it"
    assert similarity.__name__ == "kaizen_string_similarity"
    assert string_similarity("Paris.", "Lyon.") < 1.0


def test_components_nothing_can_compute_break_the_dataset() -> None:
    with pytest.raises(DatasetBroken, match="no GRPO item"):
        reward_functions([[], []])
    with pytest.raises(DatasetBroken, match="vibes"):
        reward_functions([["vibes"]])
    with pytest.raises(DatasetBroken, match="need the LLM judge"):
        reward_functions([["faithfulness"]])
