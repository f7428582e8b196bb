"""The headless engine's output: timestamped text lines, or one JSON object per event.

Everything in the engine logs through a plain `log(message)` callable (the console's engine thread
collects those lines). `EventLog` is such a callable that also takes typed events, through `emit`:

    emit(log, "sprint_start", "sprint 1/3 explore: ...", sprint="explore", index=0)

With a plain callable `emit` passes the message on; with an `EventLog` the event keeps its fields.
Text format: `2026-12-04 17:45:12  message`. JSON format: one object per line with `time` (ISO 8601
with seconds and offset), `event`, `message` and the event's fields; plain log lines are events of
kind `message`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from typing import Any

LOG_FORMATS = ("text", "json")
# The events the coordinator emits (a log shipper may filter on them); any other line is a "message".
EVENTS = (
    "campaign_start",
    "sprint_start",
    "trial_done",
    "progress",
    "sprint_done",
    "gate",
    "decision",
    "campaign_done",
    "summary",
    "message",
)


def _write_stdout(line: str) -> None:
    """A vanished terminal (SSH drop) must not kill the engine."""
    try:
        print(line, flush=True)
    except (OSError, ValueError):
        pass


class EventLog:
    """A `log` callable for the headless engine: text lines with a timestamp, or JSON lines."""

    def __init__(
        self,
        log_format: str = "text",
        write: Callable[[str], None] = _write_stdout,
        clock: Callable[[], float] = time.time,
    ):
        if log_format not in LOG_FORMATS:
            raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
        self.log_format = log_format
        self._write = write
        self._clock = clock

    def __call__(self, message: str) -> None:
        self.event("message", message)

    def event(self, event: str, message: str, **fields: Any) -> None:
        moment = dt.datetime.fromtimestamp(self._clock()).astimezone()
        if self.log_format == "json":
            record = {"time": moment.isoformat(timespec="seconds"), "event": event, "message": message, **fields}
            self._write(json.dumps(_finite(record), default=_plain))
            return
        stamp = moment.strftime("%Y-%m-%d %H:%M:%S")
        first, *rest = str(message).split("\n")
        self._write("\n".join([f"{stamp}  {first}", *rest]))


def emit(log: Callable[[str], None], event: str, message: str, **fields: Any) -> None:
    """Send a typed event to `log` when it takes events (EventLog), else its message as a plain line."""
    sink = getattr(log, "event", None)
    if callable(sink):
        sink(event, message, **fields)
    else:
        log(message)


def _finite(value: Any) -> Any:
    """NaN and infinities as null: every line must parse as strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    if hasattr(value, "to_json"):  # a typed record (engine.store.records), e.g. a decision's `who`
        return _finite(value.to_json())
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)
