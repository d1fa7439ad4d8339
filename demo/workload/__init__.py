"""The demo's simulated production workload (issue 9), self-contained.

- ``prompts``: the bundled prompt set (``data/prompts.jsonl``, built by ``python -m demo.workload.build``
  from the hand-written ``knowledge`` base), its held-out flag, and the chat messages sent for a prompt;
- ``preference``: the users' preference (``preference.yaml``: grounded in the contexts, under 60
  words), its deterministic scorer, and the reactions (ratings, implicit signals) it turns into;
- ``users``: ``run_workload``, simulated users asking an OpenAI-compatible endpoint and sending feedback
  with ``KaizenClient``; per model version statistics;
- ``compare``: before/after on the held-out prompts with bootstrap confidence intervals.
"""

from demo.workload.compare import (
    AnswerMetrics,
    Interval,
    MetricComparison,
    compare,
    format_table,
    score_held_out,
)
from demo.workload.preference import PreferenceConfig, PreferenceScore, load_preference, score_answer
from demo.workload.prompts import Prompt, WorkloadError, chat_messages, load_prompts, select
from demo.workload.users import VersionStats, WorkloadConfig, WorkloadReport, run_workload

__all__ = [
    "AnswerMetrics",
    "Interval",
    "MetricComparison",
    "PreferenceConfig",
    "PreferenceScore",
    "Prompt",
    "VersionStats",
    "WorkloadConfig",
    "WorkloadError",
    "WorkloadReport",
    "chat_messages",
    "compare",
    "format_table",
    "load_preference",
    "load_prompts",
    "run_workload",
    "score_answer",
    "score_held_out",
    "select",
]
