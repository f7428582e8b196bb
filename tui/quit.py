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
                f"h  leave it running headless: the engine stops here and a detached `hpo-tui run --headless`\n"
                f"   resumes it from the storage (output in {self.log_path}; come back with `hpo-tui attach`)\n"
                f"s  stop the campaign (running trials finish or are handed back; `hpo-tui run` resumes it)\n"
                f"n  stay"
            )
            yield Label("h headless · s stop · n/esc stay", classes="dialog-help")
