"""The coordinator: runs a campaign's sprints, gates and decisions to the end, resumably.

Size (~620 lines): the coordinator's whole lifecycle: lease, workers, the sprint loop through storage
outages, gates and progress reports; it is the one writer of sprints and gate decisions.

It alone creates sprints and takes gate decisions; workers (local processes, or `hpo-tui worker`
on other hosts) only run trials. All state goes through the storage, so killing the coordinator
and running it again continues where it stopped. One coordinator per campaign: it holds the
campaign's lease (engine.store.lease) before it writes anything, renews it while it runs, and stops
without touching the ledger if another coordinator took the campaign over.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from engine.execution.pool import WorkerPool, fail_stale_trials, recover_orphans
from engine.execution.sprint import make_record, open_study, seed_study, sprint_done
from engine.execution.worker import Worker
from engine.gates.diff import range_change
from engine.gates.policy import AutoPolicy, Policy
from engine.gates.proposal import fidelity_agreement, make_proposal
from engine.search.importance import param_importances
from engine.search.space import initial_space
from engine.spec import CampaignSpec
from engine.store.lease import Lease, LeaseLost
from engine.store.ledger import Ledger, now_iso, who
from engine.store.queries import latest_best_with_artifact
from engine.store.records import CampaignState, Decision, SprintRecord
from engine.store.schema import (
    DURATION_ATTR,
    FAIL_KIND_ATTR,
    FAIL_REASON_ATTR,
    ORIGINAL_SPACE_KEY,
    SPEC_KEY,
    WORKER_ATTR,
    CampaignStatus,
    SprintStatus,
)
from engine.store.storage import (
    artifact_store,
    default_storage_url,
    is_storage_outage,
    open_storage,
    outage_cause,
    redact,
    run_dir,
    with_retries,
)
from engine.views.progress_log import emit
from engine.views.sprint_progress import (
    describe_best,
    describe_counts,
    describe_fidelity,
    describe_progress,
    done_of_planned,
    format_duration,
    sprint_progress,
)

POLL_S = 0.25
LEASE_CHECK_S = 1.0  # the main loop also checks the lease this often (the renewal thread every lease_s/3)
STATUS_EVERY_S = 30.0  # a status line this often while trials run, so long GPU trials show life
# Keys whose change after a campaign started would make its history meaningless.
# A resumed campaign must keep these; seed and [gate] too, since the stored copy is what runs on.
BINDING_KEYS = ("objective", "space", "fidelity", "sprints", "metric", "seed", "gate")

optuna.logging.set_verbosity(optuna.logging.WARNING)


class CampaignMismatch(RuntimeError):
    pass


def spec_json(spec: CampaignSpec) -> dict[str, Any]:
    data = json.loads(spec.model_dump_json())
    if data.get("storage"):
        data["storage"] = redact(data["storage"])  # the ledger is readable by every tool: no password in it
    return data


def check_compatible(stored: Mapping[str, Any], spec: CampaignSpec) -> None:
    current = spec_json(spec)
    changed = [k for k in BINDING_KEYS if stored.get(k) != current.get(k)]
    if changed:
        raise CampaignMismatch(
            f"campaign {spec.name!r} already exists in this storage with different {', '.join(changed)}; "
            "resume it with the file it started with, or give the changed campaign a new name"
        )


class Coordinator:
    def __init__(
        self,
        spec: CampaignSpec,
        storage_url: str | None = None,
        *,
        policy: Policy | None = None,
        workers: int | None = None,
        gpus: list[str] | None = None,
        log: Callable[[str], None] = print,
        runs_root: Path | None = None,
        takeover: bool = False,
    ):
        """`workers=0` runs trials in this process (tests, benchmarks); otherwise worker processes.
        `takeover`: take the campaign's lease once it has expired, whoever held it (engine.store.lease)."""
        self.spec = spec
        self.runs_root = runs_root
        self.storage_url = storage_url or spec.storage or default_storage_url(spec.name, runs_root)
        self.policy = policy or AutoPolicy()
        self.workers = spec.workers if workers is None else workers
        self.gpus = gpus
        self.log = log
        self.storage = open_storage(self.storage_url, retries=spec.trial_retries, stale_after_s=spec.stale_after_s)
        self.ledger = Ledger(self.storage, spec.name, create=True)
        self.run_dir = run_dir(spec.name, runs_root)
        self._stop = threading.Event()
        self.pool: WorkerPool | None = None
        self._local: Worker | None = None
        self._reported: set[tuple[str, int]] = set()
        self.status_every_s = STATUS_EVERY_S
        self._status_at: dict[str, float] = {}  # per sprint study: when its last status line was written
        self._started_at = datetime.datetime.now()  # trials finished before this run are not reported again
        self.takeover = takeover
        self.lease: Lease | None = None
        self._lease_checked = 0.0

    # Control ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def lease_lost(self) -> bool:
        return self.lease is not None and self.lease.lost

    def _on_lease_lost(self) -> None:
        self.log(
            f"lease: campaign {self.spec.name} was taken over by another coordinator; "
            "stopping without touching its records"
        )
        self._stop.set()

    def _check_lease(self) -> None:
        """Between the renewal thread's checks: stop at once when a newer lease appears."""
        if self.lease is None or time.monotonic() - self._lease_checked < LEASE_CHECK_S:
            return
        self._lease_checked = time.monotonic()
        try:
            self.lease.check()
        except Exception as err:
            if not is_storage_outage(err):
                raise

    def acquire_lease(self) -> Lease:
        """Hold the campaign (LeaseHeld, exit 4, while another coordinator does); idempotent."""
        if self.lease is None:
            self.lease = with_retries(
                lambda: Lease.acquire(self.storage, self.spec.name, takeover=self.takeover),
                what="take the campaign's lease",
                log=self.log,
            )
            previous = f"; the previous one was {self.lease.previous}" if self.lease.previous else ""
            self.log(f"lease: this process runs campaign {self.spec.name} (lease {self.lease.generation}{previous})")
            self.lease.start_renewing(self._on_lease_lost, self.log)
        return self.lease

    def _release_lease(self) -> None:
        if self.lease is None:
            return
        try:
            self.lease.release()
        except Exception as err:
            if not is_storage_outage(err):
                raise

    # Set-up ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        stored = self.ledger.spec()
        if stored is None:
            self.ledger.put(SPEC_KEY, spec_json(self.spec))
            self.ledger.put(ORIGINAL_SPACE_KEY, initial_space(self.spec))
            self.ledger.set_state(status=CampaignStatus.NEW, sprint=0, gate=0, pending_gate=None, paused=False)
            emit(
                self.log,
                "campaign_start",
                f"campaign {self.spec.name}: new, storage {redact(self.storage_url)}",
                campaign=self.spec.name,
                resumed=False,
                sprints=len(self.spec.sprints),
                storage=redact(self.storage_url),
            )
        else:
            check_compatible(stored, self.spec)
            state = self.ledger.campaign_state()
            emit(
                self.log,
                "campaign_start",
                f"campaign {self.spec.name}: resuming at sprint {state.sprint + 1}/{len(self.spec.sprints)} "
                f"({state.status}), storage {redact(self.storage_url)}",
                campaign=self.spec.name,
                resumed=True,
                sprint=state.sprint,
                sprints=len(self.spec.sprints),
                storage=redact(self.storage_url),
            )
            if state.status in (CampaignStatus.STOPPED, CampaignStatus.FAILED):
                self.ledger.set_state(status=CampaignStatus.RUNNING)

    def original_space(self) -> dict:
        original = self.ledger.original_space()
        if original is None:  # prepare() writes it together with the spec
            raise RuntimeError(f"campaign {self.spec.name} has no original space in its ledger: prepare() has not run")
        return original

    # Main loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.acquire_lease()
        try:
            return self._run_holding_lease()
        finally:
            self._release_lease()

    def _run_holding_lease(self) -> dict[str, Any]:
        self.prepare()
        if self.ledger.campaign_state().status == CampaignStatus.FINISHED:
            self.log("campaign already finished")
            return self.summary()
        self.ledger.set_state(
            status=CampaignStatus.RUNNING,
            coordinator={**who(), "since": now_iso()},
            lease=self.lease.generation if self.lease else None,
        )
        self._start_workers()
        try:
            finished = self._run_sprints_through_outages()
            if self.lease_lost():
                pass  # the new coordinator owns the ledger now
            elif finished:
                self._learn_thresholds()
                self.ledger.set_state(status=CampaignStatus.FINISHED, pending_gate=None)
                emit(
                    self.log,
                    "campaign_done",
                    "campaign finished",
                    campaign=self.spec.name,
                    status=CampaignStatus.FINISHED,
                )
            else:
                self.ledger.set_state(status=CampaignStatus.STOPPED)
                emit(
                    self.log,
                    "campaign_done",
                    "campaign stopped; run the same command again to resume",
                    campaign=self.spec.name,
                    status=CampaignStatus.STOPPED,
                )
        except BaseException as err:
            status = CampaignStatus.STOPPED if isinstance(err, KeyboardInterrupt) else CampaignStatus.FAILED
            try:
                if not self.lease_lost():
                    self.ledger.set_state(
                        status=status, error=None if status == CampaignStatus.STOPPED else redact(str(err))
                    )
            except Exception as inner:
                if not is_storage_outage(inner):
                    raise
            raise
        finally:
            self._stop_workers()
        if self.lease is not None and self.lease.lost:  # lease_lost(), spelled out so the lease narrows
            raise LeaseLost(
                f"campaign {self.spec.name} is run by {self.lease.successor()} now; this coordinator stopped "
                "without touching its records"
            )
        return self.summary()

    def _start_workers(self) -> None:
        if self.workers == 0:
            # The coordinator reports every trial itself (with n/N and best): the worker's own line would repeat it.
            self._local = Worker(
                self.storage, self.spec.name, "local", log=self.log, runs_root=self.runs_root, report_trials=False
            )
            return
        self.pool = WorkerPool(
            self.storage_url,
            self.spec.name,
            count=self.workers,
            gpus=self.gpus,
            log_dir=self.run_dir / "logs",
            retries=self.spec.trial_retries,
            log=self.log,
            runs_root=self.runs_root,
            lease_generation=self.lease.generation if self.lease else None,
            storage=self.storage,
        )
        self.pool.start()

    def _run_sprints_through_outages(self) -> bool:
        """_run_sprints, re-entered (it resumes from the ledger) after the database comes back."""
        while True:
            try:
                return self._run_sprints()
            except Exception as err:
                if not is_storage_outage(err):
                    raise
                cause = str(outage_cause(err)).strip().splitlines() or [type(err).__name__]
                self.log(
                    f"storage: the coordinator lost the database ({redact(cause[0])}); waiting for it with backoff"
                )
                with_retries(self.ledger.campaign_state, what="coordinator reconnect", log=self.log)
                self.log("storage: database reachable again; the coordinator carries on")

    def _stop_workers(self) -> None:
        if self.pool is None:
            return
        self.pool.stop()
        try:
            for event in self.pool.fail_timed_out_of_stopped():
                self.log(event)
            self._fail_trials_of_stopped_workers(self.pool)
        except Exception as err:
            if not is_storage_outage(err):
                raise

    def _fail_trials_of_stopped_workers(self, pool: WorkerPool) -> None:
        """Its own workers' trials (trial records, not the ledger: also after the lease was lost)."""
        record = self.ledger.sprint_record(self.ledger.campaign_state().sprint)
        if record is not None:
            study = optuna.load_study(study_name=record.study, storage=self.storage)
            for pid in pool.ended_pids():
                pool.fail_trials_of(study, pid, "worker stopped with the coordinator")

    def _run_sprints(self) -> bool:
        while not self.stopping():
            self._lease_checked = 0.0
            self._check_lease()
            if self.stopping():
                break
            state = self.ledger.campaign_state()
            record = self._current_sprint(state.sprint)
            study = open_study(self.spec, self.storage, record)
            recover_orphans(study, self.spec.trial_retries, self.pool.pids() if self.pool else set(), self.log)
            if record.running:
                finished = self._run_until_done(record, study)
                if finished is None:
                    return False
                record = finished.replace(status=SprintStatus.CLOSED, closed=now_iso())
                self.ledger.put_sprint(record)
                self._report_sprint(record, study)
            if record.index == len(self.spec.sprints) - 1:
                return True
            passed = self._gate_passed_without_sprint(state, record.index)
            if passed is not None:
                self._start_sprint(record.index + 1, passed.space, passed.fidelity)
                continue
            decision = self._gate(state.gate, record, study)
            if decision is None:
                return False
            if decision.action == "extend":
                n_trials = (record.n_trials or 0) + (decision.extend_trials or 0)
                self.ledger.put_sprint(record.replace(status=SprintStatus.RUNNING, n_trials=n_trials))
                self.ledger.set_state(gate=state.gate + 1, pending_gate=None, status=CampaignStatus.RUNNING)
            else:
                # The next sprint from the decision just taken; the gate counter moves on in the same state write.
                self._start_sprint(
                    record.index + 1,
                    decision.space,
                    decision.fidelity,
                    gate=state.gate + 1,
                    pending_gate=None,
                    status=CampaignStatus.RUNNING,
                )
        return False

    def _current_sprint(self, sprint_index: int) -> SprintRecord:
        """The state's sprint: its stored record, or the first sprint made now for a new campaign."""
        record = self.ledger.sprint_record(sprint_index)
        if record is not None:
            return record
        if sprint_index == 0:
            return self._start_sprint(0, initial_space(self.spec), None)
        # the state names a sprint only once its record is stored, and a stored record is never deleted
        raise RuntimeError(f"sprint {sprint_index} vanished from the ledger of campaign {self.spec.name}")

    def _start_sprint(
        self, sprint_index: int, space: Mapping[str, Any], fidelity: Mapping[str, Any] | None, **state_changes: Any
    ) -> SprintRecord:
        """Make, seed and store sprint `sprint_index`, then make it the state's sprint (with `state_changes`).

        A record already stored (its coordinator stopped before the state write) is taken as it is.
        """
        record = self.ledger.sprint_record(sprint_index)
        if record is None:
            record = make_record(self.spec, self.ledger, self.storage, sprint_index, dict(space), fidelity)
            study = open_study(self.spec, self.storage, record)
            record = seed_study(self.spec, self.storage, self.ledger, study, record)
            self.ledger.put_sprint(record)
            self._report_sprint_start(record)
        self.ledger.set_state(sprint=sprint_index, **state_changes)
        return record

    def _report_sprint_start(self, record: SprintRecord) -> None:
        seeds = f", seeded with {len(record.seeded)} best configurations" if record.seeded else ""
        planned = f"{record.n_trials} trials, " if record.n_trials is not None else ""
        emit(
            self.log,
            "sprint_start",
            f"sprint {record.index + 1}/{len(self.spec.sprints)} {record.name}: {planned}{record.sampler} sampler, "
            f"{record.pruner} pruner, fidelity {record.level} ({describe_fidelity(dict(record.fidelity))}), "
            f"tuning {', '.join(record.tuned)}{seeds}",
            sprint=record.name,
            index=record.index,
            sampler=record.sampler,
            pruner=record.pruner,
            level=record.level,
            fidelity=dict(record.fidelity),
            n_trials=record.n_trials,
            tuned=list(record.tuned),
            seeded=len(record.seeded),
        )

    def _gate_passed_without_sprint(self, state: CampaignState, sprint_index: int) -> Decision | None:
        """Resume only: the decision of the gate after `sprint_index` when the gate counter moved past it but the
        next sprint was never made (a coordinator of an older version, which moved the counter first, stopped in
        between). The running coordinator passes its own decision straight to _start_sprint instead."""
        if state.pending_gate is not None or state.gate == 0:
            return None
        gate = state.gate - 1
        proposal = self.ledger.proposal_record(gate)
        decision = self.ledger.decision_record(gate)
        if proposal is None or decision is None or decision.action == "extend":
            return None
        return decision if proposal.finished_sprint == sprint_index else None

    def _run_until_done(self, record: SprintRecord, study: optuna.Study) -> SprintRecord | None:
        """The sprint's record as it stands once its budget is spent; None when stopped first."""
        last_stale_check = 0.0
        while not self.stopping():
            self._check_lease()
            if self.stopping():
                break
            # The record may change under us (pause, extend): always read it fresh.
            fresh = self.ledger.sprint_record(record.index)
            if fresh is None:  # a started sprint's record is never deleted
                raise RuntimeError(f"sprint {record.index} vanished from the ledger of campaign {self.spec.name}")
            record = fresh
            trials = study.get_trials(deepcopy=False)
            self._report_progress(record, trials)
            if sprint_done(record, trials):
                return record
            if self.pool is not None:
                self.pool.supervise(study, campaign_ended=False)
            if time.time() - last_stale_check > (getattr(self.storage, "heartbeat_interval", None) or 5):
                last_stale_check = time.time()
                fail_stale_trials(study, self.spec.trial_retries, self.log)
            if self._local is not None:
                if self._local.step() != "ran":
                    time.sleep(POLL_S)
            else:
                time.sleep(POLL_S)
        return None

    def _gate(self, gate: int, record: SprintRecord, study: optuna.Study) -> Decision | None:
        """Gate number `gate` after sprint `record`: its proposal (made once), then the policy's decision."""
        proposal = self.ledger.proposal_record(gate)
        current = dict(record.space)
        if proposal is None:
            importances = param_importances(study, list(record.tuned))
            agreement = fidelity_agreement(self.storage, self.ledger, record, study)
            proposal = make_proposal(
                self.spec,
                sprint_index=record.index,
                study=study,
                current=current,
                original=self.original_space(),
                importances=importances,
                agreement=agreement,
                gate=gate,
            )
            self.ledger.put_proposal(gate, proposal)
        self.ledger.set_state(pending_gate=gate, status=CampaignStatus.WAITING)
        changes = [
            range_change(name, row.current, row.proposed) + (f"  ! {row.note}" if row.note else "")
            for name, row in proposal.params.items()
            if row.changed or row.edge
        ]
        emit(
            self.log,
            "gate",
            f"gate {gate} after {record.name}: proposal for {proposal.next}:"
            + "".join(f"\n    {line}" for line in changes),
            gate=gate,
            after=record.name,
            next=proposal.next,
            changes=changes,
        )
        decision = self.policy.decide(
            self.ledger, gate, proposal, self.original_space(), current, dict(self.spec.fidelity.levels), self.stopping
        )
        if decision is None:
            return None
        emit(
            self.log,
            "decision",
            f"gate {gate}: {decision.action} by {decision.who.user} via {decision.source}"
            + "".join(f"\n    {line}" for line in decision.diff),
            gate=gate,
            action=decision.action,
            who=decision.who,
            source=decision.source,
            when=decision.when,
            diff=list(decision.diff),
            note=decision.note,
        )
        return decision

    # Reports ---------------------------------------------------------------------------------
    def _report_progress(self, record: SprintRecord, trials: list) -> None:
        """A line per trial finished since this run started (in the order they finished, with n/N and
        the best so far at that point), and a status line every `status_every_s` while trials run."""
        maximize = self.spec.metric.direction == "maximize"
        study = record.study
        fresh = {
            t.number
            for t in trials
            if t.datetime_complete is not None
            and t.datetime_complete >= self._started_at
            and (study, t.number) not in self._reported
        }
        if fresh:
            finished = sorted(
                (t for t in trials if t.datetime_complete is not None), key=lambda t: (t.datetime_complete, t.number)
            )
            for position, trial in enumerate(finished):
                if trial.number in fresh:
                    self._reported.add((study, trial.number))
                    # The sprint as it stood when this trial finished: n/N and the best of that moment.
                    progress = sprint_progress(record, finished[: position + 1], maximize=maximize)
                    self._report_trial(record, trial, progress)
        now = time.time()
        last = self._status_at.setdefault(study, now)
        if now - last >= self.status_every_s and record.running:
            self._status_at[study] = now
            progress = sprint_progress(record, trials, maximize=maximize, now=now)
            emit(self.log, "progress", describe_progress(progress), **progress.fields())

    def _report_trial(self, record: SprintRecord, trial, progress) -> None:
        value = f"{trial.value:.6g}" if trial.value is not None else "-"
        reason = trial.user_attrs.get(FAIL_REASON_ATTR)
        step = trial.last_step if trial.state == TrialState.PRUNED else None
        extra = f" ({reason})" if reason else f" at step {step}" if step is not None else ""
        emit(
            self.log,
            "trial_done",
            f"  [{record.name}] trial {trial.number:>4} {trial.state.name:<8} {value}{extra}"
            f"  {done_of_planned(progress)}, {describe_best(progress)}",
            sprint=record.name,
            trial=trial.number,
            state=trial.state.name,
            value=trial.value,
            step=step,
            reason=reason,
            fail_kind=trial.user_attrs.get(FAIL_KIND_ATTR),
            worker=trial.user_attrs.get(WORKER_ATTR),
            duration_s=trial.user_attrs.get(DURATION_ATTR),
            done=progress.done,
            planned=progress.planned,
            best_value=progress.best_value,
            best_trial=progress.best_trial,
        )

    def _report_sprint(self, record: SprintRecord, study: optuna.Study) -> None:
        progress = sprint_progress(
            record, study.get_trials(deepcopy=False), maximize=self.spec.metric.direction == "maximize"
        )
        emit(
            self.log,
            "sprint_done",
            f"sprint {record.name} closed: {done_of_planned(progress)} trials ({describe_counts(progress)}), "
            f"{describe_best(progress)}, took {format_duration(progress.elapsed_s)}",
            **progress.fields(),
        )

    def _learn_thresholds(self) -> None:
        if self.spec.thresholds is None or not self.spec.thresholds.enabled:
            return
        from engine.thresholds import format_report, store_result, thresholds_for_trial

        found = self.best_trial_with_artifact(self.spec.thresholds.artifact)
        if found is None:
            self.log(f"thresholds: no completed trial saved a {self.spec.thresholds.artifact!r} artifact; skipped")
            return
        study_name, trial = found
        key = f"{study_name}:{trial.number}"
        if key in self.ledger.thresholds():
            return
        self.log(f"thresholds: learning per-class thresholds on {study_name} trial {trial.number}")
        result = thresholds_for_trial(
            artifact_store(self.spec.name, self.runs_root),
            trial,
            metric=self.spec.thresholds.metric,
            folds=self.spec.thresholds.folds,
            optimizer=self.spec.thresholds.optimizer,
            seed=self.spec.seed,
        )
        result = store_result(self.ledger, result, study=study_name, trial=trial.number, source="policy")
        self.log(format_report(result))

    def best_trial_with_artifact(self, artifact: str):
        """The best completed trial of the latest sprint that saved `artifact`."""
        maximize = self.spec.metric.direction == "maximize"
        return latest_best_with_artifact(self.storage, self.ledger.sprint_records(), artifact, maximize)

    def summary(self) -> dict[str, Any]:
        from engine.views.status import campaign_status

        return campaign_status(self.storage, self.spec.name)
