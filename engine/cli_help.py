"""The command line's conventions on top of its parser: an example per command in `--help`,
`--version`, and `hpo-tui completion bash|zsh`.

Completion scripts are generated from the parser itself by shtab (a small, dependency-free
package), so they follow every command and flag without a hand-written list to keep in step.
"""

from __future__ import annotations

import argparse
from importlib import metadata

# shtab reads this attribute off an argparse action to choose its completer; argparse does not declare it,
# so it is set by name.
SHTAB_COMPLETE_ATTRIBUTE = "complete"

# One line or a few per command, shown under "examples:" at the end of `hpo-tui COMMAND --help`.
EXAMPLES: dict[str, str] = {
    "run": """\
  hpo-tui run campaigns/quickstart.toml                       # the console on a terminal
  hpo-tui run campaigns/quickstart.toml --headless --workers 4
  hpo-tui run c.toml --storage postgresql://user@db-host/hpo --policy wait""",
    "validate": "  hpo-tui validate campaigns/quickstart.toml",
    "status": """\
  hpo-tui status quickstart
  hpo-tui status c.toml --storage sqlite:///hpo.db --json""",
    "approve": """\
  hpo-tui approve quickstart --show                           # what the gate proposes
  hpo-tui approve quickstart                                  # accept the proposal
  hpo-tui approve quickstart --set lr=1e-4:3e-3 --freeze warmup --note "warmup settled"
  hpo-tui approve quickstart --reject
  hpo-tui approve quickstart --extend 10""",
    "worker": """\
  hpo-tui worker quickstart --storage postgresql://user@db-host/hpo --gpus 0,1
  hpo-tui worker c.toml --workers 4                           # the storage from the campaign file""",
    "pause": "  hpo-tui pause quickstart",
    "resume": "  hpo-tui resume quickstart",
    "thresholds": "  hpo-tui thresholds jerex-tiny --sprint full --trial 12",
    "cache": """\
  hpo-tui cache pipeline
  hpo-tui cache pipeline --clear""",
    "attach": """\
  hpo-tui attach quickstart                                   # from the campaign's directory
  hpo-tui attach quickstart --storage postgresql://user@db-host/hpo --fps 1""",
    "completion": """\
  hpo-tui completion bash > ~/.local/share/bash-completion/completions/hpo-tui
  hpo-tui completion zsh > ~/.zfunc/_hpo-tui                  # with fpath=(~/.zfunc $fpath) in ~/.zshrc""",
    "export": "  hpo-tui export quickstart --format csv -o trials.csv",
    "report": "  hpo-tui report quickstart -o report.html",
    "repair": "  hpo-tui repair quickstart",
}

SHELLS = ("bash", "zsh")


def version() -> str:
    try:
        return metadata.version("hpo-tui")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def add_completion(sub) -> None:
    completion = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def finish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --version and an example to every command's help; call once the parser has every command."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, command in subcommands(parser).items():
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        example = EXAMPLES.get(name)
        if example and not command.epilog:
            command.epilog = "examples:\n" + example
        for action in command._actions:
            if action.dest == "campaign":  # a campaign file, or a name: complete file names
                setattr(action, SHTAB_COMPLETE_ATTRIBUTE, {"bash": "_shtab_compgen_files", "zsh": "_files"})
    parser.epilog = "Each command has its own help, with examples: hpo-tui COMMAND --help"
    return parser


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab  # only this command needs it

    return shtab.complete(parser, shell=shell)
