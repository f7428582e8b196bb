"""The console app: polls campaign snapshots off the UI thread and routes the operator's actions.

Size (~600 lines): one `App` whose message handlers route each operator action to a thread worker.

Data flow: a thread worker reads a `CampaignSnapshot` from the source at `--fps` and posts it;
the handler applies the newest one to the visible screen inside `batch_update()`. Importance,
plots, trial details, threshold learning and every ledger write also run in thread workers and
post messages back (tui/messages.py). The engine (for `run`) is a Coordinator in its own thread
that only talks to the storage.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from rich.text import Text
from textual import on, work
from textual.app import App
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import get_current_worker

from engine.errors import GateAlreadyDecided
from engine.search.space import SpaceEditError
from engine.store.ledger import CampaignNotFound
from engine.store.records import Decision, DecisionDraft, ThresholdsResult
from engine.store.storage import artifact_store
from engine.thresholds import thresholds_for_trial
from engine.views.snapshot import (
    CampaignSnapshot,
    TrialRow,
    best_with_artifact,
)
from tui.approval import ApprovalScreen
from tui.commands import OperatorCommands
from tui.dashboard import DashboardScreen
from tui.detail import TrialDetailScreen
from tui.engine_thread import EngineThread
from tui.fidelity import FidelityScreen
from tui.gate_draft import GateDraft, fidelity_values
from tui.help import HelpScreen
from tui.keys import bindings
from tui.messages import (
    CampaignAwaited,
    CurvePlotRequested,
    CycleSprintRequested,
    DecisionSubmitted,
    DetailReady,
    EngineStopped,
    HistoryPlotRequested,
    ImportanceReady,
    LearnThresholdsRequested,
    LedgerWritten,
    OpenApprovalRequested,
    OpenDetailRequested,
    OpenFidelityRequested,
    PlotReady,
    SnapshotReady,
    SourceFailed,
    StoreThresholdsRequested,
    ThresholdsLearned,
)
from tui.plots import PlotView, curve_plot, history_plot
from tui.quit import QuitScreen
from tui.source import CampaignSource
from tui.thresholds_screen import ThresholdScreen

optuna.logging.set_verbosity(optuna.logging.WARNING)  # an INFO line on stderr would tear the screen

# PED-ANOVA takes ~1 s at 10k trials: recompute when trials completed, at most every few seconds,
# and spend at most a tenth of the time on it (the UI thread shares the GIL).
IMPORTANCE_MIN_EVERY_S = 2.0
IMPORTANCE_SHARE = 0.1
UI_SWITCH_INTERVAL_S = 0.001

ThresholdLearner = Callable[..., ThresholdsResult]


def default_threshold_learner(campaign: str) -> ThresholdLearner:
    def learn(trial, *, metric: str, folds: int, optimizer: str, seed: int, artifact: str) -> ThresholdsResult:
        return thresholds_for_trial(
            artifact_store(campaign),
            trial,
            metric=metric,
            folds=folds,
            optimizer=optimizer,
            seed=seed,
            artifact=artifact,
        )

    return learn


class HpoConsole(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "hpo-tui"
    BINDINGS = bindings("app")
    COMMANDS = App.COMMANDS | {OperatorCommands}

    def __init__(
        self,
        source: CampaignSource,
        *,
        engine: EngineThread | None = None,
        fps: float = 4.0,
        keymap: dict[str, str] | None = None,
        keymap_problems: list[str] | None = None,
        threshold_learner: ThresholdLearner | None = None,
        headless: Callable[[], str] | None = None,
        run_log: str = "runs/<campaign>/headless.log",
    ) -> None:
        super().__init__()
        self.animation_level = "none"  # nothing moves unless data changed: cheap over SSH
        self.source = source
        self.engine = engine
        self.fps = min(max(fps, 0.2), 20.0)
        self.user_keymap = dict(keymap or {})
        self.keymap_problems = list(keymap_problems or [])
        self.threshold_learner = threshold_learner or default_threshold_learner(source.campaign)
        self.headless = headless  # stops nothing itself: starts the detached engine, returns a message
        self.run_log = run_log
        self.snapshot: CampaignSnapshot | None = None
        self.engine_line: str | None = None
        self.viewed_sprint: int | None = None  # None: follow the campaign's current sprint
        self.drafts: dict[int, GateDraft] = {}
        self.exit_message: str | None = None
        self._wake = threading.Event()
        self._latest: SnapshotReady | None = None
        self._latest_lock = threading.Lock()
        self._importance: dict[int, tuple[int, dict[str, float]]] = {}  # sprint -> (completed, values)
        self._importance_due = 0.0
        self._importance_busy = False
        self._source_error: str | None = None
        self._engine_reported = False
        self._switch_interval = sys.getswitchinterval()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.hung_up = False  # the terminal went away (SIGHUP): leave, the engine goes on

    # Start-up --------------------------------------------------------------------------------
    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen()

    def on_mount(self) -> None:
        # Background readers hold the GIL for up to the switch interval at a time: a shorter one
        # lets the UI thread in sooner (keys and frames), at a small cost in reader throughput.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(UI_SWITCH_INTERVAL_S)
        if self.user_keymap:
            self.set_keymap(self.user_keymap)
        for problem in self.keymap_problems:
            self.notify(problem, title="keymap", severity="warning", timeout=10)
        self._event_loop = asyncio.get_running_loop()
        if self.hung_up:  # the terminal went before the console was up
            self._left_terminal()
            return
        # After the first frame: the first read of a large storage holds the GIL for a second or so,
        # and the console should be on screen (saying it is reading) before that starts.
        self.call_after_refresh(self.poll_snapshots)

    def on_unmount(self) -> None:
        self._wake.set()
        sys.setswitchinterval(self._switch_interval)

    # Snapshots -------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="snapshots", name="snapshot reader", exit_on_error=False)
    def poll_snapshots(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            started = time.monotonic()
            try:
                snapshot = self.source.read(self.viewed_sprint)
            except CampaignNotFound as err:
                if self.engine is not None and not self.engine.done.is_set():
                    self.post_message(CampaignAwaited(self.source.campaign))  # its coordinator is creating it
                else:
                    self.post_message(SourceFailed(f"{type(err).__name__}: {err}"))
            except Exception as err:
                self.post_message(SourceFailed(f"{type(err).__name__}: {err}"))
            else:
                self._deliver(SnapshotReady(snapshot, self.engine.last_line if self.engine else None))
            if self.engine is not None and self.engine.done.is_set() and not self._engine_reported:
                self._engine_reported = True
                self.post_message(EngineStopped(self.engine.status or "stopped", self.engine.error))
            self._wake.wait(max(0.01, 1.0 / self.fps - (time.monotonic() - started)))
            self._wake.clear()

    def _deliver(self, message: SnapshotReady) -> None:
        """Post only when the UI took the previous snapshot: a slow UI skips snapshots, never queues them."""
        with self._latest_lock:
            pending = self._latest is not None
            self._latest = message
        if not pending:
            self.post_message(message)

    def refresh_now(self) -> None:
        self._wake.set()

    def on_snapshot_ready(self, _: SnapshotReady) -> None:
        with self._latest_lock:
            message, self._latest = self._latest, None
        if message is None:
            return
        self.apply_snapshot(message.snapshot, message.engine_line)

    def apply_snapshot(self, snapshot: CampaignSnapshot, engine_line: str | None = None) -> None:
        """Show a snapshot on the visible screen (tests and the benchmark call this directly too)."""
        self.snapshot = snapshot
        self.engine_line = engine_line
        self._source_error = None  # readable again: the next failure is news
        with self.batch_update():
            show = getattr(self._top_screen(), "show_snapshot", None)
            if show is not None:
                show(snapshot, engine_line)
        self._maybe_refresh_importance(snapshot)

    def on_campaign_awaited(self, message: CampaignAwaited) -> None:
        screen = self._top_screen()
        if screen is None:
            return
        try:
            header = screen.query_one("#header", Static)
        except NoMatches:  # another screen is on top: nothing to say there
            return
        header.update(
            Text.assemble(("hpo-tui", "bold"), f"  waiting for the coordinator to create campaign {message.campaign}…")
        )

    def on_source_failed(self, message: SourceFailed) -> None:
        if message.reason != self._source_error:
            self._source_error = message.reason
            self.notify(message.reason, title="cannot read the campaign", severity="error", timeout=30)

    # Importance (background) -----------------------------------------------------------------
    def _maybe_refresh_importance(self, snapshot: CampaignSnapshot) -> None:
        if snapshot.sprint is None or self._importance_busy:
            return
        index, completed = snapshot.sprint.index, snapshot.count("COMPLETE")
        known = self._importance.get(index)
        if known is not None:
            self._show_importance(index)
            if known[0] == completed or time.monotonic() < self._importance_due:
                return
        self._importance_busy = True
        self.compute_importance(index, completed)

    @work(thread=True, group="importance", name="importance", exit_on_error=False)
    def compute_importance(self, sprint: int, completed: int) -> None:
        started = time.monotonic()
        try:
            values = self.source.importances(sprint)
        except Exception:
            values = {}
        took = time.monotonic() - started
        self._importance_due = time.monotonic() + max(IMPORTANCE_MIN_EVERY_S, took / IMPORTANCE_SHARE)
        self.post_message(ImportanceReady(sprint, values, completed))

    def on_importance_ready(self, message: ImportanceReady) -> None:
        self._importance_busy = False
        self._importance[message.sprint] = (message.completed, message.importances)
        self._show_importance(message.sprint)

    def _show_importance(self, sprint: int) -> None:
        dashboard = self._dashboard()
        if dashboard is None or sprint not in self._importance:
            return
        completed, values = self._importance[sprint]
        note = f"over {completed} completed trials" if values else "importance: needs 4+ completed trials that differ"
        dashboard.show_importances(values, note)

    # Plots (background) ----------------------------------------------------------------------
    def render_history_plot(self, snapshot: CampaignSnapshot, width: int, height: int, key: Any) -> None:
        self._plot_worker("history", lambda: history_plot(snapshot.history, width, height, snapshot.metric), key)

    def render_curve_plot(self, values, width: int, height: int, key: Any, metric: str) -> None:
        self._plot_worker("detail-curve", lambda: curve_plot(values, width, height, metric), key)

    # Requests posted by screens: they never call the app directly.
    @on(HistoryPlotRequested)
    def _on_history_plot_requested(self, request: HistoryPlotRequested) -> None:
        self.render_history_plot(request.snapshot, request.width, request.height, request.key)

    @on(CurvePlotRequested)
    def _on_curve_plot_requested(self, request: CurvePlotRequested) -> None:
        self.render_curve_plot(request.values, request.width, request.height, request.key, request.metric)

    @on(OpenApprovalRequested)
    def _on_open_approval_requested(self) -> None:
        self.open_approval()

    @on(OpenFidelityRequested)
    def _on_open_fidelity_requested(self) -> None:
        self.open_fidelity()

    @on(OpenDetailRequested)
    def _on_open_detail_requested(self, request: OpenDetailRequested) -> None:
        self.open_detail(request.row)

    @on(CycleSprintRequested)
    def _on_cycle_sprint_requested(self) -> None:
        self.cycle_sprint()

    @on(LearnThresholdsRequested)
    def _on_learn_thresholds_requested(self, request: LearnThresholdsRequested) -> None:
        self.learn_thresholds(request.row, sprint_index=request.sprint_index)

    @on(StoreThresholdsRequested)
    def _on_store_thresholds_requested(self, request: StoreThresholdsRequested) -> None:
        self.store_thresholds(request.study, request.trial, request.result)

    @on(DecisionSubmitted)
    def _on_decision_submitted(self, request: DecisionSubmitted) -> None:
        self.record_decision(request.gate, request.decision)

    @work(thread=True, group="plots", name="plot", exit_on_error=False)
    def _plot_worker(self, target: str, build: Callable, key: Any) -> None:
        self.post_message(PlotReady(target, build(), key))

    def on_plot_ready(self, message: PlotReady) -> None:
        screen = self._top_screen()
        if screen is not None:
            for plot in screen.query(f"#{message.target}").results(PlotView):
                plot.show(message.lines, message.key)

    # Navigation ------------------------------------------------------------------------------
    def _top_screen(self) -> Screen | None:
        """The visible screen; None once the app has closed every screen. Snapshots, plots and notices
        come from threads and may arrive while the app exits (`self.screen` raises then)."""
        return self.screen_stack[-1] if self.screen_stack else None

    def _dashboard(self) -> DashboardScreen | None:
        screen = self.screen_stack[0] if self.screen_stack else None
        return screen if isinstance(screen, DashboardScreen) else None

    def cycle_sprint(self) -> None:
        snapshot = self.snapshot
        if snapshot is None or snapshot.sprint is None:
            return
        shown = snapshot.sprint.index
        self.viewed_sprint = None if shown == 0 else shown - 1
        if self.viewed_sprint == snapshot.current_sprint:
            self.viewed_sprint = None
        target = snapshot.current_sprint if self.viewed_sprint is None else self.viewed_sprint
        self.notify(
            f"showing sprint {target + 1}: {snapshot.sprint_names[target] if target < len(snapshot.sprint_names) else target}",
            timeout=2,
        )
        self.refresh_now()

    def open_detail(self, row: TrialRow) -> None:
        snapshot = self.snapshot
        if snapshot is None or snapshot.sprint is None or isinstance(self.screen, TrialDetailScreen):
            return
        # One detail screen, installed once: opening a trial swaps its content instead of building
        # (and styling) a new screen on every enter.
        if not self.is_screen_installed("detail"):
            self.install_screen(
                TrialDetailScreen(row, snapshot.sprint.index, snapshot.sprint.name, snapshot.metric), "detail"
            )
        screen = self.get_screen("detail")
        if not isinstance(screen, TrialDetailScreen):  # installed just above: never another kind
            return
        screen.show_trial(row, snapshot.sprint.index, snapshot.sprint.name, snapshot.metric)
        self.push_screen(screen)
        self.load_detail(snapshot.sprint.index, row.number)

    @work(thread=True, group="detail", exclusive=True, name="trial detail", exit_on_error=False)
    def load_detail(self, sprint: int, number: int) -> None:
        try:
            detail = self.source.trial_detail(sprint, number)
        except Exception:
            detail = None
        self.post_message(DetailReady(detail))

    def on_detail_ready(self, message: DetailReady) -> None:
        screen = self.screen
        if isinstance(screen, TrialDetailScreen) and (
            message.detail is None or message.detail.number == screen.row.number
        ):
            screen.show_detail(message.detail)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # Gate approval ---------------------------------------------------------------------------
    def draft_for(self, snapshot: CampaignSnapshot) -> GateDraft:
        gate = snapshot.pending_gate
        if gate is None:
            raise ValueError("no gate is waiting for a decision: there is no draft to edit")
        draft = self.drafts.get(gate)
        if draft is None:
            staged = snapshot.fidelity_request
            draft = self.drafts[gate] = GateDraft(gate, fidelity_edits=list(staged.edits) if staged else [])
        return draft

    def open_approval(self) -> None:
        snapshot = self.snapshot
        if snapshot is None or snapshot.pending_gate is None or snapshot.proposal is None:
            state = snapshot.status if snapshot else "loading"
            self.notify(f"no gate is waiting for a decision (campaign {state})", severity="warning")
            return
        if isinstance(self.screen, ApprovalScreen):
            return
        self.push_screen(ApprovalScreen(snapshot, self.draft_for(snapshot), self.source.gate_evidence))

    def record_decision(self, gate: int, decision: DecisionDraft) -> None:
        def recorded(record: Decision | None) -> None:
            if isinstance(self.screen, ApprovalScreen):
                self.screen.dismiss()
            self.drafts.pop(gate, None)

        self.write_ledger(
            f"gate {gate}: {decision.action}",
            lambda source: source.record_decision(gate, decision),
            recorded,
        )

    # Fidelity --------------------------------------------------------------------------------
    def open_fidelity(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        if snapshot.pending_gate is not None and snapshot.proposal is not None:
            draft = self.draft_for(snapshot)
            proposal = snapshot.proposal
            title = f"Fidelity of {proposal.next} (gate {draft.gate}, pending)"

            def chosen(edits: list[str] | None) -> None:
                if edits is None:
                    return
                try:
                    draft.set_fidelity(edits, snapshot.levels, proposal)
                except SpaceEditError as err:
                    self.notify(str(err), severity="error")
                    return
                if isinstance(self.screen, ApprovalScreen):
                    self.screen.on_screen_resume()
                else:
                    self.open_approval()  # a fidelity change is part of the gate's decision: confirm it there

            self.push_screen(
                FidelityScreen(title, snapshot.levels, proposal.fidelity.level, draft.fidelity_edits),
                chosen,
            )
            return
        if snapshot.last_sprint or snapshot.status == "finished":
            self.notify("no gate follows the current sprint: its fidelity is the campaign's last", severity="warning")
            return
        gate = snapshot.next_gate
        following = snapshot.current_sprint + 1
        next_name = snapshot.sprint_names[following] if following < len(snapshot.sprint_names) else "next sprint"
        staged = list(snapshot.fidelity_request.edits) if snapshot.fidelity_request else []
        title = f"Fidelity of {next_name}: staged for gate {gate}"

        def staged_chosen(edits: list[str] | None) -> None:
            if edits is None:
                return
            try:
                values = fidelity_values(edits, snapshot.levels, {})
            except SpaceEditError as err:
                self.notify(str(err), severity="error")
                return
            label = " ".join(edits)
            self.write_ledger(
                f"fidelity {label} staged for gate {gate}",
                lambda source: source.stage_fidelity(gate, edits, values, label),
            )

        self.push_screen(FidelityScreen(title, snapshot.levels, None, staged), staged_chosen)

    # Thresholds ------------------------------------------------------------------------------
    def learn_thresholds(self, row: TrialRow | None, sprint_index: int | None = None) -> None:
        snapshot = self.snapshot
        if snapshot is None or snapshot.sprint is None:
            return
        artifact = snapshot.thresholds_settings.artifact
        sprint_index = snapshot.sprint.index if sprint_index is None else sprint_index
        if row is None or artifact not in row.artifacts or row.state != "COMPLETE":
            best = best_with_artifact(snapshot.trials, artifact, snapshot.maximize)
            if best is None:
                self.notify(
                    f"no completed trial of this sprint saved a {artifact!r} artifact to learn thresholds on",
                    severity="warning",
                )
                return
            if row is not None:
                self.notify(f"trial {row.number} saved no {artifact!r}: using the best trial that did, #{best.number}")
            row = best
        study = snapshot.sprint.study
        stored = snapshot.thresholds.get(f"{study}:{row.number}")
        self.push_screen(ThresholdScreen(study, row.number, stored))
        if stored is None:
            settings = snapshot.thresholds_settings
            self.run_threshold_learning(
                sprint_index,
                row.number,
                dict(
                    metric=settings.metric,
                    folds=settings.folds,
                    optimizer=settings.optimizer,
                    seed=snapshot.seed,
                    artifact=artifact,
                ),
            )

    @work(thread=True, group="thresholds", name="threshold learning", exit_on_error=False)
    def run_threshold_learning(self, sprint: int, number: int, options: dict) -> None:
        study = "?"
        try:
            loaded = self.source.load_trial(sprint, number)
            if loaded is None:
                raise LookupError(f"trial {number} is not in the storage")
            study, trial = loaded
            result = self.threshold_learner(trial, **options)
        except Exception as err:
            self.post_message(ThresholdsLearned(study, number, None, f"{type(err).__name__}: {err}"))
            return
        self.post_message(ThresholdsLearned(study, number, result))

    def on_thresholds_learned(self, message: ThresholdsLearned) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ThresholdScreen) and screen.trial == message.trial:
                screen.show_result(message.result, message.error)
                return
        if message.error:
            self.notify(f"thresholds for trial {message.trial}: {message.error}", severity="error")
        else:
            self.notify(f"thresholds for trial {message.trial} are ready (t to view)")

    def store_thresholds(self, study: str, trial: int, result: ThresholdsResult) -> None:
        def stored(_: Any) -> None:
            if isinstance(self.screen, ThresholdScreen):
                self.screen.stored = True
                self.screen.dismiss()

        self.write_ledger(
            f"thresholds for trial {trial} stored",
            lambda source: source.store_thresholds(result, study=study, trial=trial),
            stored,
        )

    # Pause -----------------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        if self.snapshot is None:
            return
        paused = not self.snapshot.paused
        self.write_ledger(
            "paused: running trials finish, no new ones start" if paused else "resumed",
            lambda source: source.set_paused(paused),
        )

    # Ledger writes (background) --------------------------------------------------------------
    def write_ledger(
        self, what: str, change: Callable[[CampaignSource], Any], done: Callable[[Any], None] | None = None
    ) -> None:
        """Run one of the source's typed writes (`change(source)`) in a thread worker; `done` gets its record."""
        self._ledger_writer(what, change, done)

    @work(thread=True, group="ledger", name="ledger write", exit_on_error=False)
    def _ledger_writer(
        self, what: str, change: Callable[[CampaignSource], Any], done: Callable[[Any], None] | None
    ) -> None:
        try:
            record = change(self.source)
        except (GateAlreadyDecided, SpaceEditError) as err:
            self.post_message(LedgerWritten(what, str(err)))
        except Exception as err:
            self.post_message(LedgerWritten(what, f"{type(err).__name__}: {err}"))
        else:
            self.post_message(LedgerWritten(what, None, record, done))
        self.refresh_now()

    def on_ledger_written(self, message: LedgerWritten) -> None:
        if message.error:
            self.notify(message.error, title=f"not done: {message.what}", severity="error", timeout=15)
            return
        self.notify(message.what, timeout=4)
        if message.done is not None:
            message.done(message.record)

    # Leaving ---------------------------------------------------------------------------------
    def engine_running(self) -> bool:
        return self.engine is not None and self.engine.alive and not self.engine.stopping

    async def action_quit(self) -> None:
        if not self.engine_running():
            self.exit(0)
            return
        campaign = self.snapshot.campaign if self.snapshot else self.source.campaign

        def chosen(choice: str | None) -> None:
            if choice in ("stop", "headless"):
                self.notify("stopping the engine: running trials finish or are handed back…", timeout=30)
                self.stop_engine(choice == "headless")

        self.push_screen(QuitScreen(campaign, self.run_log), chosen)

    @work(thread=True, group="engine", name="engine stop", exit_on_error=False)
    def stop_engine(self, then_headless: bool) -> None:
        if self.engine is not None:  # quit offers the stop only while an engine runs
            self.engine.stop()
        message = f"campaign {self.source.campaign} stopped; `hpo-tui run` resumes it"
        if then_headless and self.headless is not None:
            try:
                message = self.headless()
            except Exception as err:
                message = f"could not start the headless engine: {err}; `hpo-tui run --headless` resumes it"
        self.call_from_thread(self._leave, message)

    def _leave(self, message: str) -> None:
        self.exit_message = message
        self.exit(0)

    def hang_up(self) -> None:
        """The terminal went away (tui.hangup calls this from its SIGHUP handler, on the main thread
        between two steps of the event loop): leave the screen, leave the engine running."""
        self.hung_up = True
        loop = self._event_loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._left_terminal)

    def _left_terminal(self) -> None:
        if self.engine_running():
            self.exit_message = f"the terminal went away: campaign {self.source.campaign} continues headless"
        self.exit(0)

    def on_engine_stopped(self, message: EngineStopped) -> None:
        if message.error:
            self.notify(message.error, title="the engine stopped", severity="error", timeout=60)
        elif not (self.engine and self.engine.stopping):
            self.notify(f"the engine ended: campaign {message.status}", timeout=10)
