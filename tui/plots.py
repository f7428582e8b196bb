"""Plots drawn with plotext into text, off the UI thread.

textual-plotext renders inside the widget's render (60–260 ms per 200×25 plot on the UI thread);
here plotext builds the figure as ANSI text in a worker thread and the widget only shows that text.
plotext keeps one global figure, so builds are serialised by a lock. Colours are 256-colour codes.
"""
from __future__ import annotations

import threading
from typing import Sequence

from rich.text import Text
from textual.widgets import Static

from engine.snapshot import HistoryPoint

_PLOTEXT = threading.Lock()


def _build(draw, width: int, height: int) -> Text:
    import plotext as plt

    with _PLOTEXT:
        plt.clear_figure()
        plt.plotsize(max(width, 20), max(height, 5))
        plt.theme("clear")
        draw(plt)
        canvas = plt.build()
    return Text.from_ansi(canvas, no_wrap=True, end="")


def history_plot(points: Sequence[HistoryPoint], width: int, height: int, metric: str) -> Text:
    if not points:
        return Text(f"{metric}: no completed trials yet", style="dim")

    def draw(plt) -> None:
        trials = [p.trial for p in points]
        plt.scatter(trials, [p.value for p in points], marker="dot", color="cyan", label=metric)
        plt.plot(trials, [p.best for p in points], color="green", label="best so far")
        plt.xlabel("trial")

    return _build(draw, width, height)


def curve_plot(values: Sequence[tuple[int, float]], width: int, height: int, label: str) -> Text:
    if not values:
        return Text("no intermediate values reported", style="dim")

    def draw(plt) -> None:
        steps = [s for s, _ in values]
        plt.plot(steps, [v for _, v in values], marker="dot", color="cyan", label=label)
        plt.xlabel("step")

    return _build(draw, width, height)


class PlotView(Static):
    """Shows a plot rendered elsewhere; remembers what it shows so the app can skip re-renders."""

    def __init__(self, placeholder: str = "", *, id: str | None = None) -> None:
        super().__init__(Text(placeholder, style="dim"), id=id)
        self.key: object = None

    def show(self, text: Text, key: object) -> None:
        self.key = key
        self.update(text)
