"""The ledger's records as typed, frozen values: the campaign state, a sprint, a proposal and its
per-parameter rows, a decision (and its draft), a staged fidelity, a thresholds result.

Each record's defaults are written here once; `from_json` fills what an older record lacks, so a
reader never restates a default. JSON conversion (`from_json`, `to_json`) is called by
engine.store.ledger only. A field a newer writer added and this version does not know is kept in
`extra` and written back unchanged.

Space and fidelity values stay plain mappings (a parameter's range record, a level's knobs): they
are the campaign file's own shapes, validated by engine.spec / engine.search.space where they are made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from engine.store.schema import CampaignStatus, SprintStatus

R = TypeVar("R", bound="_Record")


class _Record:
    """from_json / to_json for a frozen dataclass whose unknown JSON fields go to `extra`."""

    extra: Mapping[str, Any]
    _nested: dict[str, type[_Record]] = {}
    # Declared, not set: every subclass is a dataclass, which sets it; lets mypy see one (fields, replace).
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # field name -> record type of that field's value

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in known:
                continue
            nested = cls._nested.get(name)
            if nested is not None and isinstance(value, Mapping):
                value = nested.from_json(value)
            values[name] = _freeze(value)
        extra = {k: v for k, v in data.items() if k not in known}
        # ignore: the __init__ is the dataclass subclass's; mypy sees only _Record's (none declared)
        return cls(**values, extra=extra)  # type: ignore[call-arg]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            data[f.name] = value.to_json() if isinstance(value, _Record) else _thaw(value)
        return {**data, **_thaw(self.extra)}

    def replace(self: R, **changes: Any) -> R:
        return dataclasses.replace(self, **changes)


def _freeze(value: Any) -> Any:
    """Lists become tuples so a record's fields cannot be changed in place (mappings stay as read)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Stamp(_Record):
    """Who wrote a record: user, host and process."""

    user: str = "?"
    host: str = "?"
    pid: str = "?"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignState(_Record):
    status: str = CampaignStatus.NEW
    sprint: int = 0  # the current sprint's index
    gate: int = 0  # the gate counter: the next gate's number (an `extend` takes a number too)
    pending_gate: int | None = None  # the gate waiting for a decision
    paused: bool = False
    error: str | None = None
    coordinator: Mapping[str, Any] | None = None  # who runs it, since when
    lease: int | None = None  # the running coordinator's lease generation (engine.store.lease)
    updated: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def engine_active(self) -> bool:
        return self.status in (CampaignStatus.RUNNING, CampaignStatus.WAITING)


@dataclass(frozen=True)
class SprintRecord(_Record):
    """Everything a worker on any host needs to run a sprint's trials (engine.execution.sprint.make_record)."""

    index: int
    name: str
    study: str
    sampler: str
    pruner: str
    space: Mapping[str, Any]  # parameter -> range record
    tuned: tuple[str, ...]
    fixed: Mapping[str, Any]  # parameter -> the value it is held at
    level: str
    fidelity: Mapping[str, Any]  # knob -> value
    sampler_options: Mapping[str, Any] | None = None
    pruner_options: Mapping[str, Any] | None = None
    n_trials: int | None = None
    timeout_s: float | None = None
    budget_cost: float | None = None
    budget_seconds: float | None = None
    status: str = SprintStatus.RUNNING
    started: str | None = None
    started_ts: float | None = None
    closed: str | None = None
    seeded: tuple[Mapping[str, Any], ...] = ()  # the earlier sprints' best configurations enqueued first
    probes: tuple[Mapping[str, Any], ...] = ()  # out-of-box probes enqueued (engine.gates.reopen): param, side, value
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.status == SprintStatus.RUNNING


@dataclass(frozen=True)
class ParamRow(_Record):
    """One parameter of a proposal: its ranges, the evidence, and why it changed."""

    kind: str  # the parameter's type in the campaign file
    original: Mapping[str, Any]
    current: Mapping[str, Any]
    proposed: Mapping[str, Any]
    importance: float | None = None
    edge: str | None = None  # low / high / both: the best values sit at that edge
    freeze: bool = False
    note: str = ""
    best: Any = None
    top_min: float | None = None
    top_max: float | None = None
    top_counts: Mapping[str, int] | None = None
    reopen: tuple[str, ...] = ()  # the sides re-opened towards the campaign's bounds (engine.gates.reopen)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.current != self.proposed


@dataclass(frozen=True)
class ProposalFidelity(_Record):
    """The next sprint's fidelity as proposed: its level and that level's knob values."""

    level: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)  # knob -> value
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProposalEvidence(_Record):
    """What a proposal rests on: the finished sprint's completed trials, its best, and the gate's rules."""

    completed: int = 0
    top_k: int = 0  # the distinct configurations the ranges were narrowed from
    best_value: float | None = None
    best_params: Mapping[str, Any] = field(default_factory=dict)
    best_trial: int | None = None
    agreement: Mapping[str, Any] | None = None  # engine.gates.proposal.fidelity_agreement: pairs, rho, from, to
    narrowing_rule: str = ""
    narrowed: bool = True  # False: too little evidence, every range kept
    reopened: tuple[Mapping[str, Any], ...] = ()  # {"param", "side", "reason"} per side re-opened
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Proposal(_Record):
    """The gate's proposal after sprint `sprint` for the next one (engine.gates.proposal.make_proposal)."""

    gate: int
    after: str  # the finished sprint's name
    next: str  # the next sprint's name
    params: Mapping[str, ParamRow]
    space: Mapping[str, Any] = field(default_factory=dict)  # the proposed range record per parameter
    fidelity: ProposalFidelity = field(default_factory=ProposalFidelity)
    sampler: str = ""
    pruner: str = ""
    n_trials: int | None = None
    evidence: ProposalEvidence = field(default_factory=ProposalEvidence)
    created: str | None = None
    sprint: int | None = None  # the finished sprint's index
    extra: Mapping[str, Any] = field(default_factory=dict)
    _nested = {"fidelity": ProposalFidelity, "evidence": ProposalEvidence}

    @property
    def finished_sprint(self) -> int:
        """The finished sprint's index (a record older than the `sprint` field: its gate was its index)."""
        return self.gate if self.sprint is None else self.sprint

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Proposal:
        rows = {name: ParamRow.from_json(row) for name, row in (data.get("params") or {}).items()}
        return super().from_json({**data, "params": {}}).replace(params=rows)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "params": {name: row.to_json() for name, row in self.params.items()}}


@dataclass(frozen=True)
class DecisionDraft(_Record):
    """A validated decision before the ledger records it (engine.gates.decisions.build_decision): what
    `Ledger.record_decision` stamps with the gate, source, who and when into a `Decision`."""

    action: str  # approve / edit / reject / extend
    space: Mapping[str, Any] = field(default_factory=dict)  # the next sprint's range record per parameter
    fidelity: Mapping[str, Any] = field(default_factory=dict)  # knob -> value
    diff: tuple[str, ...] = ()
    note: str = ""
    extend_trials: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision(_Record):
    """A gate's decision (engine.gates.decisions builds it; the ledger stamps gate, source, who and when)."""

    gate: int
    action: str  # approve / edit / reject / extend
    source: str  # cli, tui, policy:auto, plan:FILE
    who: Stamp
    when: str
    space: Mapping[str, Any] = field(default_factory=dict)
    fidelity: Mapping[str, Any] = field(default_factory=dict)
    diff: tuple[str, ...] = ()
    note: str = ""
    extend_trials: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _nested = {"who": Stamp}

    def line(self) -> str:
        """`approve by USER@HOST via SOURCE at TIME`."""
        return f"{self.action} by {self.who.user}@{self.who.host} via {self.source} at {self.when}"


@dataclass(frozen=True)
class FidelityRequest(_Record):
    """A fidelity staged from the console for a gate not reached yet."""

    edits: tuple[str, ...] = ()
    values: Mapping[str, Any] = field(default_factory=dict)
    label: str = "?"
    gate: int | None = None
    who: Stamp | None = None
    when: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _nested = {"who": Stamp}


@dataclass(frozen=True)
class ThresholdsResult(_Record):
    """Per-class decision thresholds learned on a trial's saved probabilities (engine.thresholds), and who
    stored them (engine.thresholds.store_result). `table` holds one JSON row per class: class, threshold,
    val_positives, test_positives, val_cv and test (F1 per strategy); `overall` the F1 over all classes."""

    metric: str
    optimizer: str
    folds: int
    classes: tuple[str, ...]
    thresholds: Mapping[str, float]  # class -> its own threshold
    global_threshold: float
    table: tuple[Mapping[str, Any], ...]
    overall: Mapping[str, Any]  # {"val_cv": {metric: {strategy: F1}}, "test": the same or None}
    recommended: str  # the strategy with the best cross-validated score
    n_val: int
    recommended_thresholds: Mapping[str, float] = field(default_factory=dict)
    shrinkage: float | None = None
    tolerance: float | None = None
    seed: int = 0
    n_test: int | None = None
    trial: int | None = None
    study: str | None = None
    source: str | None = None  # cli, tui, policy: set when stored
    who: Stamp | None = None
    when: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _nested = {"who": Stamp}
