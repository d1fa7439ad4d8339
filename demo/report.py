"""What a demo run leaves behind: the stage timestamps (JSON), the before/after comparison, an HTML report.

Under ``<home>/reports/<run id>/``: ``timeline.json`` (stages, counts, rollout decisions, why the run
stopped, the comparison), ``answers.json`` (each held-out prompt with the base's and the new champion's
answers, so the comparison can be checked or scored again) and ``report.html`` (plain HTML with inline
SVG charts drawn by matplotlib).
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

from demo.loop import STAGES, LoopResult
from demo.workload.compare import MetricComparison, compare, score_held_out


def comparison(result: LoopResult, *, users: int, seed: int = 0) -> list[MetricComparison]:
    """Before (base) vs after (new champion) on the held-out prompts both answered."""
    if not result.after:
        return []
    common = sorted(set(result.before) & set(result.after))
    before = score_held_out(
        {key: result.before[key] for key in common},
        result.held_out,
        result.preference,
        users=users,
        seed=seed,
    )
    after = score_held_out(
        {key: result.after[key] for key in common}, result.held_out, result.preference, users=users, seed=seed
    )
    return compare(before, after, seed=seed)


def comparison_json(rows: list[MetricComparison]) -> list[dict[str, Any]]:
    def interval(value: Any) -> dict[str, float]:
        return {"mean": value.mean, "low": value.low, "high": value.high, "n": value.n}

    return [
        {
            "metric": row.metric,
            "before": interval(row.before),
            "after": interval(row.after),
            "difference": interval(row.difference),
            "paired": row.paired,
        }
        for row in rows
    ]


def write_timeline(path: Path, result: LoopResult, rows: list[MetricComparison], config_name: str) -> Path:
    document = {
        "config": config_name,
        **result.timeline.as_json(),
        "rounds": result.rounds,
        "before_versions": result.before_versions,
        "after_versions": result.after_versions,
        "comparison": comparison_json(rows),
        "services_dead": result.services_dead,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


def write_answers(path: Path, result: LoopResult) -> Path:
    """The held-out prompts with both sides' answers (null where a side did not answer)."""
    document = [
        {
            "prompt_id": prompt.id,
            "prompt": prompt.prompt,
            "before": result.before.get(prompt.id),
            "after": result.after.get(prompt.id),
        }
        for prompt in result.held_out
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return path


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.find("<svg") :]


def charts(result: LoopResult, rows: list[MetricComparison]) -> list[tuple[str, str]]:
    """(title, inline SVG) of each chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[tuple[str, str]] = []
    timeline = result.timeline
    # Stage timeline
    figure, axes = plt.subplots(figsize=(8, 3))
    reached = [(meaning, timeline.reached[key]) for key, meaning in STAGES if key in timeline.reached]
    if reached:
        axes.barh([name for name, _ in reached], [at for _, at in reached], color="#4c78a8")
        axes.invert_yaxis()
    axes.set_xlabel("seconds since the first request")
    out.append(("When each stage of the loop was reached", _svg(figure)))
    plt.close(figure)
    # Composite reward over time per version
    if timeline.rewards:
        figure, axes = plt.subplots(figsize=(8, 3))
        by_version: dict[str, list[tuple[float, float]]] = {}
        for point in timeline.rewards:
            by_version.setdefault(point["model_version"], []).append(
                (point["at_s"], point["composite_reward"])
            )
        for version, points in sorted(by_version.items()):
            axes.scatter([p[0] for p in points], [p[1] for p in points], s=8, label=f"version {version}")
        axes.set_xlabel("seconds")
        axes.set_ylabel("composite reward")
        axes.legend(loc="best", fontsize=8)
        out.append(("Composite reward of labeled traces, by serving version", _svg(figure)))
        plt.close(figure)
    # Users' preference per round per version
    if result.rounds:
        figure, axes = plt.subplots(figsize=(8, 3))
        series: dict[str, list[tuple[float, float]]] = {}
        for row in result.rounds:
            for version, stats in row["versions"].items():
                series.setdefault(version, []).append((row["round"], stats["preference"]))
        for version, points in sorted(series.items()):
            axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"version {version}")
        axes.set_xlabel("round of traffic")
        axes.set_ylabel("users' preference score")
        axes.legend(loc="best", fontsize=8)
        out.append(("What the users saw, per round and serving version", _svg(figure)))
        plt.close(figure)
    # Before/after with intervals
    if rows:
        figure, axes = plt.subplots(figsize=(8, 3))
        names = [row.metric for row in rows]
        positions = range(len(rows))
        for offset, side, label in ((-0.15, "before", "base"), (0.15, "after", "new champion")):
            means = [getattr(row, side).mean for row in rows]
            errors = [
                [getattr(row, side).mean - getattr(row, side).low for row in rows],
                [getattr(row, side).high - getattr(row, side).mean for row in rows],
            ]
            axes.errorbar(
                [p + offset for p in positions], means, yerr=errors, fmt="o", capsize=4, label=label
            )
        axes.set_xticks(list(positions), names)
        axes.legend(loc="best", fontsize=8)
        out.append(("Held-out prompts: base vs new champion (95% bootstrap intervals)", _svg(figure)))
        plt.close(figure)
    return out


def write_html(path: Path, result: LoopResult, rows: list[MetricComparison], config_name: str) -> Path:
    timeline = result.timeline
    escape = html.escape
    stage_rows = "".join(
        f"<tr><td>{escape(row['meaning'])}</td><td>{'' if row['at_s'] is None else row['at_s']}</td>"
        f"<td>{'' if row['took_s'] is None else row['took_s']}</td><td>{escape(row['detail'])}</td></tr>"
        for row in timeline.stage_durations()
    )
    comparison_rows = "".join(
        f"<tr><td>{escape(row.metric)}</td><td>{escape(str(row.before))}</td><td>{escape(str(row.after))}</td>"
        f"<td>{escape(str(row.difference))}</td></tr>"
        for row in rows
    )
    rollout_rows = "".join(
        f"<tr><td>{item['at_s']}</td><td>{escape(str(item['model_version']))}</td><td>{item['stage']}</td>"
        f"<td>{item['canary_weight']:.2f}</td><td>{escape(item['decision'])}</td>"
        f"<td>{escape(item['reason'])}</td></tr>"
        for item in timeline.rollout
    )
    figures = "".join(f"<h2>{escape(title)}</h2>{svg}" for title, svg in charts(result, rows))
    failures = "".join(f"<li>{escape(text)}</li>" for text in timeline.failures) or "<li>none</li>"
    counts = ", ".join(f"{escape(k)}: {v}" for k, v in sorted(timeline.counts.items()))
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kaizen demo report</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}</style></head><body>
<h1>Kaizen demo: {escape(config_name)}</h1>
<p><b>Outcome:</b> {escape(timeline.stopped_because)}</p>
<p><b>Events seen:</b> {counts}</p>
<h2>Stages</h2>
<table><tr><th>stage</th><th>at (s)</th><th>took (s)</th><th>detail</th></tr>{stage_rows}</table>
<h2>Before / after on held-out prompts</h2>
<table><tr><th>metric</th><th>base</th><th>new champion</th><th>difference</th></tr>
{comparison_rows}</table>
<h2>Rollout decisions</h2>
<table><tr><th>at (s)</th><th>version</th><th>stage</th><th>weight</th><th>decision</th><th>reason</th></tr>
{rollout_rows}</table>
<h2>Failures on the way</h2><ul>{failures}</ul>
{figures}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document)
    return path
