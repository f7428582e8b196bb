"""The decision ledger: the campaign's own state, kept in its Optuna storage.

A campaign-level study (`<name>/campaign`) holds, as study user attributes, one key per record:
`spec`, `state`, `sprint:<i>`, `proposal:<i>`, `decision:<i>`, `thresholds:<study>:<trial>`.
One key per record means writers never read-modify-write each other's data, so the TUI, a
headless engine, remote workers and `hpo-tui approve` can share it safely.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from typing import Any

import optuna

CAMPAIGN_SUFFIX = "/campaign"


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def who() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": str(os.getpid())}


class CampaignNotFound(LookupError):
    pass


class Ledger:
    def __init__(self, storage: optuna.storages.BaseStorage, campaign: str, *, create: bool = False):
        self.storage = storage
        self.campaign = campaign
        name = campaign + CAMPAIGN_SUFFIX
        try:
            self.study_id = storage.get_study_id_from_name(name)
        except KeyError:
            if not create:
                raise CampaignNotFound(f"no campaign {campaign!r} in this storage") from None
            try:
                self.study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
            except optuna.exceptions.DuplicatedStudyError:
                self.study_id = storage.get_study_id_from_name(name)

    # Raw records -----------------------------------------------------------------------------
    def _all(self) -> dict[str, Any]:
        return self.storage.get_study_user_attrs(self.study_id)

    def get(self, key: str, default: Any = None) -> Any:
        return self._all().get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(self.study_id, key, json.loads(json.dumps(value, default=_plain)))

    def records(self) -> dict[str, Any]:
        return self._all()

    # Typed views -----------------------------------------------------------------------------
    def spec(self) -> dict | None:
        return self.get("spec")

    def state(self) -> dict:
        return self.get("state") or {"status": "new", "sprint": 0, "paused": False}

    def set_state(self, **changes: Any) -> dict:
        state = {**self.state(), **changes, "updated": now_iso()}
        self.put("state", state)
        return state

    def sprint(self, index: int) -> dict | None:
        return self.get(f"sprint:{index}")

    def sprints(self) -> list[dict]:
        attrs = self._all()
        return [attrs[k] for k in sorted((k for k in attrs if k.startswith("sprint:")), key=_index)]

    def proposal(self, gate: int) -> dict | None:
        return self.get(f"proposal:{gate}")

    def decision(self, gate: int) -> dict | None:
        return self.get(f"decision:{gate}")

    def decisions(self) -> list[dict]:
        attrs = self._all()
        return [attrs[k] for k in sorted((k for k in attrs if k.startswith("decision:")), key=_index)]

    def pending_gate(self) -> int | None:
        """The gate waiting for a decision, if any."""
        state = self.state()
        gate = state.get("pending_gate")
        if gate is None or self.decision(gate) is not None:
            return None
        return gate

    def record_decision(self, gate: int, decision: dict, *, source: str) -> dict:
        """Store a decision once; a gate already decided keeps its first decision."""
        existing = self.decision(gate)
        if existing is not None:
            raise DecisionConflict(
                f"gate {gate} was already decided ({existing['action']}) by {existing['who']['user']} "
                f"via {existing['source']} at {existing['when']}"
            )
        record = {**decision, "gate": gate, "source": source, "who": who(), "when": now_iso()}
        self.put(f"decision:{gate}", record)
        return record

    def fidelity_request(self, gate: int) -> dict | None:
        """A fidelity staged (from the console) for a gate not reached yet: {"edits": [...], ...}."""
        return self.get(fidelity_request_key(gate))

    def thresholds(self) -> dict[str, dict]:
        attrs = self._all()
        return {k.removeprefix("thresholds:"): v for k, v in attrs.items() if k.startswith("thresholds:")}

    def put_thresholds(self, study_name: str, trial_number: int, result: dict) -> None:
        self.put(f"thresholds:{study_name}:{trial_number}", result)


def fidelity_request_key(gate: int) -> str:
    return f"fidelity_request:{gate}"


class DecisionConflict(RuntimeError):
    pass


def _index(key: str) -> int:
    return int(key.split(":", 1)[1])


def _plain(obj: Any) -> Any:
    return obj.item() if hasattr(obj, "item") else str(obj)


def list_campaigns(storage: optuna.storages.BaseStorage) -> list[str]:
    return [
        s.study_name.removesuffix(CAMPAIGN_SUFFIX)
        for s in storage.get_all_studies()
        if s.study_name.endswith(CAMPAIGN_SUFFIX)
    ]
