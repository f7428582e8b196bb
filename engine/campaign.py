"""The coordinator: runs a campaign's sprints, gates and decisions to the end, resumably.

It alone creates sprints and takes gate decisions; workers (local processes, or `hpo-tui worker`
on other hosts) only run trials. All state goes through the storage, so killing the coordinator
and running it again continues where it stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from engine.importance import param_importances
from engine.ledger import Ledger, now_iso, who
from engine.policy import AutoPolicy, Policy
from engine.pool import WorkerPool, fail_stale_trials, recover_orphans
from engine.proposal import fidelity_agreement, make_proposal
from engine.space import initial_space
from engine.spec import CampaignSpec
from engine.sprint import make_record, open_study, seed_study, sprint_done
from engine.storage import (
    artifact_store,
    default_storage_url,
    is_storage_outage,
    open_storage,
    outage_cause,
    redact,
    run_dir,
    with_retries,
)
from engine.worker import Worker

POLL_S = 0.25
# Keys whose change after a campaign started would make its history meaningless.
BINDING_KEYS = ("objective", "space", "fidelity", "sprints", "metric")

optuna.logging.set_verbosity(optuna.logging.WARNING)


class CampaignMismatch(RuntimeError):
    pass


def spec_json(spec: CampaignSpec) -> dict[str, Any]:
    data = json.loads(spec.model_dump_json())
    if data.get("storage"):
        data["storage"] = redact(data["storage"])  # the ledger is readable by every tool: no password in it
    return data


def check_compatible(stored: dict[str, Any], spec: CampaignSpec) -> None:
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
    ):
        """`workers=0` runs trials in this process (tests, benchmarks); otherwise worker processes."""
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

    # Control ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def stopping(self) -> bool:
        return self._stop.is_set()

    # Set-up ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        stored = self.ledger.spec()
        if stored is None:
            self.ledger.put("spec", spec_json(self.spec))
            self.ledger.put("original_space", initial_space(self.spec))
            self.ledger.set_state(status="new", sprint=0, gate=0, pending_gate=None, paused=False)
            self.log(f"campaign {self.spec.name}: new, storage {redact(self.storage_url)}")
        else:
            check_compatible(stored, self.spec)
            state = self.ledger.state()
            self.log(
                f"campaign {self.spec.name}: resuming at sprint {state['sprint'] + 1}/{len(self.spec.sprints)} "
                f"({state['status']}), storage {redact(self.storage_url)}"
            )
            if state["status"] in ("stopped", "failed"):
                self.ledger.set_state(status="running")

    def original_space(self) -> dict:
        return self.ledger.get("original_space")

    # Main loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.prepare()
        if self.ledger.state()["status"] == "finished":
            self.log("campaign already finished")
            return self.summary()
        self.ledger.set_state(status="running", coordinator={**who(), "since": now_iso()})
        self._start_workers()
        try:
            finished = self._run_sprints_through_outages()
            if finished:
                self._learn_thresholds()
                self.ledger.set_state(status="finished", pending_gate=None)
                self.log("campaign finished")
            else:
                self.ledger.set_state(status="stopped")
                self.log("campaign stopped; run the same command again to resume")
        except BaseException as err:
            status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
            try:
                self.ledger.set_state(status=status, error=None if status == "stopped" else redact(str(err)))
            except Exception as inner:
                if not is_storage_outage(inner):
                    raise
            raise
        finally:
            self._stop_workers()
        return self.summary()

    def _start_workers(self) -> None:
        if self.workers == 0:
            self._local = Worker(self.storage, self.spec.name, "local", log=self.log, runs_root=self.runs_root)
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
                with_retries(self.ledger.state, what="coordinator reconnect", log=self.log)
                self.log("storage: database reachable again; the coordinator carries on")

    def _stop_workers(self) -> None:
        if self.pool is None:
            return
        self.pool.stop()
        try:
            self._fail_trials_of_stopped_workers()
        except Exception as err:
            if not is_storage_outage(err):
                raise

    def _fail_trials_of_stopped_workers(self) -> None:
        state = self.ledger.state()
        record = self.ledger.sprint(state["sprint"])
        if record is not None:
            study = optuna.load_study(study_name=record["study"], storage=self.storage)
            for pid in self.pool.ended_pids():
                self.pool.fail_trials_of(study, pid, "worker stopped with the coordinator")

    def _run_sprints(self) -> bool:
        while not self.stopping():
            state = self.ledger.state()
            index = state["sprint"]
            record = self._sprint_record(index)
            study = open_study(self.spec, self.storage, record)
            recover_orphans(study, self.spec.trial_retries, self.pool.pids() if self.pool else set(), self.log)
            if record["status"] == "running" and not self._run_until_done(record, study):
                return False
            if record["status"] == "running":
                record = {**record, "status": "closed", "closed": now_iso()}
                self.ledger.put(f"sprint:{index}", record)
                self._report_sprint(record, study)
            if index == len(self.spec.sprints) - 1:
                return True
            if not self._gate(state, record, study):
                return False
        return False

    def _sprint_record(self, index: int) -> dict[str, Any]:
        record = self.ledger.sprint(index)
        if record is not None:
            return record
        if index == 0:
            space, fidelity = initial_space(self.spec), None
        else:
            decision = self._decision_for_sprint(index - 1)
            space, fidelity = decision["space"], decision["fidelity"]
        record = make_record(self.spec, self.ledger, self.storage, index, space, fidelity)
        study = open_study(self.spec, self.storage, record)
        record["seeded"] = seed_study(self.spec, self.storage, self.ledger, study, record)
        self.ledger.put(f"sprint:{index}", record)
        self.ledger.set_state(sprint=index)
        seeds = f", seeded with {len(record['seeded'])} best configurations" if record["seeded"] else ""
        self.log(
            f"sprint {index + 1}/{len(self.spec.sprints)} {record['name']}: {record['sampler']} sampler, "
            f"{record['pruner']} pruner, fidelity {record['level']} {record['fidelity']}, "
            f"tuning {', '.join(record['tuned'])}{seeds}"
        )
        return record

    def _decision_for_sprint(self, sprint_index: int) -> dict[str, Any]:
        """The last non-extend decision taken at a gate after `sprint_index`."""
        for decision in reversed(self.ledger.decisions()):
            proposal = self.ledger.proposal(decision["gate"])
            if proposal and proposal["sprint"] == sprint_index and decision["action"] != "extend":
                return decision
        raise RuntimeError(f"no decision found for the gate after sprint {sprint_index}")

    def _run_until_done(self, record: dict[str, Any], study: optuna.Study) -> bool:
        last_stale_check = 0.0
        while not self.stopping():
            # The record may change under us (pause, extend): always read it fresh.
            record = self.ledger.sprint(record["index"])
            trials = study.get_trials(deepcopy=False)
            self._report_progress(record, trials)
            if sprint_done(record, trials):
                return True
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
        return False

    def _gate(self, state: dict[str, Any], record: dict[str, Any], study: optuna.Study) -> bool:
        gate = state.get("gate", 0)
        proposal = self.ledger.proposal(gate)
        current = record["space"]
        if proposal is None:
            importances = param_importances(study, record["tuned"])
            agreement = fidelity_agreement(self.storage, self.ledger, record, study)
            proposal = make_proposal(
                self.spec, record["index"], study, current, self.original_space(), importances, agreement=agreement
            )
            proposal["sprint"] = record["index"]
            self.ledger.put(f"proposal:{gate}", proposal)
        self.ledger.set_state(pending_gate=gate, status="waiting")
        self.log(f"gate {gate} after {record['name']}: proposal for {proposal['next']}:")
        for name, row in proposal["params"].items():
            if row["current"] != row["proposed"] or row["edge"]:
                from engine.space import describe

                edge = f"  ! {row['note']}" if row["note"] else ""
                self.log(f"    {name}: {describe(row['current'])} -> {describe(row['proposed'])}{edge}")
        decision = self.policy.decide(
            self.ledger, gate, proposal, self.original_space(), current, dict(self.spec.fidelity.levels), self.stopping
        )
        if decision is None:
            return False
        self.log(
            f"gate {gate}: {decision['action']} by {decision['who']['user']} via {decision['source']}"
            + ("".join(f"\n    {line}" for line in decision.get("diff", [])) if decision.get("diff") else "")
        )
        if decision["action"] == "extend":
            extended = {
                **record,
                "status": "running",
                "n_trials": (record.get("n_trials") or 0) + decision["extend_trials"],
            }
            self.ledger.put(f"sprint:{record['index']}", extended)
            self.ledger.set_state(gate=gate + 1, pending_gate=None, status="running")
            return True
        self.ledger.set_state(gate=gate + 1, pending_gate=None, status="running")
        self._sprint_record(record["index"] + 1)
        return True

    # Reports ---------------------------------------------------------------------------------
    def _report_progress(self, record: dict[str, Any], trials: list) -> None:
        for trial in trials:
            key = (record["study"], trial.number)
            if trial.state in (TrialState.RUNNING, TrialState.WAITING) or key in self._reported:
                continue
            self._reported.add(key)
            if self._local is not None:
                continue  # the in-process worker already said it
            value = f"{trial.value:.6g}" if trial.value is not None else "-"
            extra = trial.user_attrs.get("fail_reason") or (
                f"at step {trial.last_step}" if trial.state == TrialState.PRUNED else ""
            )
            self.log(
                f"  [{record['name']}] trial {trial.number:>4} {trial.state.name:<8} {value}"
                + (f"  {extra}" if extra else "")
            )

    def _report_sprint(self, record: dict[str, Any], study: optuna.Study) -> None:
        counts = _state_counts(study.get_trials(deepcopy=False))
        best = _best(study)
        best_text = f", best {best.value:.6g} (trial {best.number})" if best else ""
        self.log(f"sprint {record['name']} closed: {counts}{best_text}")

    def _learn_thresholds(self) -> None:
        if self.spec.thresholds is None or not self.spec.thresholds.enabled:
            return
        from engine.thresholds import format_report, thresholds_for_trial

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
        result.update(study=study_name, trial=trial.number, source="policy", when=now_iso())
        self.ledger.put_thresholds(study_name, trial.number, result)
        self.log(format_report(result))

    def best_trial_with_artifact(self, artifact: str):
        """The best completed trial of the latest sprint that saved `artifact`."""
        for record in reversed(self.ledger.sprints()):
            study = optuna.load_study(study_name=record["study"], storage=self.storage)
            trials = [
                t
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if artifact in t.user_attrs.get("artifacts", {})
            ]
            if trials:
                reverse = self.spec.metric.direction == "maximize"
                return record["study"], sorted(trials, key=lambda t: t.value, reverse=reverse)[0]
        return None

    def summary(self) -> dict[str, Any]:
        from engine.status import campaign_status

        return campaign_status(self.storage, self.spec.name)


def _state_counts(trials) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _best(study: optuna.Study):
    try:
        return study.best_trial
    except ValueError:
        return None
