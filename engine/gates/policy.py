"""Who decides a gate when the coordinator reaches it: `auto`, `wait` or `plan:FILE`.

A decision already in the ledger (from `hpo-tui approve`, the TUI, or an earlier run) always wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import UsageError
from engine.gates.decisions import auto_decision, build_decision, parse_fidelity_edit
from engine.search.space import Space, SpaceEditError, initial_space, parse_bound_edit
from engine.spec import CampaignFileError, CampaignSpec, Scalar, pydantic_problems
from engine.store.ledger import Ledger
from engine.store.records import Decision, Proposal
from engine.toml_compat import tomllib


class Policy:
    name = "policy"

    def decide(
        self,
        ledger: Ledger,
        gate: int,
        proposal: Proposal,
        original: Space,
        current: Space,
        levels: dict,
        stop: Callable[[], bool],
    ) -> Decision | None:
        """The gate's decision; None when `stop()` came first."""
        raise NotImplementedError


class AutoPolicy(Policy):
    """Approve the proposal as it stands, with the fidelity an operator staged for this gate if any."""

    name = "auto"

    def decide(self, ledger, gate, proposal, original, current, levels, stop):
        existing = ledger.decision_record(gate)
        if existing is not None:
            return existing
        staged = ledger.fidelity_request_record(gate)
        if staged is not None:
            decision = build_decision(
                proposal,
                original,
                current,
                action="approve",
                fidelity_edits=list(staged.edits),
                levels=levels,
                note="auto policy; fidelity staged by an operator",
            )
        else:
            decision = auto_decision(proposal)
        return ledger.decide(gate, decision, source="policy:auto")


class WaitPolicy(Policy):
    """Block until a decision arrives through the ledger; returns None if asked to stop first."""

    name = "wait"

    def __init__(self, poll_s: float = 0.5, log: Callable = print):
        self.poll_s = poll_s
        self.log = log

    def decide(self, ledger, gate, proposal, original, current, levels, stop):
        told = False
        while not stop():
            decision = ledger.decision_record(gate)
            if decision is not None:
                return decision
            if not told:
                self.log(
                    f"gate {gate}: waiting for a decision (hpo-tui approve {ledger.campaign} [--set P=LOW:HIGH] [--reject])"
                )
                told = True
            time.sleep(self.poll_s)
        return None


class GatePlan(BaseModel):
    """One `[gates.N]` table of a plan file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["approve", "reject", "extend"] = "approve"
    set: dict[str, str] = Field(default_factory=dict, description="range edits, as `hpo-tui approve --set`")
    freeze: list[str] | dict[str, Scalar] = Field(default_factory=list, description="at the best value, or given")
    fidelity: list[str] = Field(default_factory=list, description="KNOB=VALUE or a level name")
    extend: int | None = Field(default=None, ge=1, description="extra trials, with action = 'extend'")
    note: str | None = None

    @model_validator(mode="after")
    def _extend_pairs_with_action(self) -> GatePlan:
        if self.action == "extend" and self.extend is None:
            raise ValueError("action 'extend' needs extend = N (extra trials)")
        if self.extend is not None and self.action != "extend":
            raise ValueError(f"extend = {self.extend} is only used with action = 'extend' (action is {self.action!r})")
        return self

    def frozen(self) -> dict[str, Any]:
        return {name: None for name in self.freeze} if isinstance(self.freeze, list) else dict(self.freeze)


class DefaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["approve", "wait"] = "approve"


class Plan(BaseModel):
    """A plan file: decisions written in advance, validated like a campaign file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gates: dict[str, GatePlan] = Field(default_factory=dict)
    default: DefaultPlan = DefaultPlan()

    @field_validator("gates")
    @classmethod
    def _gate_numbers(cls, gates: dict[str, GatePlan]) -> dict[str, GatePlan]:
        for key in gates:
            if not key.isdigit():
                raise ValueError(f"gate {key!r} is not a gate number (0 is the gate after the first sprint)")
        return {str(int(key)): entry for key, entry in gates.items()}


def load_plan(path: Path, spec: CampaignSpec | None = None) -> Plan:
    """Read and validate a plan file; with the campaign's spec, also its parameters, edits and fidelity."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise CampaignFileError(path, [("", "plan file not found")], what="plan") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CampaignFileError(
            path, [("", f"cannot read: {getattr(err, 'strerror', None) or err}")], what="plan"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise CampaignFileError(path, [("", f"TOML syntax: {err}")], what="plan") from None
    try:
        plan = Plan.model_validate(data)
    except ValidationError as err:
        raise CampaignFileError(path, pydantic_problems(err), what="plan") from None
    if spec is not None:
        problems = _plan_problems(plan, spec)
        if problems:
            raise CampaignFileError(path, problems, what="plan")
    return plan


def _plan_problems(plan: Plan, spec: CampaignSpec) -> list[tuple[str, str]]:
    """Edits the campaign cannot take: unknown parameters, bad `set` syntax, unknown fidelity knobs."""
    original = initial_space(spec)
    levels = {name: dict(values) for name, values in spec.fidelity.levels.items()}
    base = next(iter(levels.values()), {})
    problems = []
    for gate, entry in plan.gates.items():
        where = f"gates.{gate}"
        for name, text in entry.set.items():
            if name not in original:
                problems.append((f"{where}.set.{name}", f"no such parameter (parameters: {', '.join(original)})"))
                continue
            try:
                parse_bound_edit(name, text, original[name])
            except SpaceEditError as err:
                problems.append((f"{where}.set.{name}", str(err)))
        for name in entry.frozen():
            if name not in original:
                problems.append((f"{where}.freeze.{name}", f"no such parameter (parameters: {', '.join(original)})"))
        for index, text in enumerate(entry.fidelity):
            try:
                parse_fidelity_edit(text, levels, base)
            except SpaceEditError as err:
                problems.append((f"{where}.fidelity.{index}", str(err)))
    return problems


class PlanPolicy(Policy):
    """Decisions written in advance in a TOML file (see `Plan`):

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

    def __init__(self, path: str | Path, log: Callable = print, spec: CampaignSpec | None = None):
        self.path = Path(path)
        self.log = log
        self.plan = load_plan(self.path, spec)
        self.default = self.plan.default.action

    def decide(self, ledger, gate, proposal, original, current, levels, stop):
        existing = ledger.decision_record(gate)
        if existing is not None:
            return existing
        entry = self.plan.gates.get(str(gate))
        if entry is None:
            if self.default == "wait":
                return WaitPolicy(log=self.log).decide(ledger, gate, proposal, original, current, levels, stop)
            return ledger.decide(gate, auto_decision(proposal), source=f"plan:{self.path.name}")
        try:
            decision = build_decision(
                proposal,
                original,
                current,
                action=entry.action,
                edits=entry.set,
                freeze=entry.frozen(),
                fidelity_edits=entry.fidelity,
                levels=levels,
                extend_trials=entry.extend,
                note=entry.note if entry.note is not None else f"plan {self.path.name}",
            )
        except SpaceEditError as err:
            raise CampaignFileError(self.path, [(f"gates.{gate}", str(err))], what="plan") from None
        return ledger.decide(gate, decision, source=f"plan:{self.path.name}")


def make_policy(text: str, log: Callable = print, spec: CampaignSpec | None = None) -> Policy:
    """`auto`, `wait` or `plan:FILE`; with the campaign's spec a plan file is checked against it now."""
    if text == "auto":
        return AutoPolicy()
    if text == "wait":
        return WaitPolicy(log=log)
    if text.startswith("plan:") and text.removeprefix("plan:").strip():
        return PlanPolicy(text.removeprefix("plan:"), log=log, spec=spec)
    raise UsageError(f"unknown policy {text!r}: use auto, wait or plan:FILE")
