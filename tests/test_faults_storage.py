"""PostgreSQL going away mid-sprint. Down for a few seconds: the coordinator and every worker wait
with backoff, say so, and carry on, losing nothing. Down for good: they stop with a clear message
(exit 3), leave no process behind, and every acknowledged result is there when the database returns."""

import time

import psutil
import pytest
from fleet import (
    Fleet,
    Truth,
    alive,
    campaign_data,
    check_sprint_integrity,
    child_env,
    wait_for,
    worker_lines,
    write_campaign,
)
from optuna.trial import TrialState

from engine.errors import EXIT_STORAGE_UNREACHABLE

pytestmark = [pytest.mark.xdist_group("postgres"), pytest.mark.timeout(240)]


def start_fleet(fleet, tmp_path, url, name, env=None):
    coordinator = fleet.start(
        ["run", str(tmp_path / "coord" / f"{name}.toml"), "--headless", "--workers", "1", "--storage", url],
        cwd=tmp_path / "coord",
        log="coordinator.log",
        env=env,
    )
    truth = Truth(url, name)
    wait_for(truth.exists, 60, "the campaign", check=alive(coordinator, fleet))
    remote = fleet.start(["worker", name, "--storage", url], cwd=tmp_path / "host1", log="host1.log", env=env)
    return coordinator, remote, truth


def test_a_short_outage_makes_everyone_wait_and_carry_on(tmp_path, private_postgres):
    pg, name, n_trials = private_postgres, "outage", (12, 6)
    url = pg.create_database("outage")
    write_campaign(tmp_path / "coord", campaign_data(name, n_trials=n_trials, sleep=0.1, epochs=5))
    fleet = Fleet(tmp_path)
    try:
        coordinator, remote, truth = start_fleet(fleet, tmp_path, url, name)
        wait_for(
            lambda: truth.finished(0) >= 3 and any(t.state == TrialState.RUNNING for t in truth.trials(0)),
            90,
            "sprint 1 under way",
            check=alive(coordinator, fleet),
        )
        before = truth.snapshot()
        pg.stop("fast")  # every connection is cut, new ones are refused
        time.sleep(4)
        assert coordinator.poll() is None and remote.poll() is None, "a process died with the database"
        pg.start()
        assert coordinator.wait(150) == 0, fleet.log_of(coordinator)[-3000:]
        assert remote.wait(60) == 0, fleet.log_of(remote)[-3000:]
    finally:
        fleet.kill_all()

    truth = Truth(url, name)
    assert truth.state().status == "finished"
    after = truth.snapshot()
    assert after["decisions"][: len(before["decisions"])] == before["decisions"] and len(after["decisions"]) == 1
    for key, outcome in before["trials"].items():
        if outcome[0] != "RUNNING":
            assert after["trials"][key] == outcome, key
    for index, n in enumerate(n_trials):
        check_sprint_integrity(truth.trials(index), n, workers=2)
        not_complete = [
            (t.number, t.state.name, t.user_attrs.get("fail_reason"))
            for t in truth.trials(index)
            if t.state != TrialState.COMPLETE
        ]
        assert not not_complete, (not_complete, fleet.log_of(coordinator)[-3000:])  # the outage failed no trial

    # Each of them said what it was doing.
    coordinator_log = fleet.log_of(coordinator)
    assert "storage: the coordinator lost the database" in coordinator_log
    assert "storage: database reachable again; the coordinator carries on" in coordinator_log
    for log in (
        tmp_path / "coord" / "runs" / name / "logs" / "worker-0.log",
        tmp_path / "host1" / "runs" / name / "logs" / "worker-0.log",
    ):
        text = log.read_text()
        assert (
            "failed ((psycopg.OperationalError)" in text
            and "waiting 0.5 s before retry 1 (gives up after 120 s)" in text
        ), text
        assert "storage: " in text and "127.0.0.1" in text and private_postgres.password not in text


def test_a_database_that_stays_down_stops_everyone_cleanly(tmp_path, private_postgres):
    pg, name, n_trials = private_postgres, "downforgood", (10,)
    url = pg.create_database("downforgood")
    write_campaign(tmp_path / "coord", campaign_data(name, n_trials=n_trials, sleep=0.1, epochs=5))
    impatient = child_env(HPO_TUI_STORAGE_PATIENCE_S="4")
    fleet = Fleet(tmp_path)
    try:
        coordinator, remote, truth = start_fleet(fleet, tmp_path, url, name, env=impatient)
        wait_for(lambda: truth.finished(0) >= 3, 90, "sprint 1 under way", check=alive(coordinator, fleet))
        workers = [c.pid for p in (coordinator, remote) for c in psutil.Process(p.pid).children()]
        assert len(workers) == 2
        before = {t.number: (t.state.name, t.params, t.value) for t in truth.trials(0) if t.state.is_finished()}
        pg.stop("fast")
        assert coordinator.wait(90) == EXIT_STORAGE_UNREACHABLE, fleet.log_of(coordinator)[-3000:]
        assert remote.wait(90) == EXIT_STORAGE_UNREACHABLE, fleet.log_of(remote)[-3000:]
        wait_for(
            lambda: (
                not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in workers)
            ),
            30,
            "no worker left behind",
        )

        gave_up = "the database stayed unreachable; gave up after"
        assert f"hpo-tui run: coordinator reconnect: {gave_up}" in fleet.log_of(coordinator)
        assert f"hpo-tui worker: watch the campaign: {gave_up}" in fleet.log_of(remote)
        for text in (fleet.log_of(coordinator), fleet.log_of(remote)):
            assert "Traceback" not in text and pg.password not in text

        # The database returns: every result acknowledged before the outage is there; the same
        # commands resume and finish the campaign.
        pg.start()
        truth = Truth(url, name)
        trials = {t.number: (t.state.name, t.params, t.value) for t in truth.trials(0)}
        for number, outcome in before.items():
            assert trials[number] == outcome, number
        logs = [tmp_path / d / "runs" / name / "logs" / "worker-0.log" for d in ("coord", "host1")]
        acknowledged = [line for log in logs for line in worker_lines(log.read_text())]
        assert len(acknowledged) >= len(before)
        for line in acknowledged:  # a worker printed it after the database confirmed it
            assert trials[int(line["number"])][0] == line["state"], line
        coordinator, remote, truth = start_fleet(fleet, tmp_path, url, name)
        assert coordinator.wait(150) == 0, fleet.log_of(coordinator)[-3000:]
        assert remote.wait(60) == 0
    finally:
        fleet.kill_all()
    assert truth.state().status == "finished"
    check_sprint_integrity(truth.trials(0), n_trials[0], workers=2)
