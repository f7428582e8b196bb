"""Issue 14: one coordinator per campaign, on every storage. A second `run` is refused (exit 4) and
says who holds the campaign; after `kill -9` of the holder the same command on the same host resumes
at once; from another host `--takeover` is refused while the lease is live and works once it has
expired; a coordinator that lost its lease stops without touching the ledger, and its workers leave;
a worker started before its coordinator waits for the campaign, then joins. Nothing is lost or
duplicated. The lease expiry is shortened with HPO_TUI_LEASE_S; HPO_TUI_HOST plays another host."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil
import pytest
from enginekit import hpo_tui
from fleet import Fleet, Truth, alive, campaign_data, check_sprint_integrity, child_env, wait_for, write_campaign
from optuna.trial import TrialState

from engine.errors import EXIT_LEASE_HELD, EXIT_USAGE, LeaseHeld
from engine.store.lease import Lease, read_lease
from engine.store.storage import open_storage

pytestmark = pytest.mark.timeout(180)

LEASE_S = "3"
ELSEWHERE = {"HPO_TUI_HOST": "elsewhere.example"}


def lease_env(**extra: str) -> dict[str, str]:
    return child_env(**{"HPO_TUI_LEASE_S": LEASE_S, **extra})


def storage_url(kind: str, tmp_path, request) -> str:
    if kind == "journal":
        return f"journal://{tmp_path / 'shared' / 'journal.log'}"
    if kind == "sqlite":
        (tmp_path / "shared").mkdir(exist_ok=True)
        return f"sqlite:///{tmp_path / 'shared' / 'hpo.db'}"
    return request.getfixturevalue("pg_url")


def run(*args: str, cwd, env: dict[str, str]):
    cwd.mkdir(parents=True, exist_ok=True)
    return hpo_tui(*args, cwd=cwd, env=env)


def running_trial(truth: Truth) -> bool:
    return truth.exists() and any(t.state == TrialState.RUNNING for t in truth.trials(0))


def holds_lease(url: str, name: str, generation: int) -> bool:
    record = read_lease(open_storage(url, heartbeat=False), name)
    return record is not None and record.generation >= generation and record.holder is not None


@pytest.mark.parametrize(
    "kind", ["journal", "sqlite", pytest.param("postgres", marks=pytest.mark.xdist_group("postgres"))]
)
def test_second_coordinator_is_refused_and_kill_9_resumes_at_once(tmp_path, request, kind):
    name = f"lease{kind}"
    n = 8
    url = storage_url(kind, tmp_path, request)
    path = write_campaign(tmp_path / "host", campaign_data(name, n_trials=(n,), sleep=0.5, epochs=2))
    command = ["run", str(path), "--headless", "--workers", "1", "--storage", url]
    fleet = Fleet(tmp_path)
    truth = Truth(url, name)
    try:
        # A long lease: the resume below cannot be explained by its expiry, only by the dead pid.
        first = fleet.start(command, cwd=tmp_path / "host", log="first.log", env=lease_env(HPO_TUI_LEASE_S="600"))
        wait_for(lambda: holds_lease(url, name, 1), 60, "the first lease", check=alive(first, fleet))

        second = run(*command, cwd=tmp_path / "host", env=lease_env())
        assert second.returncode == EXIT_LEASE_HELD, second.stdout + second.stderr
        refusal = second.stderr.strip()
        assert "\n" not in refusal and "Traceback" not in refusal
        assert f"campaign {name} is run by " in refusal
        assert f"@{socket.gethostname()} pid {first.pid} since " in refusal
        assert first.poll() is None, "the first coordinator must have kept running"
        assert second.stdout.strip() == "", "the refused coordinator wrote progress"

        wait_for(lambda: running_trial(truth), 60, "a trial under way", check=alive(first, fleet))
        os.kill(first.pid, signal.SIGKILL)  # the coordinator only: its worker is orphaned, finishes, leaves
        first.wait()
        assert truth.state().status == "running" and truth.finished(0) < n

        started = time.monotonic()
        third = run(*command, cwd=tmp_path / "host", env=lease_env(HPO_TUI_LEASE_S="600"))
        assert third.returncode == 0, third.stdout + third.stderr
    finally:
        fleet.kill_all()
    assert time.monotonic() - started < 120
    assert f"pid {first.pid} since" in third.stdout and "whose process is gone from this host" in third.stdout
    assert f"campaign {name}: resuming" in third.stdout and "campaign finished" in third.stdout
    check_sprint_integrity(truth.trials(0), n, workers=2)
    state = truth.state()
    assert state.status == "finished" and state.lease == 2


def test_takeover_from_another_host_waits_for_expiry_then_finishes_the_campaign(tmp_path):
    name = "takeover"
    n = 10
    url = f"journal://{tmp_path / 'shared' / 'journal.log'}"
    data = campaign_data(name, n_trials=(n,), sleep=0.5, epochs=2)
    path = write_campaign(tmp_path / "host1", data)
    write_campaign(tmp_path / "host2", data)
    command = ["run", f"{name}.toml", "--headless", "--workers", "1", "--storage", url]
    fleet = Fleet(tmp_path)
    truth = Truth(url, name)
    try:
        first = fleet.start(command, cwd=path.parent, log="first.log", env=lease_env())
        wait_for(lambda: holds_lease(url, name, 1), 60, "the first lease", check=alive(first, fleet))

        live = run(*command, "--takeover", cwd=tmp_path / "host2", env=lease_env(**ELSEWHERE))
        assert live.returncode == EXIT_LEASE_HELD, live.stdout + live.stderr
        assert f"pid {first.pid}" in live.stderr and "its lease is live until " in live.stderr
        assert "--takeover works once it has expired" in live.stderr
        assert first.poll() is None

        wait_for(lambda: running_trial(truth), 60, "a trial under way", check=alive(first, fleet))
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        expires = read_lease(truth.storage, name).expires_at
        wait_for(lambda: time.time() > expires + 0.5, 30, "the lease to expire")

        unsure = run(*command, cwd=tmp_path / "host2", env=lease_env(**ELSEWHERE))  # it cannot see that pid
        assert unsure.returncode == EXIT_LEASE_HELD, unsure.stdout + unsure.stderr
        assert "its lease expired at" in unsure.stderr and "run the same command with --takeover" in unsure.stderr

        taken = run(*command, "--takeover", cwd=tmp_path / "host2", env=lease_env(**ELSEWHERE))
        assert taken.returncode == 0, taken.stdout + taken.stderr
    finally:
        fleet.kill_all()
    assert "the previous one was taken over from " in taken.stdout and f"pid {first.pid} since" in taken.stdout
    assert "campaign finished" in taken.stdout
    check_sprint_integrity(truth.trials(0), n, workers=2)
    assert truth.state().lease == 2 and truth.state().status == "finished"


def test_a_coordinator_that_lost_its_lease_stops_without_touching_the_ledger(tmp_path):
    """The holder hangs (SIGSTOP) past its lease; another host takes over; the old one wakes up."""
    name = "lost"
    n = 8
    url = f"journal://{tmp_path / 'shared' / 'journal.log'}"
    data = campaign_data(name, n_trials=(n,), sleep=0.4, epochs=2)
    write_campaign(tmp_path / "host1", data)
    write_campaign(tmp_path / "host2", data)
    command = ["run", f"{name}.toml", "--headless", "--workers", "1", "--storage", url]
    fleet = Fleet(tmp_path)
    truth = Truth(url, name)
    try:
        first = fleet.start(command, cwd=tmp_path / "host1", log="first.log", env=lease_env())
        wait_for(lambda: running_trial(truth), 60, "a trial under way", check=alive(first, fleet))
        hung = [first.pid, *(p.pid for p in psutil.Process(first.pid).children())]
        for pid in hung:
            os.kill(pid, signal.SIGSTOP)
        expires = read_lease(truth.storage, name).expires_at
        wait_for(lambda: time.time() > expires + 0.5, 30, "the lease to expire")

        second = fleet.start(
            [*command, "--takeover"], cwd=tmp_path / "host2", log="second.log", env=lease_env(**ELSEWHERE)
        )
        wait_for(lambda: holds_lease(url, name, 2), 60, "the takeover", check=alive(second, fleet))
        for pid in hung:
            os.kill(pid, signal.SIGCONT)

        assert first.wait(60) == EXIT_LEASE_HELD, fleet.log_of(first)
        assert second.wait(120) == 0, fleet.log_of(second)
    finally:
        fleet.kill_all()
    old = fleet.log_of(first)
    assert "was taken over by another coordinator; stopping without touching its records" in old
    assert "elsewhere.example" in old and "this coordinator stopped without touching its records" in old
    assert "campaign stopped" not in old and "campaign finished" not in old and "Traceback" not in old
    assert "campaign finished" in fleet.log_of(second)
    assert "restarted" not in old  # its worker left (lease lost, or stopped with it), no restart storm
    assert not [pid for pid in hung[1:] if psutil.pid_exists(pid)]
    state = truth.state()
    assert state.status == "finished" and state.lease == 2
    assert all(record.status == "closed" for record in truth.ledger.sprint_records())
    check_sprint_integrity(truth.trials(0), n, workers=2)


@pytest.mark.parametrize("kind", ["journal", pytest.param("postgres", marks=pytest.mark.xdist_group("postgres"))])
def test_a_worker_started_before_its_coordinator_waits_then_joins(tmp_path, request, kind):
    name = "early"
    n = 6
    url = storage_url(kind, tmp_path, request)
    path = write_campaign(tmp_path / "coord", campaign_data(name, n_trials=(n,), sleep=0.3, epochs=2))
    fleet = Fleet(tmp_path)
    truth = Truth(url, name)
    try:
        early = fleet.start(
            ["worker", name, "--storage", url],
            cwd=tmp_path / "host1",
            log="early.log",
            env=lease_env(HPO_TUI_STORAGE_PATIENCE_S="60"),
        )
        wait_for(
            lambda: "yet; waiting up to 60 s" in fleet.log_of(early),
            60,
            "the worker to wait",
            check=alive(early, fleet),
        )
        coordinator = fleet.start(
            ["run", str(path), "--headless", "--workers", "1", "--storage", url],
            cwd=tmp_path / "coord",
            log="coordinator.log",
            env=lease_env(),
        )
        assert coordinator.wait(120) == 0, fleet.log_of(coordinator)
        assert early.wait(60) == 0, fleet.log_of(early)
    finally:
        fleet.kill_all()
    said = fleet.log_of(early)
    scheme = url.split("://", 1)[0]
    assert said.count(f"no campaign 'early' in {scheme}://") == 1 and "Traceback" not in said
    trials = truth.trials(0)
    check_sprint_integrity(trials, n, workers=2)
    assert any(t.user_attrs.get("worker", "").endswith(f".{early.pid}.0") for t in trials), "the early worker ran none"


def test_a_worker_with_no_campaign_to_join_names_the_storage_it_looked_in(tmp_path):
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    out = run("worker", "ghost", "--storage", url, cwd=tmp_path, env=child_env(HPO_TUI_STORAGE_PATIENCE_S="1"))
    assert out.returncode == EXIT_USAGE, out.stdout + out.stderr
    assert f"no campaign 'ghost' in {url} (waited 1 s for its coordinator to create it)" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_lease_is_one_study_name_per_generation(tmp_path, monkeypatch):
    """The primitive itself, on SQLite: exactly one holder; a released lease is taken at once by anyone."""
    monkeypatch.setenv("HPO_TUI_LEASE_S", "30")
    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}", heartbeat=False)
    first = Lease.acquire(storage, "prim")
    with pytest.raises(LeaseHeld, match=r"campaign prim is run by .* pid \d+ since .*lease is live until"):
        Lease.acquire(storage, "prim", takeover=True)
    first.release()
    monkeypatch.setenv("HPO_TUI_HOST", "elsewhere.example")
    second = Lease.acquire(storage, "prim")
    assert (first.generation, second.generation) == (1, 2)
    assert second.previous.startswith("released by ")
    assert not second.lost and not first.check() and first.lost  # the old holder sees it lost the campaign
    names = sorted(s.study_name for s in storage.get_all_studies())
    assert names == ["prim/lease:1", "prim/lease:2"]
    second.release()


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_coordinators_started_at_the_same_instant_one_runs(tmp_path, request, kind):
    """A new campaign, two `run`s at once: the study-name primitive lets exactly one through."""
    name = f"race{kind}"
    n = 4
    url = storage_url(kind, tmp_path, request)
    path = write_campaign(tmp_path / "host", campaign_data(name, n_trials=(n,), sleep=0.1, epochs=2))
    command = ["run", str(path), "--headless", "--workers", "1", "--storage", url]
    fleet = Fleet(tmp_path)
    try:
        both = [fleet.start(command, cwd=tmp_path / "host", log=f"c{i}.log", env=lease_env()) for i in range(2)]
        codes = sorted(proc.wait(120) for proc in both)
    finally:
        fleet.kill_all()
    assert codes == [0, EXIT_LEASE_HELD], [fleet.log_of(p) for p in both]
    loser = next(p for p in both if p.returncode == EXIT_LEASE_HELD)
    assert f"campaign {name} is run by " in fleet.log_of(loser)
    check_sprint_integrity(Truth(url, name).trials(0), n, workers=1)
