"""The gate's evidence for one parameter: the metric against its values, per fidelity, with the
top-k marked and the original, current and proposed ranges drawn; plus the text lines beside it.

`evidence_plot` runs in a thread worker (tui.plots builds plotext figures off the UI thread and
serialises them); the approval screen only hands the finished lines to a `PlotView`. Points are
thinned to one per character cell of the canvas (what the terminal can show anyway), the top-k
always kept, so a 10,000-trial sprint costs no more to draw than a small one.
"""

from __future__ import annotations

import math

import numpy as np
from rich.text import Text
from textual import events
from textual.message import Message

from engine.views.evidence import GateEvidence, Range, RankAgreement, number
from tui.plots import PlotLines, PlotView, build_plot, message

# 256-colour codes, shared by the plot and its legend so they match on every terminal.
LEVEL_COLOURS = (45, 214, 171, 118, 203)
LEVEL_MARKERS = ("•", "+", "o", "~", "=")
TOP_MARKER = "X"
ORIGINAL_COLOUR, CURRENT_COLOUR, PROPOSED_COLOUR, EDITED_COLOUR = 244, 33, 40, 226


def level_style(evidence: GateEvidence, level: str) -> tuple[str, int]:
    levels = [top.level for top in evidence.tops]
    index = levels.index(level) if level in levels else len(levels)
    return LEVEL_MARKERS[index % len(LEVEL_MARKERS)], LEVEL_COLOURS[index % len(LEVEL_COLOURS)]


def _scale(values: np.ndarray, log: bool) -> np.ndarray:
    if not log:
        return values.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(values.astype(float))


def _bounds(record: Range | None, log: bool) -> list[float]:
    """Where a range's edges sit on the plot's x axis (nothing for categoricals)."""
    if record is None:
        return []
    if record.numeric:
        edges = list(record.bounds())
    elif record.kind == "fixed" and isinstance(record.value, (int, float)):
        edges = [float(record.value)]
    else:
        return []
    if log:
        return [math.log10(e) for e in edges if e > 0]
    return edges


def _thin(x: np.ndarray, y: np.ndarray, keep: np.ndarray, cells: tuple[int, int], box) -> np.ndarray:
    """Indices of the points to draw: one per canvas cell, plus every point in `keep`."""
    (x0, x1), (y0, y1) = box
    cols = np.clip(((x - x0) / ((x1 - x0) or 1.0) * cells[0]).astype(int), 0, cells[0])
    rows = np.clip(((y - y0) / ((y1 - y0) or 1.0) * cells[1]).astype(int), 0, cells[1])
    _, first = np.unique(cols * (cells[1] + 1) + rows, return_index=True)
    chosen = np.zeros(len(x), dtype=bool)
    chosen[first] = True
    return np.flatnonzero(chosen | keep)


def evidence_plot(
    evidence: GateEvidence, name: str, width: int, height: int, proposed: Range | None = None
) -> PlotLines:
    """The plot for parameter `name` (`proposed`: the operator's edited range, if any)."""
    param = evidence.param(name)
    if param is None:
        return message(f"{name}: fixed by the campaign, nothing to plot", width)
    if not any(len(g.y) for g in param.groups):
        return message(f"{name}: no completed trials to plot", width)
    categorical = param.original.kind == "categorical"
    log = param.log
    xs = [_scale(g.x, log) for g in param.groups]
    if categorical:  # spread each choice's column a little, or its points would all share one cell
        xs = [x + ((np.arange(len(x)) * 0.618) % 1.0 - 0.5) * 0.5 for x in xs]
    finite_y = np.concatenate([g.y[np.isfinite(g.y)] for g in param.groups])
    if categorical:
        x_box = (-0.5, len(param.original.choices) - 0.5)
    else:
        x_box = tuple(_scale(np.array([param.original.low, param.original.high]), log))
    y_box = (float(finite_y.min()), float(finite_y.max())) if len(finite_y) else (0.0, 1.0)
    if y_box[0] == y_box[1]:
        y_box = (y_box[0] - 0.5, y_box[1] + 0.5)
    edited = proposed is not None and proposed != param.proposed
    target = proposed if proposed is not None else param.proposed

    def draw(plt) -> None:
        for record, colour in (
            (param.original, ORIGINAL_COLOUR),
            (param.current, CURRENT_COLOUR),
            (target, EDITED_COLOUR if edited else PROPOSED_COLOUR),
        ):
            for edge in _bounds(record, log):
                plt.vline(edge, color=colour)
        for group, x in zip(param.groups, xs, strict=False):
            present = np.isfinite(x) & np.isfinite(group.y)
            if not present.any():
                continue
            gx, gy, top = x[present], group.y[present], group.top[present]
            marker, colour = level_style(evidence, group.level)
            shown = _thin(gx, gy, top, (max(width, 20), max(height, 5)), (x_box, y_box))
            rest = shown[~top[shown]]
            if len(rest):
                plt.scatter(gx[rest].tolist(), gy[rest].tolist(), marker=marker, color=colour)
            best = np.flatnonzero(top)
            if len(best):
                plt.scatter(gx[best].tolist(), gy[best].tolist(), marker=TOP_MARKER, color=colour, style="bold")
        plt.xlim(*x_box)
        plt.ylim(*y_box)
        if categorical:
            kept = _kept_choices(target, param.original)
            labels = [str(c) if i in kept else f"({c})" for i, c in enumerate(param.original.choices)]
            plt.xticks(list(range(len(labels))), labels)
        elif log:
            plt.xticks(*_log_ticks(*x_box, 4 if width < 60 else 7))

    return build_plot(draw, width, height, fast=True)


def _log_ticks(lo: float, hi: float, most: int) -> tuple[list[float], list[str]]:
    """Ticks of a log10 axis: whole decades where the range spans two or more, else evenly spread."""
    decades = np.arange(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1, dtype=float)
    if len(decades) >= 2:
        ticks = decades[:: max(1, math.ceil(len(decades) / most))]
    else:
        ticks = np.linspace(lo, hi, 3)
    return ticks.tolist(), [number(float(10**t)) for t in ticks]


def _kept_choices(target: Range | None, original: Range) -> set[int]:
    if target is None:
        return set(range(len(original.choices)))
    if target.kind == "categorical":
        return {i for i, c in enumerate(original.choices) if c in target.choices}
    if target.kind == "fixed":
        return {i for i, c in enumerate(original.choices) if c == target.value}
    return set()


def legend(evidence: GateEvidence, name: str, edited: bool) -> Text:
    """One line naming what the plot draws, in the plot's colours."""
    text = Text()
    for top in evidence.tops:
        marker, colour = level_style(evidence, top.level)
        text.append(f"{marker} {top.level}  ", style=f"color({colour})")
    text.append(f"{TOP_MARKER} top-{evidence.top_k}  ", style="bold")
    param = evidence.param(name)
    if param is not None and param.original.kind != "categorical":
        text.append("│original ", style=f"color({ORIGINAL_COLOUR})")
        text.append("│current ", style=f"color({CURRENT_COLOUR})")
        text.append("│yours" if edited else "│proposed", style=f"color({EDITED_COLOUR if edited else PROPOSED_COLOUR})")
    elif param is not None:
        text.append("(choice) = cut", style="dim")
    return text


def _agreement_text(agreement: RankAgreement) -> Text:
    if agreement.rho is None:
        return Text(agreement.describe(), style="dim")
    style = "bold red" if agreement.rho <= 0 else "yellow" if agreement.rho < 0.5 else "green"
    method = "re-evaluated" if agreement.method == "re-evaluated" else "nearest pairs"
    return Text.assemble(
        f"{agreement.lower}→{agreement.higher} ", (f"ρ {agreement.rho:+.2f}", style), f" ({agreement.pairs} {method})"
    )


def summary(evidence: GateEvidence, name: str | None) -> Text:
    """Rank agreement, what the proposal cuts, and the selected parameter's top-k spans."""
    text = Text()
    text.append("rank agreement: ", style="bold")
    if evidence.agreements:
        for i, agreement in enumerate(evidence.agreements):
            if i:
                text.append("; ")
            text.append_text(_agreement_text(agreement))
    else:
        text.append(evidence.agreement_note.removeprefix("not measurable yet: "), style="dim")
    text.append("\n")
    cut_style = "bold red" if evidence.cut_total else ""
    text.append("cuts ", style="bold")
    text.append(f"{evidence.cut_total}/{evidence.top_total}", style=cut_style)
    text.append(" best (" + ", ".join(f"{c.level} {c.outside}/{c.k}" for c in evidence.cuts) + ")")
    param = evidence.param(name) if name else None
    if param is not None:
        text.append(f"  {param.name} top-{evidence.top_k}: ", style="bold")
        text.append(
            ", ".join(f"{s.level} {s.describe()}" + (f" ({s.outside} cut)" if s.outside else "") for s in param.spans)
        )
    return text


class EvidencePlotView(PlotView):
    """The plot's widget: says when its size changed (an editor opened, the terminal resized), since
    a plot is drawn for one canvas size."""

    class Resized(Message):
        pass

    def on_resize(self, event: events.Resize) -> None:
        self.post_message(self.Resized())
