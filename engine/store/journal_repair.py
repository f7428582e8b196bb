"""A journal file that survives a torn write: detect a partial or unparsable line, refuse, repair.

Optuna's JournalFileBackend is line-delimited JSON, appended under a lock. A crash or a full disk
mid-write leaves a partial last line; Optuna then skips it on read and appends the next record
after it, after which every read fails. Here:

- `GuardedJournalBackend` checks the tail on open (a partial or unparsable last line) and before
  every append (the file must end with a newline), so nothing is ever appended after a bad line;
  any unreadable line met while replaying becomes `CorruptStorage` naming the record and byte.
- `repair_journal` keeps a backup, truncates to the last complete, parsable record and reports what
  was dropped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation  # the record format's operation codes

from engine.errors import CorruptStorage, StorageRefused

TAIL_BYTES = 1 << 16  # the last line is read from at most this much of the file's end
TAIL_SETTLE_S = 1.0  # a tail still growing (a writer mid-append) is re-read for this long


@dataclass(frozen=True)
class JournalDamage:
    """Where a journal stops being readable: the first bad line."""

    path: Path
    good_records: int  # complete, parsable records before the bad line
    offset: int  # byte offset of the bad line (the length the file is repaired to)
    kind: str  # "a partial line" or "an unparsable line"
    size: int  # the file's size when scanned

    def message(self, campaign: str | None = None) -> str:
        target = campaign or "CAMPAIGN"
        return (
            f"journal {self.path} is damaged after record {self.good_records} (byte {self.offset}: {self.kind}); "
            f"run `hpo-tui repair {target}` (a backup is kept)"
        )


@dataclass(frozen=True)
class RepairReport:
    path: Path
    backup: Path | None  # None when the journal was intact
    kept_records: int
    dropped_lines: int = 0
    dropped_bytes: int = 0
    operations: dict[str, int] = field(default_factory=dict)  # dropped parsable records by operation
    trial_ids: tuple[int, ...] = ()  # storage trial ids the dropped records touched
    study_ids: tuple[int, ...] = ()


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return False


def scan(path: Path) -> JournalDamage | None:
    """Stream the whole file; the first partial or unparsable line, or None when every line is good."""
    offset = records = 0
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return JournalDamage(path, records, offset, "a partial line", os.fstat(handle.fileno()).st_size)
            if not _is_record(line):
                return JournalDamage(path, records, offset, "an unparsable line", os.fstat(handle.fileno()).st_size)
            offset += len(line)
            records += 1
    return None


def tail_is_sound(path: Path) -> bool:
    """The file is empty, or ends with a newline and its last line is a JSON object (one small read)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return True
        handle.seek(max(0, size - TAIL_BYTES))
        tail = handle.read()
    if not tail.endswith(b"\n"):
        return False
    body = tail[:-1]
    cut = body.rfind(b"\n")
    if cut < 0 and size > len(tail):
        return True  # one line longer than TAIL_BYTES: the replay parses it anyway
    return _is_record(body[cut + 1 :])


def check_journal(path: Path, campaign: str | None = None) -> None:
    """Raise CorruptStorage when the journal's tail is torn; cheap enough to run at every open.

    A line in the middle is parsed by Optuna's replay anyway (`GuardedJournalBackend.read_logs`
    turns a failure there into the same error). A tail still growing is a writer mid-append.
    """
    deadline = time.monotonic() + TAIL_SETTLE_S
    size = path.stat().st_size
    while not tail_is_sound(path):
        time.sleep(0.1)
        grown = path.stat().st_size
        if grown == size and time.monotonic() > deadline:
            damage = scan(path)
            if damage is not None:
                raise CorruptStorage(damage.message(campaign))
            return
        size = grown


class GuardedJournalBackend(JournalFileBackend):
    """Optuna's journal file, refusing to read past or append after a damaged line."""

    def __init__(self, file_path: str, *, campaign: str | None = None) -> None:
        self.campaign = campaign
        super().__init__(file_path)
        check_journal(Path(file_path), campaign)

    def _damage(self) -> CorruptStorage:
        damage = scan(Path(self._file_path))
        if damage is None:  # unreadable although every line parses: a record Optuna cannot apply
            return CorruptStorage(f"journal {self._file_path} holds a record Optuna cannot read")
        return CorruptStorage(damage.message(self.campaign))

    def read_logs(self, log_number_from: int):
        try:
            yield from super().read_logs(log_number_from)
        except ValueError:  # JSONDecodeError, or Optuna's "Invalid log format." for a partial line
            raise self._damage() from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        try:
            self._append_after_check(logs)
        except OSError as err:  # read-only file system, no permission, disk full: one line, exit 7
            raise StorageRefused(f"cannot write journal {self._file_path}: {err.strerror or err}") from None

    def _append_after_check(self, logs: list[dict[str, Any]]) -> None:
        with get_lock_file(self._lock):
            with open(self._file_path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size:
                    handle.seek(size - 1)
                    if handle.read(1) != b"\n":
                        raise self._damage()
            payload = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._file_path, "ab") as handle:
                handle.write(payload.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())


def _dropped_summary(path: Path, offset: int) -> tuple[int, Counter[str], set[int], set[int]]:
    lines = 0
    operations: Counter[str] = Counter()
    trials: set[int] = set()
    studies: set[int] = set()
    with open(path, "rb") as handle:
        handle.seek(offset)
        for line in handle:
            lines += 1
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                operations["partial line" if not line.endswith(b"\n") else "unparsable line"] += 1
                # a torn record still names its trial: keep that for the report
                trials.update(int(m) for m in re.findall(rb'"trial_id":\s*(\d+)', line))
                studies.update(int(m) for m in re.findall(rb'"study_id":\s*(\d+)', line))
                continue
            operations[_operation_name(record.get("op_code"))] += 1
            if isinstance(record.get("trial_id"), int):
                trials.add(record["trial_id"])
            if isinstance(record.get("study_id"), int):
                studies.add(record["study_id"])
    return lines, operations, trials, studies


def _operation_name(op_code: Any) -> str:
    """`set_trial_user_attr` for 8: the name of Optuna's JournalOperation, lower case; `op 42` for a code it lacks."""
    try:
        return JournalOperation(op_code).name.lower()
    except ValueError:
        return f"op {op_code}"


def repair_journal(path: Path) -> RepairReport:
    """Back the file up, then truncate it to its last complete, parsable record."""
    with get_lock_file(JournalFileSymlinkLock(str(path))):  # the lock every writer appends under
        damage = scan(path)
        if damage is None:
            with open(path, "rb") as handle:
                records = sum(1 for _ in handle)
            return RepairReport(path, None, records)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        backup = path.with_name(f"{path.name}.bak-{stamp}")
        counter = 1
        while backup.exists():
            counter += 1
            backup = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
        shutil.copy2(path, backup)
        lines, operations, trials, studies = _dropped_summary(path, damage.offset)
        size = path.stat().st_size
        with open(path, "r+b") as handle:
            handle.truncate(damage.offset)
            handle.flush()
            os.fsync(handle.fileno())
    return RepairReport(
        path,
        backup,
        damage.good_records,
        dropped_lines=lines,
        dropped_bytes=size - damage.offset,
        operations=dict(operations),
        trial_ids=tuple(sorted(trials)),
        study_ids=tuple(sorted(studies)),
    )
