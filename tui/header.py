"""The campaign header: where the campaign stands, in two lines that survive 80 columns."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from engine.views.snapshot import CampaignSnapshot
from tui import format as fmt

COMPACT_BELOW = 110  # columns: shorter labels so the header keeps to two lines


def header_text(snapshot: CampaignSnapshot | None, engine_line: str | None = None, width: int = 200) -> Text:
    if snapshot is None:
        return Text.assemble(("hpo-tui", "bold"), "  reading the campaign…")
    s = snapshot
    compact = width < COMPACT_BELOW
    room = max(width - 2, 10)
    first = Text()
    first.append(s.campaign, "bold")
    status = s.status + (" · PAUSED" if s.paused else "")
    first.append(f"  {status}", "bold reverse" if s.paused or s.status == "failed" else "bold")
    sprint = s.sprint
    if sprint is not None:
        shown = "" if sprint.index == s.current_sprint else " (viewing)"
        first.append(f"  sprint {sprint.index + 1}/{max(s.sprints_planned, sprint.index + 1)} {sprint.name}{shown}")
        first.append(f"  {sprint.sampler}/{sprint.pruner}", "italic")
        first.append(f"  fidelity {sprint.level}" + ("" if compact else f" ({fmt.fidelity(sprint.fidelity)})"))
    budget = Text()
    rest = Text()
    time_note = ""
    if sprint is not None:
        used = f"{s.counted}/{sprint.n_trials}" if sprint.n_trials else f"{s.counted}"
        used = f"{used} trials" if compact else f"budget {used}"
        if sprint.budget_cost:
            used += f" cost {s.cost_used:.3g}/{sprint.budget_cost:g}"
        elif s.cost_used and not compact:
            used += f" (cost {s.cost_used:.3g})"
        if sprint.budget_seconds:  # a budget in seconds of trial time: part of the budget itself
            used += f" {fmt.duration(s.seconds_spent)}/{fmt.duration(sprint.budget_seconds)}"
        budget.append(used)
        # Trial time spent versus stage time saved by the cache (memoized stages, inherited checkpoints).
        if s.staged or s.seconds_saved:
            saved = f"saved {fmt.duration(s.seconds_saved)}"
            time_note = saved if compact or sprint.budget_seconds else f"spent {fmt.duration(s.seconds_spent)} {saved}"
        rest.append(f"  busy {s.running}")
        done = s.count("COMPLETE"), s.count("PRUNED"), s.count("FAIL")
        if compact:
            rest.append(f"  ok {done[0]} pr {done[1]} fail {done[2]}")
        else:
            rest.append(f"  done {done[0]} pruned {done[1]} failed {done[2]}")
        if s.best is not None:
            rest.append("  best ")
            rest.append(f"{fmt.number(s.best.value)}", "bold")
            rest.append(f" #{s.best.number}" if compact else f" (#{s.best.number}, {s.metric})")
    if s.pending_gate is not None and s.proposal is not None:
        rest.append("  ")
        label = (
            f" GATE {s.pending_gate} (a) "
            if compact
            else f" GATE {s.pending_gate} PENDING: {s.proposal.after}→{s.proposal.next}, press a "
        )
        rest.append(label, "bold reverse")
    elif s.fidelity_request:
        rest.append(f"  next fidelity staged: {s.fidelity_request.label}", "italic")
    if time_note:
        # Wherever it fits: never at the cost of the gate label at the end of the second line.
        if budget.cell_len + rest.cell_len + len(time_note) + 2 <= room:
            budget.append(f"  {time_note}")
        elif first.cell_len + len(time_note) + 2 <= room:
            first.append(f"  {time_note}")
    text = Text.assemble(first, "\n", budget, rest)
    if s.error:
        text.append(f"\nerror: {s.error}", "bold")
    elif engine_line:
        text.append("\n")
        text.append(engine_line, "dim")
    # Cut each line to the width: one row per line, so the height only changes with the line count.
    lines = text.split("\n")
    for line in lines:
        line.truncate(room, overflow="ellipsis")
    return Text("\n").join(lines)


class CampaignHeader(Static):
    """Updated only when its text changes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(header_text(None), id=id)
        self._plain = ""
        self._shown: tuple[CampaignSnapshot | None, str | None] = (None, None)

    def on_resize(self) -> None:
        self.show(*self._shown)

    def show(self, snapshot: CampaignSnapshot | None, engine_line: str | None = None) -> None:
        self._shown = (snapshot, engine_line)
        text = header_text(snapshot, engine_line, self.size.width or self.app.size.width)
        if text.plain != self._plain or snapshot is not None and snapshot.paused != self.has_class("paused"):
            # A new layout only when the header gains or loses a line: the rest of the screen stays put.
            relayout = text.plain.count("\n") != self._plain.count("\n")
            self._plain = text.plain
            self.set_class(bool(snapshot and snapshot.pending_gate is not None), "gate-pending")
            self.set_class(bool(snapshot and snapshot.paused), "paused")
            self.update(text, layout=relayout)
