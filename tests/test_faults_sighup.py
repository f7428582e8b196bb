"""SSH drops: `hpo-tui run --headless` in a tmux pane gets SIGHUP and then loses its terminal
altogether (the tmux session is killed, as when the SSH session holding it goes). The engine goes on,
finishes the campaign, and `hpo-tui status` shows everything that happened meanwhile."""

import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import psutil
import pytest
from fleet import HPO, Truth, campaign_data, check_sprint_integrity, child_env, wait_for, write_campaign
from optuna.trial import TrialState

pytestmark = pytest.mark.timeout(180)

TMUX = shutil.which("tmux") or "/usr/bin/tmux"


@pytest.fixture
def tmux():
    """A tmux server of the test's own (its own socket), killed afterwards."""
    socket_name = f"hpo-test-{uuid.uuid4().hex[:8]}"

    def run(*args: str) -> str:
        proc = subprocess.run(
            [TMUX, "-L", socket_name, *args], capture_output=True, text=True, timeout=30, env=child_env()
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    yield run
    subprocess.run([TMUX, "-L", socket_name, "kill-server"], capture_output=True, timeout=30)


def test_headless_run_in_tmux_survives_sighup_and_the_terminal_going_away(tmp_path, tmux):
    name, n_trials = "hangup", (10, 8)
    path = write_campaign(tmp_path, campaign_data(name, n_trials=n_trials, sleep=0.1, epochs=3))
    url = f"journal://{tmp_path / 'runs' / name / 'journal.log'}"
    tmux(
        "new-session",
        "-d",
        "-s",
        "work",
        "-x",
        "150",
        "-y",
        "40",
        "-c",
        str(tmp_path),
        f"exec {HPO} run {path} --headless --workers 1",
    )
    pid = int(tmux("list-panes", "-t", "work", "-F", "#{pane_pid}").strip())
    engine = psutil.Process(pid)
    wait_for(lambda: "--headless" in engine.cmdline() and engine.cmdline()[0] != "bash", 30, "the shell to exec")
    truth = Truth(url, name)
    wait_for(
        lambda: truth.exists() and truth.finished(0) >= 2,
        90,
        "the first trials",
        check=lambda: engine.is_running() or pytest.fail("the engine died before the test began"),
    )

    os.kill(pid, signal.SIGHUP)  # the hang-up alone
    time.sleep(1)
    assert engine.is_running() and engine.status() != psutil.STATUS_ZOMBIE
    progress_at_hup = truth.finished(0)
    tmux("kill-session", "-t", "work")  # the terminal itself goes away: SIGHUP again, then EIO on every write
    time.sleep(1)
    assert engine.is_running() and engine.status() != psutil.STATUS_ZOMBIE, "the engine died with its terminal"

    wait_for(lambda: truth.state().status == "finished", 120, "the campaign to finish headless")
    wait_for(lambda: not psutil.pid_exists(pid) or engine.status() == psutil.STATUS_ZOMBIE, 30, "the engine to exit")
    assert truth.finished(1) > 0 and truth.finished(0) > progress_at_hup
    for index, n in enumerate(n_trials):
        check_sprint_integrity(truth.trials(index), n, workers=1)
        assert all(t.state == TrialState.COMPLETE for t in truth.trials(index))

    # What an operator sees when they come back (attach shows the same storage).
    status = subprocess.run(
        [HPO, "status", name, "--storage", url, "--json"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        cwd=tmp_path,
    )
    summary = json.loads(status.stdout)
    assert summary["status"] == "finished" and [s["status"] for s in summary["sprints"]] == ["closed", "closed"]
    assert [s["counts"] for s in summary["sprints"]] == [{"COMPLETE": len(truth.trials(i))} for i in range(2)]
    assert len(summary["decisions"]) == 1 and summary["decisions"][0]["source"] == "policy:auto"
