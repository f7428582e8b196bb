"""Local worker processes: started, watched, restarted; their dead trials failed with a reason."""

from __future__ import annotations

import datetime
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

from engine.trials import fail_and_retry

MAX_RESTARTS_PER_MINUTE = 10
ABANDONED_AFTER_S = 60.0


@dataclass
class WorkerProcess:
    index: int
    gpu: str | None
    process: subprocess.Popen
    log_path: Path
    restarts: list[float] = field(default_factory=list)


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
    ):
        """`tag` prefixes worker indices (`hpo-tui worker` uses host and pid) so that workers of
        different pools never share a sampler seed, hence never propose the same parameters."""
        self.storage_url = storage_url
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
        env["HPO_TUI_THREADS"] = str(self.threads)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(self.threads)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        env["HPO_TUI_STORAGE_URL"] = self.storage_url  # not in argv: `ps` would show a password to every user
        device = "cpu"
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
            device = "cuda"
        cmd = [
            sys.executable,
            "-m",
            "engine.worker",
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
        log_path = self.log_dir / f"worker-{index}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - the child process owns it
        # Own process group: a Ctrl-C in the terminal reaches the coordinator, which stops workers in order.
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
        """Fail and retry the trials of workers that died, restart them. Returns what happened."""
        events = []
        for worker in self.workers:
            code = worker.process.poll()
            if code is None:
                continue
            if campaign_ended and code == 0:
                continue
            reason = exit_reason(code)
            if study is not None:
                events += self.fail_trials_of(study, worker.process.pid, f"{reason} (worker {worker.index})")
            if campaign_ended:
                continue
            now = time.time()
            worker.restarts = [t for t in worker.restarts if now - t < 60] + [now]
            if len(worker.restarts) > MAX_RESTARTS_PER_MINUTE:
                raise RuntimeError(
                    f"worker {worker.index} died {len(worker.restarts)} times in a minute; last: {reason}. "
                    f"See {worker.log_path}"
                )
            events.append(f"worker {worker.index}: {reason}; restarted")
            worker.process = self._spawn(worker.index, worker.gpu)
        for event in events:
            self.log(event)
        return events

    def fail_trials_of(self, study: optuna.Study, pid: int, reason: str) -> list[str]:
        events = []
        prefix = f"{self.host}:{pid}:"
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if str(trial.user_attrs.get("worker", "")).startswith(prefix):
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
                worker.process.kill()
                worker.process.wait()

    def ended_pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]


def recover_orphans(study: optuna.Study, retries: int, live_pids: set[int], log: Callable = print) -> list[str]:
    """RUNNING trials of this host whose worker process is gone (a killed engine) fail and re-run."""
    host = socket.gethostname()
    events = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("worker", ""))
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
        return "engine.worker" in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def fail_stale_trials(study: optuna.Study, retries: int, log: Callable = print) -> list[str]:
    """RUNNING trials whose worker (on any host) sent no heartbeat for the grace period fail as stale.

    Only RDB storages heartbeat. Unlike optuna.storages.fail_stale_trials, the reason is recorded
    on the trial (user attrs fail_reason, fail_kind="stale", retried) before it is failed.
    """
    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's _CachedStorage
    if not getattr(storage, "heartbeat_interval", None) or not hasattr(storage, "_get_stale_trial_ids"):
        return []
    events = []
    grace = storage.grace_period or 2 * storage.heartbeat_interval
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        trial = study._storage.get_trial(trial_id)
        owner = trial.user_attrs.get("worker", "an unknown worker")
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
    for trial in study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if (
            "worker" not in trial.user_attrs
            and trial.datetime_start
            and (now - trial.datetime_start).total_seconds() > limit
        ):
            reason = f"stale: claimed but never started by its worker for over {limit:g} s (worker died or lost the database)"
            retried = fail_and_retry(study, trial, reason, retries, kind="stale")
            events.append(f"trial {trial.number}: {reason}; failed" + ("; queued again" if retried else ""))
    for event in events:
        log(event)
    return events
