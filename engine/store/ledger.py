"""The decision ledger: the campaign's own state, kept in its Optuna storage.

Size (~400 lines): every ledger record's read and write, and the decision compare-and-set.

A campaign-level study (`<name>/campaign`) holds the records as study user attributes, one key per
record (`spec`, `state`, `sprint:<i>`, `proposal:<g>`, `decision:<g>`, ...; engine.store.schema names
them all and documents how a large record is split so that optuna-dashboard shows it in full).
One key per record means writers never read-modify-write each other's data, so the TUI, a
headless engine, remote workers and `hpo-tui approve` can share it safely. A gate's decision is a
compare-and-set: the writer that creates the gate's claim study first is the one whose decision
counts; every other writer gets `GateAlreadyDecided`.

JSON conversion happens here and nowhere else: the records come out typed (engine.store.records), except
the spec (engine.spec.CampaignSpec's JSON, which this layer cannot import) and the original space
(engine.search.space's parameter -> range record mapping).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from engine.errors import GateAlreadyDecided
from engine.store.records import (
    CampaignState,
    Decision,
    DecisionDraft,
    FidelityRequest,
    Proposal,
    SprintRecord,
    Stamp,
    ThresholdsResult,
)
from engine.store.schema import (
    CLAIM_ATTR,
    DECISION_PREFIX,
    FIDELITY_REQUEST_PREFIX,
    ORIGINAL_SPACE_KEY,
    PROPOSAL_PREFIX,
    SPEC_KEY,
    SPRINT_PREFIX,
    STATE_KEY,
    THRESHOLDS_PREFIX,
    campaign_of_study,
    campaign_study_name,
    decision_claim_study_name,
    decision_key,
    decode_record,
    decode_records,
    encode_record,
    fidelity_request_key,
    key_index,
    keys_with_prefix,
    now_iso,
    proposal_key,
    record_paths,
    sprint_key,
    thresholds_key,
    who,
)

__all__ = [
    "CampaignNotFound",
    "DecisionConflict",
    "GateAlreadyDecided",
    "Ledger",
    "LedgerStorage",
    "LedgerView",
    "fidelity_request_key",
    "list_campaigns",
    "now_iso",
    "who",
]

WINNER_WAIT_S = 5.0  # a loser waits this long for the winner's decision record to appear
STALE_CLAIM_S = 60.0  # a claim with no decision record after this long was left by a crashed writer
POLL_S = 0.1


class CampaignNotFound(LookupError):
    pass


DecisionConflict = GateAlreadyDecided  # the older name


@dataclass(frozen=True)
class LedgerView:
    """Every record of a campaign's ledger, typed, from one read of the storage."""

    spec: Mapping[str, Any] | None  # the campaign file as stored (engine.spec.CampaignSpec's JSON)
    original_space: Mapping[str, Any]
    state: CampaignState
    sprints: tuple[SprintRecord, ...]  # by index
    proposals: Mapping[int, Proposal]  # by gate
    decisions: tuple[Decision, ...]  # by gate
    fidelity_requests: Mapping[int, FidelityRequest]  # by gate
    thresholds: Mapping[str, ThresholdsResult]  # by `STUDY:TRIAL` (engine.store.schema.thresholds_id)

    @classmethod
    def from_records(cls, records: Mapping[str, Any]) -> LedgerView:
        return cls(
            spec=records.get(SPEC_KEY),
            original_space=records.get(ORIGINAL_SPACE_KEY) or {},
            state=CampaignState.from_json(records.get(STATE_KEY) or {}),
            sprints=tuple(SprintRecord.from_json(records[k]) for k in keys_with_prefix(records, SPRINT_PREFIX)),
            proposals={
                key_index(k): Proposal.from_json(records[k]) for k in keys_with_prefix(records, PROPOSAL_PREFIX)
            },
            decisions=tuple(Decision.from_json(records[k]) for k in keys_with_prefix(records, DECISION_PREFIX)),
            fidelity_requests={
                key_index(k): FidelityRequest.from_json(records[k])
                for k in keys_with_prefix(records, FIDELITY_REQUEST_PREFIX)
            },
            thresholds=thresholds_of(records),
        )

    def sprint(self, index: int) -> SprintRecord | None:
        return next((s for s in self.sprints if s.index == index), None)

    def decision(self, gate: int) -> Decision | None:
        return next((d for d in self.decisions if d.gate == gate), None)

    @property
    def pending_gate(self) -> int | None:
        """The gate waiting for a decision, if any."""
        gate = self.state.pending_gate
        return None if gate is None or self.decision(gate) is not None else gate

    @property
    def next_gate(self) -> int:
        """The gate waiting, else the next gate to come."""
        pending = self.pending_gate
        return pending if pending is not None else self.state.gate


class LedgerStorage(Protocol):
    """What the ledger uses of a storage: any Optuna storage, or the journal's engine.store.journal_writer."""

    def get_study_id_from_name(self, study_name: str) -> int: ...
    def create_new_study(self, directions: Sequence[optuna.study.StudyDirection], study_name: str) -> int: ...
    def delete_study(self, study_id: int) -> None: ...
    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]: ...
    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None: ...


class Ledger:
    def __init__(self, storage: LedgerStorage, campaign: str, *, create: bool = False):
        self.storage = storage
        self.campaign = campaign
        name = campaign_study_name(campaign)
        try:
            self.study_id = storage.get_study_id_from_name(name)
        except KeyError:
            if not create:
                raise CampaignNotFound(f"no campaign {campaign!r} in this storage") from None
            try:
                self.study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
            except optuna.exceptions.DuplicatedStudyError:
                self.study_id = storage.get_study_id_from_name(name)

    # Raw records (JSON values; only this module converts them) -------------------------------
    def _attrs(self) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(self.study_id)

    def _get(self, key: str) -> Any:
        return decode_record(key, self._attrs(), None)

    def put(self, key: str, value: Any) -> None:
        """Store a record (split into parts of at most engine.store.schema.ATTR_VALUE_LIMIT characters).

        For the records with no type of their own (the spec and the original space, written once by
        the coordinator) and for tests that write a ledger by hand; the typed records have put_* methods.
        """
        plain = json.loads(json.dumps(value, default=_plain))
        current = self._attrs()
        wanted = encode_record(key, plain)
        for path, part in wanted.items():  # parts first, markers last
            if path not in current or current[path] != part:
                self.storage.set_study_user_attr(self.study_id, path, part)
        for path in record_paths(key, current):
            if path not in wanted and current[path] is not None:
                self.storage.set_study_user_attr(self.study_id, path, None)  # a part no longer used

    def records(self) -> dict[str, Any]:
        """Every record as stored, by ledger key (what `view` types; tests compare the stored JSON)."""
        return decode_records(self._attrs())

    # Typed records ---------------------------------------------------------------------------
    def view(self) -> LedgerView:
        """Every record, typed, from one read."""
        return LedgerView.from_records(self.records())

    def spec(self) -> Mapping[str, Any] | None:
        """The campaign file as stored: engine.spec.CampaignSpec's JSON, which the storage layer cannot
        import (callers validate it with `CampaignSpec.model_validate`)."""
        return self._get(SPEC_KEY)

    def original_space(self) -> dict[str, Any] | None:
        """The campaign's search space: parameter -> range record (engine.search.space.Space)."""
        return self._get(ORIGINAL_SPACE_KEY)

    def campaign_state(self) -> CampaignState:
        return CampaignState.from_json(self._get(STATE_KEY) or {})

    def set_state(self, **changes: Any) -> CampaignState:
        """Change fields of the campaign state (a TypeError names a field CampaignState lacks)."""
        state = self.campaign_state().replace(**changes, updated=now_iso())
        self.put(STATE_KEY, state.to_json())
        return state

    def sprint_record(self, index: int) -> SprintRecord | None:
        data = self._get(sprint_key(index))
        return None if data is None else SprintRecord.from_json(data)

    def sprint_records(self) -> list[SprintRecord]:
        """Every sprint's record, by index."""
        records = self.records()
        return [SprintRecord.from_json(records[k]) for k in keys_with_prefix(records, SPRINT_PREFIX)]

    def put_sprint(self, record: SprintRecord) -> None:
        self.put(sprint_key(record.index), record.to_json())

    def proposal_record(self, gate: int) -> Proposal | None:
        data = self._get(proposal_key(gate))
        return None if data is None else Proposal.from_json(data)

    def put_proposal(self, gate: int, proposal: Proposal) -> None:
        self.put(proposal_key(gate), proposal.to_json())

    def decision_record(self, gate: int) -> Decision | None:
        data = self._get(decision_key(gate))
        return None if data is None else Decision.from_json(data)

    def decision_records(self) -> list[Decision]:
        """Every decision, by gate."""
        records = self.records()
        return [Decision.from_json(records[k]) for k in keys_with_prefix(records, DECISION_PREFIX)]

    def pending_gate(self) -> int | None:
        """The gate waiting for a decision, if any."""
        gate = self.campaign_state().pending_gate
        if gate is None or self.decision_record(gate) is not None:
            return None
        return gate

    def gate_to_decide(self) -> int | None:
        """The gate waiting for a decision; GateAlreadyDecided if the waiting gate was decided meanwhile."""
        gate = self.campaign_state().pending_gate
        if gate is None:
            return None
        existing = self.decision_record(gate)
        if existing is not None:
            raise GateAlreadyDecided(conflict_message(gate, existing), winner=existing)
        return gate

    def record_decision(self, gate: int, draft: DecisionDraft, *, source: str) -> Decision:
        """Store the gate's decision, `draft` stamped with the gate, `source`, who and when, if no one
        decided it first (on every storage: a compare-and-set).

        Raises GateAlreadyDecided, carrying the winner's decision when it could be read, otherwise.
        """
        existing = self.decision_record(gate)
        if existing is not None:
            raise GateAlreadyDecided(conflict_message(gate, existing), winner=existing)
        record = Decision(
            gate=gate,
            action=draft.action,
            source=source,
            who=Stamp.from_json(who()),
            when=now_iso(),
            space=draft.space,
            fidelity=draft.fidelity,
            diff=draft.diff,
            note=draft.note,
            extend_trials=draft.extend_trials,
            extra=draft.extra,
        )
        if not self._claim(record):
            winner = self._winner(gate)
            raise GateAlreadyDecided(conflict_message(gate, winner), winner=winner)
        self.put(decision_key(gate), record.to_json())
        return record

    def decide(self, gate: int, draft: DecisionDraft, *, source: str) -> Decision:
        """For the coordinator's policies: record `draft`, or take the decision that got there first."""
        while True:
            try:
                return self.record_decision(gate, draft, source=source)
            except GateAlreadyDecided:
                pass
            deadline = time.monotonic() + STALE_CLAIM_S  # then try again: the claim may be stale
            while time.monotonic() < deadline:
                record = self.decision_record(gate)
                if record is not None:
                    return record
                time.sleep(POLL_S)

    def _claim(self, record: Decision) -> bool:
        """Create the gate's claim study: True for exactly one writer."""
        name = decision_claim_study_name(self.campaign, record.gate)
        for _ in range(2):
            try:
                claim_id = self.storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
            except optuna.exceptions.DuplicatedStudyError:
                if not self._remove_stale_claim(record.gate, name):
                    return False
                continue
            # Who holds the claim, for a loser that reads it before the decision record is written.
            stamp = {"action": record.action, "source": record.source, "when": record.when, "user": record.who.user}
            self.storage.set_study_user_attr(claim_id, CLAIM_ATTR, stamp)
            return True
        return False

    def _remove_stale_claim(self, gate: int, name: str) -> bool:
        """A claim whose writer died before writing its decision would block the gate for good."""
        if self.decision_record(gate) is not None:
            return False
        try:
            claim_id = self.storage.get_study_id_from_name(name)
            stamp = self.storage.get_study_user_attrs(claim_id).get(CLAIM_ATTR)
        except KeyError:
            return True  # removed meanwhile: claim again
        if not stamp or _age_s(stamp["when"]) < STALE_CLAIM_S:
            return False
        try:
            self.storage.delete_study(claim_id)
        except KeyError:
            pass
        return True

    def _winner(self, gate: int) -> Decision | None:
        """The winner's decision, waiting briefly for it; else what its claim says (action, source, when,
        user: no space or fidelity yet), if anything."""
        deadline = time.monotonic() + WINNER_WAIT_S
        while True:
            record = self.decision_record(gate)
            if record is not None:
                return record
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        try:
            claim_id = self.storage.get_study_id_from_name(decision_claim_study_name(self.campaign, gate))
            stamp = self.storage.get_study_user_attrs(claim_id).get(CLAIM_ATTR)
        except KeyError:
            return None
        if not stamp:
            return None
        return Decision(
            gate=gate, action=stamp["action"], source=stamp["source"], when=stamp["when"], who=Stamp(user=stamp["user"])
        )

    def fidelity_request_record(self, gate: int) -> FidelityRequest | None:
        """A fidelity staged (from the console) for a gate not reached yet."""
        data = self._get(fidelity_request_key(gate))
        return None if data is None else FidelityRequest.from_json(data)

    def stage_fidelity(self, gate: int, edits: Sequence[str], values: Mapping[str, Any], label: str) -> FidelityRequest:
        """Stage a fidelity for `gate`, stamped with who and when."""
        request = FidelityRequest(
            edits=tuple(edits),
            values=dict(values),
            label=label,
            gate=gate,
            who=Stamp.from_json(who()),
            when=now_iso(),
        )
        self.put(fidelity_request_key(gate), request.to_json())
        return request

    def thresholds(self) -> dict[str, ThresholdsResult]:
        """Threshold results by `STUDY:TRIAL` (engine.store.schema.thresholds_id)."""
        return thresholds_of(self.records())

    def put_thresholds(self, result: ThresholdsResult) -> None:
        """Store a stamped result (engine.thresholds.store_result) under its study and trial."""
        if result.study is None or result.trial is None:
            raise ValueError("a thresholds result is stored with its study and trial")
        self.put(thresholds_key(result.study, result.trial), result.to_json())


def thresholds_of(records: Mapping[str, Any]) -> dict[str, ThresholdsResult]:
    return {
        k.removeprefix(THRESHOLDS_PREFIX): ThresholdsResult.from_json(v)
        for k, v in records.items()
        if k.startswith(THRESHOLDS_PREFIX)
    }


def conflict_message(gate: int, winner: Decision | None) -> str:
    if winner is None:
        return f"gate {gate} was already decided by another writer (its record is not readable yet)"
    return (
        f"gate {gate} was already decided by {winner.who.user} via {winner.source} at {winner.when} ({winner.action})"
    )


def _age_s(when: str) -> float:
    return (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(when)).total_seconds()


def _plain(obj: Any) -> Any:
    if hasattr(obj, "to_json"):  # a typed record (engine.store.records)
        return obj.to_json()
    return obj.item() if hasattr(obj, "item") else str(obj)


def list_campaigns(storage: optuna.storages.BaseStorage) -> list[str]:
    names = (campaign_of_study(s.study_name) for s in storage.get_all_studies())
    return [name for name in names if name is not None]
