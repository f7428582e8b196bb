"""Trial detail: all parameters, state and reason, the learning curve, artifacts, thresholds."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from engine.snapshot import TrialDetail, TrialRow
from tui import format as fmt
from tui.key_bar import KeyBar
from tui.keys import bindings
from tui.plots import PlotView, message
from tui.thresholds_screen import summary_line, thresholds_table


def summary_text(row: TrialRow, sprint_name: str) -> Text:
    text = Text()
    text.append(f"Trial {row.number}", "bold")
    text.append(f"  {sprint_name}  ")
    text.append(fmt.state(row.state), "bold reverse")
    text.append(f"  value {fmt.number(row.value)}  time {fmt.duration(row.duration_s)}  step {fmt.number(row.last_step)}")
    if row.cost is not None:
        text.append(f"  cost {row.cost:.3g}")
    text.append("\n")
    if row.reason:
        text.append(row.reason + "\n", "bold red" if row.state == "FAIL" else "bold")
    extra = []
    if row.worker:
        extra.append(f"worker {row.worker}")
    if row.retry_of is not None:
        extra.append(f"re-runs trial {row.retry_of}")
    if row.retried:
        extra.append("failed and queued again")
    if row.stale:
        extra.append("left RUNNING: no engine runs the campaign")
    if row.seeded:
        extra.append("seeded from an earlier sprint")
    text.append(" · ".join(extra), "dim")
    return text


def params_table(row: TrialRow, detail: TrialDetail | None) -> Table:
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("parameter")
    table.add_column("value", justify="right")
    table.add_column("")
    for name, value in (detail.params if detail else row.params):
        table.add_row(name, fmt.param(value), "tuned")
    for name, value in (detail.fixed if detail else ()):
        table.add_row(name, fmt.param(value), Text("fixed", style="dim"))
    return table


def extras(detail: TrialDetail | None):
    if detail is None:
        return Text("reading the trial…", style="dim")
    if not detail.thresholds:
        return extras_text(detail)
    from rich.console import Group

    return Group(extras_text(detail), Text(summary_line(detail.thresholds), style="dim"),
                 thresholds_table(detail.thresholds))


def extras_text(detail: TrialDetail) -> Text:
    text = Text()
    text.append("artifacts: ", "bold")
    text.append(", ".join(f"{name} ({artifact_id[:8]})" for name, artifact_id in detail.artifacts) or "none")
    attrs = [(k, v) for k, v in detail.user_attrs
             if k not in ("worker", "duration_s", "cost", "fail_reason", "pruned_at", "retried", "seeded")]
    if attrs:
        text.append("\nattributes: ", "bold")
        text.append(", ".join(f"{k}={fmt.number(v, 5) if isinstance(v, float) else v}" for k, v in attrs))
    text.append("\nthresholds: ", "bold")
    if detail.thresholds:
        stored = detail.thresholds
        text.append(f"stored by {stored.get('source', '?')} at {stored.get('when', '?')}")
    else:
        text.append("none (t learns them on a trial that saved probabilities)", "dim")
    return text


class TrialDetailScreen(Screen):
    """Built once and reused (the app installs it): opening a trial only swaps the content."""

    SCOPE = "detail"
    BINDINGS = bindings("detail")

    def __init__(self, row: TrialRow, sprint_index: int, sprint_name: str, metric: str) -> None:
        super().__init__(id="detail")
        self.row = row
        self.sprint_index = sprint_index
        self.sprint_name = sprint_name
        self.metric = metric
        self.detail: TrialDetail | None = None

    def show_trial(self, row: TrialRow, sprint_index: int, sprint_name: str, metric: str) -> None:
        self.row, self.sprint_index, self.sprint_name, self.metric = row, sprint_index, sprint_name, metric
        self.detail = None
        if self.is_mounted:
            self.query_one("#detail-summary", Static).update(summary_text(row, sprint_name))
            self.query_one("#detail-params", Static).update(params_table(row, None))
            self.query_one("#detail-curve", PlotView).show(message("learning curve: reading…"), None)
            self.query_one("#detail-extras", Static).update(extras(None))
            self.query_one("#detail-body").scroll_home(animate=False)

    def compose(self) -> ComposeResult:
        yield Static(summary_text(self.row, self.sprint_name), id="detail-summary")
        with VerticalScroll(id="detail-body"):
            with Horizontal(id="detail-top"):
                yield Static(params_table(self.row, None), id="detail-params")
                yield PlotView("learning curve: reading…", id="detail-curve")
            yield Static(extras(None), id="detail-extras")
        yield KeyBar()

    def show_detail(self, detail: TrialDetail | None) -> None:
        self.detail = detail
        self.query_one("#detail-params", Static).update(params_table(self.row, detail))
        if detail is None:
            self.query_one("#detail-extras", Static).update(Text("this trial is no longer in the storage", style="bold red"))
            return
        self.query_one("#detail-extras", Static).update(extras(detail))
        self.ask_curve()

    def ask_curve(self) -> None:
        plot = self.query_one("#detail-curve", PlotView)
        if self.detail is not None and plot.size.width:
            key = (self.detail.intermediate, plot.size.width, plot.size.height)
            if key != plot.key:
                self.app.render_curve_plot(self.detail.intermediate, plot.size.width, plot.size.height, key, self.metric)

    def on_resize(self) -> None:
        self.ask_curve()

    def action_thresholds(self) -> None:
        self.app.learn_thresholds(self.row, sprint_index=self.sprint_index)

    def action_back(self) -> None:
        self.dismiss()
