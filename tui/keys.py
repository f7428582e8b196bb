"""Every operator action in one table: its binding id, default keys, and where it applies.

Screens take their BINDINGS from here, the help screen and the command palette list it, and a
user keymap (TOML: `binding-id = "keys"`) rebinds any action by its id through Textual's own
keymap support. The keymap is read from $HPO_TUI_KEYS, else ~/.config/hpo-tui/keys.toml.
Default keys are letters, digits, enter, escape, space and arrows: keys every terminal (and SSH,
tmux, screen) passes through unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding

from engine.store.schema import ENV_KEYS
from engine.toml_compat import tomllib


@dataclass(frozen=True)
class OperatorAction:
    id: str  # binding id: the name used in keys.toml
    keys: str  # default keys, comma separated, in Textual's key names
    action: str  # the Textual action it runs
    title: str  # short label (footer, palette)
    scope: str  # "app" (everywhere) or a screen's scope name
    help: str
    show: bool = True  # shown in the footer


ACTIONS: tuple[OperatorAction, ...] = (
    # Everywhere
    OperatorAction("pause", "p", "toggle_pause", "Pause", "app", "pause or resume the sprint (running trials finish)"),
    OperatorAction("help", "question_mark", "help", "Help", "app", "list every key binding"),
    OperatorAction(
        "quit",
        "q",
        "quit",
        "Quit",
        "app",
        "quit; asks first when the campaign runs in this console, and offers to leave it running headless",
    ),
    # Dashboard
    OperatorAction("approve", "a", "open_approval", "Approve", "dashboard", "open the pending gate's approval"),
    OperatorAction(
        "fidelity",
        "f",
        "raise_fidelity",
        "Fidelity",
        "dashboard",
        "choose the next sprint's fidelity (level or knobs) for the pending or the next gate",
    ),
    OperatorAction(
        "thresholds",
        "t",
        "thresholds",
        "Thresholds",
        "dashboard",
        "learn per-class thresholds on the selected trial (or the best one) in the background",
    ),
    OperatorAction("detail", "enter", "open_detail", "Detail", "dashboard", "open the selected trial"),
    OperatorAction("filter", "slash", "filter", "Filter", "dashboard", "show only trials in one state"),
    OperatorAction("sort", "s", "cycle_sort", "Sort", "dashboard", "sort by the next column"),
    OperatorAction("sort_reverse", "S", "reverse_sort", "Reverse", "dashboard", "reverse the sort order", show=False),
    OperatorAction("follow", "F", "toggle_follow", "Follow", "dashboard", "keep the newest trial selected"),
    OperatorAction(
        "sprint", "v", "cycle_sprint", "Sprint", "dashboard", "show the trials of another sprint", show=False
    ),
    # Trial detail
    OperatorAction("detail_thresholds", "t", "thresholds", "Thresholds", "detail", "learn thresholds on this trial"),
    OperatorAction("back", "escape", "back", "Back", "detail", "back to the dashboard"),
    # Approval
    OperatorAction("edit_bound", "enter", "edit", "Edit", "approval", "edit the selected parameter's proposed range"),
    OperatorAction(
        "freeze", "space", "toggle_freeze", "Freeze", "approval", "freeze the parameter at its best value, or unfreeze"
    ),
    OperatorAction(
        "approve_gate", "y", "approve", "Approve", "approval", "approve (with your edits), after a confirmation"
    ),
    OperatorAction("reject_gate", "r", "reject", "Reject", "approval", "keep the current ranges, after a confirmation"),
    OperatorAction(
        "extend_sprint", "x", "extend", "Extend", "approval", "run more trials in the finished sprint, then gate again"
    ),
    OperatorAction("gate_fidelity", "f", "fidelity", "Fidelity", "approval", "change the next sprint's fidelity"),
    OperatorAction(
        "toggle_plot", "g", "toggle_plot", "Plot", "approval", "show or hide the evidence plot (metric vs. value)"
    ),
    OperatorAction(
        "cancel_gate", "escape", "cancel", "Cancel", "approval", "leave without deciding (the gate stays pending)"
    ),
    # Threshold results
    OperatorAction("accept_thresholds", "a", "accept", "Accept", "thresholds", "store these thresholds with the trial"),
    OperatorAction(
        "close_thresholds", "escape", "back", "Close", "thresholds", "close (results not accepted are dropped)"
    ),
)

SCOPE_TITLES = {
    "app": "Everywhere",
    "dashboard": "Dashboard",
    "detail": "Trial detail",
    "approval": "Gate approval",
    "thresholds": "Threshold results",
}


def actions(scope: str) -> list[OperatorAction]:
    return [a for a in ACTIONS if a.scope == scope]


def bindings(scope: str) -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    return [Binding(a.keys, a.action, a.title, show=a.show, id=a.id, tooltip=a.help) for a in actions(scope)]


def keymap_path() -> Path:
    explicit = os.environ.get(ENV_KEYS)
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "hpo-tui" / "keys.toml"


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """The user's keymap and the problems found in it (unknown ids, bad values)."""
    path = path or keymap_path()
    if not path.exists():
        return {}, []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        return {}, [f"{path}: cannot read: {err}"]
    data = data.get("keys", data)  # a [keys] table, or keys at the top level
    known = {a.id for a in ACTIONS}
    keymap: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, keys in data.items():
        if binding_id not in known:
            problems.append(f"{path}: unknown action {binding_id!r} (actions: {', '.join(sorted(known))})")
        elif not isinstance(keys, str) or not keys.strip():
            problems.append(f'{path}: {binding_id} needs keys as a string, e.g. "ctrl+a" or "a,f2"')
        else:
            keymap[binding_id] = keys
    return keymap, problems


def effective_keys(action: OperatorAction, keymap: dict[str, str]) -> str:
    return keymap.get(action.id, action.keys)


KEY_NAMES = {"slash": "/", "question_mark": "?", "escape": "esc", "space": "space", "enter": "enter"}


def display_keys(keys: str) -> str:
    return " ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in keys.split(","))
