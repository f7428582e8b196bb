"""Read-only commands on a campaign that does not exist create nothing: no runs/NAME/, no journal, no SQLite
file, no directories at the root of a journal:// path; a name with a path separator is refused before any
path is built from it. Only `run`, `worker` and `repair` may create storage."""

from pathlib import Path

import pytest
from enginekit import hpo_tui

from engine.errors import EXIT_USAGE

pytestmark = pytest.mark.xdist_group("readonly-commands")

READ_ONLY = [
    ["status", "{name}"],
    ["status", "{name}", "--json"],
    ["approve", "{name}", "--reject"],
    ["approve", "{name}", "--show"],
    ["attach", "{name}"],
    ["thresholds", "{name}"],
    ["cache", "{name}"],
    ["cache", "{name}", "--clear"],
    ["export", "{name}"],
    ["report", "{name}"],
    ["pause", "{name}"],
    ["resume", "{name}"],
    ["repair", "{name}"],
]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("argv", READ_ONLY, ids=[" ".join(a[:1] + a[2:]) for a in READ_ONLY])
def test_a_read_only_command_on_a_missing_campaign_creates_nothing(tmp_path, argv):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    before = listing(tmp_path)
    for name, storage in (
        ("ghost", None),  # the default journal runs/ghost/journal.log
        ("ghost", f"journal://{tmp_path / 'x' / 'y' / 'f.log'}"),
        ("ghost", f"sqlite:///{tmp_path / 'ghost.db'}"),
    ):
        args = [a.format(name=name) for a in argv] + (["--storage", storage] if storage else [])
        out = hpo_tui(*args, cwd=work)
        assert out.returncode == EXIT_USAGE, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "no campaign 'ghost'" in out.stderr, out.stderr
        assert listing(tmp_path) == before, f"{args} created {set(listing(tmp_path)) - set(before)}"


@pytest.mark.parametrize("name", ["../../evil", "../evil", "..", ".", "a/b", "/tmp/evil", "x" * 65])
def test_a_name_that_is_a_path_is_refused_before_any_path_is_built(tmp_path, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    before = listing(tmp_path)
    out = hpo_tui("status", name, cwd=work)
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr, out.stderr
    assert "is neither a campaign file nor a campaign name" in out.stderr or "unrecognized" in out.stderr
    assert listing(tmp_path) == before
