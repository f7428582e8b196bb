"""Confirm a consequential action, showing exactly what it will do."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y,enter", "dismiss(True)", "Confirm"),
        Binding("n,escape", "dismiss(False)", "Back"),
    ]

    def __init__(self, title: str, lines: list[str], confirm: str = "confirm") -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="dialog-body"):
                yield Static(Text("\n".join(self.lines) or "(no changes)"), id="confirm-lines")
            yield Label(f"y/enter {self.confirm} · n/esc back", classes="dialog-help")
