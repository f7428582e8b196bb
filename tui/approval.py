"""Phase approval: read the evidence, edit the proposed ranges, approve, reject or extend.

Size (~470 lines): one screen: the range table and its edits, the evidence plot's thread workers and
the approve / reject / extend confirmations, which share the screen's draft.

The evidence (engine.views.evidence: the points of every sprint so far, the rank agreement between
fidelities, what the proposal would cut) is read by a thread worker when the screen opens; the
selected parameter's plot is drawn by another (tui.evidence_plot), again whenever the selection,
the edited range or the plot's size changes. The UI thread only applies finished lines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Input, Label, Static
from textual.worker import get_current_worker

from engine.search.space import SpaceEditError
from engine.store.records import Proposal
from engine.views.evidence import GateEvidence, Range, recut
from engine.views.snapshot import CampaignSnapshot
from tui import format as fmt
from tui.confirm import ConfirmScreen
from tui.evidence_plot import EvidencePlotView, evidence_plot, legend, summary
from tui.gate_draft import GateDraft, fidelity_values
from tui.key_bar import KeyBar
from tui.keys import bindings
from tui.messages import DecisionSubmitted, OpenFidelityRequested
from tui.plots import PlotLines, PlotView, message
from tui.prompt import PromptScreen

PLOT_CACHE = 64  # plots kept (per parameter, range and size) before the cache starts afresh
# What the operator decides on comes first; at 80 columns the last ones scroll into view.
COLUMNS = ("param", "proposed", "top-k min:max", "best", "imp.", "current", "original")


class BoundInput(Input):
    """The in-place range editor; escape abandons the edit rather than the approval."""

    BINDINGS = [Binding("escape", "abandon", "Abandon edit")]

    def action_abandon(self) -> None:
        screen = self.screen
        if isinstance(screen, ApprovalScreen):  # the editor lives on the approval screen only
            screen.finish_edit(commit=False)


class ApprovalScreen(Screen):
    SCOPE = "approval"
    BINDINGS = bindings("approval")
    AUTO_FOCUS = "#params"

    def __init__(
        self,
        snapshot: CampaignSnapshot,
        draft: GateDraft,
        read_evidence: Callable[[int], GateEvidence | None],
    ) -> None:
        super().__init__(id="approval")
        self.read_evidence = read_evidence  # may block (storage): called from a worker thread only
        self.snapshot = snapshot
        if snapshot.proposal is None:
            raise ValueError("the approval screen opens on a snapshot with a pending proposal")
        self.proposal: Proposal = snapshot.proposal
        self.original: Mapping[str, Any] = snapshot.original_space
        self.levels: Mapping[str, Any] = snapshot.levels
        self.draft = draft
        self.names = list(self.proposal.params)
        self.editing: str | None = None
        self.closed_reason: str | None = None  # set when the gate was decided elsewhere
        self.evidence: GateEvidence | None = None  # as read; `shown_evidence` follows the edits
        self.shown_evidence: GateEvidence | None = None
        self.evidence_error: str | None = None
        self.plot_threads: list[str] = []  # the threads that drew the plots shown (tests: never the UI's)
        self._shown_key: object = None
        self._plot_cache: dict[tuple, tuple[PlotLines, str]] = {}  # key -> (lines, the thread that drew them)

    # Layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        evidence = self.proposal.evidence
        yield Static(self._title(), id="approval-title")
        yield Label(
            f"evidence: {evidence.completed} completed, top {evidence.top_k}, "
            f"best {fmt.number(evidence.best_value)} (#{evidence.best_trial})",
            id="approval-evidence",
        )
        yield DataTable(id="params", cursor_type="row", zebra_stripes=False)
        yield Static("", id="param-note")
        with Horizontal(id="bound-editor"):
            yield Label("", id="bound-label")
            yield BoundInput(id="bound-input")
        yield Static(Text("reading the evidence…", style="dim"), id="evidence-summary")
        yield Static("", id="evidence-legend")
        yield EvidencePlotView("", id="evidence-plot")
        yield Static("", id="approval-fidelity")
        yield Static("", id="approval-status")
        yield KeyBar()

    def _title(self) -> Text:
        p = self.proposal
        return Text.assemble(
            (f"Gate {self.draft.gate}", "bold"),
            f": {p.after} → {p.next}   next sprint: ",
            (f"{p.sampler}/{p.pruner}", "italic"),
            f", {p.n_trials or '-'} trials",
        )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        for name in self.names:
            table.add_row(*self._cells(name), key=name)
        self.query_one("#bound-editor").display = False
        self.query_one(BoundInput).cursor_blink = False
        self._refresh_details()
        # After the first frame: the read holds the GIL for a while at 10,000 trials.
        self.call_after_refresh(
            self.run_worker,
            self._read_evidence,
            thread=True,
            group="gate-evidence",
            name="gate evidence",
            exit_on_error=False,
        )

    # Rows ------------------------------------------------------------------------------------
    def _cells(self, name: str) -> list[Any]:
        row = self.proposal.params[name]
        try:
            proposed = fmt.span(self.draft.record(name, self.proposal, self.original))
        except SpaceEditError:
            proposed = self.draft.edits.get(name, "?")
        edited = self.draft.edited(name)
        top = "-"
        if row.top_min is not None:
            top = f"{fmt.param(row.top_min)}:{fmt.param(row.top_max)}"
        elif row.top_counts is not None:
            top = " ".join(f"{k}:{v}" for k, v in row.top_counts.items())
        importance = row.importance
        label = Text(name, style="bold")
        if row.edge:
            label.append(" !", style="bold red")  # best values at an edge: read the note before narrowing
        return [
            label,
            Text(proposed + ("*" if edited else ""), style="bold reverse" if edited else "bold"),
            top,
            fmt.param(row.best),
            "-" if importance is None else f"{importance:.2f}",
            fmt.span(dict(row.current)),
            fmt.span(dict(row.original)),
        ]

    def _update_row(self, name: str) -> None:
        table = self.query_one(DataTable)
        for column, value in zip(COLUMNS, self._cells(name), strict=False):
            table.update_cell(name, column, value)

    @property
    def current_name(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.names:
            return None
        return self.names[min(table.cursor_row, len(self.names) - 1)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._refresh_details()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # The table keeps enter for itself (select): selecting a row edits it.
        event.stop()
        self.action_edit()

    def _refresh_details(self) -> None:
        name = self.current_name
        note = Text()
        if name is not None:
            row = self.proposal.params[name]
            note.append(f"{name} ({row.kind}{', log' if row.original.get('log') else ''}): ", "bold")
            if row.note:
                note.append(row.note, "bold red" if row.edge else "")
            else:
                note.append("no warning", "dim")
        self.query_one("#param-note", Static).update(note)
        self.query_one("#approval-fidelity", Static).update(self._fidelity_text())
        self._show_status()
        self._show_evidence()

    def _fidelity_text(self) -> Text:
        proposal_fidelity = self.proposal.fidelity
        try:
            values = fidelity_values(self.draft.fidelity_edits, self.levels, proposal_fidelity.values)
        except SpaceEditError as err:
            return Text(f"fidelity: {err}", style="bold red")
        text = Text("next fidelity: ")
        text.append(f"{proposal_fidelity.level} ({fmt.fidelity(values)})", "bold")
        if self.draft.fidelity_edits:
            text.append(f"  changed: {' '.join(self.draft.fidelity_edits)}", "reverse")
        return text

    def _show_status(self, message: str | None = None, error: bool = False) -> None:
        status = self.query_one("#approval-status", Static)
        if self.closed_reason:
            status.update(Text(self.closed_reason, style="bold reverse"))
            return
        if message is None:
            try:
                decision = self.draft.decision(self.proposal, self.original, self.levels)
            except SpaceEditError as err:
                message, error = f"cannot approve yet: {err}", True
            else:
                count = len(decision.diff)
                message = (
                    f"approve = {decision.action}: {count} change(s) to the current space"
                    if count
                    else "approve keeps the current space"
                )
        status.update(Text(message, style="bold red" if error else ""))

    # In-place editing ------------------------------------------------------------------------
    def action_edit(self) -> None:
        name = self.current_name
        if name is None or self.closed_reason:
            return
        if self.original[name]["type"] == "fixed":
            self._show_status(f"{name}: is fixed by the campaign file and cannot be edited", error=True)
            return
        self.editing = name
        kind = self.original[name]["type"]
        shape = "a,b,…" if kind == "categorical" else "LOW:HIGH"
        self.query_one("#bound-label", Label).update(f"{name} {shape} (=V freezes): ")
        editor = self.query_one(BoundInput)
        editor.value = self._edit_text(name)
        self.query_one("#bound-editor").display = True
        editor.focus()
        editor.cursor_position = len(editor.value)

    def _edit_text(self, name: str) -> str:
        if name in self.draft.edits:
            return self.draft.edits[name]
        try:
            return fmt.span(self.draft.record(name, self.proposal, self.original))
        except SpaceEditError:
            return ""

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.editing is None:
            return
        reason = self.draft.check_bounds(self.editing, event.value, self.original)
        event.input.set_class(reason is not None, "invalid-entry")
        self._show_status(reason or f"{self.editing}: ok, enter to keep it", error=reason is not None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.finish_edit(commit=True)

    def finish_edit(self, commit: bool) -> None:
        name = self.editing
        if name is None:
            return
        if commit:
            try:
                self.draft.set_bounds(name, self.query_one(BoundInput).value, self.original)
            except SpaceEditError as err:
                self._show_status(str(err), error=True)
                self.app.bell()
                return  # stay in the editor: the reason is on screen
        self.editing = None
        self.query_one("#bound-editor").display = False
        self._update_row(name)
        self.query_one(DataTable).focus()
        self._refresh_details()

    def action_toggle_freeze(self) -> None:
        name = self.current_name
        if name is None or self.closed_reason:
            return
        try:
            self.draft.toggle_freeze(name, self.proposal, self.original)
        except SpaceEditError as err:
            self._show_status(str(err), error=True)
            return
        self._update_row(name)
        self._refresh_details()

    # Decisions -------------------------------------------------------------------------------
    def _decide(self, action: str, extend_trials: int | None = None) -> None:
        if self.closed_reason:
            self.app.bell()
            return
        try:
            decision = self.draft.decision(self.proposal, self.original, self.levels, action, extend_trials)
        except SpaceEditError as err:
            self._show_status(str(err), error=True)
            self.app.bell()
            return
        verb = {"approve": "Approve", "edit": "Approve with edits", "reject": "Reject", "extend": "Extend"}[
            decision.action
        ]
        lines = [f"gate {self.draft.gate}: {decision.action} (recorded as yours, source tui)"]
        lines += [f"  {line}" for line in decision.diff] or ["  (the space stays as it is)"]
        if decision.action != "extend":
            lines.append(f"next sprint {self.proposal.next}: fidelity {fmt.fidelity(decision.fidelity)}")

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.post_message(DecisionSubmitted(self.draft.gate, decision))

        self.app.push_screen(ConfirmScreen(f"{verb} gate {self.draft.gate}?", lines, "record the decision"), confirmed)

    def action_approve(self) -> None:
        self._decide("approve")

    def action_reject(self) -> None:
        self._decide("reject")

    def action_extend(self) -> None:
        def check(text: str) -> str | None:
            try:
                count = int(text.strip())
            except ValueError:
                return f"{text!r} is not a whole number"
            return None if count >= 1 else "give a positive number of extra trials"

        def chosen(text: str | None) -> None:
            if text is not None:
                self._decide("extend", int(text))

        default = str(max(1, (self.proposal.evidence.completed or 10) // 2))
        self.app.push_screen(
            PromptScreen(f"Extra trials for {self.proposal.after}:", default, check, "then the gate opens again"),
            chosen,
        )

    def action_fidelity(self) -> None:
        if not self.closed_reason:
            self.post_message(OpenFidelityRequested())

    def action_cancel(self) -> None:
        self.dismiss()

    def show_snapshot(self, snapshot: CampaignSnapshot, engine_line: str | None = None) -> None:
        if snapshot.pending_gate != self.draft.gate and not self.closed_reason:
            decided = next((d for d in snapshot.decisions if d.gate == self.draft.gate), None)
            who = f" by {decided.who.user} via {decided.source}" if decided else ""
            self.closed_reason = f"gate {self.draft.gate} was decided{who}: esc to go back"
            self._show_status()

    def on_screen_resume(self) -> None:
        self._refresh_details()

    # Evidence (read and drawn off the UI thread) --------------------------------------------
    def _read_evidence(self) -> None:
        try:
            evidence, error = self.read_evidence(self.draft.gate), None
        except Exception as err:  # a storage hiccup must not take the approval down: say so instead
            evidence, error = None, f"evidence unavailable: {err}"
        self.app.call_from_thread(self._evidence_read, evidence, error)

    def _evidence_read(self, evidence: GateEvidence | None, error: str | None) -> None:
        if not self.is_attached:  # the operator left the screen meanwhile
            return
        self.evidence = evidence
        self.evidence_error = error or (None if evidence else "no evidence recorded for this gate")
        self._show_evidence()

    def _draft_range(self, name: str) -> Range | None:
        try:
            return Range.of(self.draft.record(name, self.proposal, self.original))
        except SpaceEditError:
            return None  # an invalid edit: the proposal's range stays drawn

    def _show_evidence(self) -> None:
        if self.evidence is None:
            if self.evidence_error:
                self.query_one("#evidence-summary", Static).update(Text(self.evidence_error, style="dim"))
            return
        edited = {n: r for n in self.names if self.draft.edited(n) and (r := self._draft_range(n)) is not None}
        self.shown_evidence = recut(self.evidence, edited) if edited else self.evidence
        name = self.current_name
        self.query_one("#evidence-summary", Static).update(summary(self.shown_evidence, name))
        self.query_one("#evidence-legend", Static).update(legend(self.shown_evidence, name or "", name in edited))
        self._request_plot()

    def _plot_key(self, evidence: GateEvidence, name: str, width: int, height: int) -> tuple:
        param = evidence.param(name)
        return (id(self.evidence), name, param.proposed if param is not None else None, width, height)

    def _request_plot(self) -> None:
        plot = self.query_one("#evidence-plot", PlotView)
        evidence, name = self.shown_evidence, self.current_name
        if evidence is None or name is None or not plot.display:
            return
        width, height = plot.content_size.width, plot.content_size.height
        if width < 10 or height < 3:
            if not plot.size.area:  # not laid out yet: ask again once it is
                self.set_timer(0.05, self._request_plot)
            return
        key = self._plot_key(evidence, name, width, height)
        if plot.key == key:
            return
        plot.key = key  # asked for: a second request for the same picture is not queued
        if key in self._plot_cache:
            self._show_plot(*self._plot_cache[key], key)
            return
        # The selected parameter first, then its neighbours in the table: the next arrow key finds
        # its plot drawn already.
        index = self.names.index(name)
        jobs = [(key, name)] + [
            (self._plot_key(evidence, n, width, height), n)
            for n in self.names[index + 1 : index + 2] + self.names[max(index - 1, 0) : index]
        ]
        jobs = [(k, n) for k, n in jobs if k not in self._plot_cache]

        def draw() -> None:
            worker = get_current_worker()
            for i, (job_key, job_name) in enumerate(jobs):
                if i and worker.is_cancelled:  # the selection moved on: draw that one instead
                    return
                param = evidence.param(job_name)
                try:
                    lines = evidence_plot(evidence, job_name, width, height, param.proposed if param else None)
                except Exception as err:  # say so on screen rather than leave the old picture
                    lines = message(f"{job_name}: the plot failed: {err}", width)
                self.app.call_from_thread(self._plot_drawn, lines, job_key, threading.current_thread().name)

        self.run_worker(
            draw, thread=True, exclusive=True, group="evidence-plot", name="evidence plot", exit_on_error=False
        )

    def _plot_drawn(self, lines: PlotLines, key: tuple, thread: str) -> None:
        if not self.is_attached:
            return
        if len(self._plot_cache) >= PLOT_CACHE:
            self._plot_cache.clear()
        self._plot_cache[key] = (lines, thread)
        if self.query_one("#evidence-plot", PlotView).key == key:  # else a newer request supersedes it
            self._show_plot(lines, thread, key)

    def _show_plot(self, lines: PlotLines, thread: str, key: tuple) -> None:
        self.plot_threads.append(thread)
        self._shown_key = key
        self.query_one("#evidence-plot", PlotView).show(lines, key)

    @property
    def plot_settled(self) -> bool:
        """The plot on screen is the one last asked for (tests and snapshots wait for this)."""
        key = self.query_one("#evidence-plot", PlotView).key
        return key is not None and key == self._shown_key

    def on_evidence_plot_view_resized(self, _: EvidencePlotView.Resized) -> None:
        self._request_plot()

    def action_toggle_plot(self) -> None:
        plot = self.query_one("#evidence-plot", PlotView)
        plot.display = not plot.display
        self.query_one("#evidence-legend").display = plot.display
        if plot.display:
            plot.key = None
            self.call_after_refresh(self._request_plot)
