"""An operator's unfinished decision for one gate: range edits, freezes and fidelity.

Every check goes through engine.gates.decisions.build_decision and engine.search.space.parse_bound_edit, so the
console refuses an edit with the very reason `hpo-tui approve` gives.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.gates.decisions import build_decision, parse_fidelity_edit
from engine.search.space import SpaceEditError, parse_bound_edit
from engine.store.records import DecisionDraft, Proposal


@dataclass
class GateDraft:
    gate: int
    edits: dict[str, str] = field(default_factory=dict)  # name -> "LOW:HIGH" | "a,b" | "=v"
    freeze: dict[str, Any] = field(default_factory=dict)  # name -> value, None for the best value
    unfreeze: set[str] = field(default_factory=set)
    fidelity_edits: list[str] = field(default_factory=list)  # a level name and/or KNOB=VALUE

    # Reading a proposal ------------------------------------------------------------------------
    @staticmethod
    def current_space(proposal: Proposal) -> dict[str, Any]:
        return {name: copy.deepcopy(dict(row.current)) for name, row in proposal.params.items()}

    def record(self, name: str, proposal: Proposal, original: Mapping[str, Any]) -> dict[str, Any]:
        """The range this draft would give `name` in the next sprint."""
        row = proposal.params[name]
        if name in self.edits:
            return parse_bound_edit(name, self.edits[name], original[name])
        if name in self.freeze:
            value = self.freeze[name]
            return {"type": "fixed", "value": row.best if value is None else value}
        if name in self.unfreeze:
            current = row.current
            return dict(current) if current["type"] != "fixed" else dict(original[name])
        return dict(proposal.space[name])

    def edited(self, name: str) -> bool:
        return name in self.edits or name in self.freeze or name in self.unfreeze

    # Changing it -----------------------------------------------------------------------------
    def set_bounds(self, name: str, text: str, original: Mapping[str, Any]) -> None:
        """Set a range edit; raises SpaceEditError with the reason when it is invalid."""
        if name not in original:
            raise SpaceEditError(f"{name}: no such parameter")
        parse_bound_edit(name, text, original[name])  # raises with the reason
        self.edits[name] = text.strip()
        self.freeze.pop(name, None)
        self.unfreeze.discard(name)  # an edit replaces a proposed freeze by itself

    def check_bounds(self, name: str, text: str, original: Mapping[str, Any]) -> str | None:
        try:
            parse_bound_edit(name, text, original[name])
        except SpaceEditError as err:
            return str(err)
        return None

    def toggle_freeze(self, name: str, proposal: Proposal, original: Mapping[str, Any]) -> None:
        """Freeze at the best value, or unfreeze; raises SpaceEditError when impossible."""
        if original[name]["type"] == "fixed":
            raise SpaceEditError(f"{name}: is fixed by the campaign file and cannot be edited")
        frozen_now = self.record(name, proposal, original)["type"] == "fixed"
        self.edits.pop(name, None)
        if frozen_now:
            self.freeze.pop(name, None)
            if proposal.space[name]["type"] == "fixed":
                self.unfreeze.add(name)
        else:
            self.unfreeze.discard(name)
            if proposal.space[name]["type"] != "fixed":
                if proposal.params[name].best is None:
                    raise SpaceEditError(f"{name}: no best value to freeze at yet")
                self.freeze[name] = None

    def set_fidelity(self, edits: list[str], levels: Mapping[str, Any], proposal: Proposal) -> dict[str, Any]:
        values = fidelity_values(edits, levels, proposal.fidelity.values)
        self.fidelity_edits = list(edits)
        return values

    # The decision ----------------------------------------------------------------------------
    def decision(
        self,
        proposal: Proposal,
        original: Mapping[str, Any],
        levels: Mapping[str, Any],
        action: str = "approve",
        extend_trials: int | None = None,
    ) -> DecisionDraft:
        """The validated decision (raises SpaceEditError with the reason)."""
        return build_decision(
            proposal,
            copy.deepcopy(dict(original)),
            self.current_space(proposal),
            action=action,
            edits=dict(self.edits) if action == "approve" else None,
            freeze=dict(self.freeze) if action == "approve" else None,
            unfreeze=sorted(self.unfreeze) if action == "approve" else None,
            fidelity_edits=list(self.fidelity_edits) if action == "approve" else None,
            levels=copy.deepcopy(dict(levels)),
            extend_trials=extend_trials,
            note="decided in the console",
        )


def fidelity_values(edits: list[str], levels: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """The fidelity a list of edits gives, from `base` (raises SpaceEditError with the reason)."""
    values = dict(base)
    for text in edits:
        values = parse_fidelity_edit(text, {k: dict(v) for k, v in levels.items()}, values)
    return values


def split_fidelity_text(text: str) -> list[str]:
    """'epochs=9, train_fraction=0.5' or 'epochs=9 train_fraction=0.5' -> edits."""
    return [part for part in text.replace(",", " ").split() if part]
