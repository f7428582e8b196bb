"""kill -9 of a worker mid-trial, on PostgreSQL: the coordinator's own worker (seen at once by its
supervisor) and a worker on "another host" (seen by its missing heartbeat within stale_after_s).
Both trials end FAIL with their reason and kind, are retried with the same parameters, and the
campaign completes; every trial finished before the kill is untouched."""

import datetime as dt
import os
import signal
import subprocess

import psutil
import pytest
from fleet import HPO, Fleet, Truth, alive, campaign_data, check_sprint_integrity, child_env, wait_for, write_campaign
from optuna.trial import TrialState

pytestmark = [pytest.mark.xdist_group("postgres"), pytest.mark.timeout(240)]

STALE_AFTER_S = 3


def owned_by(trial, pid: int) -> bool:
    return f":{pid}:" in trial.user_attrs.get("worker", "")


def fresh_trial_of(truth: Truth, pid: int):
    """A trial (not a re-run) this worker started less than a second ago (of 1.5 s): a kill lands mid-trial."""
    for t in truth.trials(0):
        if (
            t.state == TrialState.RUNNING
            and owned_by(t, pid)
            and "failed_trial" not in t.system_attrs
            and (dt.datetime.now() - t.datetime_start).total_seconds() < 1
        ):
            return t
    return None


def only_child(proc) -> int:
    children = psutil.Process(proc.pid).children()
    return children[0].pid if len(children) == 1 else 0


def test_killed_workers_trials_fail_with_reason_and_are_retried(tmp_path, pg_url):
    name = "killworker"
    n = 8
    data = campaign_data(name, n_trials=(n,), sleep=0.25, epochs=6, trial_retries=1, stale_after_s=STALE_AFTER_S)
    path = write_campaign(tmp_path / "coord", data)
    fleet = Fleet(tmp_path)
    truth = Truth(pg_url, name)
    try:
        coordinator = fleet.start(
            ["run", str(path), "--headless", "--workers", "1", "--storage", pg_url],
            cwd=tmp_path / "coord",
            log="coordinator.log",
        )
        wait_for(truth.exists, 60, "the campaign", check=alive(coordinator, fleet))
        remote = fleet.start(["worker", name, "--storage", pg_url], cwd=tmp_path / "host1", log="host1.log")
        local_pid = wait_for(lambda: only_child(coordinator), 60, "the coordinator's worker")
        remote_pid = wait_for(lambda: only_child(remote), 60, "the remote worker")
        wait_for(
            lambda: fresh_trial_of(truth, local_pid), 90, "a trial of the local worker", check=alive(coordinator, fleet)
        )
        os.kill(local_pid, signal.SIGKILL)
        wait_for(
            lambda: fresh_trial_of(truth, remote_pid),
            90,
            "a trial of the remote worker",
            check=alive(coordinator, fleet),
        )
        before = {t.number: (t.state, t.params, t.value) for t in truth.trials(0) if t.state.is_finished()}
        os.kill(remote_pid, signal.SIGKILL)
        killed_at = dt.datetime.now()

        assert coordinator.wait(150) == 0, fleet.log_of(coordinator)[-3000:]
        assert remote.wait(60) == 0, fleet.log_of(remote)[-3000:]
    finally:
        fleet.kill_all()

    trials = {t.number: t for t in truth.trials(0)}
    # The trial each killed worker was running: the only one of its trials that did not complete.
    (local,) = [t for t in trials.values() if owned_by(t, local_pid) and t.state != TrialState.COMPLETE]
    (stale,) = [t for t in trials.values() if owned_by(t, remote_pid) and t.state != TrialState.COMPLETE]

    assert local.state == TrialState.FAIL and local.user_attrs["fail_kind"] == "worker_died"
    assert (
        local.user_attrs["fail_reason"]
        == "worker process died by SIGKILL (killed: out of memory, or by hand) (worker 0)"
    )
    assert stale.state == TrialState.FAIL and stale.user_attrs["fail_kind"] == "stale"
    owner = stale.user_attrs["worker"]
    assert stale.user_attrs["fail_reason"] == (
        f"stale: no heartbeat for over {STALE_AFTER_S} s from worker {owner} "
        "(killed, out of memory, or its host or network was lost)"
    )
    # Detected within the grace period (plus one check interval and a loaded machine's slack).
    delay = (stale.datetime_complete - killed_at).total_seconds()
    assert STALE_AFTER_S - 1.5 < delay < STALE_AFTER_S + 6, delay

    for failed in (local, stale):
        assert failed.user_attrs["retried"] is True
        retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == failed.number]
        assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
        assert retries[0].params == failed.params

    # Nothing finished before the kill changed; the sprint's budget was met exactly once.
    assert all((trials[k].state, trials[k].params, trials[k].value) == v for k, v in before.items())
    check_sprint_integrity(list(trials.values()), n, workers=2)
    assert truth.state().status == "finished"
    assert "worker 0: worker process died by SIGKILL (killed: out of memory, or by hand); restarted" in fleet.log_of(
        remote
    )
    assert f"trial {stale.number}: stale: no heartbeat" in fleet.log_of(coordinator)

    status = subprocess.run(
        [HPO, "status", name, "--storage", pg_url], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert "    failed: 1 stale, 1 worker died; 2 queued again" in status.stdout.splitlines(), status.stdout
