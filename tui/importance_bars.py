"""Parameter importance bars (PED-ANOVA, computed in the background by the app)."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class ImportanceBars(Widget):
    DEFAULT_CSS = "ImportanceBars { height: auto; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.importances: dict[str, float] = {}
        self.note = "importance: waiting for completed trials"

    def show(self, importances: dict[str, float], note: str = "") -> None:
        if importances != self.importances or note != self.note:
            self.importances = dict(importances)
            self.note = note
            self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self.importances)) + (1 if self.note and self.importances else 0)

    def render(self) -> Text:
        if not self.importances:
            return Text(self.note or "importance: not enough completed trials", style="dim")
        width = self.content_size.width
        name_width = min(12, max(len(n) for n in self.importances))
        bar_width = max(4, width - name_width - 7)
        top = max(self.importances.values()) or 1.0
        text = Text(no_wrap=True, overflow="ellipsis")
        for index, (name, value) in enumerate(sorted(self.importances.items(), key=lambda kv: -kv[1])):
            if index:
                text.append("\n")
            filled = round(bar_width * value / top)
            text.append(f"{name[:name_width]:<{name_width}} ")
            text.append("█" * filled, "bold")
            text.append("·" * (bar_width - filled), "dim")
            text.append(f" {value:.2f}")
        if self.note:
            text.append("\n" + self.note, "dim")
        return text
