"""The `hpo-tui` entry point: the engine's headless CLI plus the console commands (run on a TTY, attach)."""

from __future__ import annotations

import os
import sys

from engine.cli import add_storage, build_parser, dispatch, refresh_rate, resolve_campaign, run_cli
from engine.cli_help import add_completion, completion_script, finish
from engine.errors import UsageError
from engine.store.lease import check_free_at
from engine.store.storage import redact, storage_missing


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def add_console_commands(sub) -> None:
    attach = sub.add_parser("attach", help="open the console on a campaign run elsewhere (shared storage)")
    attach.add_argument("campaign", help="campaign file or campaign name")
    add_storage(attach)
    attach.add_argument("--fps", type=refresh_rate, default=4.0, help="console refresh rate (lower it on slow links)")
    add_completion(sub)


def parser():
    return finish(build_parser(add_console_commands))


def console_dispatch(args) -> int:
    if args.command == "completion":
        print(completion_script(parser(), args.shell), end="")
        return 0
    if args.command == "attach":  # read-only: refuse a bad name or a storage file that is not there, create nothing
        name, url, _ = resolve_campaign(args.campaign, args.storage)
        if storage_missing(url):
            raise UsageError(f"no campaign {name!r} in {redact(url)} (that storage does not exist)")
    if args.command == "run" and not args.headless and interactive():
        name, url, _ = resolve_campaign(args.campaign, args.storage)
        check_free_at(url, name, takeover=args.takeover)  # LeaseHeld: one line, before the screen is taken
    if args.command == "attach" or (args.command == "run" and not args.headless and interactive()):
        # Cap Textual's own screen updates with the refresh rate: fewer bytes on a slow link.
        os.environ.setdefault("TEXTUAL_FPS", str(int(min(60, max(5, args.fps * 5)))))
        from tui.console_main import run_console  # textual and the screens (~1 s): only for the console

        return run_console(args)
    return dispatch(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, console_dispatch, parser())


if __name__ == "__main__":
    sys.exit(main())
