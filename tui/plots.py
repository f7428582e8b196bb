"""Plots drawn with plotext, turned into terminal lines off the UI thread.

textual-plotext renders inside the widget's render (60–260 ms per 200×25 plot on the UI thread).
Here a worker thread has plotext build the figure as ANSI text and Rich cut it into lines of
segments; the widget only hands those lines to Textual (Line API), so a new plot costs the UI
thread next to nothing. plotext keeps one global figure, so builds are serialised by a lock.
Colours are 256-colour codes; the figure has no background of its own (plotext's "clear" theme).
"""

from __future__ import annotations

import functools
import io
import re
import threading
from collections.abc import Sequence

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from engine.views.snapshot import HistoryPoint

_PLOTEXT = threading.Lock()
PlotLines = list[Strip]


def _lines(text: Text, width: int) -> PlotLines:
    # Never printed to: the console only cuts the text into lines of segments.
    console = Console(width=max(width, 1), color_system="256", force_terminal=True, file=io.StringIO())
    rendered = console.render_lines(text, console.options.update(width=max(width, 1)), pad=False)
    return [Strip(line) for line in rendered]


_SGR = re.compile(r"\x1b\[([0-9;]*)m")


@functools.lru_cache(maxsize=256)
def _sgr_style(codes: str) -> Style:
    return Text.from_ansi(f"\x1b[{codes}mx").get_style_at_offset(Console(), 0) if codes else Style()


def _plotext_lines(canvas: str, width: int) -> PlotLines:
    """plotext's canvas cut into lines of segments (the same ones Rich's general ANSI decoder makes):
    plotext writes only SGR codes, each run after a reset. A dense 158×30 plot: 2-8 ms, not 46."""
    lines = []
    for line in canvas.split("\n")[:-1] if canvas.endswith("\n") else canvas.split("\n"):
        segments: list[Segment] = []
        codes: list[str] = []
        parts = _SGR.split(line)
        for i, part in enumerate(parts):
            if i % 2:  # an SGR code
                codes = [] if part in ("", "0") else [*codes, part]
            elif part:
                segments.append(Segment(part, _sgr_style(";".join(codes))))
        lines.append(Strip(segments).crop(0, max(width, 1)))
    return lines


def build_plot(draw, width: int, height: int, fast: bool = False) -> PlotLines:
    """The figure `draw(plt)` makes, as terminal lines; `fast` uses the plotext-only ANSI decoder."""
    import plotext as plt

    with _PLOTEXT:
        plt.clear_figure()
        plt.limit_size(False, False)  # the widget, not the terminal plotext sees, sets the size
        plt.plotsize(max(width, 20), max(height, 5))
        plt.theme("clear")
        draw(plt)
        canvas = plt.build()
    if fast:
        return _plotext_lines(canvas, width)
    return _lines(Text.from_ansi(canvas, no_wrap=True, end=""), width)


def message(text: str, width: int = 200) -> PlotLines:
    return [Strip([Segment(text[:width], Style(dim=True))])]


def history_plot(points: Sequence[HistoryPoint], width: int, height: int, metric: str) -> PlotLines:
    if not points:
        return message(f"{metric}: no completed trials yet", width)

    def draw(plt) -> None:
        trials = [p.trial for p in points]
        plt.scatter(trials, [p.value for p in points], marker="dot", color="cyan", label=metric)
        plt.plot(trials, [p.best for p in points], color="green", label="best so far")
        plt.xlabel("trial")

    return build_plot(draw, width, height)


def curve_plot(values: Sequence[tuple[int, float]], width: int, height: int, label: str) -> PlotLines:
    if not values:
        return message("no intermediate values reported", width)

    def draw(plt) -> None:
        steps = [s for s, _ in values]
        plt.plot(steps, [v for _, v in values], marker="dot", color="cyan", label=label)
        plt.xlabel("step")

    return build_plot(draw, width, height)


class PlotView(Widget):
    """Shows plot lines made elsewhere; remembers what it shows so the app can skip re-renders."""

    DEFAULT_CSS = "PlotView { height: 12; }"

    def __init__(self, placeholder: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.key: object = None
        self._plot: PlotLines = message(placeholder)
        self._base = Style()

    def show(self, lines: PlotLines, key: object) -> None:
        self.key = key
        self._plot = lines
        self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        self._base = self.rich_style  # an ancestor walk: once per frame, not once per line
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        if y >= len(self._plot):
            return Strip.blank(width, self._base)
        return self._plot[y].apply_style(self._base).crop_extend(0, width, self._base)
