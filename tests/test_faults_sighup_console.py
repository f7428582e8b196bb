"""SSH drops with the console: `hpo-tui run` (no --headless: the console, engine in-process) in a real
tmux pane loses its terminal — the tmux session is killed, as when the SSH session holding it goes,
or the process gets SIGHUP first. The campaign goes on headless in the same process: trials keep
finishing, the gate that the `wait` policy leaves to the operator waits for `hpo-tui approve`, the
campaign completes, and `hpo-tui attach` in a new pane shows everything meanwhile. Each run has its
own tmux server (-L), so it never touches anyone's sessions.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest
from fleet import HPO, Truth, campaign_data, check_sprint_integrity, child_env, wait_for, write_campaign
from optuna.trial import TrialState

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow, pytest.mark.xdist_group("tui")]

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
N_TRIALS = (16, 6)


class Tmux:
    """A tmux server of the test's own (its own socket)."""

    def __init__(self) -> None:
        self.socket = f"hpo-hup-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=30, env=child_env()
        )
        assert proc.returncode == 0 or not check, proc.stderr
        return proc.stdout

    def screen(self, session: str) -> str:
        return self("capture-pane", "-p", "-t", session)

    def wait_screen(self, session: str, *texts: str | tuple[str, ...], timeout: float = 120.0) -> str:
        """Wait until every text is on screen; a tuple means any one of its texts."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(session)
            if all(any(t in screen for t in (text if isinstance(text, tuple) else (text,))) for text in texts):
                return screen
            assert time.monotonic() < deadline, f"{texts!r} never all on screen; last screen:\n{screen}"
            time.sleep(0.25)

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def tmux():
    server = Tmux()
    yield server
    server.close()


@pytest.fixture
def reaper():
    """Processes of the test that outlive their terminal by design: stopped (by pid) at the end."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        try:
            children = proc.children(recursive=True)  # its workers, in sessions of their own
            proc.terminate()  # the engine stops its workers in order
            proc.wait(30)
        except psutil.NoSuchProcess:
            continue
        except psutil.TimeoutExpired:
            for p in [proc, *children]:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass


def counts_text(counts: dict) -> tuple[str, str]:
    """The header's trial counts, in its wide or its compact form (the pane may come up narrow)."""
    c, p, f = counts.get("COMPLETE", 0), counts.get("PRUNED", 0), counts.get("FAIL", 0)
    return f"done {c} pruned {p} failed {f}", f"ok {c} pr {p} fail {f}"


def console_command(tmp_path: Path, *args: str) -> str:
    # exec: the pane's process is the console itself (the session leader the kernel sends SIGHUP to)
    return f"exec env TERM=xterm-256color HPO_TUI_KEYS={tmp_path / 'no-keys.toml'} {HPO} {' '.join(map(str, args))}"


@pytest.mark.parametrize("how", ["terminal-killed", "sighup-then-terminal-killed"])
def test_console_survives_its_terminal_and_attach_shows_the_progress(tmp_path, tmux, reaper, how):
    name = "hup-console"
    path = write_campaign(tmp_path, campaign_data(name, n_trials=N_TRIALS, sleep=0.15, epochs=3, policy="wait"))
    url = f"journal://{tmp_path / 'runs' / name / 'journal.log'}"
    log = tmp_path / "runs" / name / "headless.log"
    tmux(
        "new-session",
        "-d",
        "-s",
        "work",
        "-x",
        "160",
        "-y",
        "40",
        "-c",
        str(tmp_path),
        console_command(tmp_path, "run", path.name, "--workers", "1"),
    )
    pid = int(tmux("list-panes", "-t", "work", "-F", "#{pane_pid}").strip())
    console = psutil.Process(pid)
    reaper.append(console)
    wait_for(lambda: any(a.endswith("hpo-tui") for a in console.cmdline()), 30, "the shell to exec the console")
    truth = Truth(url, name)
    tmux.wait_screen("work", name, "sprint 1/2")  # the console is up, in its terminal
    wait_for(
        lambda: truth.exists() and truth.finished(0) >= 2,
        90,
        "the first trials",
        check=lambda: console.is_running() or pytest.fail("the console died before the test began"),
    )
    assert truth.state().coordinator["pid"] == str(pid)  # the engine runs inside the console

    if how == "sighup-then-terminal-killed":
        os.kill(pid, signal.SIGHUP)  # the hang-up alone: the console leaves its screen, the engine stays
        wait_for(lambda: log.exists() and "the terminal went away" in log.read_text(), 30, "the hand-over line")
        assert console.is_running() and console.status() != psutil.STATUS_ZOMBIE
    progress_at_hup = truth.finished(0)
    tmux("kill-session", "-t", "work")  # the terminal itself goes away: SIGHUP, then EIO on every write
    time.sleep(1)
    assert console.is_running() and console.status() != psutil.STATUS_ZOMBIE, "the engine died with its terminal"
    wait_for(lambda: log.exists() and "the terminal went away" in log.read_text(), 30, "the hand-over line")

    # Headless now: the sprint goes on, and its gate waits for the operator who left (policy `wait`).
    wait_for(
        lambda: truth.state().pending_gate == 0 and truth.state().status == "waiting",
        120,
        "the gate to wait for a decision",
        check=lambda: console.is_running() or pytest.fail(log.read_text()),
    )
    assert truth.finished(0) > progress_at_hup, "no trial finished after the hang-up"
    check_sprint_integrity(truth.trials(0), N_TRIALS[0], workers=1)
    assert truth.ledger.decision_record(0) is None
    counts = truth.counts(0)

    # Coming back: the console attached to the storage shows what happened meanwhile.
    tmux(
        "new-session",
        "-d",
        "-s",
        "look",
        "-x",
        "160",
        "-y",
        "40",
        "-c",
        str(tmp_path),
        console_command(tmp_path, "attach", name),
    )
    done = counts_text(counts)
    tmux.wait_screen("look", name, "waiting", "sprint 1/2", done, "GATE 0")

    approve = subprocess.run(
        [HPO, "approve", name, "--storage", url],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        cwd=tmp_path,
    )
    assert approve.returncode == 0, approve.stderr
    wait_for(
        lambda: truth.state().status == "finished",
        120,
        "the campaign to finish headless",
        check=lambda: console.is_running() or truth.state().status == "finished" or pytest.fail(log.read_text()),
    )
    wait_for(
        lambda: not psutil.pid_exists(pid) or console.status() == psutil.STATUS_ZOMBIE,
        60,
        "the console's process to exit once the campaign ended",
    )

    decision = truth.ledger.decision_record(0)
    assert decision.source == "cli" and decision.action == "approve"
    for index, n in enumerate(N_TRIALS):
        check_sprint_integrity(truth.trials(index), n, workers=1)
        assert all(t.state == TrialState.COMPLETE for t in truth.trials(index))
    final = truth.counts(1)
    tmux.wait_screen("look", "finished", "sprint 2/2", counts_text(final))
    tmux("send-keys", "-t", "look", "q")  # attach only closes the console

    text = log.read_text()
    assert "the terminal went away (SIGHUP)" in text and "the engine ended (finished)" in text, text
    # The engine's own lines follow the hand-over there, as a headless engine would print them.
    assert "gate 0: waiting for a decision" in text and "gate 0: approve by" in text, text
    assert text.index("the terminal went away") < text.index("sprint 2/2"), text
    assert "\x1b[" not in text, "the console's screen codes leaked into the log"
