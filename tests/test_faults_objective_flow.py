"""Issue 14: an objective's SystemExit / KeyboardInterrupt fails its trial with the reason and nothing
else (the worker or the coordinator carries on, no dead worker, no retry); the user's real Ctrl-C
still stops the coordinator; a worker that keeps dying ends the campaign in one line with exit 9."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
import pytest
from enginekit import hpo_tui, write_toml
from fleet import Fleet, Truth, alive, child_env, wait_for

from engine.errors import EXIT_INTERRUPTED, EXIT_WORKERS_FAILING, WorkersFailing
from engine.execution.pool import WorkerPool

pytestmark = pytest.mark.timeout(120)


def one_sprint(name: str, objective: str, n_trials: int, *, workers: int, **settings) -> dict:
    return {
        "name": name,
        "workers": max(1, workers),  # the file says at least 1; --workers 0 runs trials in the coordinator
        "trial_retries": 2,
        "objective": {"path": f"objectives_faults:{objective}", "settings": settings},
        "metric": {"name": "loss", "direction": "minimize"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "fidelity": {"levels": {"only": {"epochs": 1}}},
        "sprints": [{"name": "s", "sampler": "random", "fidelity": "only", "n_trials": n_trials}],
    }


@pytest.mark.parametrize("workers", [0, 1])
def test_system_exit_and_keyboard_interrupt_fail_only_their_trial(tmp_path, workers):
    name = f"flow{workers}"
    data = one_sprint(name, "control_flow", 4, workers=workers, exit_trials=[1], interrupt_trials=[2])
    campaign = write_toml(tmp_path / "c.toml", data)
    out = hpo_tui("run", str(campaign), "--headless", "--workers", str(workers), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "campaign finished" in out.stdout

    trials = {t.number: t for t in Truth(f"journal://{tmp_path / 'runs' / name / 'journal.log'}", name).trials(0)}
    assert len(trials) == 4, sorted(trials)  # no retry was queued
    assert trials[1].state == optuna.trial.TrialState.FAIL
    assert trials[1].user_attrs["fail_reason"] == "objective raised SystemExit(3)"
    assert trials[2].state == optuna.trial.TrialState.FAIL
    assert trials[2].user_attrs["fail_reason"] == "objective raised KeyboardInterrupt"
    for number in (1, 2):
        assert trials[number].user_attrs["fail_kind"] == "raised"
        assert not trials[number].user_attrs.get("retried")
    assert {trials[n].state for n in (0, 3)} == {optuna.trial.TrialState.COMPLETE}
    assert "worker process exited" not in out.stdout and "restarted" not in out.stdout
    if workers:
        log = (tmp_path / "runs" / name / "logs" / "worker-0.log").read_text()
        assert "trial 1: objective raised SystemExit(3); the trial failed, this process carries on" in log
        assert "trial 2: objective raised KeyboardInterrupt" in log
        assert log.count("joined campaign") == 1  # one worker process did it all


def test_a_real_ctrl_c_still_stops_the_coordinator_mid_trial(tmp_path):
    """--workers 0: the second SIGINT raises KeyboardInterrupt inside the running objective; it is the
    user's, so the coordinator stops (exit 130) instead of failing the trial and going on."""
    name = "ctrlc"
    campaign = write_toml(tmp_path / "c.toml", one_sprint(name, "control_flow", 50, workers=0, sleep=30))
    fleet = Fleet(tmp_path)
    truth = Truth(f"journal://{tmp_path / 'runs' / name / 'journal.log'}", name)
    try:
        proc = fleet.start(["run", str(campaign), "--headless", "--workers", "0"], cwd=tmp_path, log="c.log")
        wait_for(lambda: truth.exists() and truth.trials(0), 60, "the first trial", check=alive(proc, fleet))
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # the first asks for a stop after the running trial ...
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # ... the second stops at once
        assert proc.wait(20) == EXIT_INTERRUPTED, fleet.log_of(proc)
    finally:
        fleet.kill_all()
    log = fleet.log_of(proc)
    assert "objective raised KeyboardInterrupt" not in log
    assert "Traceback" not in log
    assert truth.state().status == "stopped"
    assert len(truth.trials(0)) == 1  # no second trial was started after the Ctrl-C


class DyingPool(WorkerPool):
    """Real processes that die at once: what a worker whose objective kills it (os._exit) looks like."""

    def _spawn(self, index, gpu):
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"], env=child_env())


def test_a_worker_that_keeps_dying_ends_in_one_line_with_its_exit_code(tmp_path):
    lines = []
    pool = DyingPool("journal:///unused", "dying", count=1, gpus=None, log_dir=tmp_path, retries=1, log=lines.append)
    pool.start()
    with pytest.raises(WorkersFailing) as raised:
        for _ in range(200):
            for worker in pool.workers:
                worker.process.wait(10)
            pool.supervise(None, campaign_ended=False)
    assert raised.value.exit_code == EXIT_WORKERS_FAILING == 9
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("worker 0 died 11 times in a minute (last: worker process exited with code 7)")
    assert str(tmp_path / "worker-0.log") in message
    assert sum("restarted" in line for line in lines) == 10
    pool.stop()


def test_sigterm_is_deferred_while_a_storage_call_runs():
    """A Stop thrown into Optuna's journal lock code would release another process's lock."""
    from engine.execution.worker import _inside_storage

    assert not _inside_storage(sys._getframe())
    namespace = {"__name__": "optuna.storages.journal._file"}
    exec("import sys\ndef probe(check):\n    return check(sys._getframe())", namespace)
    assert namespace["probe"](_inside_storage)
