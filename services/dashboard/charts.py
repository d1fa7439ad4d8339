"""The dashboard's charts as inline SVG, drawn on the server: the page needs no script and no network.

Every mark carries its numbers as ``data-*`` attributes and a ``<title>`` (the browser's tooltip), so
what a chart shows can be read back from the DOM.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from html import escape

from services.dashboard.views import UNKNOWN_VERSION, RewardDistribution, RolloutEvent, TracesPerMinute

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777")
WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40


UNKNOWN_COLOR = "#64748b"


def version_color(version: str) -> str:
    """One color per model version on every chart of the page (and across reloads)."""
    if version == UNKNOWN_VERSION:
        return UNKNOWN_COLOR
    index = int(version) - 1 if version.isdigit() else zlib.crc32(version.encode())
    return PALETTE[index % len(PALETTE)]


def version_colors(versions: Sequence[str]) -> dict[str, str]:
    return {version: version_color(version) for version in versions}


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _time(ts: datetime) -> str:
    return ts.strftime("%H:%M")


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ")


def _nice_max(value: float) -> float:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step:
            return float(step)
    return float(value)


def _frame(kind: str, label: str, body: list[str], y_ticks: list[tuple[float, str]], y_title: str) -> str:
    plot_bottom = HEIGHT - BOTTOM
    axis = [
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{plot_bottom}" stroke="#94a3b8"/>',
        f'<line class="axis" x1="{LEFT}" y1="{plot_bottom}" x2="{WIDTH - RIGHT}" y2="{plot_bottom}" '
        'stroke="#94a3b8"/>',
        f'<text x="12" y="{TOP + (plot_bottom - TOP) / 2:.1f}" font-size="11" fill="#475569" '
        f'transform="rotate(-90 12 {TOP + (plot_bottom - TOP) / 2:.1f})" text-anchor="middle">'
        f"{escape(y_title)}</text>",
    ]
    for y, text in y_ticks:
        axis.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e2e8f0"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" fill="#475569" text-anchor="end">'
            f"{escape(text)}</text>"
        )
    return (
        f'<svg class="chart {kind}" role="img" aria-label="{_attr(label)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(axis)
        + "".join(body)
        + "</svg>"
    )


def _x_labels(positions: Sequence[tuple[float, str]], every: int) -> list[str]:
    return [
        f'<text class="x-label" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" fill="#475569" '
        f'text-anchor="middle">{escape(text)}</text>'
        for index, (x, text) in enumerate(positions)
        if index % every == 0
    ]


def traces_chart(traces: TracesPerMinute) -> str:
    """One stacked bar per minute: traces by model version."""
    minutes = traces.minutes
    colors = version_colors(traces.versions)
    top = _nice_max(max((m.count for m in minutes), default=1))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(minutes), 1)
    bar_w = max(1.0, slot * 0.8)
    body: list[str] = []
    for index, minute in enumerate(minutes):
        x = LEFT + index * slot + (slot - bar_w) / 2
        y = float(HEIGHT - BOTTOM)
        segments: list[str] = []
        for version, count in minute.by_version.items():
            h = plot_h * count / top
            y -= h
            segments.append(
                f'<rect class="segment" data-version="{_attr(version)}" data-count="{count}" x="{x:.1f}" '
                f'y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colors[version]}">'
                f"<title>{_time(minute.minute)} v{escape(version)}: {count}</title></rect>"
            )
        body.append(
            f'<g class="bar" data-minute="{_iso(minute.minute)}" data-count="{minute.count}">'
            f"<title>{_time(minute.minute)}: {minute.count} traces</title>{''.join(segments)}</g>"
        )
    every = max(1, len(minutes) // 12)
    body += _x_labels([(LEFT + (i + 0.5) * slot, _time(m.minute)) for i, m in enumerate(minutes)], every)
    ticks = [(HEIGHT - BOTTOM - plot_h * f, f"{top * f:g}") for f in (0, 0.25, 0.5, 0.75, 1)]
    return _frame("traces-per-minute", "Traces per minute", body, ticks, "traces / min") + legend(
        traces.versions
    )


def legend(versions: Sequence[str]) -> str:
    colors = version_colors(versions)
    items = "".join(
        f'<li class="legend-item" data-version="{_attr(v)}"><span class="swatch" '
        f'style="background:{colors[v]}"></span>version {escape(v)}</li>'
        for v in versions
    )
    return f'<ul class="legend">{items}</ul>'


def rewards_chart(rewards: RewardDistribution) -> str:
    """Per time bucket, one box per model version: p25-p75 box, p10-p90 whiskers, the mean as a dot."""
    colors = version_colors(rewards.versions)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(rewards.buckets), 1)
    box_w = max(2.0, min(28.0, slot * 0.8 / max(len(rewards.versions), 1)))

    def y_of(value: float) -> float:
        return HEIGHT - BOTTOM - plot_h * min(max(value, 0.0), 1.0)

    body: list[str] = []
    for index, bucket in enumerate(rewards.buckets):
        shown = [v for v in rewards.versions if v in bucket.by_version]
        group_w = box_w * len(shown)
        start = LEFT + index * slot + (slot - group_w) / 2
        for offset, version in enumerate(shown):
            stats = bucket.by_version[version]
            x = start + offset * box_w
            cx = x + box_w / 2
            color = colors[version]
            body.append(
                f'<g class="box" data-version="{_attr(version)}" data-bucket="{_iso(bucket.start)}" '
                f'data-count="{stats.count}" data-mean="{stats.mean:.4f}" data-median="{stats.p50:.4f}">'
                f"<title>{_time(bucket.start)}-{_time(bucket.end)} v{escape(version)}: n={stats.count} "
                f"mean={stats.mean:.3f} median={stats.p50:.3f} p10-p90={stats.p10:.3f}-{stats.p90:.3f}"
                "</title>"
                f'<line x1="{cx:.1f}" y1="{y_of(stats.p10):.1f}" x2="{cx:.1f}" y2="{y_of(stats.p90):.1f}" '
                f'stroke="{color}"/>'
                f'<rect x="{x + 1:.1f}" y="{y_of(stats.p75):.1f}" width="{box_w - 2:.1f}" '
                f'height="{max(1.0, y_of(stats.p25) - y_of(stats.p75)):.1f}" fill="{color}" '
                f'fill-opacity="0.25" stroke="{color}"/>'
                f'<line x1="{x + 1:.1f}" y1="{y_of(stats.p50):.1f}" x2="{x + box_w - 1:.1f}" '
                f'y2="{y_of(stats.p50):.1f}" stroke="{color}" stroke-width="2"/>'
                f'<circle cx="{cx:.1f}" cy="{y_of(stats.mean):.1f}" r="2.5" fill="{color}"/></g>'
            )
    every = max(1, len(rewards.buckets) // 12)
    body += _x_labels(
        [(LEFT + (i + 0.5) * slot, _time(b.start)) for i, b in enumerate(rewards.buckets)], every
    )
    ticks = [(y_of(v), f"{v:g}") for v in (0, 0.25, 0.5, 0.75, 1)]
    return _frame(
        "reward-distribution", "Composite reward by model version", body, ticks, "composite reward"
    ) + (legend(rewards.versions))


def canary_chart(events: Sequence[RolloutEvent]) -> str:
    """The canary's traffic share over time as steps, one marker per decision."""
    if not events:
        return ""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    first, last = events[0].occurred_at, events[-1].occurred_at
    span = max((last - first).total_seconds(), 1.0)

    def x_of(ts: datetime) -> float:
        return LEFT + 8 + (plot_w - 16) * (ts - first).total_seconds() / span

    def y_of(weight: float) -> float:
        return HEIGHT - BOTTOM - plot_h * weight

    colors = version_colors(sorted({e.model_version for e in events}))
    points = [(x_of(e.occurred_at), y_of(e.canary_weight)) for e in events]
    steps = f"M{points[0][0]:.1f} {points[0][1]:.1f}" + "".join(f" H{x:.1f} V{y:.1f}" for x, y in points[1:])
    body = [f'<path class="weight" d="{steps}" fill="none" stroke="#334155" stroke-width="1.5"/>']
    for event in events:
        body.append(
            f'<circle class="decision" data-decision="{_attr(event.decision)}" data-stage="{event.stage}" '
            f'data-weight="{event.canary_weight:g}" data-version="{_attr(event.model_version)}" '
            f'cx="{x_of(event.occurred_at):.1f}" cy="{y_of(event.canary_weight):.1f}" r="4" '
            f'fill="{colors[event.model_version]}"><title>{event.occurred_at:%H:%M:%S} v'
            f"{escape(event.model_version)} {escape(event.decision)} at {event.canary_weight:.0%}</title>"
            "</circle>"
        )
    ticks = [(y_of(v), f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1)]
    labels = [
        f'<text class="x-label" x="{x_of(ts):.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" fill="#475569" '
        f'text-anchor="middle">{ts:%H:%M:%S}</text>'
        for ts in (first, last)
    ]
    return _frame("canary-weight", "Canary traffic share", body + labels, ticks, "canary share")
