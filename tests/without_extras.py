"""Run `hpo-tui ARGS` as on a laptop without the optional extras, and record what tried to load them.

    HPO_TEST_BLOCK=torch,transformers python tests/without_extras.py status NAME --storage URL

Every module named in HPO_TEST_BLOCK (and its submodules) is "not installed": importing it raises
ModuleNotFoundError, as after a plain `pip install hpo-tui`. Each attempt is recorded, even one
caught by a try/except, and written as JSON to $HPO_TEST_ATTEMPTS_OUT at exit: a command that
never tries is one whose import graph does not reach them.

With HPO_TEST_CONSOLE_S set, `attach` runs the real console headless (Textual's own headless
driver) until it has shown a snapshot and then HPO_TEST_CONSOLE_S seconds more.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from pathlib import Path


class NotInstalled(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]):
        self.names = names
        self.attempts: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            self.attempts.append(fullname)
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def run_console_headless(seconds: float) -> None:
    from tui.app import HpoConsole

    run = HpoConsole.run

    def headless_run(self, **kwargs):
        async def pilot(driver):
            while self.snapshot is None:
                await driver.pause(0.05)
            await driver.pause(seconds)
            print(f"console showed campaign {self.snapshot.campaign}: {self.snapshot.status}", flush=True)
            self.exit(0)

        return run(self, headless=True, auto_pilot=pilot, size=(120, 40))

    HpoConsole.run = headless_run


def main() -> int:
    blocker = NotInstalled({name for name in os.environ.get("HPO_TEST_BLOCK", "").split(",") if name})
    sys.meta_path.insert(0, blocker)
    if os.environ.get("HPO_TEST_CONSOLE_S"):
        run_console_headless(float(os.environ["HPO_TEST_CONSOLE_S"]))
    from tui.cli import main as hpo_tui

    try:
        return hpo_tui(sys.argv[1:])
    finally:
        out = os.environ.get("HPO_TEST_ATTEMPTS_OUT")
        if out:
            Path(out).write_text(json.dumps(sorted(set(blocker.attempts))))


if __name__ == "__main__":
    sys.exit(main())
