"""Raise fidelity: choose the next sprint's level, or edit its knobs, validated as typed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from engine.search.space import SpaceEditError
from tui import format as fmt
from tui.gate_draft import fidelity_values, split_fidelity_text


class FidelityScreen(ModalScreen[list[str] | None]):
    """Dismisses with the fidelity edits (a level name, then KNOB=VALUE edits), or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self, title: str, levels: Mapping[str, Mapping[str, Any]], proposed_level: str | None, current: list[str]
    ) -> None:
        super().__init__()
        self.title_text = title
        self.levels = levels
        self.proposed_level = proposed_level
        names = list(levels)
        chosen = next((e for e in current if e in levels), None)
        self.level = chosen or proposed_level or (names[0] if names else None)
        self.knobs = " ".join(e for e in current if "=" in e)

    def compose(self) -> ComposeResult:
        options = []
        for name, values in self.levels.items():
            mark = "  (proposed)" if name == self.proposed_level else ""
            options.append(Option(f"{name:<8} {fmt.fidelity(values)}{mark}", id=name))
        with Vertical(classes="dialog wide"):
            yield Label(self.title_text, classes="dialog-title")
            yield OptionList(*options, id="levels")
            yield Label("then knobs to change (optional), e.g. epochs=12 train_fraction=0.8:")
            yield Input(self.knobs, id="knobs", placeholder="KNOB=VALUE …")
            yield Static("", id="fidelity-result")
            yield Label("↑↓ level · tab knobs · enter accept · esc cancel", classes="dialog-help")

    def on_mount(self) -> None:
        levels = self.query_one(OptionList)
        names = list(self.levels)
        if self.level in names:
            levels.highlighted = names.index(self.level)
        self.query_one(Input).cursor_blink = False
        levels.focus()
        self._show()

    def edits(self) -> list[str]:
        return ([self.level] if self.level else []) + split_fidelity_text(self.query_one(Input).value)

    def _check(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            base = dict(self.levels[self.level]) if self.level else {}
            return fidelity_values(self.edits(), self.levels, base), None
        except SpaceEditError as err:
            return None, str(err)

    def _show(self) -> None:
        values, reason = self._check()
        result = self.query_one("#fidelity-result", Static)
        if reason:
            result.update(Text(reason, style="bold red"))
        else:
            result.update(Text.assemble("next sprint runs at ", (fmt.fidelity(values), "bold")))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.level = event.option.id
        self._show()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.level = event.option.id
        self._accept()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._accept()

    def _accept(self) -> None:
        _, reason = self._check()
        if reason:
            self.app.bell()
            self._show()
            return
        self.dismiss(self.edits())
