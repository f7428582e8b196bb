"""Short, fixed-width text for numbers, durations and times, shared by every screen."""
from __future__ import annotations

import math
import time
from typing import Any

STATE_LABELS = {
    "COMPLETE": "done",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "queued",
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


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


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
