"""`hpo-tui run` on a terminal: the console comes up before its own coordinator has created the campaign,
and says it is waiting for it instead of showing an error."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from enginekit import branin_campaign, write_toml

import tui.app
from engine.cli import make_coordinator
from tui.app import HpoConsole
from tui.cli import parser
from tui.engine_thread import EngineThread
from tui.header import CampaignHeader
from tui.source import StorageSource

pytestmark = pytest.mark.xdist_group("tui")


class RecordingConsole(HpoConsole):
    CSS_PATH = str(Path(tui.app.__file__).with_name(HpoConsole.CSS_PATH))  # Textual resolves it next to this file

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.errors: list[str] = []

    def notify(self, message, *, title="", severity="information", **kwargs):
        if severity == "error":
            self.errors.append(f"{title}: {message}")
        super().notify(message, title=title, severity=severity, **kwargs)


async def test_the_console_waits_quietly_for_its_own_coordinator(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = branin_campaign("late", sprints=[{"name": "only", "sampler": "random", "fidelity": "low", "n_trials": 3}])
    campaign = write_toml(tmp_path / "c.toml", data)
    url = f"journal://{tmp_path / 'late.log'}"
    args = parser().parse_args(["run", str(campaign), "--storage", url, "--workers", "0", "--policy", "auto"])
    release = threading.Event()

    def slow_start(log):  # the coordinator takes its time before it creates the campaign
        assert release.wait(30)
        return make_coordinator(args, log=log)

    engine = EngineThread(slow_start)
    app = RecordingConsole(StorageSource(url, "late"), engine=engine, fps=10)
    engine.start()
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            header = app.screen.query_one(CampaignHeader)
            deadline = time.monotonic() + 60  # generous: a loaded CI machine
            while "waiting for the coordinator" not in str(header.render()) and time.monotonic() < deadline:
                await pilot.pause(0.05)
            assert "waiting for the coordinator to create campaign late" in str(header.render())
            await pilot.pause(0.5)  # several reads found no campaign: still no error shown
            assert app.errors == [] and app.snapshot is None
            release.set()
            deadline = time.monotonic() + 60
            while app.snapshot is None and time.monotonic() < deadline:
                await pilot.pause(0.05)
            assert app.snapshot is not None and app.snapshot.campaign == "late"
            await pilot.pause(0.2)
            assert "waiting for the coordinator" not in str(header.render()) and app.errors == []
    finally:
        release.set()
        assert engine.stop(timeout=60)
