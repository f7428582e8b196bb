"""Inline SVG charts for the campaign report: range bars, best-so-far lines, importance bars.

Plain strings, no plotting library and no external resource: the page stays one offline file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
ORIGINAL_COLOR = "#c8c8c8"
FONT = 'font-family="sans-serif" font-size="11"'


@dataclass(frozen=True)
class RangeRow:
    """One bar of a parameter's range chart: the original space, or one sprint's."""

    label: str
    record: dict[str, Any]  # an engine.search.space record: float/int (low, high, log), categorical, fixed


def _scale(record: dict[str, Any]) -> Callable[[Any], float]:
    low, high, log = float(record["low"]), float(record["high"]), bool(record.get("log"))
    if log and low > 0:
        low_t, high_t = math.log10(low), math.log10(high)
        return lambda v: (math.log10(max(float(v), 1e-300)) - low_t) / ((high_t - low_t) or 1.0)
    return lambda v: (float(v) - low) / ((high - low) or 1.0)


def range_chart(original: dict[str, Any], rows: Sequence[RangeRow], width: int = 560) -> str:
    """Bars of each row's range on the original range's axis (log axis for a log parameter)."""
    label_w, bar_h, gap = 130, 14, 6
    plot_w = width - label_w - 110  # room for the bounds written after each bar
    height = (bar_h + gap) * len(rows) + 22
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    numeric = original["type"] in ("float", "int")
    to_unit = _scale(original) if numeric else None
    choices = list(original.get("choices") or [])
    for i, row in enumerate(rows):
        y = i * (bar_h + gap) + 4
        color = ORIGINAL_COLOR if i == 0 else PALETTE[(i - 1) % len(PALETTE)]
        parts.append(f'<text x="0" y="{y + bar_h - 3}" {FONT}>{escape(row.label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{plot_w}" height="{bar_h}" fill="none" stroke="#eeeeee"/>')
        record = row.record
        if record["type"] == "fixed":
            value = record["value"]
            if to_unit is not None and isinstance(value, (int, float)):
                x = label_w + plot_w * min(1.0, max(0.0, to_unit(value)))
            elif value in choices:
                x = label_w + plot_w * (choices.index(value) + 0.5) / len(choices)
            else:
                x = label_w
            parts.append(f'<rect x="{x - 2:.1f}" y="{y}" width="4" height="{bar_h}" fill="{color}"/>')
            parts.append(f'<text x="{x + 5:.1f}" y="{y + bar_h - 3}" {FONT}>= {escape(str(value))}</text>')
        elif to_unit is not None and record["type"] in ("float", "int"):
            x0 = label_w + plot_w * min(1.0, max(0.0, to_unit(record["low"])))
            x1 = label_w + plot_w * min(1.0, max(0.0, to_unit(record["high"])))
            bounds = f"{record['low']:.4g} .. {record['high']:.4g}"
            parts.append(
                f'<rect x="{x0:.1f}" y="{y}" width="{max(2.0, x1 - x0):.1f}" height="{bar_h}" fill="{color}">'
                f"<title>{escape(bounds)}</title></rect>"
            )
            parts.append(f'<text x="{x1 + 4:.1f}" y="{y + bar_h - 3}" {FONT}>{escape(bounds)}</text>')
        elif record["type"] == "categorical" and choices:
            cell = plot_w / len(choices)
            for j, choice in enumerate(choices):
                kept = choice in record.get("choices", [])
                fill = color if kept else "none"
                parts.append(
                    f'<rect x="{label_w + j * cell + 1:.1f}" y="{y}" width="{cell - 2:.1f}" height="{bar_h}" '
                    f'fill="{fill}" stroke="{color}"><title>{escape(str(choice))}</title></rect>'
                )
    axis_y = len(rows) * (bar_h + gap) + 16
    if numeric:
        low_text, high_text = f"{original['low']:.4g}", f"{original['high']:.4g}"
        scale = " (log)" if original.get("log") else ""
        parts.append(f'<text x="{label_w}" y="{axis_y}" {FONT}>{escape(low_text)}</text>')
        parts.append(
            f'<text x="{label_w + plot_w}" y="{axis_y}" text-anchor="end" {FONT}>{escape(high_text + scale)}</text>'
        )
    else:
        parts.append(f'<text x="{label_w}" y="{axis_y}" {FONT}>{escape(", ".join(map(str, choices)))}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[int, float], ...]  # (trial number, best value so far)


def best_so_far_chart(series: Sequence[Series], metric: str, width: int = 560, height: int = 240) -> str:
    """One step line per sprint: the best value so far against the trials finished."""
    left, right, top, bottom = 60, 130, 10, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for _, v in s.points]
    longest = max((len(s.points) for s in series), default=1)
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999999"/>')
    if values:
        low, high = min(values), max(values)
        span = (high - low) or abs(high) or 1.0

        def xy(i: int, v: float) -> tuple[float, float]:
            x = left + plot_w * (i / max(1, longest - 1))
            y = top + plot_h * (1 - (v - low) / span)
            return x, y

        for k, s in enumerate(series):
            color = PALETTE[k % len(PALETTE)]
            steps: list[tuple[float, float]] = []
            for i, (_, v) in enumerate(s.points):  # a step line: the best holds until a better trial
                x, y = xy(i, v)
                if steps:
                    steps.append((x, steps[-1][1]))
                steps.append((x, y))
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in steps)
            if coords:
                parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>')
            parts.append(
                f'<text x="{left + plot_w + 8}" y="{top + 14 + 16 * k}" fill="{color}" {FONT}>{escape(s.label)}</text>'
            )
        parts.append(f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" {FONT}>{high:.4g}</text>')
        parts.append(f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" {FONT}>{low:.4g}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" {FONT}>'
        f"trials finished (best {escape(metric)} so far)</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def importance_chart(importances: dict[str, float], width: int = 560) -> str:
    label_w, bar_h, gap = 130, 14, 6
    plot_w = width - label_w - 60
    rows = sorted(importances.items(), key=lambda kv: -kv[1])
    height = (bar_h + gap) * len(rows) + 4
    parts = [f'<svg width="{width}" height="{height}" role="img">']
    top = max((v for _, v in rows), default=1.0) or 1.0
    for i, (name, value) in enumerate(rows):
        y = i * (bar_h + gap) + 2
        parts.append(f'<text x="0" y="{y + bar_h - 3}" {FONT}>{escape(name)}</text>')
        w = max(1.0, plot_w * value / top)
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[0]}"/>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 3}" {FONT}>{value:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
