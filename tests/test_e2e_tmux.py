"""End to end in a real terminal: `hpo-tui run <quickstart> --policy wait` in a tmux pane.

Waits for the pending gate on screen, approves an edited range with keystrokes, then checks the
decision and the next sprint's search space in the storage, and quits (stopping the campaign).
Uses its own tmux server (-L), so it never touches anyone's sessions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from engine.store.ledger import Ledger
from engine.store.storage import open_storage
from engine.toml_compat import tomllib

ROOT = Path(__file__).resolve().parents[1]
HPO_TUI = Path(sys.executable).parent / "hpo-tui"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tui")]


class Pane:
    def __init__(self, tmp_path: Path, command: str, width: int = 100, height: int = 30):
        assert shutil.which("tmux"), "tmux is needed for the end-to-end test"
        self.socket = f"hpo-tui-e2e-{os.getpid()}"
        self.name = "e2e"
        self._tmux(
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            str(width),
            "-y",
            str(height),
            "-c",
            str(tmp_path),
            f"{command}; echo HPO-TUI-EXIT=$?; sleep 600",
        )

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str, pause: float = 0.3) -> None:
        for key in keys:  # one at a time: an escape followed at once by a letter reads as alt+letter
            self._tmux("send-keys", "-t", self.name, key)
            time.sleep(pause)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", text)
        time.sleep(0.3)

    def wait_for(self, text: str, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            assert time.monotonic() < deadline, f"{text!r} never appeared on screen; last screen:\n{screen}"
            time.sleep(0.25)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def small_quickstart(tmp_path: Path) -> Path:
    data = tomllib.loads((ROOT / "campaigns" / "quickstart.toml").read_text())
    data["workers"] = 1
    data["objective"]["settings"]["sleep_per_step"] = 0.0
    for sprint, trials in zip(data["sprints"], (10, 6, 6), strict=False):
        sprint["n_trials"] = trials
        sprint["seed_top"] = min(sprint.get("seed_top", 0), trials)  # seeds count within n_trials
    path = tmp_path / "quickstart.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def wait_until(condition, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_approve_an_edited_range_in_tmux(tmp_path):
    campaign = small_quickstart(tmp_path)
    command = (
        f"env TERM=xterm-256color HPO_TUI_KEYS={tmp_path / 'no-keys.toml'} {HPO_TUI} run {campaign.name} --policy wait"
    )
    pane = Pane(tmp_path, command)
    try:
        screen = pane.wait_for("GATE 0")  # the header says a gate waits
        assert "quickstart" in screen and "sprint 1/3 explore" in screen
        pane.keys("a")
        pane.wait_for("Gate 0: explore → refine")
        pane.keys("Enter")  # edit the first parameter, x1
        pane.wait_for("x1 LOW:HIGH")
        pane.keys("C-u")
        pane.type("0.9:0.1")  # refused as typed, with the engine's reason
        pane.wait_for("x1: low (0.9) must be below high (0.1)")
        pane.keys("C-u")
        pane.type("0.1:0.7")
        pane.keys("Enter")
        pane.wait_for("0.1:0.7*")
        pane.keys("y")
        pane.wait_for("record the decision")
        assert "x1: 0..1 -> 0.1..0.7" in pane.screen()  # the confirmation shows the diff
        pane.keys("y")

        url = f"journal://{tmp_path / 'runs' / 'quickstart' / 'journal.log'}"
        ledger = Ledger(open_storage(url), "quickstart")
        decision = wait_until(lambda: ledger.decision_record(0), "the decision in the storage")
        assert decision.action == "edit" and decision.source == "tui"
        assert decision.space["x1"]["low"] == 0.1 and decision.space["x1"]["high"] == 0.7
        refine = wait_until(lambda: ledger.sprint_record(1), "the next sprint")
        assert refine.name == "refine"
        assert (refine.space["x1"]["low"], refine.space["x1"]["high"]) == (0.1, 0.7)
        pane.wait_for("sprint 2/3 refine")

        pane.keys("q")
        pane.wait_for("running in this console")
        pane.keys("s")
        screen = pane.wait_for("HPO-TUI-EXIT=", timeout=120)
        assert "HPO-TUI-EXIT=0" in screen and "stopped" in screen
    finally:
        pane.close()
    assert ledger.campaign_state().status == "stopped"
