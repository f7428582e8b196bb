"""Threshold meta-learning results: per-class thresholds and F1 before/after, then accept or drop.

Results are engine.store.records.ThresholdsResult: per class a threshold and cross-validated validation F1 (and
test F1 when test probabilities were saved) at 0.5, at the global threshold and at the class's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static

from engine.store.records import ThresholdsResult
from tui.key_bar import KeyBar
from tui.keys import bindings
from tui.messages import StoreThresholdsRequested

STRATEGIES = ("at_0.5", "global", "per_class")
HEADERS = ("class", "thr", "n val", "val@0.5", "val@glob", "val@cls", "test@0.5", "test@glob", "test@cls")


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _scores(values: Mapping[str, Any] | None) -> list[str]:
    return [_num((values or {}).get(s)) for s in STRATEGIES]


def threshold_rows(result: ThresholdsResult) -> tuple[list[list[str]], list[list[str]]]:
    """(per-class rows, overall rows) as cells under HEADERS."""
    rows = [
        [str(r.get("class")), _num(r.get("threshold"), 2), str(r.get("val_positives", "-"))]
        + _scores(r.get("val_cv"))
        + _scores(r.get("test"))
        for r in result.table
    ]
    totals = []
    for metric in ("micro_f1", "macro_f1"):
        val = (result.overall.get("val_cv") or {}).get(metric)
        test = (result.overall.get("test") or {}).get(metric)
        if val or test:
            totals.append([metric, _num(result.global_threshold, 2), str(result.n_val)] + _scores(val) + _scores(test))
    return rows, totals


def summary_line(result: ThresholdsResult) -> str:
    return (
        f"metric {result.metric}, optimizer {result.optimizer}, "
        f"{result.folds}-fold CV, global threshold {_num(result.global_threshold, 2)}, "
        f"recommended: {result.recommended}"
    )


def thresholds_table(result: ThresholdsResult) -> Table:
    """The same table as a Rich renderable (trial detail)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for index, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if index == 0 else "right")
    rows, totals = threshold_rows(result)
    for row in rows:
        table.add_row(*row)
    for row in totals:
        table.add_row(*row, style="bold")
    return table


class ThresholdScreen(Screen):
    SCOPE = "thresholds"
    BINDINGS = bindings("thresholds")

    def __init__(self, study: str, trial: int, stored: ThresholdsResult | None = None) -> None:
        super().__init__(id="thresholds")
        self.study = study
        self.trial = trial
        self.result: ThresholdsResult | None = stored
        self.stored = stored is not None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            Text.assemble(("Thresholds", "bold"), f" for {self.study} trial {self.trial}"), id="thresholds-title"
        )
        yield Static("", id="thresholds-status")
        yield DataTable(id="thresholds-table", cursor_type="row")
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for header in HEADERS:
            table.add_column(header, key=header)
        self._show()

    def show_result(self, result: ThresholdsResult | None, error: str | None = None) -> None:
        self.result, self.error, self.stored = result, error, False
        self._show()

    def _show(self) -> None:
        status = self.query_one("#thresholds-status", Static)
        table = self.query_one(DataTable)
        table.clear()
        if self.error:
            status.update(Text(f"threshold learning failed: {self.error}", style="bold red"))
            return
        if self.result is None:
            status.update(
                Text("learning thresholds in the background… (esc to leave; it keeps running)", style="italic")
            )
            return
        where = "stored with the trial" if self.stored else "not stored yet: a to accept, esc to drop"
        status.update(Text.assemble(summary_line(self.result) + "\n", (where, "bold")))
        rows, totals = threshold_rows(self.result)
        for row in rows:
            table.add_row(*row)
        for row in totals:
            table.add_row(*[Text(cell, style="bold") for cell in row])

    def action_accept(self) -> None:
        if self.result is None or self.error:
            self.app.bell()
            return
        if self.stored:
            self.app.notify("these thresholds are already stored")
            return
        self.post_message(StoreThresholdsRequested(self.study, self.trial, self.result))

    def action_back(self) -> None:
        self.dismiss()
