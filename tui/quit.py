"""Leaving while the campaign runs in this console: stop it, hand it to a headless engine, or stay."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class QuitScreen(ModalScreen[str | None]):
    """Dismisses with "stop", "headless" or None (stay)."""

    BINDINGS = [
        Binding("h", "dismiss('headless')", "Leave running headless"),
        Binding("s", "dismiss('stop')", "Stop the campaign"),
        Binding("n,escape", "dismiss(None)", "Stay"),
    ]

    def __init__(self, campaign: str, log_path: str) -> None:
        super().__init__()
        self.campaign = campaign
        self.log_path = log_path

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"The campaign {self.campaign} is running in this console.", classes="dialog-title")
            yield Static(
                "h  leave it running headless: the engine stops here, and a detached\n"
                "   `hpo-tui run --headless` takes over from the storage\n"
                f"   (its log: {self.log_path}; `hpo-tui attach` comes back)\n"
                "s  stop the campaign: running trials finish or are handed back,\n"
                "   `hpo-tui run` resumes it later\n"
                "n  stay"
            )
            yield Label("h headless · s stop · n/esc stay", classes="dialog-help")
