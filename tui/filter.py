"""Choose which trials the table shows, by state."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from tui import format as fmt
from tui.trial_table import FILTERS


class FilterScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, counts: dict[str, int], current: str) -> None:
        super().__init__()
        self.counts = counts
        self.current = current

    def compose(self) -> ComposeResult:
        options = []
        for state in FILTERS:
            count = sum(self.counts.values()) if state == "all" else self.counts.get(state, 0)
            label = "all states" if state == "all" else fmt.state(state)
            options.append(Option(f"{label:<12} {count:>6}", id=state))
        with Vertical(classes="dialog"):
            yield Label("Show trials that are…", classes="dialog-title")
            yield OptionList(*options, id="filters")
            yield Label("enter choose · esc cancel", classes="dialog-help")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.highlighted = FILTERS.index(self.current) if self.current in FILTERS else 0
        option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
