"""Who decides a gate when the coordinator reaches it: `auto`, `wait` or `plan:FILE`.

A decision already in the ledger (from `hpo-tui approve`, the TUI, or an earlier run) always wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomllib

from engine.decisions import auto_decision, build_decision
from engine.ledger import Ledger
from engine.space import Space, SpaceEditError
from engine.spec import CampaignFileError


class Policy:
    name = "policy"

    def decide(
        self,
        ledger: Ledger,
        gate: int,
        proposal: dict,
        original: Space,
        current: Space,
        levels: dict,
        stop: Callable[[], bool],
    ) -> dict | None:
        raise NotImplementedError


class AutoPolicy(Policy):
    """Approve the proposal as it stands, with the fidelity an operator staged for this gate if any."""

    name = "auto"

    def decide(self, ledger, gate, proposal, original, current, levels, stop):
        existing = ledger.decision(gate)
        if existing is not None:
            return existing
        staged = ledger.fidelity_request(gate)
        if staged:
            decision = build_decision(
                proposal,
                original,
                current,
                action="approve",
                fidelity_edits=list(staged.get("edits", [])),
                levels=levels,
                note="auto policy; fidelity staged by an operator",
            )
        else:
            decision = auto_decision(proposal)
        return ledger.record_decision(gate, decision, source="policy:auto")


class WaitPolicy(Policy):
    """Block until a decision arrives through the ledger; returns None if asked to stop first."""

    name = "wait"

    def __init__(self, poll_s: float = 0.5, log: Callable = print):
        self.poll_s = poll_s
        self.log = log

    def decide(self, ledger, gate, proposal, original, current, levels, stop):
        told = False
        while not stop():
            decision = ledger.decision(gate)
            if decision is not None:
                return decision
            if not told:
                self.log(
                    f"gate {gate}: waiting for a decision (hpo-tui approve {ledger.campaign} [--set P=LOW:HIGH] [--reject])"
                )
                told = True
            time.sleep(self.poll_s)
        return None


class PlanPolicy(Policy):
    """Decisions written in advance in a TOML file:

    [gates.0]                     # the gate after the first sprint
    action = "approve"            # approve | reject | extend
    set = { lr = "1e-4:1e-2" }    # range edits, as with `hpo-tui approve --set`
    freeze = ["momentum"]         # freeze at the best value (or { momentum = 0.9 })
    fidelity = ["epochs=9"]
    extend = 10                   # with action = "extend"
    [default]
    action = "approve"            # for gates the plan does not name; "wait" blocks instead
    """

    name = "plan"

    def __init__(self, path: str | Path, log: Callable = print):
        self.path = Path(path)
        self.log = log
        try:
            self.plan = tomllib.loads(self.path.read_text())
        except FileNotFoundError:
            raise CampaignFileError(self.path, [("", "plan file not found")]) from None
        except tomllib.TOMLDecodeError as err:
            raise CampaignFileError(self.path, [("", f"TOML syntax: {err}")]) from None
        unknown = set(self.plan) - {"gates", "default"}
        if unknown:
            raise CampaignFileError(self.path, [(k, "unknown key") for k in sorted(unknown)])
        self.default = self.plan.get("default", {}).get("action", "approve")
        if self.default not in ("approve", "wait"):
            raise CampaignFileError(self.path, [("default.action", "must be approve or wait")])

    def decide(self, ledger, gate, proposal, original, current, levels, stop):
        existing = ledger.decision(gate)
        if existing is not None:
            return existing
        entry: dict[str, Any] | None = self.plan.get("gates", {}).get(str(gate))
        if entry is None:
            if self.default == "wait":
                return WaitPolicy(log=self.log).decide(ledger, gate, proposal, original, current, levels, stop)
            return ledger.record_decision(gate, auto_decision(proposal), source=f"plan:{self.path.name}")
        freeze = entry.get("freeze", {})
        if isinstance(freeze, list):
            freeze = {name: None for name in freeze}
        try:
            decision = build_decision(
                proposal,
                original,
                current,
                action=entry.get("action", "approve"),
                edits=entry.get("set"),
                freeze=freeze,
                fidelity_edits=entry.get("fidelity"),
                levels=levels,
                extend_trials=entry.get("extend"),
                note=entry.get("note", f"plan {self.path.name}"),
            )
        except SpaceEditError as err:
            raise CampaignFileError(self.path, [(f"gates.{gate}", str(err))]) from None
        return ledger.record_decision(gate, decision, source=f"plan:{self.path.name}")


def make_policy(text: str, log: Callable = print) -> Policy:
    if text == "auto":
        return AutoPolicy()
    if text == "wait":
        return WaitPolicy(log=log)
    if text.startswith("plan:"):
        return PlanPolicy(text.removeprefix("plan:"), log=log)
    raise ValueError(f"unknown policy {text!r}: use auto, wait or plan:FILE")
