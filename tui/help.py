"""Every key binding, with the keys in effect (after the user's keymap)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from tui.keys import ACTIONS, SCOPE_TITLES, display_keys, effective_keys, keymap_path


def bindings_table(keymap: dict[str, str]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, expand=True)
    table.add_column("keys", style="bold", no_wrap=True, min_width=9)
    table.add_column("what", ratio=1)
    table.add_column("id", style="dim", no_wrap=True)
    for scope, title in SCOPE_TITLES.items():
        table.add_row(Text(title, style="bold underline"), "", "")
        for action in (a for a in ACTIONS if a.scope == scope):
            table.add_row(display_keys(effective_keys(action, keymap)), action.help, action.id)
    table.add_row(Text("Anywhere", style="bold underline"), "", "")
    table.add_row("ctrl+p", "command palette: every action above, by name", "")
    table.add_row("↑↓ pgup pgdn", "move in tables; home/end jump", "")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss(None)", "Close")]

    def compose(self) -> ComposeResult:
        keymap = getattr(self.app, "user_keymap", {})
        with VerticalScroll(classes="dialog wide tall"):
            yield Label("Keys", classes="dialog-title")
            yield Static(bindings_table(keymap))
            yield Label(
                f'rebind any action by its id in {keymap_path()} (e.g. approve = "ctrl+a")', classes="dialog-help"
            )
            yield Label("esc close", classes="dialog-help")
