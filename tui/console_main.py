"""`hpo-tui run` on a terminal and `hpo-tui attach`: open the console (HpoConsole), with the engine in a thread
for `run`, and keep that engine alive through a lost terminal (tui/hangup.py)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from engine.cli import log_line, make_coordinator, resolve_campaign
from engine.extras import require_for_campaign, require_for_storage
from engine.store.storage import redact, run_dir
from tui.app import HpoConsole
from tui.engine_thread import EngineThread, headless_command, spawn_headless
from tui.hangup import Hangup, wait_headless
from tui.keys import load_keymap
from tui.source import StorageSource


def run_console(args) -> int:
    """`hpo-tui run` (on a terminal) and `hpo-tui attach`: open the console; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    name, url, spec = resolve_campaign(args.campaign, args.storage)
    require_for_storage(url)  # a missing extra: one line and exit 8, before the screen is taken
    if args.command == "run" and spec is not None:
        require_for_campaign(spec)
    if args.command == "attach" and url.startswith("journal://") and not Path(url.removeprefix("journal://")).exists():
        print(
            f"hpo-tui attach: no storage at {redact(url)} (give --storage URL, or run from the campaign's directory)",
            file=sys.stderr,
        )
        return 2
    keymap, problems = load_keymap()
    engine = None
    headless = None
    headless_log = Path("runs") / name / "headless.log"
    if args.command == "run":
        headless_log = run_dir(name) / "headless.log"
        engine = EngineThread(lambda log: make_coordinator(args, log=log), run_dir(name) / "console.log")
        policy = args.policy or (spec.policy if spec else None)

        def headless() -> str:
            command = headless_command(args.campaign, url, policy, args.workers, args.gpus)
            pid = spawn_headless(command, headless_log)
            return (
                f"campaign {name} continues headless (pid {pid}); output in {headless_log}; "
                f"`hpo-tui attach {args.campaign}` opens the console again"
            )

    app = HpoConsole(
        StorageSource(url, name),
        engine=engine,
        fps=args.fps,
        keymap=keymap,
        keymap_problems=problems,
        headless=headless,
        run_log=str(headless_log),
    )
    # The engine runs in this process: a vanished terminal (SIGHUP) must not end it (tui/hangup.py).
    hangup: Hangup | None = None
    if engine is not None:
        hangup = Hangup(headless_log, app.hang_up, engine.done)
        hangup.install()
        engine.start()
    try:
        app.run()
    except BaseException:
        if hangup is None or not hangup.terminal_lost():
            _stop_engine(engine, log_line)
            raise
        hangup.redirect()
        traceback.print_exc()  # into headless.log: the console died of the lost terminal, the engine goes on
    if hangup is not None:
        hangup.console_returned.set()
        if hangup.terminal_lost():
            hangup.redirect()
            return wait_headless(engine, name, log_line)
        hangup.uninstall()
    _stop_engine(engine, log_line)  # only an explicit quit (or a console that failed) stops it
    if app.exit_message:
        log_line(app.exit_message)
    if engine is not None and engine.error:
        log_line(f"the engine failed: {engine.error}")
        return 1
    return app.return_code or 0


def _stop_engine(engine: EngineThread | None, log_line: Callable[[str], None]) -> None:
    if engine is not None and engine.alive:
        log_line("stopping the engine: running trials finish or are handed back…")
        engine.stop()
