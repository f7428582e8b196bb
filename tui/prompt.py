"""Ask for one value, validated as it is typed."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    """`check(text)` returns None when the text is acceptable, else the reason it is not."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, value: str, check: Callable[[str], str | None], hint: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.check = check
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.value, id="prompt-input")
            yield Label(self.hint, id="prompt-reason", classes="dialog-help")
            yield Label("enter accept · esc cancel", classes="dialog-help")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False

    def on_input_changed(self, event: Input.Changed) -> None:
        reason = self.check(event.value)
        self.query_one("#prompt-reason", Label).update(reason or self.hint)
        self.query_one(Input).set_class(reason is not None, "invalid-entry")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        reason = self.check(event.value)
        if reason is None:
            self.dismiss(event.value.strip())
        else:
            self.query_one("#prompt-reason", Label).update(reason)
            self.app.bell()
