"""When the terminal of `hpo-tui run` goes away (SIGHUP: an SSH drop, a killed tmux window).

The campaign must not die with its terminal. On SIGHUP the console's process:

1. points its stdout and stderr (fds 1 and 2) away from the dead terminal: stdout to
   runs/<campaign>/headless.log at once, stderr to /dev/null while Textual shuts its screen down
   (its last escape codes are of no use in a log), then to the log as well;
2. stops Textual from restarting its screen on the SIGCONT that comes with a hang-up;
3. asks the console to leave (`on_hangup`, which must be safe to call from a signal handler), without
   stopping the engine thread;
4. then `run_console` keeps the process alive until the coordinator ends (`wait_headless`), as a
   headless engine would: a gate the policy leaves to the operator (`wait`) waits for `hpo-tui
   approve` or `hpo-tui attach`; SIGTERM or SIGINT stop it as they stop `hpo-tui run --headless`.

If Textual is wedged by the dead terminal and never returns, a watchdog ends the process once the
engine has ended, so it is not left behind. Textual is not imported here.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GRACE_AFTER_ENGINE_S = 30.0  # the watchdog's patience with a console that does not return


class Hangup:
    def __init__(
        self, log_path: Path, on_hangup: Callable[[], None] | None = None, engine_done: threading.Event | None = None
    ):
        self.log_path = Path(log_path)
        self.on_hangup = on_hangup
        self.engine_done = engine_done
        self.happened = False
        self.console_returned = threading.Event()
        self._redirected = False
        self._quiet_stderr = False
        self._previous: Any = None  # whatever signal.signal returned: a handler, SIG_DFL or None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGHUP, self._on_signal)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    # The signal ------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        # Runs in the main thread, between two bytecodes of Textual's event loop: quick, no locks.
        # Textual's SIGCONT handler would start its screen again on the dead terminal (the kernel
        # sends SIGCONT right after SIGHUP; Python runs the handlers in signal-number order).
        signal.signal(signal.SIGCONT, signal.SIG_DFL)
        self.redirect(quiet_stderr=True)
        if self.happened:
            return
        self.happened = True
        self._start_watchdog()
        if self.on_hangup is not None:
            try:
                self.on_hangup()
            except Exception:
                pass

    def terminal_lost(self) -> bool:
        """SIGHUP arrived, or the terminal is unusable (the console may have died of it first)."""
        if self.happened:
            return True
        try:
            return not os.isatty(0)  # a hung-up terminal answers EIO: isatty() is False
        except OSError:
            return True

    # Output ----------------------------------------------------------------------------------
    def redirect(self, quiet_stderr: bool = False) -> None:
        """fd 1 to the log; fd 2 to /dev/null while the console still runs (`quiet_stderr`), else the log."""
        try:
            if not self._redirected:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                if quiet_stderr:
                    null = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(null, 2)
                    os.close(null)
                    self._quiet_stderr = True
                else:
                    os.dup2(fd, 2)
                os.close(fd)
                self._redirected = True
            elif self._quiet_stderr and not quiet_stderr:
                os.dup2(1, 2)
                self._quiet_stderr = False
        except OSError:
            pass  # nowhere to write: lines are dropped (engine.cli.log_line ignores write errors)

    # Keeping the process ---------------------------------------------------------------------
    def _start_watchdog(self) -> None:
        engine_done = self.engine_done
        if engine_done is None:
            return

        def watch() -> None:
            engine_done.wait()
            if not self.console_returned.wait(GRACE_AFTER_ENGINE_S):
                _say("the engine ended but the console did not return after the hang-up: exiting")
                os._exit(0)

        threading.Thread(target=watch, name="hpo-hangup-watchdog", daemon=True).start()


def wait_headless(engine, campaign: str, log: Callable[[str], None]) -> int:
    """Keep the process (and its engine thread) alive after the terminal went away; returns the exit code."""
    from engine.cli import install_stop_signals

    install_stop_signals(engine.request_stop, log)
    for line in list(engine.lines)[-5:]:  # what the console's operator saw last
        log(f"  (before) {line}")
    engine.echo = log  # from now on the engine's lines go to this log too
    log(
        f"{_now()} the terminal went away (SIGHUP): campaign {campaign} continues headless in pid {os.getpid()}; "
        f"`hpo-tui attach {campaign}` opens the console on it, `hpo-tui approve {campaign}` decides a waiting "
        f"gate, `hpo-tui status {campaign}` shows where it stands"
    )
    while not engine.done.wait(1.0):
        pass
    log(
        f"{_now()} campaign {campaign}: the engine ended ({engine.status or 'stopped'})"
        + (f": {engine.error}" if engine.error else "")
    )
    return 0 if engine.status in ("finished", "stopped") and not engine.error else 1


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _say(message: str) -> None:
    try:
        os.write(1, f"{_now()} {message}\n".encode())
    except OSError:
        pass
