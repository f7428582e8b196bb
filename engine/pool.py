"""Local worker processes: started, watched, restarted; their dead trials failed with a reason."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
import psutil
from optuna.trial import TrialState

from engine.trials import fail_and_retry

MAX_RESTARTS_PER_MINUTE = 10


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
    def __init__(self, storage_url: str, campaign: str, *, count: int, gpus: list[str] | None, log_dir: Path,
                 retries: int, log: Callable = print, runs_root: Path | None = None, threads: int = 1):
        self.storage_url = storage_url
        self.campaign = campaign
        self.gpus = gpus or []
        self.count = len(self.gpus) if self.gpus else count
        self.log_dir = log_dir
        self.retries = retries
        self.log = log
        self.runs_root = runs_root
        self.threads = threads
        self.workers: list[WorkerProcess] = []
        self.host = socket.gethostname()

    def _spawn(self, index: int, gpu: str | None) -> subprocess.Popen:
        env = dict(os.environ)
        env["HPO_TUI_THREADS"] = str(self.threads)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(self.threads)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        device = "cpu"
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
            device = "cuda"
        cmd = [sys.executable, "-m", "engine.worker", "--storage", self.storage_url, "--campaign", self.campaign,
               "--index", str(index), "--device", device, "--parent-pid", str(os.getpid()),
               "--retries", str(self.retries)]
        if self.runs_root is not None:
            cmd += ["--runs-root", str(self.runs_root)]
        log_path = self.log_dir / f"worker-{index}.log"
        log_file = open(log_path, "ab")
        # Own process group: a Ctrl-C in the terminal reaches the coordinator, which stops workers in order.
        return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, cwd=os.getcwd())

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            gpu = self.gpus[index] if self.gpus else None
            self.workers.append(WorkerProcess(index, gpu, self._spawn(index, gpu), self.log_dir / f"worker-{index}.log"))
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
        retried = fail_and_retry(study, trial, f"worker process {pid} is gone (the engine was stopped or killed)", retries)
        events.append(f"trial {trial.number}: left running by a dead worker; failed" + ("; queued again" if retried else ""))
    for event in events:
        log(event)
    return events


def _is_worker(pid: int) -> bool:
    try:
        return "engine.worker" in " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
