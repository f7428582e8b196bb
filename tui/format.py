"""Short, fixed-width text for numbers, durations and times, shared by every screen."""

from __future__ import annotations

import math
import time
from typing import Any

from engine.units import duration as duration  # re-exported: every screen formats with fmt.duration

STATE_LABELS = {
    "COMPLETE": "done",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "queued",
}

# Why a trial failed (its user attribute fail_kind), in at most 7 columns: the first four are the
# objective's doing, `stale` and `died` the engine's (the worker disappeared; usually retried).
FAIL_LABELS = {
    "raised": "failed",
    "bad_value": "badval",
    "timeout": "timeout",
    "oom": "oom",
    "worker_died": "died",
    "stale": "stale",
}
FAIL_WORDS = {
    "raised": "raised an exception",
    "bad_value": "returned a bad value",
    "timeout": "timed out",
    "oom": "ran out of memory",
    "worker_died": "its worker process died",
    "stale": "stale: its worker stopped heartbeating",
}


def number(value: Any, digits: int = 6) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def param(value: Any) -> str:
    return number(value, 4)


def clock(epoch: float | None) -> str:
    """Local wall-clock time of day; the operator compares it with the clock on the wall."""
    if epoch is None:
        return "--:--:--"
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def span(record: dict[str, Any] | None) -> str:
    """A search-space record as the operator types it back: LOW:HIGH, a,b,c or =VALUE."""
    if not record:
        return "-"
    kind = record.get("type")
    if kind in ("float", "int"):
        return f"{param(record['low'])}:{param(record['high'])}"
    if kind == "categorical":
        return ",".join(str(c) for c in record["choices"])
    return f"={param(record.get('value'))}"


def fidelity(values: Any) -> str:
    items = values.items() if hasattr(values, "items") else values
    return ", ".join(f"{k}={number(v, 4)}" for k, v in items)


def state(name: str) -> str:
    return STATE_LABELS.get(name, name.lower())


def fail_label(kind: str | None) -> str:
    return FAIL_LABELS.get(kind or "raised", (kind or "failed")[:7])


def trial_state(name: str, fail_kind: str | None = None) -> str:
    """A trial's state in the table: failed trials say how they failed."""
    return fail_label(fail_kind) if name == "FAIL" else state(name)


def hits(stage_hits: int, stage_runs: int, inherited: bool = False) -> str:
    """Stage cache hits of a trial: `2/3`, `+c` when it started from an inherited checkpoint."""
    if not stage_runs and not inherited:
        return "-"
    return f"{stage_hits}/{stage_runs}" + ("+c" if inherited else "")
