"""Where the console's data comes from, and where its decisions go.

`StorageSource` reads a campaign's storage (the same one a headless engine, `hpo-tui approve` and
remote workers use) and writes through its ledger. `FixedSource` serves given snapshots: tests,
snapshot images and the benchmark inject data through it instead of running an engine.

Every method may block (file locks, a database round trip) and is called from worker threads
only, never from the UI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial

from engine.store.journal_writer import JournalStudyStorage
from engine.store.ledger import Ledger
from engine.store.records import CampaignState, Decision, DecisionDraft, FidelityRequest, ThresholdsResult
from engine.thresholds import store_result
from engine.views.evidence import GateEvidence, gate_evidence, snapshot_inputs
from engine.views.snapshot import (
    CampaignSnapshot,
    SnapshotReader,
    TrialDetail,
    importances_of,
    open_snapshot_reader,
)


class CampaignSource:
    campaign: str

    def read(self, sprint: int | None = None) -> CampaignSnapshot:
        raise NotImplementedError

    def importances(self, sprint: int) -> dict[str, float]:
        return {}

    def trial_detail(self, sprint: int, number: int) -> TrialDetail | None:
        return None

    def load_trial(self, sprint: int, number: int) -> tuple[str, FrozenTrial] | None:
        return None

    def gate_evidence(self, gate: int) -> GateEvidence | None:
        """What the gate's proposal rests on (engine.views.evidence), for the approval screen's plots."""
        return None

    def write(self, change: Callable[[Ledger], Any]) -> Any:
        """Run `change(ledger)` and return its result (decisions, pause, thresholds…)."""
        raise RuntimeError("this console is read-only: it has no campaign storage to write to")

    # The console's writes, each typed; all go through `write`, which subclasses implement.
    def record_decision(self, gate: int, draft: DecisionDraft) -> Decision:
        """Gate `gate`'s decision, compare-and-set: GateAlreadyDecided if someone else decided first."""
        return self.write(lambda ledger: ledger.record_decision(gate, draft, source="tui"))

    def stage_fidelity(self, gate: int, edits: Sequence[str], values: Mapping[str, Any], label: str) -> FidelityRequest:
        """Stage the next sprint's fidelity for gate `gate` (applied when that gate is decided)."""
        return self.write(lambda ledger: ledger.stage_fidelity(gate, edits, values, label))

    def store_thresholds(self, result: ThresholdsResult, *, study: str, trial: int) -> ThresholdsResult:
        """Keep a learned thresholds result in the ledger, stamped as the console's."""
        return self.write(lambda ledger: store_result(ledger, result, study=study, trial=trial, source="tui"))

    def set_paused(self, paused: bool) -> CampaignState:
        """Pause (running trials finish, no new ones start) or resume the campaign."""
        return self.write(lambda ledger: ledger.set_state(paused=paused))


class StorageSource(CampaignSource):
    """One storage connection for snapshots, details and writes, serialised by a lock. The slow
    importance computation holds the lock only to collect the completed trials.

    On a journal file the ledger writes go through the snapshot reader's light journal reader
    (engine.store.journal_writer): Optuna's JournalStorage would first replay every trial whole."""

    def __init__(self, storage_url: str, campaign: str, open_storage: Callable[[str], Any] | None = None):
        from engine.store.storage import open_storage as default_open

        self.storage_url = storage_url
        self.campaign = campaign
        self._open = open_storage or (lambda url: default_open(url, heartbeat=False))
        self._lock = threading.Lock()
        self._reader: SnapshotReader | None = None
        self._ledger: Ledger | None = None

    def _main(self) -> SnapshotReader:
        # Opened lazily in a worker thread: replaying a large journal takes a while.
        if self._reader is None:
            self._reader = open_snapshot_reader(self.storage_url, self.campaign, self._open)
        return self._reader

    def read(self, sprint: int | None = None) -> CampaignSnapshot:
        with self._lock:
            return self._main().read(sprint)

    def trial_detail(self, sprint: int, number: int) -> TrialDetail | None:
        with self._lock:
            return self._main().trial_detail(sprint, number)

    def load_trial(self, sprint: int, number: int) -> tuple[str, FrozenTrial] | None:
        with self._lock:
            return self._main().load_trial(sprint, number)

    def importances(self, sprint: int) -> dict[str, float]:
        with self._lock:
            trials, tuned, direction = self._main().completed_trials(sprint)
        return importances_of(trials, tuned, direction)

    def gate_evidence(self, gate: int) -> GateEvidence | None:
        with self._lock:  # the read only; the computation needs no connection
            inputs = self._main().gate_inputs(gate)
        return gate_evidence(inputs) if inputs is not None else None

    def _writer(self) -> Ledger:
        if self._ledger is None:
            reader = self._main()
            journal = reader.journal
            self._ledger = Ledger(JournalStudyStorage(journal), self.campaign) if journal is not None else reader.ledger
        return self._ledger

    def write(self, change: Callable[[Ledger], Any]) -> Any:
        with self._lock:
            return change(self._writer())


class FixedSource(CampaignSource):
    """Serves the snapshot it is given (tests, snapshot images, benchmarks)."""

    def __init__(
        self,
        snapshot: CampaignSnapshot,
        *,
        details: dict[int, TrialDetail] | None = None,
        importances: dict[str, float] | None = None,
        ledger: Ledger | None = None,
        trials: dict[int, tuple[str, FrozenTrial]] | None = None,
        evidence: GateEvidence | None = None,
    ):
        self.campaign = snapshot.campaign
        self.snapshot = snapshot
        self.details = details or {}
        self._importances = importances or {}
        self.ledger = ledger
        self.trials = trials or {}
        self.evidence = evidence  # None: built from the snapshot's own (one sprint's) trials
        self.writes: list[Any] = []

    def read(self, sprint: int | None = None) -> CampaignSnapshot:
        return self.snapshot

    def importances(self, sprint: int) -> dict[str, float]:
        return dict(self._importances)

    def trial_detail(self, sprint: int, number: int) -> TrialDetail | None:
        return self.details.get(number)

    def load_trial(self, sprint: int, number: int) -> tuple[str, FrozenTrial] | None:
        return self.trials.get(number)

    def gate_evidence(self, gate: int) -> GateEvidence | None:
        if self.evidence is not None:
            return self.evidence
        inputs = snapshot_inputs(self.snapshot)
        return gate_evidence(inputs) if inputs is not None and inputs.gate == gate else None

    def write(self, change: Callable[[Ledger], Any]) -> Any:
        if self.ledger is None:
            return super().write(change)
        result = change(self.ledger)
        self.writes.append(result)
        return result
