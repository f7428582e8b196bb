"""The pruning events feed: pruned and failed trials, newest first."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from engine.views.snapshot import LOST_KINDS, TrialEvent
from tui import format as fmt


class EventsFeed(Widget):
    """Renders only as many events as fit; re-renders only when the events change."""

    DEFAULT_CSS = "EventsFeed { height: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: tuple[TrialEvent, ...] = ()

    def show(self, events: tuple[TrialEvent, ...]) -> None:
        if events is not self.events:
            self.events = events
            self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if not self.events:
            return Text("no pruned or failed trials yet", style="dim")
        wide = width >= 60
        lines = []
        for event in self.events[: max(height, 1)]:
            line = Text(no_wrap=True)
            if wide:
                line.append(fmt.clock(event.time) + " ", "dim")
            line.append(f"#{event.trial:<5}", "bold")
            if event.kind == "pruned":
                line.append("pruned ", "yellow")
                step = "-" if event.step is None else str(event.step)
                line.append(f"@{step:<4} {fmt.number(event.value, 4):>8} {event.reason}")
            else:
                lost = event.fail_kind in LOST_KINDS  # the worker disappeared: not the trial's doing
                label = fmt.fail_label(event.fail_kind)
                line.append(f"{label} ", "magenta" if lost else "red")
                line.append(event.reason.removeprefix(f"{label}: "))
            line.truncate(max(width, 1), overflow="ellipsis")
            lines.append(line)
        return Text("\n").join(lines)
