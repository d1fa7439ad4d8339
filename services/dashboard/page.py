"""The dashboard page: one self-contained HTML document (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from services.dashboard.charts import canary_chart, legend, rewards_chart, traces_chart
from services.dashboard.views import Registry, RolloutTimeline, Summary

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#0f172a;background:#f8fafc}
header{background:#0f172a;color:#f8fafc;padding:14px 24px}
header h1{margin:0;font-size:20px} header p{margin:4px 0 0;color:#cbd5e1}
main{padding:8px 24px 40px;max-width:1100px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px;margin:16px 0}
h2{font-size:16px;margin:0 0 8px} h3{font-size:14px;margin:12px 0 4px}
table{border-collapse:collapse;width:100%;margin:6px 0} th,td{text-align:left;padding:3px 8px;
border-bottom:1px solid #e2e8f0;vertical-align:top} th{color:#475569;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.legend{list-style:none;padding:0;margin:4px 0;display:flex;gap:16px;flex-wrap:wrap}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;background:#e2e8f0}
.passed,.promoted,.advanced{background:#dcfce7} .failed,.rolled_back,.aborted{background:#fee2e2}
.awaiting_approval,.held,.paused,.extended{background:#fef9c3}
.empty{color:#64748b} .error{color:#b91c1c} .reason{max-width:520px}
"""


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _when(ts: datetime | None) -> str:
    return "–" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(text: object, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{escape(str(text))}</td>"


def _badge(text: str) -> str:
    return f'<span class="badge {escape(text, quote=True)}">{escape(text)}</span>'


def _section(anchor: str, title: str, body: str, error: str | None = None) -> str:
    if error is not None:
        body = f'<p class="error">Could not read this section: {escape(error)}</p>'
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def _traces(summary: Summary) -> str:
    traces = summary.traces
    if traces is None:
        return ""
    if not traces.minutes:
        return '<p class="empty">No traces in the window yet.</p>'
    return f"<p>{traces.total} traces since {_when(traces.since)} UTC.</p>" + traces_chart(traces)


def _rewards(summary: Summary) -> str:
    rewards = summary.rewards
    if rewards is None:
        return ""
    if not rewards.buckets:
        return '<p class="empty">No labels in the window yet.</p>'
    rows = [
        [
            _td(f"version {version}"),
            _td(stats.count, "num"),
            _td(_fmt(stats.mean), "num"),
            _td(_fmt(stats.p10), "num"),
            _td(_fmt(stats.p50), "num"),
            _td(_fmt(stats.p90), "num"),
        ]
        for version, stats in rewards.overall.items()
    ]
    return (
        f"<p>Composite reward of each trace's latest label, in {rewards.bucket_minutes}-minute buckets "
        "(box: p25-p75, whiskers: p10-p90, line: median, dot: mean).</p>"
        + rewards_chart(rewards)
        + _table(["model version", "labels", "mean", "p10", "median", "p90"], rows, "reward-summary")
    )


def _datasets(summary: Summary) -> str:
    if summary.datasets is None:
        return ""
    if not summary.datasets:
        return '<p class="empty">No dataset built yet.</p>'
    rows = [
        [
            _td(d.dataset_id, "dataset-id"),
            _td(_when(d.created_at)),
            _td(d.trigger_reason or "–", "trigger"),
            _td(d.algorithm or ", ".join(d.kinds)),
            _td(d.items, "num"),
            _td(", ".join(f"{split} {n}" for split, n in d.sizes.items())),
        ]
        for d in summary.datasets
    ]
    return _table(["dataset", "built", "trigger", "algorithm", "items", "splits"], rows, "datasets")


def _runs(registry: Registry) -> str:
    if not registry.training_runs:
        return '<p class="empty">No training run yet.</p>'
    rows = []
    for run in registry.training_runs:
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in list(run.metrics.items())[:8])
        rows.append(
            [
                _td(run.name or run.run_id, "run"),
                f"<td>{_badge(run.status.lower())}</td>",
                _td(run.dataset_id or "–", "dataset-id"),
                _td(run.algorithm or "–"),
                _td(_when(run.started_at)),
                _td(run.model_version or run.failure_reason or "–", "run-version"),
                _td(metrics or "–", "metrics"),
            ]
        )
    return _table(
        ["run", "status", "dataset", "algorithm", "started", "version / failure", "final metrics"],
        rows,
        "training-runs",
    )


def _evaluations(registry: Registry) -> str:
    parts: list[str] = []
    if registry.aliases:
        parts.append(
            "<p>Aliases: "
            + ", ".join(
                f'<span class="alias" data-alias="{escape(a, quote=True)}">'
                f"{escape(a)} = version {escape(v)}</span>"
                for a, v in registry.aliases.items()
            )
            + "</p>"
        )
    if registry.versions:
        parts.append(
            _table(
                ["version", "created", "aliases", "dataset", "algorithm", "evaluation"],
                (
                    [
                        _td(v.version),
                        _td(_when(v.created_at)),
                        _td(", ".join(v.aliases) or "–"),
                        _td(v.dataset_id or "–"),
                        _td(v.algorithm or "–"),
                        f"<td>{_badge(v.eval_status) if v.eval_status else '–'}</td>",
                    ]
                    for v in registry.versions
                ),
                "model-versions",
            )
        )
    if not registry.evaluations:
        parts.append('<p class="empty">No evaluation yet.</p>')
    for evaluation in registry.evaluations:
        rows = [
            [
                _td(m.metric),
                _td(_fmt(m.candidate), "num"),
                _td(_fmt(m.champion), "num"),
                _td("–" if m.delta is None else f"{m.delta:+.3f}", "num"),
            ]
            for m in evaluation.metrics
        ]
        parts.append(
            f'<div class="evaluation" data-version="{escape(evaluation.model_version, quote=True)}" '
            f'data-status="{escape(evaluation.status, quote=True)}">'
            f"<h3>version {escape(evaluation.model_version)} vs champion "
            f"{escape(evaluation.champion or '–')} {_badge(evaluation.status)}</h3>"
            f'<p class="reason">{escape(evaluation.reason)}</p>'
            + _table(
                [
                    "metric",
                    f"candidate v{evaluation.model_version}",
                    f"champion {evaluation.champion or ''}".strip(),
                    "difference",
                ],
                rows,
                "comparison",
            )
            + "</div>"
        )
    return "".join(parts)


def _rollout(timeline: RolloutTimeline) -> str:
    state = "" if timeline.connected else '<p class="error">Not connected to rollout.stage right now.</p>'
    if not timeline.events:
        return state + '<p class="empty">No rollout yet.</p>'
    rows = [
        [
            _td(_when(e.occurred_at)),
            _td(e.model_version, "version"),
            _td(e.champion_version or "–"),
            _td(e.stage, "num stage"),
            _td(f"{e.canary_weight:.0%}", "num weight"),
            f'<td class="decision">{_badge(e.decision)}</td>',
            _td(e.reason, "reason"),
            _td(", ".join(f"{k} {v:.4g}" for k, v in sorted(e.metrics.items())) or "–", "metrics"),
        ]
        for e in timeline.events
    ]
    versions = sorted({e.model_version for e in timeline.events}, key=lambda v: (len(v), v))
    return (
        state
        + canary_chart(timeline.events)
        + legend(versions)
        + _table(
            ["time", "canary", "champion", "stage", "weight", "decision", "reason", "metrics"],
            rows,
            "canary-timeline",
        )
    )


def render(summary: Summary, refresh_s: int) -> str:
    errors = summary.errors
    registry = summary.registry
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s > 0 else ""
    champion = registry.aliases.get("champion") if registry else None
    sections = [
        _section("traces", "Traces per minute", _traces(summary), errors.get("traces")),
        _section(
            "rewards",
            "Reward distribution over time, per model version",
            _rewards(summary),
            errors.get("rewards"),
        ),
        _section("datasets", "Datasets", _datasets(summary), errors.get("datasets")),
        _section("training", "Training runs", _runs(registry) if registry else "", errors.get("registry")),
        _section(
            "evaluations",
            "Model versions and evaluations (candidate vs champion)",
            _evaluations(registry) if registry else "",
            errors.get("registry"),
        ),
        _section("rollout", "Canary timeline", _rollout(summary.rollout)),
    ]
    subtitle = f"project {summary.project_id}"
    if registry:
        subtitle += f" · model {registry.registered_model} · champion {champion or 'none yet'}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">{refresh}'
        f"<title>Kaizen · {escape(summary.project_id)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>Kaizen</h1><p>{escape(subtitle)} · {_when(summary.generated_at)} UTC</p></header>"
        f"<main>{''.join(sections)}</main></body></html>"
    )
