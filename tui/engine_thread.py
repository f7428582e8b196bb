"""The engine inside the console (`hpo-tui run` on a terminal): a Coordinator in a background thread.

The coordinator never sees a widget. It writes to the storage, which the console reads like any
other client; its log lines go to runs/<name>/console.log and the last one to the header.
Leaving the console can hand the campaign over to a detached headless engine, which resumes from
the storage.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from engine.store.schema import ENV_STORAGE_URL

if TYPE_CHECKING:  # the coordinator (and torch with it) loads in the engine thread, not at console import
    from engine.campaign import Coordinator


class EngineThread:
    """Runs `make_coordinator(log)` then its `run()` in a daemon thread."""

    def __init__(self, make_coordinator: Callable[[Callable[[str], None]], Any], log_path: Path | None = None):
        self._make = make_coordinator
        self.log_path = log_path
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.coordinator: Coordinator | None = None
        self.status: str | None = None  # the campaign status when run() returned
        self.error: str | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-engine", daemon=True)
        self._log_file: TextIO | None = None
        self._stop_requested = False
        self.echo: Callable[[str], None] | None = None  # also send each line here (headless after a hang-up)

    def start(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "a", buffering=1)  # noqa: SIM115 - closed in stop()
        self._thread.start()

    def log(self, line: str) -> None:
        self.lines.append(line)
        if self._log_file is not None:
            try:
                self._log_file.write(line + "\n")
            except (OSError, ValueError):
                pass
        echo = self.echo
        if echo is not None:
            echo(line)

    @property
    def last_line(self) -> str | None:
        return self.lines[-1].strip().splitlines()[-1] if self.lines else None

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    def _run(self) -> None:
        try:
            coordinator = self.coordinator = self._make(self.log)
            if self._stop_requested:
                coordinator.request_stop()
            summary = coordinator.run()
            self.status = summary.get("status")
        except BaseException as err:
            self.error = f"{type(err).__name__}: {err}"
            self.status = "failed"
            self.log(f"engine stopped: {self.error}")
        finally:
            self.done.set()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def request_stop(self) -> None:
        self._stop_requested = True
        if self.coordinator is not None:
            self.coordinator.request_stop()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the coordinator to stop and wait for it (running trials finish or are handed back)."""
        self.request_stop()
        self._thread.join(timeout)
        return not self._thread.is_alive()


STORAGE_ENV = ENV_STORAGE_URL  # engine.cli's --storage default


@dataclass(frozen=True)
class HeadlessCommand:
    """The detached engine's command line, and the environment it adds: the storage URL (and any
    password in it) travels in $HPO_TUI_STORAGE_URL, never on a command line that `ps` shows."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def headless_command(
    campaign_file: str, storage_url: str, policy: str | None, workers: int | None, gpus: str | None
) -> HeadlessCommand:
    # This interpreter, not whatever `hpo-tui` is first on PATH: the same install resumes the campaign.
    cmd = [sys.executable, "-m", "tui.cli", "run", campaign_file, "--headless"]
    if policy:
        cmd += ["--policy", policy]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if gpus:
        cmd += ["--gpus", gpus]
    return HeadlessCommand(cmd, {STORAGE_ENV: storage_url})


def spawn_headless(command: HeadlessCommand, log_path: Path) -> int:
    """Start the headless engine detached from this terminal (own session, like setsid + nohup)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=os.getcwd(),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **command.env},
        )
    return process.pid
