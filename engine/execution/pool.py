"""Local worker processes: started, watched, restarted; their dead trials failed with a reason.

The hard time limit: a worker writes the start of its running objective to its trial file
(engine.execution.worker); past `objective.timeout_s` plus KILL_GRACE_S the pool kills the worker's whole
process group (SIGKILL: an objective cannot catch or block it), fails the trial as `timeout`
("exceeded timeout_s=3 (killed after 8 s)"), not retried, and starts a fresh worker in its place.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import psutil
from optuna.trial import TrialState

from engine.errors import WorkersFailing
from engine.execution.trials import fail_and_retry, timeout_reason
from engine.execution.worker import EXIT_LEASE_LOST
from engine.store.optuna_internals import heartbeat_storage, stale_trial_ids, study_id, study_storage
from engine.store.schema import (
    ENV_KILL_GRACE_S,
    ENV_STORAGE_URL,
    ENV_THREADS,
    FAIL_KIND_ATTR,
    FAIL_REASON_ATTR,
    RETRIED_ATTR,
    WORKER_ATTR,
)
from engine.store.storage import open_storage, with_retries

MAX_RESTARTS_PER_MINUTE = 10
ABANDONED_AFTER_S = 60.0
KILL_GRACE_S = 5.0  # past timeout_s plus this, a worker's process group is killed (HPO_TUI_KILL_GRACE_S overrides)


def kill_grace_s() -> float:
    try:
        return max(0.0, float(os.environ.get(ENV_KILL_GRACE_S, KILL_GRACE_S)))
    except ValueError:
        return KILL_GRACE_S


@dataclass(frozen=True)
class RunningObjective:
    """What a worker's trial file says: the trial whose objective runs, since when, its limit."""

    trial_id: int
    number: int
    started: float  # time.time()
    timeout_s: float | None

    @classmethod
    def read(cls, path: Path) -> RunningObjective | None:
        try:
            data = json.loads(path.read_text())
            return cls(int(data["trial_id"]), int(data["number"]), float(data["started"]), data.get("timeout_s"))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # no trial running, or the file is being replaced


@dataclass
class WorkerProcess:
    index: int
    gpu: str | None
    process: subprocess.Popen
    log_path: Path
    restarts: list[float] = field(default_factory=list)
    left: bool = False  # left for good (its coordinator lost the lease): not restarted

    @property
    def trial_file(self) -> Path:
        return self.log_path.with_suffix(".trial")


def exit_reason(code: int) -> str:
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        hint = " (killed: out of memory, or by hand)" if sig == signal.SIGKILL else ""
        return f"worker process died by {name}{hint}"
    return f"worker process exited with code {code}"


class WorkerPool:
    def __init__(
        self,
        storage_url: str,
        campaign: str,
        *,
        count: int,
        gpus: list[str] | None,
        log_dir: Path,
        retries: int,
        log: Callable = print,
        runs_root: Path | None = None,
        threads: int = 1,
        tag: str = "",
        lease_generation: int | None = None,
        storage=None,
    ):
        """`tag` prefixes worker indices (`hpo-tui worker` uses host and pid) so that workers of
        different pools never share a sampler seed, hence never propose the same parameters.
        `lease_generation`: the coordinator's lease its workers belong to (None: any coordinator).
        `storage`: an open storage to fail timed-out trials in (else opened from the URL when needed)."""
        self.storage_url = storage_url
        self.lease_generation = lease_generation
        self._storage = storage
        self.campaign = campaign
        self.gpus = gpus or []
        self.count = len(self.gpus) if self.gpus else count
        self.log_dir = log_dir
        self.retries = retries
        self.log = log
        self.runs_root = runs_root
        self.threads = threads
        self.tag = tag
        self.workers: list[WorkerProcess] = []
        self.host = socket.gethostname()

    def _spawn(self, index: int, gpu: str | None) -> subprocess.Popen:
        env = dict(os.environ)
        env[ENV_THREADS] = str(self.threads)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(self.threads)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        env[ENV_STORAGE_URL] = self.storage_url  # not in argv: `ps` would show a password to every user
        device = "cpu"
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
            device = "cuda"
        cmd = [
            sys.executable,
            "-m",
            "engine.execution.worker",
            "--campaign",
            self.campaign,
            "--index",
            f"{self.tag}{index}",
            "--device",
            device,
            "--parent-pid",
            str(os.getpid()),
            "--retries",
            str(self.retries),
        ]
        if self.runs_root is not None:
            cmd += ["--runs-root", str(self.runs_root)]
        if self.lease_generation is not None:
            cmd += ["--lease-generation", str(self.lease_generation)]
        log_path = self.log_dir / f"worker-{index}.log"
        log_path.with_suffix(".trial").unlink(missing_ok=True)
        cmd += ["--trial-file", str(log_path.with_suffix(".trial")), "--log-file", str(log_path)]
        # Own process group: a Ctrl-C in the terminal reaches the coordinator, which stops workers in order.
        # The log is also the child's stdout until it sets up its rotating log (startup errors land there).
        with open(log_path, "ab") as log_file:
            return subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                cwd=os.getcwd(),
            )

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            gpu = self.gpus[index] if self.gpus else None
            self.workers.append(
                WorkerProcess(index, gpu, self._spawn(index, gpu), self.log_dir / f"worker-{index}.log")
            )
        where = f"GPUs {','.join(self.gpus)}" if self.gpus else "CPU"
        self.log(f"started {self.count} worker process(es) on {where}; logs in {self.log_dir}")

    def pids(self) -> set[int]:
        return {w.process.pid for w in self.workers if w.process.poll() is None}

    def supervise(self, study: optuna.Study | None, campaign_ended: bool) -> list[str]:
        """Kill workers past their trial's hard time limit; fail and retry the trials of workers that
        died, restart them. Returns what happened."""
        events = self.enforce_time_limits()
        for worker in self.workers:
            code = worker.process.poll()
            if code is None or worker.left:
                continue
            if campaign_ended and code == 0:
                continue
            if code == EXIT_LEASE_LOST:  # its coordinator lost the campaign to another: it must not come back
                worker.left = True
                events.append(f"worker {worker.index}: left, the campaign is run by another coordinator now")
                continue
            reason = exit_reason(code)
            if study is not None:
                events += self.fail_trials_of(study, worker.process.pid, f"{reason} (worker {worker.index})")
            if campaign_ended:
                continue
            now = time.time()
            worker.restarts = [t for t in worker.restarts if now - t < 60] + [now]
            if len(worker.restarts) > MAX_RESTARTS_PER_MINUTE:
                for event in events:
                    self.log(event)
                raise WorkersFailing(
                    f"worker {worker.index} died {len(worker.restarts)} times in a minute (last: {reason}); "
                    f"see {worker.log_path}"
                )
            events.append(f"worker {worker.index}: {reason}; restarted")
            worker.process = self._spawn(worker.index, worker.gpu)
        for event in events:
            self.log(event)
        return events

    def enforce_time_limits(self) -> list[str]:
        """SIGKILL the process group of a worker whose objective ran past timeout_s + the grace; its
        trial fails as `timeout` (not retried) and a fresh worker takes its place."""
        events = []
        grace = kill_grace_s()
        for worker in self.workers:
            if worker.left or worker.process.poll() is not None:
                continue
            running = RunningObjective.read(worker.trial_file)
            if running is None or not running.timeout_s:
                continue
            elapsed = time.time() - running.started
            if elapsed <= running.timeout_s + grace:
                continue
            try:
                os.killpg(worker.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            worker.process.wait()
            reason = timeout_reason(running.timeout_s, elapsed, "killed")
            self._fail_timed_out(running.trial_id, reason)
            worker.trial_file.unlink(missing_ok=True)
            events.append(f"worker {worker.index}: trial {running.number} {reason}; worker replaced")
            worker.process = self._spawn(worker.index, worker.gpu)
        return events

    def _fail_timed_out(self, trial_id: int, reason: str) -> None:
        if self._storage is None:
            self._storage = open_storage(self.storage_url, heartbeat=False)
        storage = self._storage

        def fail() -> None:
            if storage.get_trial(trial_id).state != TrialState.RUNNING:
                return  # finished (or failed as stale) meanwhile
            storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
            storage.set_trial_user_attr(trial_id, FAIL_KIND_ATTR, "timeout")
            storage.set_trial_user_attr(trial_id, RETRIED_ATTR, False)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)

        try:
            with_retries(fail, what=f"fail timed-out trial id {trial_id}", log=self.log)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # finished by someone else meanwhile

    def fail_trials_of(self, study: optuna.Study, pid: int, reason: str) -> list[str]:
        events = []
        prefix = f"{self.host}:{pid}:"
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if str(trial.user_attrs.get(WORKER_ATTR, "")).startswith(prefix):
                retried = fail_and_retry(study, trial, reason, self.retries)
                events.append(f"trial {trial.number}: failed ({reason})" + ("; queued again" if retried else ""))
        return events

    def stop(self, timeout_s: float = 10.0) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout_s
        for worker in self.workers:
            remaining = max(0.1, deadline - time.time())
            try:
                worker.process.wait(remaining)
            except subprocess.TimeoutExpired:
                # An objective that swallows SIGTERM's exception: the whole group, as for a timeout.
                try:
                    os.killpg(worker.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                worker.process.wait()

    def fail_timed_out_of_stopped(self) -> list[str]:
        """After stop(): a trial that was already past its time limit fails as `timeout`, not retried
        (it would hang again)."""
        events = []
        for worker in self.workers:
            running = RunningObjective.read(worker.trial_file)
            if running is None or not running.timeout_s:
                continue
            elapsed = time.time() - running.started
            if elapsed > running.timeout_s:
                reason = timeout_reason(running.timeout_s, elapsed, "stopped")
                self._fail_timed_out(running.trial_id, reason)
                events.append(f"trial {running.number}: {reason}")
            worker.trial_file.unlink(missing_ok=True)
        return events

    def ended_pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]


def recover_orphans(study: optuna.Study, retries: int, live_pids: set[int], log: Callable = print) -> list[str]:
    """RUNNING trials of this host whose worker process is gone (a killed engine) fail and re-run."""
    host = socket.gethostname()
    events = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        parts = owner.split(":")
        if len(parts) < 3 or parts[0] != host:
            continue
        pid = int(parts[1])
        if pid in live_pids or (pid != os.getpid() and psutil.pid_exists(pid) and _is_worker(pid)):
            continue
        retried = fail_and_retry(
            study, trial, f"worker process {pid} is gone (the engine was stopped or killed)", retries
        )
        events.append(
            f"trial {trial.number}: left running by a dead worker; failed" + ("; queued again" if retried else "")
        )
    for event in events:
        log(event)
    return events


def _is_worker(pid: int) -> bool:
    try:
        return "engine.execution.worker" in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def fail_stale_trials(study: optuna.Study, retries: int, log: Callable = print) -> list[str]:
    """RUNNING trials whose worker (on any host) sent no heartbeat for the grace period fail as stale.

    Only RDB storages heartbeat. Unlike optuna.storages.fail_stale_trials, the reason is recorded
    on the trial (user attrs fail_reason, fail_kind="stale", retried) before it is failed.
    """
    backend = heartbeat_storage(study)
    if backend is None:
        return []
    storage = study_storage(study)
    events = []
    grace = backend.grace_period or 2 * backend.heartbeat_interval
    for trial_id in stale_trial_ids(backend, study):
        trial = storage.get_trial(trial_id)
        owner = trial.user_attrs.get(WORKER_ATTR, "an unknown worker")
        reason = (
            f"stale: no heartbeat for over {grace} s from worker {owner} "
            "(killed, out of memory, or its host or network was lost)"
        )
        retried = fail_and_retry(study, trial, reason, retries, kind="stale")
        events.append(f"trial {trial.number}: {reason}; failed" + ("; queued again" if retried else ""))
    # A worker that died (or lost the database) between ask() and its first heartbeat left a RUNNING
    # trial that no heartbeat will ever make stale: give it a generous while (clocks of hosts differ).
    limit = max(ABANDONED_AFTER_S, 3 * grace)
    now = datetime.datetime.now()
    for trial in storage.get_all_trials(study_id(study), deepcopy=False, states=(TrialState.RUNNING,)):
        if (
            WORKER_ATTR not in trial.user_attrs
            and trial.datetime_start
            and (now - trial.datetime_start).total_seconds() > limit
        ):
            reason = f"stale: claimed but never started by its worker for over {limit:g} s (worker died or lost the database)"
            retried = fail_and_retry(study, trial, reason, retries, kind="stale")
            events.append(f"trial {trial.number}: {reason}; failed" + ("; queued again" if retried else ""))
    for event in events:
        log(event)
    return events
