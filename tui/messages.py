"""Every message the console posts, in one place.

Background threads (snapshot reader, importance, plots, threshold learning, ledger writes) never
touch widgets: they post one of these, and handlers on the UI thread own the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from engine.store.records import DecisionDraft, ThresholdsResult
from engine.views.snapshot import CampaignSnapshot, TrialDetail, TrialRow


class SnapshotReady(Message):
    """A new campaign snapshot (the newest only: older unapplied ones are dropped)."""

    def __init__(self, snapshot: CampaignSnapshot, engine_line: str | None = None) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.engine_line = engine_line


class SourceFailed(Message):
    """Reading the storage failed; the reader keeps trying."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class CampaignAwaited(Message):
    """The campaign is not in the storage yet and this console's own coordinator is creating it."""

    def __init__(self, campaign: str) -> None:
        super().__init__()
        self.campaign = campaign


class ImportanceReady(Message):
    def __init__(self, sprint: int, importances: dict[str, float], completed: int) -> None:
        super().__init__()
        self.sprint = sprint
        self.importances = importances
        self.completed = completed


class PlotReady(Message):
    """A plot rendered to terminal lines off the UI thread, for the widget with id `target`."""

    def __init__(self, target: str, lines: list, key: Any) -> None:
        super().__init__()
        self.target = target
        self.lines = lines
        self.key = key


class DetailReady(Message):
    def __init__(self, detail: TrialDetail | None) -> None:
        super().__init__()
        self.detail = detail


class ThresholdsLearned(Message):
    def __init__(self, study: str, trial: int, result: ThresholdsResult | None, error: str | None = None) -> None:
        super().__init__()
        self.study = study
        self.trial = trial
        self.result = result
        self.error = error


class LedgerWritten(Message):
    """A ledger write finished (`error` is None on success); `what` says what it was, for the operator."""

    def __init__(
        self, what: str, error: str | None = None, record: Any = None, done: Callable[[Any], None] | None = None
    ) -> None:
        super().__init__()
        self.what = what
        self.error = error
        self.record = record
        self.done = done  # what the console does next with the record, on the UI thread


class EngineStopped(Message):
    """The in-process engine thread ended (stopped, finished, or failed)."""

    def __init__(self, status: str, error: str | None = None) -> None:
        super().__init__()
        self.status = status
        self.error = error


# Requests from screens to the app: a screen never calls the app's methods; it posts one of these and
# the app (which owns the source, the workers and the screen stack) carries it out.


@dataclass
class OpenApprovalRequested(Message):
    """The operator asked for the pending gate's approval screen."""


@dataclass
class OpenFidelityRequested(Message):
    """The operator asked to raise (or stage) the next sprint's fidelity."""


@dataclass
class OpenDetailRequested(Message):
    row: TrialRow


@dataclass
class CycleSprintRequested(Message):
    """Show the next earlier sprint's trials (wrapping to the current one)."""


@dataclass
class LearnThresholdsRequested(Message):
    row: TrialRow | None
    sprint_index: int | None = None


@dataclass
class HistoryPlotRequested(Message):
    snapshot: CampaignSnapshot
    width: int
    height: int
    key: Any


@dataclass
class CurvePlotRequested(Message):
    values: Any
    width: int
    height: int
    key: Any
    metric: str


@dataclass
class StoreThresholdsRequested(Message):
    """The operator accepted a thresholds result: store it with its trial."""

    study: str
    trial: int
    result: ThresholdsResult


@dataclass
class DecisionSubmitted(Message):
    """The operator confirmed a gate decision (a `build_decision` result) in the approval screen."""

    gate: int
    decision: DecisionDraft
