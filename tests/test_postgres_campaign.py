"""A campaign on a real PostgreSQL: one coordinator and three `hpo-tui worker` commands (each in
its own directory, as on another host), a gate decided from a third shell in the middle.
No trial is lost or run twice, and every worker runs trials inside the approved space."""

import json
import subprocess

import pytest
from fleet import (
    HPO,
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

pytestmark = [pytest.mark.xdist_group("postgres"), pytest.mark.timeout(240)]

APPROVED = {"x1": (0.0, 6.0), "x2": (1.0, 9.0)}


def hpo(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([HPO, *args], cwd=cwd, capture_output=True, text=True, env=child_env(), timeout=60)


def test_coordinator_and_three_remote_workers_share_sprints_and_the_gate(tmp_path, pg_url):
    name = "pgfleet"
    n_trials = (16, 16)
    path = write_campaign(
        tmp_path / "coord", campaign_data(name, n_trials=n_trials, sleep=0.1, epochs=3, policy="wait")
    )
    fleet = Fleet(tmp_path)
    truth = Truth(pg_url, name)
    try:
        # The coordinator runs trials in its own process too (--workers 0); pause it until the workers are up.
        coordinator = fleet.start(
            ["run", str(path), "--headless", "--workers", "0", "--storage", pg_url],
            cwd=tmp_path / "coord",
            log="coordinator.log",
        )
        wait_for(truth.exists, 60, "the campaign in PostgreSQL", check=alive(coordinator, fleet))
        assert hpo("pause", name, "--storage", pg_url, cwd=tmp_path).returncode == 0
        workers = [
            fleet.start(["worker", name, "--storage", pg_url], cwd=tmp_path / f"host{i}", log=f"host{i}.log")
            for i in range(3)
        ]
        child_logs = [tmp_path / f"host{i}" / "runs" / name / "logs" / "worker-0.log" for i in range(3)]
        wait_for(
            lambda: all(p.exists() and "joined campaign" in p.read_text() for p in child_logs),
            90,
            "three remote workers to join",
            check=alive(coordinator, fleet),
        )
        assert hpo("resume", name, "--storage", pg_url, cwd=tmp_path).returncode == 0

        # The gate: the coordinator waits (policy wait); a third shell edits and approves.
        wait_for(
            lambda: truth.ledger.pending_gate() == 0, 120, "the gate after sprint 1", check=alive(coordinator, fleet)
        )
        before_gate = truth.trials(0)
        edits = [f"--set={p}={lo}:{hi}" for p, (lo, hi) in APPROVED.items()]
        approve = hpo("approve", name, "--storage", pg_url, *edits, "--note", "fleet test", cwd=tmp_path)
        assert approve.returncode == 0, approve.stderr
        assert "gate 0: edit recorded" in approve.stdout

        assert coordinator.wait(150) == 0, fleet.log_of(coordinator)[-3000:]
        for worker in workers:
            assert worker.wait(60) == 0, fleet.log_of(worker)[-3000:]
    finally:
        fleet.kill_all()

    assert truth.state().status == "finished"
    logs = {"coordinator": fleet.log_of(coordinator)} | {f"host{i}": p.read_text() for i, p in enumerate(child_logs)}
    for i, worker in enumerate(workers):
        assert f"campaign {name} ended; workers left" in fleet.log_of(worker)

    # No trial lost or duplicated, in either sprint; the first sprint's trials were all done before the gate.
    for index, n in enumerate(n_trials):
        check_sprint_integrity(truth.trials(index), n, workers=4)
        assert all(t.state == TrialState.COMPLETE for t in truth.trials(index))
    assert [(t.number, t.state, t.value) for t in before_gate] == [
        (t.number, t.state, t.value) for t in truth.trials(0)
    ]

    # Each trial was run by exactly one worker, and every run trial is in storage: the remote workers'
    # log lines, plus the trials the coordinator ran in its own process (its log reports every trial
    # of the campaign, so those are told apart by the worker attribute: host:pid of the coordinator).
    for index in range(2):
        ran = [
            (line["number"], who)
            for who, text in logs.items()
            if who != "coordinator"
            for line in worker_lines(text)
            if line["sprint"] == f"s{index}"
        ]
        ran += [
            (str(t.number), "coordinator")
            for t in truth.trials(index)
            if t.user_attrs.get("worker", "").rsplit(":", 1)[0].endswith(f":{coordinator.pid}")
        ]
        numbers = sorted(int(n) for n, _ in ran)
        assert numbers == sorted(t.number for t in truth.trials(index)), (index, ran)

    # The decision is in the ledger once, and every worker (3 remote + the coordinator's) ran
    # trials in the post-gate sprint, all inside the approved space.
    decisions = truth.ledger.decision_records()
    assert len(decisions) == 1 and decisions[0].action == "edit" and decisions[0].source == "cli"
    assert decisions[0].note == "fleet test"
    assert truth.ledger.sprint_record(1).space["x1"] == {"type": "float", "low": 0.0, "high": 6.0, "log": False}
    after = truth.trials(1)
    owners = {t.user_attrs["worker"].rsplit(":", 1)[0] for t in after}  # host:pid of the worker process
    assert len(owners) == 4, owners
    for t in after:
        for p, (lo, hi) in APPROVED.items():
            assert lo <= t.params[p] <= hi, (t.number, t.params)

    status = json.loads(hpo("status", name, "--storage", pg_url, "--json", cwd=tmp_path).stdout)
    assert [s["counts"] for s in status["sprints"]] == [{"COMPLETE": len(truth.trials(i))} for i in range(2)]
