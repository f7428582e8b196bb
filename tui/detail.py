"""Trial detail: all parameters, state and reason, the learning curve, artifacts, thresholds."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from engine.store.schema import ENGINE_TRIAL_ATTRS, SAMPLE_S_ATTR
from engine.views.snapshot import TrialDetail, TrialRow
from tui import format as fmt
from tui.key_bar import KeyBar
from tui.keys import bindings
from tui.messages import CurvePlotRequested, LearnThresholdsRequested
from tui.plots import PlotView, message
from tui.thresholds_screen import summary_line, thresholds_table

# User attributes the screen shows in their own place (or that mean nothing to the operator): the
# engine's own, except the sampling time, shown with the other attributes.
SHOWN_ELSEWHERE = ENGINE_TRIAL_ATTRS - {SAMPLE_S_ATTR}


def summary_text(row: TrialRow, sprint_name: str, rerun: int | None = None) -> Text:
    """`rerun`: the trial that runs this (failed) trial's parameters again, when known."""
    text = Text()
    text.append(f"Trial {row.number}", "bold")
    text.append(f"  {sprint_name}  ")
    text.append(fmt.state(row.state), "bold reverse")
    text.append(
        f"  value {fmt.number(row.value)}  time {fmt.duration(row.duration_s)}  step {fmt.number(row.last_step)}"
    )
    if row.cost is not None:
        text.append(f"  cost {row.cost:.3g}")
    if row.stage_runs or row.inherited:
        text.append(f"  hits {fmt.hits(row.stage_hits, row.stage_runs, row.inherited)}")
    text.append("\n")
    if row.state == "FAIL":
        # How it failed: the objective's doing (red), or a worker that disappeared (not the trial's).
        style = "bold magenta" if row.lost else "bold red"
        label = fmt.fail_label(row.fail_kind)
        reason = (row.reason or fmt.FAIL_WORDS.get(row.fail_kind or "", "failed")).removeprefix(f"{label}: ")
        text.append(f" {label} ", style + " reverse")
        text.append(f" {reason}\n", style)
    elif row.reason:
        text.append(row.reason + "\n", "bold")
    extra = []
    if row.worker:
        extra.append(f"worker {row.worker}")
    if row.retry_of is not None:
        extra.append(f"re-runs trial {row.retry_of}")
    if row.retried:
        extra.append(f"queued again as trial {rerun}" if rerun is not None else "queued again as another trial")
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
    for name, value in detail.params if detail else row.params:
        table.add_row(name, fmt.param(value), "tuned")
    for name, value in detail.fixed if detail else ():
        table.add_row(name, fmt.param(value), Text("fixed", style="dim"))
    return table


def stages_table(detail: TrialDetail) -> Table:
    """Per-stage cost of a trial: time, cache hit or miss, time saved, the parameters it depends on."""
    gpu = any(stage.gpu_s is not None for stage in detail.stages)
    table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    table.add_column("stage")
    table.add_column("time", justify="right")
    if gpu:
        table.add_column("gpu", justify="right")
    table.add_column("cache")
    table.add_column("saved", justify="right")
    table.add_column("depends on", overflow="ellipsis", no_wrap=True)
    for stage in detail.stages:
        if stage.inherited:
            cache = Text("inherited", style="bold green")
        elif stage.hit:
            cache = Text("hit", style="bold green")
        else:
            cache = Text("miss" if stage.cached else "uncached", style="" if stage.cached else "dim")
        cells = [stage.name, seconds(stage.seconds)] + ([seconds(stage.gpu_s)] if gpu else [])
        table.add_row(
            *cells, cache, fmt.duration(stage.saved_s) if stage.saved_s else "-", ", ".join(stage.params) or "-"
        )
    return table


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}s" if value < 10 else fmt.duration(value)


def stages_text(detail: TrialDetail) -> Text:
    text = Text()
    inherited = detail.inherited
    hits = sum(1 for stage in detail.stages if stage.hit)
    spent = sum(stage.seconds or 0.0 for stage in detail.stages)
    saved = sum(stage.saved_s for stage in detail.stages if stage.hit) + (inherited.saved_s if inherited else 0.0)
    text.append("stages: ", "bold")
    text.append(
        f"{len(detail.stages)} run, {hits} from the cache; {fmt.duration(spent)} spent, {fmt.duration(saved)} saved"
    )
    if inherited is not None:
        where = " ".join(
            part
            for part in (
                inherited.name or "",
                f"@ epoch {inherited.epoch}" if inherited.epoch is not None else "",
                f"from sprint {inherited.from_sprint}" if inherited.from_sprint is not None else "",
                f"trial {inherited.from_trial}" if inherited.from_trial is not None else "",
            )
            if part
        )
        text.append("\ninherited checkpoint: ", "bold")
        text.append(f"{where or 'yes'} (saved {fmt.duration(inherited.saved_s)})")
    return text


def extras(detail: TrialDetail | None):
    if detail is None:
        return Text("reading the trial…", style="dim")
    parts: list[RenderableType] = []
    if detail.stages or detail.inherited:
        parts.append(stages_text(detail))
        if detail.stages:
            parts.append(stages_table(detail))
    parts.append(extras_text(detail))
    if detail.thresholds:
        parts += [Text(summary_line(detail.thresholds), style="dim"), thresholds_table(detail.thresholds)]
    if len(parts) == 1:
        return parts[0]

    return Group(*parts)


def extras_text(detail: TrialDetail) -> Text:
    text = Text()
    text.append("artifacts: ", "bold")
    text.append(", ".join(f"{name} ({artifact_id[:8]})" for name, artifact_id in detail.artifacts) or "none")
    attrs = [(k, v) for k, v in detail.user_attrs if k not in SHOWN_ELSEWHERE]
    if attrs:
        text.append("\nattributes: ", "bold")
        text.append(", ".join(f"{k}={fmt.number(v, 5) if isinstance(v, float) else v}" for k, v in attrs))
    text.append("\nthresholds: ", "bold")
    if detail.thresholds:
        stored = detail.thresholds
        text.append(f"stored by {stored.source or '?'} at {stored.when or '?'}")
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
            self.query_one("#detail-summary", Static).update(summary_text(row, sprint_name, self._rerun()))
            self.query_one("#detail-params", Static).update(params_table(row, None))
            self.query_one("#detail-curve", PlotView).show(message("learning curve: reading…"), None)
            self.query_one("#detail-extras", Static).update(extras(None))
            self.query_one("#detail-body").scroll_home(animate=False)

    def _rerun(self) -> int | None:
        """The trial that re-runs this one, if it failed and was queued again (one scan, on open)."""
        snapshot = getattr(self.app, "snapshot", None)
        if not self.row.retried or snapshot is None:
            return None
        return next((r.number for r in snapshot.trials if r.retry_of == self.row.number), None)

    def compose(self) -> ComposeResult:
        yield Static(summary_text(self.row, self.sprint_name, self._rerun()), id="detail-summary")
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
            self.query_one("#detail-extras", Static).update(
                Text("this trial is no longer in the storage", style="bold red")
            )
            return
        self.query_one("#detail-extras", Static).update(extras(detail))
        self.ask_curve()

    def ask_curve(self) -> None:
        plot = self.query_one("#detail-curve", PlotView)
        if self.detail is not None and plot.size.width:
            key = (self.detail.intermediate, plot.size.width, plot.size.height)
            if key != plot.key:
                self.post_message(
                    CurvePlotRequested(self.detail.intermediate, plot.size.width, plot.size.height, key, self.metric)
                )

    def on_resize(self) -> None:
        self.ask_curve()

    def action_thresholds(self) -> None:
        self.post_message(LearnThresholdsRequested(self.row, sprint_index=self.sprint_index))

    def action_back(self) -> None:
        self.dismiss()
