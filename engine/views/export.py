"""`hpo-tui export`: every trial of every sprint of a campaign, as CSV or JSON.

One row per trial: the sprint and its fidelity, the trial's state, parameters, value, intermediate
values, cost, failure reason and kind, worker and start/end times. CSV has one column per
parameter (`param:NAME`) and per fidelity knob (`fidelity:KNOB`); intermediate values are a JSON
object {step: value} in one column. Reading only: nothing is written to the storage.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from engine.store.ledger import Ledger
from engine.store.schema import (
    COST_ATTR,
    DURATION_ATTR,
    FAIL_KIND_ATTR,
    FAIL_REASON_ATTR,
    RETRIED_ATTR,
    SEEDED_ATTR,
    WORKER_ATTR,
)


@dataclass(frozen=True)
class TrialRecord:
    sprint_index: int
    sprint: str
    study: str
    level: str
    fidelity: dict[str, Any]
    trial: int
    state: str
    value: float | None
    params: dict[str, Any]  # the sprint's fixed parameters too: the full configuration the trial ran
    intermediate: dict[int, float]
    cost: float | None
    duration_s: float | None
    fail_reason: str | None
    fail_kind: str | None
    worker: str | None
    seeded: bool
    retried: bool
    started: str | None  # ISO 8601 with offset
    completed: str | None


def campaign_trials(storage: optuna.storages.BaseStorage, campaign: str) -> list[TrialRecord]:
    """Every trial of every sprint, in sprint then trial-number order."""
    ledger = Ledger(storage, campaign)
    rows = []
    for record in ledger.sprint_records():
        try:
            study_id = storage.get_study_id_from_name(record.study)
        except KeyError:  # a sprint recorded but its study not created yet
            continue
        for trial in storage.get_all_trials(study_id, deepcopy=False):
            attrs = trial.user_attrs
            rows.append(
                TrialRecord(
                    sprint_index=record.index,
                    sprint=record.name,
                    study=record.study,
                    level=record.level,
                    fidelity=dict(record.fidelity),
                    trial=trial.number,
                    state=trial.state.name,
                    value=trial.value,
                    params={**record.fixed, **trial.params},
                    intermediate={int(step): value for step, value in sorted(trial.intermediate_values.items())},
                    cost=attrs.get(COST_ATTR),
                    duration_s=attrs.get(DURATION_ATTR),
                    fail_reason=attrs.get(FAIL_REASON_ATTR),
                    fail_kind=attrs.get(FAIL_KIND_ATTR),
                    worker=attrs.get(WORKER_ATTR),
                    seeded=bool(attrs.get(SEEDED_ATTR, False)),
                    retried=bool(attrs.get(RETRIED_ATTR, False)),
                    started=_iso(trial.datetime_start),
                    completed=_iso(trial.datetime_complete),
                )
            )
    return rows


def _iso(moment) -> str | None:
    """Optuna's naive local times, with their offset: readable on another host."""
    return moment.astimezone().isoformat(timespec="seconds") if moment is not None else None


def to_json(rows: list[TrialRecord], campaign: str) -> str:
    return json.dumps({"campaign": campaign, "trials": [asdict(row) for row in rows]}, indent=1, default=str)


FIXED_COLUMNS = (
    "sprint_index",
    "sprint",
    "study",
    "level",
    "trial",
    "state",
    "value",
    "cost",
    "duration_s",
    "fail_reason",
    "fail_kind",
    "worker",
    "seeded",
    "retried",
    "started",
    "completed",
)


def to_csv(rows: list[TrialRecord]) -> str:
    params = _union(row.params for row in rows)
    knobs = _union(row.fidelity for row in rows)
    columns = [*FIXED_COLUMNS, *(f"fidelity:{k}" for k in knobs), *(f"param:{p}" for p in params), "intermediate"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        line = {name: _cell(getattr(row, name)) for name in FIXED_COLUMNS}
        line.update({f"fidelity:{k}": _cell(row.fidelity.get(k)) for k in knobs})
        line.update({f"param:{p}": _cell(row.params.get(p)) for p in params})
        line["intermediate"] = json.dumps({str(step): value for step, value in row.intermediate.items()})
        writer.writerow(line)
    return out.getvalue()


def _union(dicts) -> list[str]:
    names: dict[str, None] = {}
    for mapping in dicts:
        names.update(dict.fromkeys(mapping))
    return list(names)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # full precision, round-trips through float()
    return value
