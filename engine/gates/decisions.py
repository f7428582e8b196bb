"""Gate decisions: build one from a proposal plus edits, validate it, and apply it.

The CLI (`hpo-tui approve`), the TUI and the plan policy all build decisions here, so an edit
is refused with the same reason wherever it is typed.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from engine.gates.diff import proposal_diff, space_diff
from engine.search.space import Space, SpaceEditError, check_range, parse_bound_edit
from engine.store.records import DecisionDraft, Proposal

ACTIONS = ("approve", "edit", "reject", "extend")


def parse_fidelity_edit(text: str, levels: dict[str, dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """'epochs=9' edits one knob; a bare level name ('full') takes that level's values."""
    text = text.strip()
    if "=" not in text:
        if text not in levels:
            raise SpaceEditError(f"fidelity: {text!r} is not a level ({', '.join(levels)}) and not KNOB=VALUE")
        return dict(levels[text])
    knob, _, raw = text.partition("=")
    knob = knob.strip()
    if knob not in base:
        raise SpaceEditError(f"fidelity: unknown knob {knob!r} (knobs: {', '.join(base)})")
    old = base[knob]
    raw = raw.strip()
    if isinstance(old, bool):
        if raw.lower() not in ("true", "false"):
            raise SpaceEditError(f"fidelity: {knob} takes true or false, got {raw!r}")
        value: Any = raw.lower() == "true"
    elif isinstance(old, (int, float)):
        try:
            value = float(raw)
        except ValueError:
            raise SpaceEditError(f"fidelity: {knob}={raw!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise SpaceEditError(f"fidelity: {knob} must be a positive finite number, got {raw}")
        if isinstance(old, int):
            if value != int(value):
                raise SpaceEditError(f"fidelity: {knob} takes a whole number, got {raw}")
            value = int(value)
        if knob.endswith("fraction") and value > 1:
            raise SpaceEditError(f"fidelity: {knob} is a fraction and cannot exceed 1, got {raw}")
    else:
        value = raw
    return {**base, knob: value}


def build_decision(
    proposal: Proposal,
    original: Space,
    current: Space,
    *,
    action: str = "approve",
    edits: dict[str, str] | None = None,
    freeze: dict[str, Any] | None = None,
    unfreeze: list[str] | None = None,
    space: Space | None = None,
    fidelity_edits: list[str] | None = None,
    levels: dict[str, dict[str, Any]] | None = None,
    extend_trials: int | None = None,
    note: str = "",
) -> DecisionDraft:
    """A validated decision (the ledger stamps it with the gate, source, who and when)."""
    if action not in ACTIONS:
        raise SpaceEditError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    fidelity = dict(proposal.fidelity.values)
    if action == "extend":
        if not extend_trials or extend_trials < 1:
            raise SpaceEditError("extend: give a positive number of extra trials")
        return DecisionDraft(
            action="extend",
            extend_trials=int(extend_trials),
            space=current,
            fidelity=fidelity,
            diff=(f"sprint {proposal.after}: +{int(extend_trials)} trials",),
            note=note,
        )
    if action == "reject":
        new_space = dict(current)
    else:
        new_space = copy.deepcopy(dict(space if space is not None else proposal.space))  # never share the record's
    for name, text in (edits or {}).items():
        if name not in original:
            raise SpaceEditError(f"{name}: no such parameter (parameters: {', '.join(original)})")
        new_space[name] = parse_bound_edit(name, text, original[name])
    for name, value in (freeze or {}).items():
        if name not in original:
            raise SpaceEditError(f"{name}: no such parameter (parameters: {', '.join(original)})")
        if value is None:
            value = proposal.evidence.best_params.get(name)
            if value is None:
                raise SpaceEditError(f"{name}: no best value to freeze at yet; give one as {name}=VALUE")
        new_space[name] = {"type": "fixed", "value": value}
    for name in unfreeze or []:
        if name not in original:
            raise SpaceEditError(f"{name}: no such parameter")
        new_space[name] = dict(current[name]) if current[name]["type"] != "fixed" else dict(original[name])
    for name, record in new_space.items():
        if original[name]["type"] != "fixed":
            check_range(name, record, original[name])
    tunable = [name for name, record in original.items() if record["type"] != "fixed"]
    if tunable and all(new_space[name]["type"] == "fixed" for name in tunable):
        raise SpaceEditError(
            f"nothing left to tune: every parameter would be frozen ({', '.join(tunable)}); "
            "unfreeze one, or --reject to keep the current ranges"
        )
    for text in fidelity_edits or []:
        fidelity = parse_fidelity_edit(text, levels or {}, fidelity)
    if (
        action == "approve"
        and (edits or freeze or unfreeze or fidelity_edits or space is not None)
        and (new_space != proposal.space or fidelity != proposal.fidelity.values)
    ):
        action = "edit"
    changes = space_diff(current, new_space)
    for knob, value in fidelity.items():
        before = proposal.fidelity.values.get(knob)
        if before != value:
            changes.append(f"fidelity {knob}: {before} -> {value}")
    return DecisionDraft(action=action, space=new_space, fidelity=fidelity, diff=tuple(changes), note=note)


def auto_decision(proposal: Proposal) -> DecisionDraft:
    return DecisionDraft(
        action="approve",
        space=dict(proposal.space),
        fidelity=dict(proposal.fidelity.values),
        diff=tuple(proposal_diff(proposal.params)),
        note="auto policy",
    )
