"""The dashboard: header, trial table, importance, pruning events and the history plot."""

from __future__ import annotations

import gc
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Label

from engine.views.snapshot import CampaignSnapshot
from tui.events_feed import EventsFeed
from tui.filter import FilterScreen
from tui.header import CampaignHeader
from tui.importance_bars import ImportanceBars
from tui.key_bar import KeyBar
from tui.keys import bindings
from tui.messages import (
    CycleSprintRequested,
    HistoryPlotRequested,
    LearnThresholdsRequested,
    OpenApprovalRequested,
    OpenDetailRequested,
    OpenFidelityRequested,
)
from tui.plots import PlotView
from tui.trial_table import TrialTable

NARROW_BELOW = 110  # columns: below this the side panels go under the table
SHORT_BELOW = 34  # rows: below this the history plot is hidden (side panels beside the table)
SHORT_BELOW_NARROW = 44  # rows: the same, when the side panels sit under the table
PLOT_EVERY_S = 1.0  # plots refresh at most once a second (plotext is not free)
# The storage's trials and the snapshot's rows live as long as the console: once this many more rows
# arrived, move every object alive into the collector's permanent generation. At 100,000 trials a full
# collection walks a million objects (0.66 s of a blocked event loop, several times a minute) for nothing.
FREEZE_GC_EVERY_ROWS = 10_000
# The console's collector runs rarely: with Python's default (700, 10, 10) short-lived snapshot objects
# survived into the old generation and full collections of 80-260 ms stalled the UI several times a
# minute at 100,000 trials (event-loop lag max 240 ms, one key 114 ms). With these thresholds they die
# by reference counting first: lag max 80 ms, every key under 75 ms, RSS 492 MB
# (benchmarks/tui_responsiveness.py --trials 100000). Freezing after every snapshot instead cut the lag
# to 53 ms but grew RSS by ~60 MB a minute (frozen cycles are never collected).
GC_THRESHOLDS = (100_000, 50, 20)


class DashboardScreen(Screen):
    SCOPE = "dashboard"
    BINDINGS = bindings("dashboard")
    AUTO_FOCUS = "#trials"

    def __init__(self) -> None:
        super().__init__(id="dashboard")
        self._snapshot: CampaignSnapshot | None = None
        self._plot_asked = 0.0
        self._table_status = ""
        self._mounted = False
        self._rows_at_gc_freeze = 0
        gc.set_threshold(*GC_THRESHOLDS)
        # Kept by reference: snapshots arrive many times a second, and may arrive while closing.
        self.header = CampaignHeader(id="header")
        self.table = TrialTable(id="trials")
        self.table_status = Label("", id="table-status")
        self.importance = ImportanceBars(id="importance")
        self.events = EventsFeed(id="events")
        self.history = PlotView("history: waiting for completed trials", id="history")

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.table_status
        with Horizontal(id="main"):
            yield self.table
            with Vertical(id="side"):
                with Vertical(id="importance-panel", classes="panel"):
                    yield Label("importance (PED-ANOVA)", classes="panel-title")
                    yield self.importance
                with Vertical(id="events-panel", classes="panel"):
                    yield Label("pruned & failed", classes="panel-title")
                    yield self.events
        yield self.history
        yield KeyBar()

    def on_mount(self) -> None:
        self._mounted = True
        self._adapt(self.app.size.width, self.app.size.height)
        self._show_table_status()
        self.on_screen_resume()

    def on_resize(self, event) -> None:
        self._adapt(event.size.width, event.size.height)
        self.ask_plot(force=True)

    def _adapt(self, width: int, height: int) -> None:
        narrow = width < NARROW_BELOW
        self.set_class(narrow, "narrow")
        self.set_class(height < (SHORT_BELOW_NARROW if narrow else SHORT_BELOW), "short")

    def on_screen_resume(self) -> None:
        snapshot = getattr(self.app, "snapshot", None)
        if snapshot is not None:
            self.show_snapshot(snapshot, getattr(self.app, "engine_line", None))

    # Snapshots -------------------------------------------------------------------------------
    def show_snapshot(self, snapshot: CampaignSnapshot, engine_line: str | None = None) -> None:
        """Apply a snapshot; the app calls this inside batch_update. Unchanged parts are skipped."""
        self._snapshot = snapshot
        if not self._mounted:
            return  # on_mount shows the app's latest snapshot
        self.header.show(snapshot, engine_line)
        self.table.set_rows(
            snapshot.trials, snapshot.param_names, snapshot.best.number if snapshot.best else None, snapshot.staged
        )
        self.events.show(snapshot.events)
        self._show_table_status()
        self.ask_plot()
        if len(snapshot.trials) - self._rows_at_gc_freeze >= FREEZE_GC_EVERY_ROWS:
            self._rows_at_gc_freeze = len(snapshot.trials)
            gc.freeze()  # cheap: it moves the generations' lists, it does not walk them

    def show_importances(self, importances: dict[str, float], note: str) -> None:
        self.importance.show(importances, note)

    def ask_plot(self, force: bool = False) -> None:
        """Ask the app for a new history plot when the history changed (at most once a second)."""
        snapshot = self._snapshot
        plot = self.history
        if snapshot is None or not plot.display or plot.size.width == 0:
            return
        key = (snapshot.history, plot.size.width, plot.size.height)
        if not force and (plot.key == key or time.monotonic() - self._plot_asked < PLOT_EVERY_S):
            return
        self._plot_asked = time.monotonic()
        self.post_message(HistoryPlotRequested(snapshot, plot.size.width, plot.size.height, key))

    def _show_table_status(self) -> None:
        table = self.table
        shown, total = len(table.view), len(table.rows)
        arrow = "▼" if table.sort_reverse else "▲"
        parts = [
            f"trials {shown}" + (f"/{total}" if shown != total else ""),
            f"sort {table.sort_column.title}{arrow}",
            f"filter {table.state_filter.lower()}",
        ]
        if table.follow:
            parts.append("following")
        status = "  ·  ".join(parts)
        if status != self._table_status:
            self._table_status = status
            self.table_status.update(Text(status, style="dim"), layout=False)

    # Actions ---------------------------------------------------------------------------------
    def action_open_approval(self) -> None:
        self.post_message(OpenApprovalRequested())

    def action_raise_fidelity(self) -> None:
        self.post_message(OpenFidelityRequested())

    def action_thresholds(self) -> None:
        self.post_message(LearnThresholdsRequested(self.table.selected))

    def action_open_detail(self) -> None:
        if self.table.selected is not None:
            self.post_message(OpenDetailRequested(self.table.selected))

    def on_trial_table_selected(self, message: TrialTable.Selected) -> None:
        self.post_message(OpenDetailRequested(message.row))

    def action_filter(self) -> None:
        counts = dict(self._snapshot.counts) if self._snapshot else {}

        def chosen(state: str | None) -> None:
            if state is not None:
                self.table.set_filter(state)
                self._show_table_status()

        self.app.push_screen(FilterScreen(counts, self.table.state_filter), chosen)

    def action_cycle_sort(self) -> None:
        self.table.cycle_sort()
        self._show_table_status()

    def action_reverse_sort(self) -> None:
        self.table.reverse_sort()
        self._show_table_status()

    def action_toggle_follow(self) -> None:
        self.table.set_follow(not self.table.follow)
        self._show_table_status()

    def action_cycle_sprint(self) -> None:
        self.post_message(CycleSprintRequested())
