"""Issue 14: a time limit the objective cannot defeat. An objective that swallows the TrialTimeout, or
blocks SIGALRM, is killed past timeout_s plus the grace (its worker's process group, SIGKILL), its
trial fails as `timeout` and is not retried, a fresh worker takes over and the campaign goes on. One
that catches the timeout and returns late fails as `timeout` too. Worker logs rotate."""

from __future__ import annotations

import re

import pytest
from enginekit import hpo_tui, write_toml
from fleet import Truth
from optuna.trial import TrialState
from test_faults_objective_flow import one_sprint

pytestmark = pytest.mark.timeout(120)

KILLED = re.compile(r"exceeded timeout_s=1 \(killed after \d+ s\)")


def test_an_objective_that_defeats_sigalrm_is_killed_and_the_campaign_goes_on(tmp_path):
    name = "stubborn"
    data = one_sprint(name, "stubborn", 5, workers=1, swallow_trials=[1], block_trials=[2], late_trials=[3], late_s=1.6)
    data["objective"]["timeout_s"] = 1
    campaign = write_toml(tmp_path / "c.toml", data)
    out = hpo_tui("run", str(campaign), "--headless", "--workers", "1", cwd=tmp_path, env={"HPO_TUI_KILL_GRACE_S": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "campaign finished" in out.stdout and "Traceback" not in out.stdout + out.stderr

    trials = {t.number: t for t in Truth(f"journal://{tmp_path / 'runs' / name / 'journal.log'}", name).trials(0)}
    assert sorted(trials) == [0, 1, 2, 3, 4], "a timed-out trial was queued again"
    for number in (1, 2):  # killed by the pool
        trial = trials[number]
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["fail_kind"] == "timeout"
        assert KILLED.fullmatch(trial.user_attrs["fail_reason"]), trial.user_attrs["fail_reason"]
        assert trial.user_attrs["retried"] is False
        assert f"trial {number} {trial.user_attrs['fail_reason']}; worker replaced" in out.stdout
    late = trials[3]  # caught SIGALRM's TrialTimeout and returned a value after the limit
    assert late.state == TrialState.FAIL and late.user_attrs["fail_kind"] == "timeout"
    assert re.fullmatch(r"exceeded timeout_s=1 \(returned after \d+ s\)", late.user_attrs["fail_reason"])
    assert {trials[0].state, trials[4].state} == {TrialState.COMPLETE}
    # Killed workers were replaced, not counted as dead workers.
    assert "worker process died" not in out.stdout and "restarted" not in out.stdout
    assert len({trials[n].user_attrs["worker"] for n in trials}) == 3  # the first worker, then two replacements


def test_worker_logs_rotate_at_their_size_limit(tmp_path):
    name = "chatty"
    limit = 1_000_000
    data = one_sprint(name, "chatty", 3, workers=1, print_mb=2)  # 6 MiB of prints in all
    campaign = write_toml(tmp_path / "c.toml", data)
    out = hpo_tui(
        "run",
        str(campaign),
        "--headless",
        "--workers",
        "1",
        cwd=tmp_path,
        env={"HPO_TUI_WORKER_LOG_BYTES": str(limit)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    logs = tmp_path / "runs" / name / "logs"
    files = sorted(p.name for p in logs.iterdir() if p.name.startswith("worker-0.log"))
    assert files == ["worker-0.log", "worker-0.log.1", "worker-0.log.2"], files
    for path in logs.glob("worker-0.log*"):
        assert path.stat().st_size <= limit, (path, path.stat().st_size)
    # The last lines are there: the objective's child process and the worker's own report.
    tail = (logs / "worker-0.log").read_text()
    assert "child process output" in tail and "trial 2: COMPLETE" in tail
