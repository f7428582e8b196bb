"""The command line as documented: every `hpo-tui` command in the README and in `--help` parses with the
real parser, every command and flag has help text and an example, --version, shell completion, make bench."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys

import pytest
from enginekit import ROOT, hpo_tui

from engine.cli_help import EXAMPLES, subcommands, version
from tui.cli import parser

README = (ROOT / "README.md").read_text()


def command_lines(text: str) -> list[str]:
    """`hpo-tui ...` lines of the README's fenced code blocks and inline code spans (not the messages
    it quotes, `hpo-tui run: argument ...`)."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        lines += [line.strip() for line in block.splitlines() if line.strip().startswith("hpo-tui ")]
    lines += [span for span in re.findall(r"`(hpo-tui [^`]+)`", text) if not span.split()[1].endswith(":")]
    return lines


def argv_of(line: str) -> list[str]:
    """The arguments of a command line as the shell splits it: no `hpo-tui`, no comment, and nothing
    from the first pipe, redirection or list operator on (`| jq ...`, `> file`, `&& ...`)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split, lexer.commenters = True, "#"
    words = list(lexer)
    assert words[0] == "hpo-tui", line
    ends = [i for i, word in enumerate(words) if set(word) <= set("|&;<>")]
    return words[1 : ends[0] if ends else None]


def parses(argv: list[str]) -> argparse.Namespace | None:
    try:
        return parser().parse_args(argv)
    except SystemExit as stop:
        if stop.code == 0:  # --help, --version
            return None
        raise AssertionError(f"`hpo-tui {shlex.join(argv)}` does not parse (exit {stop.code})") from None


def cli_block() -> str:
    section = README.split("## Command line\n", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)


def test_every_readme_command_parses_with_the_real_parser():
    lines = command_lines(README)
    assert len(lines) >= 20
    commands = subcommands(parser())
    for line in lines:
        argv = argv_of(line)
        if len(argv) == 1 and argv[0] in commands:  # prose naming a command (`hpo-tui status`)
            continue
        parses(argv)


def test_the_cli_block_shows_every_command():
    shown = {argv_of(line)[0] for line in cli_block().splitlines() if line.startswith("hpo-tui ")} - {"--version"}
    assert shown >= set(subcommands(parser())), set(subcommands(parser())) - shown


def test_every_command_and_argument_has_help_and_every_command_an_example_that_parses():
    for name, command in subcommands(parser()).items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"hpo-tui {name}: {action.option_strings or action.dest} has no help text"
        assert command.epilog and "hpo-tui " in command.epilog, f"hpo-tui {name} --help shows no example"
        for line in command.epilog.splitlines():
            if line.strip().startswith("hpo-tui "):
                assert argv_of(line.strip())[0] == name
                parses(argv_of(line.strip()))
    assert set(EXAMPLES) >= set(subcommands(parser())) - {"export", "report"}  # those two bring their own


def test_the_worker_storage_is_optional_and_validate_takes_none():
    assert parses(["worker", "quickstart"]).command == "worker"  # the storage may come from the campaign file
    with pytest.raises(AssertionError, match="does not parse"):
        parses(["validate", "c.toml", "--storage", "sqlite:///x.db"])


def test_version_and_help(tmp_path):
    out = hpo_tui("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"hpo-tui {version()}" and version() != "unknown"
    out = hpo_tui("approve", "--help", cwd=tmp_path)
    assert out.returncode == 0 and "examples:\n  hpo-tui approve quickstart --show" in out.stdout


def test_bash_completion_completes_commands_and_flags(tmp_path):
    script = hpo_tui("completion", "bash", cwd=tmp_path)
    assert script.returncode == 0, script.stderr
    (tmp_path / "hpo-tui.bash").write_text(script.stdout)
    probe = """
source ./hpo-tui.bash
complete_line() { COMP_WORDS=($1); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE="$1"; COMP_POINT=${#COMP_LINE};
                  COMPREPLY=(); _shtab_hpo_tui; echo "${COMPREPLY[*]}"; }
complete_line "hpo-tui ap"
complete_line "hpo-tui approve --fr"
complete_line "hpo-tui completion z"
"""
    out = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["approve", "--freeze", "zsh"]
    zsh = hpo_tui("completion", "zsh", cwd=tmp_path)
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef hpo-tui")
    assert all(f"{name}:" in zsh.stdout for name in subcommands(parser()))


def test_make_bench_runs_the_benchmark_with_flags_it_takes(tmp_path):
    dry = subprocess.run(["make", "-n", "bench"], cwd=ROOT, capture_output=True, text=True)
    command = next(line for line in dry.stdout.splitlines() if "benchmarks.efficiency" in line)
    argv = shlex.split(command)
    assert argv[1:3] == ["-m", "benchmarks.efficiency"], command
    # The same flags, on a budget a test can afford (later flags win): it must parse and run.
    small = ["--seeds", "1", "--problems", "branin", "--methods", "random", "--budget", "4", "--quiet"]
    out = subprocess.run([sys.executable, *argv[1:], *small], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "random" in out.stdout and "summary" in out.stdout
