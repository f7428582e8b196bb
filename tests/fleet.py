"""Helpers for multi-process tests: campaign files, `hpo-tui` processes (coordinator, workers on
"other hosts"), and reading the truth back from storage.

Every process is started in its own session and killed by its own process-group id at teardown.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import tomli_w
from optuna.trial import TrialState

from engine.store.ledger import Ledger
from engine.store.records import CampaignState
from engine.store.storage import open_storage

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
HPO = str(Path(sys.executable).with_name("hpo-tui"))

optuna.logging.set_verbosity(optuna.logging.WARNING)


def campaign_data(name: str, *, n_trials=(9, 9), sleep=0.1, epochs=3, policy="auto", **top: Any) -> dict[str, Any]:
    """Branin in two or more random/tpe sprints at one fidelity; `sleep` x `epochs` seconds a trial."""
    sprints = []
    for i, n in enumerate(n_trials):
        sprints.append(
            # no out-of-box probes (engine.gates.reopen): these tests check every trial is inside the approved space
            {
                "name": f"s{i}",
                "sampler": "random" if i == 0 else "tpe",
                "fidelity": "low",
                "n_trials": n,
                "explore_share": 0,
            }
        )
    data: dict[str, Any] = {
        "name": name,
        "policy": policy,
        "workers": 1,
        "objective": {
            "path": "engine.workloads.functions:branin",
            "settings": {"noise_seed": 0, "sleep_per_step": sleep},
        },
        "metric": {"name": "regret", "direction": "minimize"},
        "space": {
            "x1": {"type": "float", "low": -5.0, "high": 10.0},
            "x2": {"type": "float", "low": 0.0, "high": 15.0},
        },
        "fidelity": {"levels": {"low": {"train_fraction": 0.5, "epochs": epochs}}},
        "gate": {"top_k": 3, "margin": 0.2},
        "sprints": sprints,
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def write_campaign(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{data['name']}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra)
    return env


class Fleet:
    """Processes of one test; each in its own session so that it can be killed with its workers."""

    def __init__(self, base: Path):
        self.base = base
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(
        self, args: list[str], *, cwd: Path, log: str, env: dict[str, str] | None = None, via: list[str] | None = None
    ) -> subprocess.Popen:
        cwd.mkdir(parents=True, exist_ok=True)
        log_path = self.base / log
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [*(via or []), HPO, *args],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or child_env(),
                start_new_session=True,
            )
        self.procs.append((proc, log_path))
        return proc

    def log_of(self, proc: subprocess.Popen) -> str:
        for p, path in self.procs:
            if p is proc:
                return path.read_text(errors="replace")
        raise KeyError(proc.pid)

    def kill_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the group we created: the process and its workers
                except ProcessLookupError:
                    pass
                proc.wait()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.2, check: Callable | None = None):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if check is not None:
            check()
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def alive(proc: subprocess.Popen, fleet: Fleet) -> Callable[[], None]:
    def check():
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}:\n{fleet.log_of(proc)[-3000:]}")

    return check


class Truth:
    """The campaign as stored: ledger records and the trials of each sprint."""

    def __init__(self, url: str, campaign: str):
        self.storage = open_storage(url, heartbeat=False)
        self.campaign = campaign

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.storage, self.campaign)

    def exists(self) -> bool:
        try:
            self.ledger
            return True
        except Exception:
            return False

    def state(self) -> CampaignState:
        return self.ledger.campaign_state()

    def trials(self, index: int) -> list[optuna.trial.FrozenTrial]:
        record = self.ledger.sprint_record(index)
        if record is None:
            return []
        return optuna.load_study(study_name=record.study, storage=self.storage).get_trials(deepcopy=False)

    def counts(self, index: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials(index):
            out[t.state.name] = out.get(t.state.name, 0) + 1
        return out

    def finished(self, index: int) -> int:
        return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) for t in self.trials(index))

    def snapshot(self) -> dict[str, Any]:
        """Everything a fault must not lose: decisions, and every finished trial's outcome."""
        ledger = self.ledger
        out: dict[str, Any] = {"decisions": ledger.decision_records(), "proposals": {}, "trials": {}}
        for record in ledger.sprint_records():
            out["proposals"][record.index] = ledger.proposal_record(record.index)
            for t in self.trials(record.index):
                out["trials"][(record.index, t.number)] = (t.state.name, t.params, t.value)
        return out


WORKER_LINE = re.compile(r"\[worker (?P<worker>[^\]]+)\] (?P<sprint>\S+) trial (?P<number>\d+): (?P<state>[A-Z]+)")


def worker_lines(text: str) -> list[dict[str, str]]:
    """The `[worker I] SPRINT trial N: STATE value` lines a worker process prints for each trial it ran."""
    return [m.groupdict() for m in WORKER_LINE.finditer(text)]


def check_sprint_integrity(trials: list[optuna.trial.FrozenTrial], n_trials: int, workers: int) -> None:
    """No trial lost (numbers 0..N-1, none left RUNNING/WAITING), none run twice (distinct params,
    each trial claimed by one worker), and the budget kept (up to workers-1 trials of overshoot
    when several workers start the last trials at once)."""
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials))), numbers
    states = {t.state for t in trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}, states
    counted = [t for t in trials if not (t.state == TrialState.FAIL and t.user_attrs.get("retried"))]
    assert n_trials <= len(counted) <= n_trials + workers - 1, (len(counted), n_trials)
    params = [
        tuple(sorted(t.params.items()))
        for t in trials
        if "failed_trial" not in t.system_attrs and not t.user_attrs.get("retried")
    ]
    assert len(params) == len(set(params)), "the same parameters were run twice"
    # Every trial names its worker, except one asked just as the database went down and failed later
    # (claimed but never started), which must say why.
    assert all(
        t.user_attrs.get("worker") or (t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")) for t in trials
    ), "a trial with no worker and no failure reason"
