"""Immutable campaign snapshots, read incrementally from the storage off any UI thread.

Size (~950 lines): the frozen snapshot types and the incremental reader that caches finished rows;
they change together, since a row's fields and the reader's caching rules are one design.

The console renders these and nothing else: a `SnapshotReader` turns the Optuna storage (trials of
one sprint's study plus the ledger records) into a `CampaignSnapshot` of frozen dataclasses. A
finished trial never changes, so its row is built once and cached; each read touches only the
running trials and the ones created since the last read, which keeps a read cheap at 10,000 trials
on any storage. Parts that did not change keep their identity from one snapshot to the next, so a
renderer can skip them with an `is` check.

A row carries what the table shows of a trial's failure (`fail_kind`, retried / re-run) and of its
memoized stages (stages run, cache hits, seconds saved, inherited checkpoint); the per-stage
records (`StageCost`) and the inherited checkpoint are read with the trial's detail, on demand.

Rows, events and the history are frozen; the ledger records carried along are typed records
(`proposal`, `decisions`, `thresholds`: engine.store.records) or the storage's JSON (`original_space`,
`levels`), to be treated as read-only (copy before editing).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from engine.spec import ThresholdSpec
from engine.store.journal_reader import JournalReader, JournalTrial, TrialFilter
from engine.store.ledger import CampaignNotFound, Ledger, LedgerView, thresholds_of
from engine.store.records import Decision, FidelityRequest, Proposal, SprintRecord, ThresholdsResult
from engine.store.schema import (
    ARTIFACTS_ATTR,
    COMPLETE,
    COST_ATTR,
    DURATION_ATTR,
    FAIL,
    FAIL_KIND_ATTR,
    FAIL_REASON_ATTR,
    FINISHED_STATES,
    INHERITED_ATTR,
    PRUNED,
    PRUNED_AT_ATTR,
    RETRIED_ATTR,
    RETRY_OF_ATTR,
    RUNG_ATTR_PREFIX,
    RUNNING,
    SEEDED_ATTR,
    STAGES_ATTR,
    WORKER_ATTR,
    campaign_study_name,
    decode_records,
    fidelity_request_key,  # noqa: F401  (older import path of the tui and tests)
    sprint_key,
    thresholds_id,
)

if TYPE_CHECKING:
    from engine.views.evidence import GateInputs

JOURNAL_URL_PREFIX = "journal://"

LOST_KINDS = ("stale", "worker_died")  # failures the engine recorded for a worker that disappeared
MAX_EVENTS = 200
MAX_HISTORY_POINTS = 300
BULK_READ_AFTER = 64  # more unread trials than this: one bulk read beats per-trial reads


@dataclass(frozen=True)
class StageCost:
    """One memoized stage of a trial (engine.cache.stages records it in the user attribute `stages`)."""

    name: str
    order: int
    seconds: float | None  # what the stage cost this trial (a hit: the time to load the entry)
    hit: bool  # served from the stage cache
    cached: bool  # its result is (now) in the cache; False: caching off or opted out
    saved_s: float = 0.0  # a hit: the compute time the entry cost when it was made, less the load time
    inherited: bool = False  # a training segment served by an inherited checkpoint
    gpu_s: float | None = None
    params: tuple[str, ...] = ()  # the trial parameters it depends on (directly or upstream)
    key: str | None = None


@dataclass(frozen=True)
class Inherited:
    """The checkpoint a trial started from (engine.cache.checkpoints, user attribute `inherited`)."""

    name: str | None
    epoch: int | None
    from_sprint: Any
    from_trial: int | None
    saved_s: float


@dataclass(frozen=True, slots=True)  # slots: 100,000 rows without a dict each (issue 13: RSS at scale)
class TrialRow:
    number: int
    state: str  # an Optuna TrialState name
    value: float | None
    duration_s: float | None  # running trials: time since they started, as of the read
    last_step: int | None
    params: tuple[tuple[str, Any], ...]
    reason: str | None = None  # why a trial failed, or where it was pruned
    worker: str | None = None
    retried: bool = False  # failed, and queued again as another trial
    retry_of: int | None = None  # this trial re-runs that (failed) trial
    stale: bool = False  # still RUNNING although no engine runs the campaign
    cost: float | None = None
    seeded: bool = False
    artifacts: tuple[str, ...] = ()  # names of the artifacts the trial saved
    started: float | None = None  # epoch seconds
    completed: float | None = None
    fail_kind: str | None = (
        None  # engine.execution.trials.FAIL_KINDS: raised, bad_value, timeout, oom, worker_died, stale
    )
    stage_runs: int = 0  # memoized stages the trial ran (0: it records no stages)
    stage_hits: int = 0  # ... of which the stage cache served
    saved_s: float = 0.0  # seconds saved: stage cache hits plus an inherited checkpoint
    inherited: bool = False  # started from an earlier trial's checkpoint

    def param(self, name: str, default: Any = None) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def lost(self) -> bool:
        """Failed because its worker disappeared (stale heartbeat, dead process), not by its own doing."""
        return self.state == FAIL and self.fail_kind in LOST_KINDS


@dataclass(frozen=True)
class TrialEvent:
    """A pruned or failed trial, for the events feed."""

    trial: int
    kind: str  # "pruned" | "failed"
    step: int | None
    value: float | None
    reason: str
    time: float | None  # epoch seconds
    fail_kind: str | None = None  # failed events: engine.execution.trials.FAIL_KINDS


@dataclass(frozen=True)
class HistoryPoint:
    trial: int
    value: float
    best: float  # best so far at this trial


@dataclass(frozen=True)
class SprintInfo:
    index: int
    name: str
    study: str
    sampler: str
    pruner: str
    level: str
    fidelity: tuple[tuple[str, Any], ...]
    tuned: tuple[str, ...]
    status: str
    n_trials: int | None
    timeout_s: float | None
    budget_cost: float | None
    started_ts: float | None
    budget_seconds: float | None = None  # a budget in seconds of trial time (sum of trials' durations)


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float


@dataclass(frozen=True)
class CampaignSnapshot:
    campaign: str
    status: str  # new | running | waiting | finished | stopped | failed
    paused: bool
    sprints_planned: int
    sprint_names: tuple[str, ...]
    metric: str
    direction: str
    sprint: SprintInfo | None  # the sprint shown (the current one unless another was asked for)
    current_sprint: int  # the campaign's current sprint index
    trials: tuple[TrialRow, ...] = ()
    param_names: tuple[str, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    counted: int = 0  # trials that count against the budget (a re-run failure counts once)
    cost_used: float = 0.0
    seconds_spent: float = 0.0  # trial time of the sprint: finished trials' durations + running ones so far
    seconds_saved: float = 0.0  # stage time the cache saved (hits + inherited checkpoints)
    staged: bool = False  # some trial of the sprint records memoized stages
    best: BestTrial | None = None
    events: tuple[TrialEvent, ...] = ()  # newest first
    history: tuple[HistoryPoint, ...] = ()
    pending_gate: int | None = None
    next_gate: int = 0  # the pending gate, else the gate the current sprint ends at
    proposal: Proposal | None = None  # the pending gate's proposal
    decisions: tuple[Decision, ...] = ()
    thresholds: Mapping[str, ThresholdsResult] = field(default_factory=dict)  # by `STUDY:TRIAL`
    original_space: Mapping[str, Any] = field(default_factory=dict)
    levels: Mapping[str, Any] = field(default_factory=dict)
    fidelity_request: FidelityRequest | None = None  # a fidelity staged for the next gate
    thresholds_settings: ThresholdSpec = field(default_factory=ThresholdSpec)  # the campaign's [thresholds]
    seed: int = 0
    error: str | None = None
    read_at: float = 0.0

    @property
    def running(self) -> int:
        return self.count(RUNNING)

    def count(self, state: str) -> int:
        return dict(self.counts).get(state, 0)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def last_sprint(self) -> bool:
        """The current sprint is the campaign's last: no gate follows it."""
        return self.current_sprint >= self.sprints_planned - 1

    def trial(self, number: int) -> TrialRow | None:
        rows = self.trials
        if 0 <= number < len(rows) and rows[number].number == number:
            return rows[number]  # rows are in number order: the usual case is O(1)
        return next((row for row in rows if row.number == number), None)


@dataclass(frozen=True)
class TrialDetail:
    """Everything about one trial, read on demand for the detail screen."""

    study: str
    number: int
    state: str
    value: float | None
    params: tuple[tuple[str, Any], ...]  # the trial's tuned params
    fixed: tuple[tuple[str, Any], ...]  # the sprint's params held fixed
    intermediate: tuple[tuple[int, float], ...]
    user_attrs: tuple[tuple[str, Any], ...]
    artifacts: tuple[tuple[str, str], ...]
    reason: str | None
    started: float | None
    completed: float | None
    thresholds: ThresholdsResult | None  # stored for this trial
    fail_kind: str | None = None
    stages: tuple[StageCost, ...] = ()  # in the order they ran
    inherited: Inherited | None = None


def _epoch(moment) -> float | None:
    return moment.timestamp() if moment is not None else None


def _rung(system_attrs: Mapping[str, Any]) -> int | None:
    """Successive halving (and Hyperband's brackets) mark each rung a trial completed."""
    rungs = [key for key in system_attrs if key.startswith(RUNG_ATTR_PREFIX)]
    return len(rungs) - 1 if rungs else None


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def stage_records(attrs: Mapping[str, Any]) -> tuple[StageCost, ...]:
    """A trial's memoized stages from its user attributes, in the order they ran (malformed ones skipped)."""
    records = attrs.get(STAGES_ATTR)
    if not isinstance(records, Mapping):
        return ()
    stages: list[StageCost] = []
    for name, rec in records.items():
        if not isinstance(rec, Mapping):
            continue
        order = rec.get("order")
        params = rec.get("params")
        key = rec.get("key")
        stages.append(
            StageCost(
                name=str(name),
                order=order if isinstance(order, int) else len(stages),
                seconds=_finite(rec.get("seconds")),
                hit=bool(rec.get("hit")),
                cached=bool(rec.get("cached")),
                saved_s=(_finite(rec.get("saved_s")) or 0.0) if rec.get("hit") else 0.0,
                inherited=bool(rec.get("inherited")),
                gpu_s=_finite(rec.get("gpu_s")),
                params=tuple(str(p) for p in params) if isinstance(params, (list, tuple)) else (),
                key=key if isinstance(key, str) else None,
            )
        )
    return tuple(sorted(stages, key=lambda stage: stage.order))


def inherited_of(attrs: Mapping[str, Any]) -> Inherited | None:
    """The checkpoint a trial inherited (engine.cache.checkpoints records it), if any."""
    record = attrs.get(INHERITED_ATTR)
    if not isinstance(record, Mapping):
        return None
    epoch, trial = record.get("epoch"), record.get("from_trial")
    return Inherited(
        name=record.get("name"),
        epoch=epoch if isinstance(epoch, int) else None,
        from_sprint=record.get("from_sprint"),
        from_trial=trial if isinstance(trial, int) else None,
        saved_s=_finite(record.get("saved_s")) or 0.0,
    )


def seconds_saved(stages: tuple[StageCost, ...], inherited: Inherited | None) -> float:
    """Stage time a trial did not spend: its cache hits' saved compute, plus its inherited checkpoint's
    (counted once there: the training segment it served is recorded as a hit without saved_s)."""
    return sum(stage.saved_s for stage in stages if stage.hit) + (inherited.saved_s if inherited else 0.0)


def trial_row(trial: FrozenTrial, now: float, engine_running: bool) -> TrialRow:
    return _row(
        trial.number,
        trial.state,
        trial.value,
        _epoch(trial.datetime_start),
        _epoch(trial.datetime_complete),
        trial.last_step,
        tuple(trial.params.items()),
        trial.user_attrs,
        trial.system_attrs,
        now,
        engine_running,
    )


def journal_row(trial: JournalTrial, now: float, engine_running: bool) -> TrialRow:
    """The row of a trial read by the light journal reader (the same fields as `trial_row`'s)."""
    return _row(
        trial.number,
        trial.state,
        trial.value,
        trial.started,
        trial.completed,
        trial.last_step,
        trial.params,  # shared with the reader: both are immutable
        trial.user_attrs,
        trial.system_attrs,
        now,
        engine_running,
    )


def _row(
    number: int,
    trial_state: TrialState,
    value: float | None,
    started: float | None,
    completed: float | None,
    last_step: int | None,
    params: tuple[tuple[str, Any], ...],
    attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
    now: float,
    engine_running: bool,
) -> TrialRow:
    state = trial_state.name
    duration = attrs.get(DURATION_ATTR)
    if duration is None and started is not None:
        duration = (completed or now) - started
    reason = attrs.get(FAIL_REASON_ATTR)
    if trial_state == TrialState.PRUNED:
        pruned = attrs.get(PRUNED_AT_ATTR) or {}
        step = pruned.get("step", last_step)
        rung = _rung(system_attrs)
        reason = f"pruned at step {step}" + (f" (rung {rung})" if rung is not None else "")
    stages = stage_records(attrs) if STAGES_ATTR in attrs else ()
    inherited = inherited_of(attrs) if INHERITED_ATTR in attrs else None
    fail_kind = attrs.get(FAIL_KIND_ATTR) if trial_state == TrialState.FAIL else None
    return TrialRow(
        number=number,
        state=state,
        value=_finite(value),
        duration_s=_finite(duration),
        last_step=last_step,
        params=params,
        reason=reason,
        worker=attrs.get(WORKER_ATTR),
        retried=bool(attrs.get(RETRIED_ATTR)),
        retry_of=system_attrs.get(RETRY_OF_ATTR),
        stale=trial_state == TrialState.RUNNING and not engine_running,
        cost=_finite(attrs.get(COST_ATTR)),
        seeded=bool(attrs.get(SEEDED_ATTR)),
        artifacts=tuple(attrs.get(ARTIFACTS_ATTR) or ()),
        started=started,
        completed=completed,
        fail_kind=fail_kind if isinstance(fail_kind, str) else ("raised" if reason and state == FAIL else None),
        stage_runs=len(stages),
        stage_hits=sum(1 for stage in stages if stage.hit),
        saved_s=seconds_saved(stages, inherited),
        inherited=inherited is not None,
    )


def trial_event(trial: FrozenTrial | JournalTrial, row: TrialRow, pruner: str) -> TrialEvent | None:
    if row.state == PRUNED:
        pruned = trial.user_attrs.get(PRUNED_AT_ATTR) or {}
        step = pruned.get("step", trial.last_step)
        value = pruned.get("value")
        if value is None and step is not None:
            intermediate = trial.intermediate_values if isinstance(trial, FrozenTrial) else trial.intermediate
            value = intermediate.get(step)
        rung = _rung(trial.system_attrs)
        reason = f"rung {rung}" if rung is not None else pruner
        return TrialEvent(row.number, "pruned", step, _finite(value), reason, row.completed)
    if row.state == FAIL:
        reason = row.reason or "failed"
        if row.retried:
            reason += "; queued again"
        return TrialEvent(row.number, "failed", trial.last_step, None, reason, row.completed, row.fail_kind)
    return None


def _pruned_steps(trial: JournalTrial) -> Container[int]:
    """The intermediate value a finished trial's event shows: a pruned trial's, at its pruned step."""
    if trial.state != TrialState.PRUNED:
        return ()
    pruned = trial.user_attrs.get(PRUNED_AT_ATTR)
    step = pruned.get("step", trial.last_step) if isinstance(pruned, Mapping) else trial.last_step
    return (step,) if isinstance(step, int) else ()


# What the light journal reader keeps of a trial: what rows and events read.
SNAPSHOT_FILTER = TrialFilter(
    user_attrs=frozenset(
        {
            DURATION_ATTR,
            FAIL_REASON_ATTR,
            FAIL_KIND_ATTR,
            PRUNED_AT_ATTR,
            WORKER_ATTR,
            RETRIED_ATTR,
            COST_ATTR,
            SEEDED_ATTR,
            ARTIFACTS_ATTR,
            STAGES_ATTR,
            INHERITED_ATTR,
        }
    ),
    system_attr_prefixes=(RETRY_OF_ATTR, RUNG_ATTR_PREFIX),
    keep_steps=_pruned_steps,
)


def downsample_history(
    values: list[tuple[int, float]], maximize: bool, limit: int = MAX_HISTORY_POINTS
) -> tuple[HistoryPoint, ...]:
    """Values and best-so-far in trial order; above `limit`, the best point of each bucket."""
    better = max if maximize else min
    if len(values) > limit:
        return _downsampled(values, maximize, limit)
    points: list[HistoryPoint] = []
    best: float | None = None
    for number, value in values:
        best = value if best is None else better(best, value)
        points.append(HistoryPoint(number, value, best))
    return tuple(points)


def _downsampled(values: list[tuple[int, float]], maximize: bool, limit: int) -> tuple[HistoryPoint, ...]:
    """The best point of each of `limit` buckets, with numpy: at 100,000 trials a point object per
    trial, rebuilt whenever a trial completes, held the reader thread (and the GIL) for ~0.1 s."""
    numbers = np.fromiter((number for number, _ in values), dtype=np.int64, count=len(values))
    points = np.fromiter((value for _, value in values), dtype=np.float64, count=len(values))
    best_so_far = np.maximum.accumulate(points) if maximize else np.minimum.accumulate(points)
    pick = np.argmax if maximize else np.argmin  # the first of equal values, as max()/min() pick
    size = len(values) / limit
    buckets = []
    for i in range(limit):
        start, end = int(i * size), int((i + 1) * size)
        if end > start:
            chosen = start + int(pick(points[start:end]))
            buckets.append(HistoryPoint(int(numbers[chosen]), float(points[chosen]), float(best_so_far[end - 1])))
    return tuple(buckets)


@dataclass(frozen=True)
class Summary:
    counts: tuple[tuple[str, int], ...]
    counted: int  # trials counted against the budget (a failure that was re-run counts once)
    cost_used: float
    best: BestTrial | None
    seconds_spent: float  # the rows' durations (running rows: as of the read)
    seconds_saved: float  # stage cache hits and inherited checkpoints
    staged: bool  # some row records memoized stages


class Tally:
    """A running summary of rows: finished rows are added once (they no longer change), the few open
    ones are counted again at each read. At 100,000 trials that keeps a snapshot from walking every row."""

    def __init__(self, maximize: bool):
        self.maximize = maximize
        self.counts: dict[str, int] = {}
        self.rows = 0
        self.retries = 0
        self.cost = self.spent = self.saved = 0.0
        self.staged = False
        self.best: BestTrial | None = None

    def add(self, row: TrialRow) -> None:
        self.counts[row.state] = self.counts.get(row.state, 0) + 1
        self.rows += 1
        self.retries += row.retry_of is not None
        self.cost += row.cost or 0.0
        self.spent += row.duration_s or 0.0
        self.saved += row.saved_s
        self.staged = self.staged or row.stage_runs > 0 or row.inherited
        if row.state == COMPLETE and row.value is not None:
            best = self.best
            better = best is None or (row.value > best.value if self.maximize else row.value < best.value)
            if better or (best is not None and row.value == best.value and row.number < best.number):
                self.best = BestTrial(row.number, row.value)  # ties: the earliest trial

    def summary(self, open_rows: Iterable[TrialRow] = ()) -> Summary:
        """The summary of the rows added and `open_rows` (which are not added)."""
        tally = self
        open_rows = tuple(open_rows)
        if open_rows:
            tally = copy.copy(self)
            tally.counts = dict(self.counts)
            for row in open_rows:
                tally.add(row)
        return Summary(
            tuple(sorted(tally.counts.items())),
            tally.rows - tally.retries,
            tally.cost,
            tally.best,
            tally.spent,
            tally.saved,
            tally.staged,
        )


def summarise(rows: Iterable[TrialRow], maximize: bool) -> Summary:
    tally = Tally(maximize)
    for row in rows:
        tally.add(row)
    return tally.summary()


class _StudyCache:
    """The rows of one sprint's study read so far."""

    def __init__(self, study_id: int, maximize: bool):
        self.study_id = study_id
        self.rows: dict[int, TrialRow] = {}
        self.open: set[int] = set()  # numbers of rows that may still change
        self.seen = 0  # trials numbered below this were read at least once
        self.events: list[TrialEvent] = []
        self.retried: set[int] = set()  # failed trials that a later trial re-runs
        self.trials: tuple[TrialRow, ...] = ()
        self.history: tuple[HistoryPoint, ...] = ()
        self.events_view: tuple[TrialEvent, ...] = ()
        self.summary: tuple[Any, Any] = (None, None)  # (the rows it summarises, their Summary)
        self.finished = Tally(maximize)  # the finished rows, each added once
        self.completed = 0


class SnapshotReader:
    """Reads a campaign's snapshots from its storage. Use one reader per thread.

    With a `journal` reader (a journal file: `open_snapshot_reader`), snapshots, details, importances
    and gate evidence are read through it, and `storage` is an opener called on first use of
    `storage` or `ledger` (writes, threshold learning): Optuna's own replay of a large journal holds
    every trial whole (~575 MB at 100,000 trials)."""

    def __init__(
        self,
        storage: optuna.storages.BaseStorage | None,
        campaign: str,
        *,
        journal: JournalReader | None = None,
        open_storage: Callable[[], optuna.storages.BaseStorage] | None = None,
    ):
        if storage is None and (journal is None or open_storage is None):
            raise ValueError("a SnapshotReader without a storage needs a journal reader and a storage opener")
        self.campaign = campaign
        self.journal = journal
        self._storage = storage
        self._open_storage = open_storage
        self._ledger: Ledger | None = None
        if journal is None:
            self._ledger = Ledger(self.storage, campaign)  # CampaignNotFound before any read, as ever
        self._caches: dict[str, _StudyCache] = {}

    @property
    def storage(self) -> optuna.storages.BaseStorage:
        if self._storage is None:
            assert self._open_storage is not None
            self._storage = self._open_storage()
        return self._storage

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.storage, self.campaign)
        return self._ledger

    def _records(self) -> dict[str, Any]:
        """The ledger's records (the journal's are read without Optuna's replay)."""
        if self.journal is None:
            return self.ledger.records()
        self.journal.update()
        try:
            study_id = self.journal.study_id(campaign_study_name(self.campaign))
        except KeyError:
            raise CampaignNotFound(f"no campaign {self.campaign!r} in this storage") from None
        return decode_records(self.journal.study(study_id).user_attrs)

    def _sprint_record(self, sprint: int) -> SprintRecord | None:
        if self.journal is None:
            return self.ledger.sprint_record(sprint)
        data = self._records().get(sprint_key(sprint))
        return None if data is None else SprintRecord.from_json(data)

    def _study_id(self, name: str) -> int:
        """A study's id in the storage or the journal; KeyError when it does not exist (yet)."""
        if self.journal is not None:
            return self.journal.study_id(name)
        return self.storage.get_study_id_from_name(name)

    # Snapshots -------------------------------------------------------------------------------
    def read(self, sprint: int | None = None) -> CampaignSnapshot:
        """A snapshot of the campaign, with the trials of `sprint` (default: the current one)."""
        now = time.time()
        records = self._records()
        view = LedgerView.from_records(records)
        spec = view.spec or {}
        state = view.state
        index = state.sprint if sprint is None else sprint
        record = view.sprint(index)
        metric = spec.get("metric", {})
        maximize = metric.get("direction") == "maximize"
        pending = view.pending_gate
        base = dict(
            campaign=self.campaign,
            status=state.status,
            paused=state.paused,
            sprints_planned=len(spec.get("sprints", [])),
            sprint_names=tuple(s["name"] for s in spec.get("sprints", [])),
            metric=metric.get("name", "value"),
            direction=metric.get("direction", "minimize"),
            current_sprint=state.sprint,
            pending_gate=pending,
            next_gate=view.next_gate,
            proposal=view.proposals.get(pending) if pending is not None else None,
            decisions=view.decisions,
            thresholds=view.thresholds,
            original_space=view.original_space,
            levels=spec.get("fidelity", {}).get("levels", {}),
            fidelity_request=view.fidelity_requests.get(view.next_gate),
            thresholds_settings=ThresholdSpec.model_validate(spec.get("thresholds") or {}),
            seed=int(spec.get("seed", 0) or 0),
            error=state.error,
            read_at=now,
        )
        if record is None:
            return CampaignSnapshot(sprint=None, **base)
        info = SprintInfo(
            index=record.index,
            name=record.name,
            study=record.study,
            sampler=record.sampler,
            pruner=record.pruner,
            level=record.level,
            fidelity=tuple(record.fidelity.items()),
            tuned=record.tuned,
            status=record.status,
            n_trials=record.n_trials,
            timeout_s=record.timeout_s,
            budget_cost=record.budget_cost,
            started_ts=record.started_ts,
            budget_seconds=record.budget_seconds,
        )
        cache = self._read_study(record, now, state.engine_active, maximize)
        if cache is None:
            return CampaignSnapshot(sprint=info, param_names=info.tuned, **base)
        if cache.summary[0] is not cache.trials:
            open_rows = (cache.rows[n] for n in sorted(cache.open))
            cache.summary = (cache.trials, cache.finished.summary(open_rows))
        summary: Summary = cache.summary[1]
        return CampaignSnapshot(
            sprint=info,
            trials=cache.trials,
            param_names=info.tuned,
            counts=summary.counts,
            counted=summary.counted,
            cost_used=summary.cost_used,
            best=summary.best,
            seconds_spent=summary.seconds_spent,
            seconds_saved=summary.seconds_saved,
            staged=summary.staged,
            events=cache.events_view,
            history=cache.history,
            **base,
        )

    def _read_study(self, record: SprintRecord, now: float, engine_running: bool, maximize: bool) -> _StudyCache | None:
        cache = self._caches.get(record.study)
        if cache is None:
            try:
                study_id = self._study_id(record.study)
            except KeyError:
                return None  # the coordinator records the sprint just before it creates the study
            cache = self._caches[record.study] = _StudyCache(study_id, maximize)
        journal = self.journal
        if journal is not None:  # updated by _records() just before
            if journal.study_id(record.study) != cache.study_id:
                return None  # deleted meanwhile
            listed = journal.trials(cache.study_id)
            total = len(listed)
        else:
            total = self.storage.get_n_trials(cache.study_id)
        unread = sorted(cache.open | set(range(cache.seen, total)))
        if not unread:
            return cache
        trials: list[FrozenTrial] | list[JournalTrial]
        if journal is not None:
            trials = [listed[n] for n in unread]
        elif len(unread) > BULK_READ_AFTER:
            wanted = set(unread)
            trials = [t for t in self.storage.get_all_trials(cache.study_id, deepcopy=False) if t.number in wanted]
        else:
            trials = [
                self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(cache.study_id, n))
                for n in unread
            ]
        changed = False
        completed = False
        new_events = []
        for trial in trials:
            row = (
                journal_row(trial, now, engine_running)
                if isinstance(trial, JournalTrial)
                else trial_row(trial, now, engine_running)
            )
            if row.retry_of is not None and row.retry_of not in cache.retried:
                cache.retried.add(row.retry_of)
                old = cache.rows.get(row.retry_of)
                if old is not None and not old.retried:
                    cache.rows[row.retry_of] = _replace(old, retried=True)
            if row.number in cache.retried and not row.retried:
                row = _replace(row, retried=True)
            previous = cache.rows.get(row.number)
            if previous != row:
                cache.rows[row.number] = row
                changed = True
                completed = completed or (row.state == COMPLETE and (previous is None or previous.state != COMPLETE))
            if row.finished:
                cache.open.discard(row.number)
                if previous is None or not previous.finished:
                    cache.finished.add(row)  # once: a finished row is not read again
                event = trial_event(trial, row, record.pruner)
                if event is not None:
                    new_events.append(event)
            else:
                cache.open.add(row.number)
        cache.seen = max(cache.seen, total)
        if new_events:
            cache.events.extend(new_events)
            cache.events.sort(key=lambda e: (e.time or 0.0, e.trial))
            del cache.events[:-MAX_EVENTS]
            cache.events_view = tuple(reversed(cache.events))
        if changed:
            # New numbers are inserted in ascending order (above `seen`) and updates keep their place,
            # so the dict is already in trial order: no sort of 100,000 keys per snapshot.
            cache.trials = tuple(cache.rows.values())
            if completed:  # the history only moves when a trial completes
                done = [(r.number, r.value) for r in cache.trials if r.state == COMPLETE and r.value is not None]
                cache.history = downsample_history(done, maximize, MAX_HISTORY_POINTS)
        return cache

    # On demand -------------------------------------------------------------------------------
    def study_name(self, sprint: int) -> str | None:
        record = self._sprint_record(sprint)
        return record.study if record else None

    def importances(self, sprint: int) -> dict[str, float]:
        """PED-ANOVA importances of a sprint's tuned parameters (about a second at 10k trials)."""
        return importances_of(*self.completed_trials(sprint))

    def completed_trials(self, sprint: int) -> tuple[list[FrozenTrial], list[str], str]:
        """(completed trials, tuned params, direction) of a sprint: a quick read, for importances_of."""
        record = self._sprint_record(sprint)
        if record is None:
            return [], [], "minimize"
        try:
            study_id = self._study_id(record.study)
        except KeyError:
            return [], [], "minimize"
        if self.journal is not None:
            # Built for the computation and dropped after it; they share the reader's params and distributions.
            listed = self.journal.trials(study_id)
            done = [t.frozen() for t in listed if t.state == TrialState.COMPLETE]
            direction = self.journal.study(study_id).directions[0].name.lower()
            return done, list(record.tuned), direction
        trials = self.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
        direction = self.storage.get_study_directions(study_id)[0].name.lower()
        return list(trials), list(record.tuned), direction

    def _full_trial(self, study: str, number: int) -> FrozenTrial:
        """Every field of one trial (KeyError: no such study or trial)."""
        if self.journal is not None:
            self.journal.update()
            try:
                return self.journal.full_trial(self.journal.study_id(study), number)
            except IndexError:
                raise KeyError(f"no trial {number} in {study}") from None
        study_id = self.storage.get_study_id_from_name(study)
        return self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(study_id, number))

    def trial_detail(self, sprint: int, number: int) -> TrialDetail | None:
        record = self._sprint_record(sprint)
        if record is None:
            return None
        try:
            trial = self._full_trial(record.study, number)
        except KeyError:
            return None
        attrs = dict(trial.user_attrs)
        artifacts = attrs.pop(ARTIFACTS_ATTR, {}) or {}
        return TrialDetail(
            study=record.study,
            number=trial.number,
            state=trial.state.name,
            value=_finite(trial.value),
            params=tuple(trial.params.items()),
            fixed=tuple(record.fixed.items()),
            intermediate=tuple(sorted(trial.intermediate_values.items())),
            user_attrs=tuple(sorted(attrs.items())),
            artifacts=tuple(sorted(artifacts.items())),
            reason=attrs.get(FAIL_REASON_ATTR),
            started=_epoch(trial.datetime_start),
            completed=_epoch(trial.datetime_complete),
            thresholds=thresholds_of(self._records()).get(thresholds_id(record.study, trial.number)),
            fail_kind=attrs.get(FAIL_KIND_ATTR) if trial.state == TrialState.FAIL else None,
            stages=stage_records(attrs),
            inherited=inherited_of(attrs),
        )

    def load_trial(self, sprint: int, number: int) -> tuple[str, FrozenTrial] | None:
        """The study name and frozen trial, for threshold learning on its saved artifacts."""
        record = self._sprint_record(sprint)
        if record is None:
            return None
        return record.study, self._full_trial(record.study, number)

    def gate_inputs(self, gate: int) -> GateInputs | None:
        """What a gate's evidence rests on (engine.views.evidence.read_gate_inputs)."""
        from engine.views.evidence import read_gate_inputs  # evidence imports this module

        if self.journal is None:
            return read_gate_inputs(self.storage, self.campaign, gate)
        self.journal.update()
        return read_gate_inputs(_JournalEvidenceStorage(self.journal), self.campaign, gate)


class _EvidenceTrial:
    """What read_gate_inputs reads of a completed trial."""

    __slots__ = ("number", "params", "value")

    def __init__(self, trial: JournalTrial) -> None:
        self.number = trial.number
        self.params = dict(trial.params)
        self.value = trial.value


class _JournalEvidenceStorage:
    """The few storage reads of engine.views.evidence.read_gate_inputs (and its Ledger), served by
    the light journal reader instead of Optuna's replay."""

    def __init__(self, journal: JournalReader) -> None:
        self.journal = journal

    def get_study_id_from_name(self, name: str) -> int:
        return self.journal.study_id(name)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.journal.study(study_id).user_attrs

    def get_all_trials(
        self, study_id: int, deepcopy: bool = False, states: Container[TrialState] | None = None
    ) -> list[_EvidenceTrial]:
        return [_EvidenceTrial(t) for t in self.journal.trials(study_id) if states is None or t.state in states]


def open_snapshot_reader(
    url: str, campaign: str, open_storage: Callable[[str], optuna.storages.BaseStorage]
) -> SnapshotReader:
    """A reader for a storage URL: a journal file is read by the light reader (engine.store.journal_reader),
    and opened with `open_storage` only when something is written; any other URL is opened at once."""
    if url.startswith(JOURNAL_URL_PREFIX):
        journal = JournalReader(url.removeprefix(JOURNAL_URL_PREFIX), SNAPSHOT_FILTER, campaign=campaign)
        return SnapshotReader(None, campaign, journal=journal, open_storage=lambda: open_storage(url))
    return SnapshotReader(open_storage(url), campaign)


class _TrialsStudy(optuna.Study):
    """A read-only study over trials already read: importance evaluators only read trials and the
    direction, so they can run without the storage (and without a second copy of it)."""

    def __init__(self, trials: list[FrozenTrial], direction: str):
        storage = optuna.storages.InMemoryStorage()
        storage.create_new_study([optuna.study.StudyDirection[direction.upper()]], "view")
        super().__init__(study_name="view", storage=storage)
        self._view = trials

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return [t for t in self._view if states is None or t.state in states]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def importances_of(trials: list[FrozenTrial], tuned: list[str], direction: str) -> dict[str, float]:
    """PED-ANOVA importances over completed trials (engine.search.importance, off the storage)."""
    from engine.search.importance import param_importances

    if not trials:
        return {}
    return param_importances(_TrialsStudy(trials, direction), tuned)


def best_with_artifact(rows: Iterable[TrialRow], artifact: str, maximize: bool) -> TrialRow | None:
    """The best completed trial that saved `artifact` (threshold learning needs its probabilities)."""
    done = [r for r in rows if r.state == COMPLETE and r.value is not None and artifact in r.artifacts]
    if not done:
        return None
    return (max if maximize else min)(done, key=lambda r: r.value or 0.0)  # every value is set (above)


def _replace(row: TrialRow, **changes: Any) -> TrialRow:
    from dataclasses import replace

    return replace(row, **changes)
