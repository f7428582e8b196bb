"""kill -9 of the coordinator mid-sprint, on PostgreSQL, with a worker on "another host" that keeps
going meanwhile; the same command run again resumes. The gate decision taken before the kill is
kept as it was (not asked again), no finished trial is lost or re-run, and the campaign completes."""

import os
import re
import signal

import psutil
import pytest
from fleet import Fleet, Truth, alive, campaign_data, check_sprint_integrity, wait_for, write_campaign
from optuna.trial import TrialState

pytestmark = [pytest.mark.xdist_group("postgres"), pytest.mark.timeout(240)]


def test_coordinator_killed_mid_sprint_resumes_with_history_intact(tmp_path, pg_url):
    name = "killcoord"
    n_trials = (6, 14)
    path = write_campaign(
        tmp_path / "coord", campaign_data(name, n_trials=n_trials, sleep=0.15, epochs=4, stale_after_s=4)
    )
    command = ["run", str(path), "--headless", "--workers", "2", "--storage", pg_url]
    fleet = Fleet(tmp_path)
    truth = Truth(pg_url, name)
    try:
        first = fleet.start(command, cwd=tmp_path / "coord", log="coordinator-1.log")
        wait_for(truth.exists, 60, "the campaign", check=alive(first, fleet))
        remote = fleet.start(["worker", name, "--storage", pg_url], cwd=tmp_path / "host1", log="host1.log")
        # Mid-sprint 2: the gate after sprint 1 is decided (auto policy) and a few trials are done.
        wait_for(
            lambda: truth.ledger.decision_record(0) is not None and truth.finished(1) >= 3,
            120,
            "sprint 2 under way",
            check=alive(first, fleet),
        )
        pool = [p.pid for p in psutil.Process(first.pid).children()]
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        before = truth.snapshot()
        assert truth.state().sprint == 1 and truth.state().status == "running"  # died without a word
        assert truth.finished(1) < n_trials[1], "the sprint ended before the kill; slow the trials down"
        running_at_kill = [t.number for t in truth.trials(1) if t.state == TrialState.RUNNING]

        # The orphaned local workers notice and leave after their trial; the remote one carries on.
        wait_for(
            lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pool),
            60,
            "the orphaned workers to leave",
        )
        assert remote.poll() is None

        second = fleet.start(command, cwd=tmp_path / "coord", log="coordinator-2.log")
        assert second.wait(150) == 0, fleet.log_of(second)[-3000:]
        assert remote.wait(60) == 0, fleet.log_of(remote)[-3000:]
    finally:
        fleet.kill_all()

    after = truth.snapshot()
    log = fleet.log_of(second)
    assert f"campaign {name}: resuming at sprint 2/2 (running)" in log
    # no proposal, no decision again (a headless line is "DATE TIME  message"; the closing status table lists it)
    assert not re.search(r"^\S+ \S+  gate 0", log, flags=re.M), log
    assert after["decisions"] == before["decisions"] and len(after["decisions"]) == 1
    assert after["proposals"] == before["proposals"]
    # Every trial finished before the kill is still there, unchanged.
    for key, outcome in before["trials"].items():
        if outcome[0] in ("COMPLETE", "PRUNED", "FAIL"):
            assert after["trials"][key] == outcome, key
    # A trial running at the kill was finished by its (orphaned or remote) worker, or failed and retried.
    trials = {t.number: t for t in truth.trials(1)}
    for number in running_at_kill:
        t = trials[number]
        assert t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and t.user_attrs["retried"]), number
    for index, n in enumerate(n_trials):
        check_sprint_integrity(truth.trials(index), n, workers=3)
    assert truth.state().status == "finished"
