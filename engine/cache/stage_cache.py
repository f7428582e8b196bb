"""The stage cache on local disk (engine.cache.stages runs the stages): content-addressed entries, written atomically,
hash-checked on every read, locked per key between the worker processes of one host, evicted least-recently-used
past `max_bytes` except the pinned keys."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import sys
import time
import uuid
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.platform != "win32":  # POSIX: advisory locks between worker processes of one host
    import fcntl
else:  # pragma: no cover - Windows: no cross-process lock, writes stay atomic
    fcntl = None

FORMAT = 1  # of the keys and entries: a change misses every older entry


@dataclass
class Entry:
    key: str
    stage: str
    size: int
    sha256: str
    compute_s: float
    last_used: float
    created: float
    producer: dict[str, Any]


class StageCache:
    """Content-addressed entries on local disk, safe for several processes of one host."""

    def __init__(self, root: str | Path, max_bytes: int | None = None):
        self.root = Path(root)
        self.max_bytes = max_bytes
        (self.root / "entries").mkdir(parents=True, exist_ok=True)
        (self.root / "locks").mkdir(parents=True, exist_ok=True)

    # paths -------------------------------------------------------------------------------
    def _dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2]

    def payload_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.bin"

    def meta_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.json"

    # locks -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, path: Path):
        if fcntl is None:
            yield
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def key_lock(self, key: str):
        """Held while one process computes `key`: another process asking for it waits, then hits."""
        return self._flock(self.root / "locks" / f"{key}.lock")

    def global_lock(self):
        return self._flock(self.root / "cache.lock")

    # reads and writes --------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return self.meta_path(key).is_file() and self.payload_path(key).is_file()

    def meta(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.meta_path(key).read_text())
        except (OSError, ValueError):
            return None

    def get(self, key: str) -> tuple[str, Any, dict[str, Any] | None]:
        """('hit', value, meta), ('miss', None, None) or ('corrupt', None, meta): corrupt entries are deleted."""
        meta = self.meta(key)
        if meta is None:
            return "miss", None, None
        try:
            data = self.payload_path(key).read_bytes()
        except OSError:
            return "miss", None, None
        if len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            self.delete(key)
            return "corrupt", None, meta
        try:
            value = pickle.loads(data)
        except Exception:
            self.delete(key)
            return "corrupt", None, meta
        self.touch(key)
        return "hit", value, meta

    def touch(self, key: str) -> None:
        now = time.time()
        with contextlib.suppress(OSError):
            os.utime(self.meta_path(key), (now, now))

    def put(self, key: str, value: Any, *, stage: str, compute_s: float, producer: dict[str, Any] | None = None) -> int:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {
            "format": FORMAT,
            "key": key,
            "stage": stage,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "compute_s": round(float(compute_s), 6),
            "created": time.time(),
            "producer": producer or {},
        }
        directory = self._dir(key)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.payload_path(key), data)
        _atomic_write(self.meta_path(key), json.dumps(meta).encode())  # the meta last: it publishes the entry
        return len(data)

    def delete(self, key: str) -> None:
        for path in (self.meta_path(key), self.payload_path(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # listing, size and eviction ----------------------------------------------------------
    def entries(self) -> list[Entry]:
        found = []
        base = self.root / "entries"
        for shard in sorted(base.iterdir()) if base.is_dir() else []:
            for item in shard.glob("*.json"):
                try:
                    meta = json.loads(item.read_text())
                    used = item.stat().st_mtime
                except (OSError, ValueError):
                    continue
                found.append(
                    Entry(
                        meta["key"],
                        meta.get("stage", "?"),
                        int(meta.get("size", 0)),
                        meta.get("sha256", ""),
                        float(meta.get("compute_s", 0.0)),
                        used,
                        float(meta.get("created", used)),
                        meta.get("producer", {}),
                    )
                )
        return found

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries())

    def evict(
        self, pinned: AbstractSet[str] | Callable[[], AbstractSet[str]] = frozenset(), max_bytes: int | None = None
    ) -> list[str]:
        """Delete least-recently-used unpinned entries until the cache fits; returns the keys evicted.

        `pinned` may be a function, called only when something has to go (it can be costly).
        """
        limit = self.max_bytes if max_bytes is None else max_bytes
        if limit is None:
            return []
        with self.global_lock():
            entries = self.entries()
            total = sum(e.size for e in entries)
            if total <= limit:
                return []
            keep = set(pinned() if callable(pinned) else pinned)
            evicted = []
            for entry in sorted(entries, key=lambda e: e.last_used):
                if total <= limit:
                    break
                if entry.key in keep:
                    continue
                self.delete(entry.key)
                total -= entry.size
                evicted.append(entry.key)
            return evicted

    def clear(self) -> int:
        with self.global_lock():
            entries = self.entries()
            for entry in entries:
                self.delete(entry.key)
            return len(entries)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # No fsync: os.replace already makes the entry appear whole to other processes, and an entry torn
    # by a crash fails its hash check on the next read and is recomputed.
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
