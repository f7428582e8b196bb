"""One coordinator per campaign: a lease held in the campaign's own storage, on every backend.

The lease of generation G is the study `NAME/lease:G` (engine.store.schema.lease_study_name). A study
name is unique on every Optuna storage (journal, SQLite, PostgreSQL), so creating generation G+1
succeeds for exactly one contender: that is the whole acquire. Its user attributes say who holds
it (user, host, pid, since) and until when (`expires_at`, renewed every `lease_s() / 3` seconds by
a thread of the holder). The current lease is the highest generation; older ones are never
deleted (a deleted name could be created a second time by a contender that read too early).

A new coordinator may acquire when the current lease was released (a clean stop), when its holder
ran on this host and that process is gone (a crash or `kill -9`: resume at once), or, with
`--takeover`, once it has expired (another host, or a holder this host cannot check). A holder
that finds a newer generation has lost the campaign: it stops without touching the ledger.
Expiry compares wall clocks of hosts: keep them in sync (NTP) to well under `lease_s()`.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import optuna
import psutil

from engine.errors import LeaseHeld
from engine.store.schema import (
    ENV_HOST,
    ENV_LEASE_S,
    EXPIRES_ATTR,
    HOLDER_ATTR,
    RELEASED_ATTR,
    lease_study_name,
    now_iso,
    who,
)
from engine.store.storage import open_storage, storage_missing

LEASE_S = 30.0  # a lease not renewed for this long has expired; HPO_TUI_LEASE_S overrides (tests)
RENEWALS_PER_LEASE = 3
NEW_LEASE_WAIT_S = 2.0  # a lease study just created has no holder yet: wait this long for it


class LeaseLost(LeaseHeld):
    """The coordinator found a newer lease (another took the campaign over); it stopped."""


def lease_s() -> float:
    try:
        return max(0.5, float(os.environ.get(ENV_LEASE_S, LEASE_S)))
    except ValueError:
        return LEASE_S


def this_host() -> str:
    """The host name the lease records; HPO_TUI_HOST pretends to be another host (tests only)."""
    return os.environ.get(ENV_HOST) or socket.gethostname()


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a lease generation, as stored in its study."""

    user: str
    host: str
    pid: int
    process_started: float  # the process's start time: a reused pid is not the holder
    since: str  # ISO time the lease was acquired

    @classmethod
    def me(cls) -> Holder:
        process = psutil.Process()
        return cls(who()["user"], this_host(), os.getpid(), process.create_time(), now_iso())

    @classmethod
    def from_json(cls, data: dict) -> Holder:
        return cls(
            str(data.get("user", "?")),
            str(data.get("host", "?")),
            int(data.get("pid", 0)),
            float(data.get("process_started", 0.0)),
            str(data.get("since", "?")),
        )

    def describe(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid} since {self.since}"

    def gone(self) -> bool:
        """True when this host can tell the holder's process no longer exists."""
        if self.host != this_host():
            return False
        if self.pid == os.getpid():
            return False
        try:
            return abs(psutil.Process(self.pid).create_time() - self.process_started) > 1.0
        except psutil.NoSuchProcess:
            return True
        except psutil.AccessDenied:
            return False


@dataclass(frozen=True)
class LeaseRecord:
    """One generation of a campaign's lease, as read from the storage."""

    generation: int
    study_id: int
    holder: Holder | None  # None: created a moment ago, attributes not written yet (or its creator died)
    expires_at: float
    released: bool

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) > self.expires_at


def _exists(storage, campaign: str, generation: int) -> int | None:
    try:
        return storage.get_study_id_from_name(lease_study_name(campaign, generation))
    except KeyError:
        return None


def current_generation(storage, campaign: str, start: int = 0) -> tuple[int, int | None]:
    """(highest lease generation, its study id); (0, None) when the campaign never had one."""
    generation, study_id = start, _exists(storage, campaign, start) if start else None
    while True:
        found = _exists(storage, campaign, generation + 1)
        if found is None:
            return generation, study_id
        generation, study_id = generation + 1, found


def superseded(storage, campaign: str, generation: int) -> bool:
    """A newer lease than `generation` exists: its holder no longer runs the campaign."""
    return _exists(storage, campaign, generation + 1) is not None


def read_lease(storage, campaign: str) -> LeaseRecord | None:
    generation, study_id = current_generation(storage, campaign)
    if study_id is None:
        return None
    deadline = time.monotonic() + NEW_LEASE_WAIT_S
    while True:
        attrs = storage.get_study_user_attrs(study_id)
        if HOLDER_ATTR in attrs or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    holder = Holder.from_json(attrs[HOLDER_ATTR]) if HOLDER_ATTR in attrs else None
    return LeaseRecord(
        generation, study_id, holder, float(attrs.get(EXPIRES_ATTR, 0.0)), bool(attrs.get(RELEASED_ATTR, False))
    )


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def _refusal(campaign: str, record: LeaseRecord, takeover: bool) -> str | None:
    """Why this process may not take the campaign now, or None when it may."""
    holder, now = record.holder, time.time()
    if record.released:
        return None
    if holder is not None and holder.gone():
        return None
    who_holds = holder.describe() if holder is not None else "a coordinator that did not say who it is"
    if record.expired(now):
        if takeover:
            return None
        here = holder is not None and holder.host == this_host()
        return (
            f"campaign {campaign} is run by {who_holds}; its lease expired at {_when(record.expires_at)} "
            f"({now - record.expires_at:.0f} s ago) "
            + (
                "but that process is still there (hung?): stop it, or run the same command with --takeover"
                if here
                else "and this host cannot tell whether that process is gone: "
                "if it is, run the same command with --takeover"
            )
        )
    hint = (
        "--takeover works once it has expired"
        if takeover
        else "stop it first, or, if its host is gone, use --takeover once the lease has expired"
    )
    return (
        f"campaign {campaign} is run by {who_holds}; its lease is live until {_when(record.expires_at)} "
        f"(in {record.expires_at - now:.0f} s unless renewed; renewed every {lease_s() / RENEWALS_PER_LEASE:g} s): "
        f"{hint}"
    )


def check_free(storage, campaign: str, *, takeover: bool = False) -> None:
    """Raise LeaseHeld if a `run` would be refused now (a courtesy check: `acquire` is the atomic one)."""
    record = read_lease(storage, campaign)
    if record is not None:
        refusal = _refusal(campaign, record, takeover)
        if refusal:
            raise LeaseHeld(refusal)


def check_free_at(url: str, campaign: str, *, takeover: bool = False) -> None:
    """check_free on a storage URL, before the console takes the screen; nothing is created."""
    if storage_missing(url):
        return
    check_free(open_storage(url, heartbeat=False, create=False), campaign, takeover=takeover)


class Lease:
    """This process's lease on a campaign: acquired, renewed by a thread, released at the end."""

    def __init__(self, storage, campaign: str, generation: int, study_id: int, holder: Holder, previous: str | None):
        self.storage = storage
        self.campaign = campaign
        self.generation = generation
        self.study_id = study_id
        self.holder = holder
        self.previous = previous  # how the previous holder let go, for the log
        self._lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_lost: Callable[[], None] | None = None
        self._log: Callable[[str], None] = print
        self._outage_said = False

    @classmethod
    def acquire(cls, storage, campaign: str, *, takeover: bool = False) -> Lease:
        """Create the next generation, atomically; LeaseHeld (exit 4) when another coordinator holds it."""
        holder = Holder.me()
        for _ in range(5):
            record = read_lease(storage, campaign)
            previous = None
            if record is not None:
                refusal = _refusal(campaign, record, takeover)
                if refusal:
                    raise LeaseHeld(refusal)
                previous = _how_let_go(record)
            generation = (record.generation if record else 0) + 1
            try:
                study_id = storage.create_new_study(
                    [optuna.study.StudyDirection.MINIMIZE], lease_study_name(campaign, generation)
                )
            except optuna.exceptions.DuplicatedStudyError:
                continue  # another contender won this generation: read again (it holds it now)
            lease = cls(storage, campaign, generation, study_id, holder, previous)
            storage.set_study_user_attr(study_id, HOLDER_ATTR, asdict(holder))
            lease._write_expiry()
            return lease
        raise LeaseHeld(f"campaign {campaign}: other coordinators keep taking the lease; try again")

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def _write_expiry(self) -> None:
        # One attribute per renewal: a journal replays every write, for the campaign's whole life.
        self.storage.set_study_user_attr(self.study_id, EXPIRES_ATTR, time.time() + lease_s())

    def check(self) -> bool:
        """Still ours? Sets `lost` (and calls on_lost once) when a newer generation exists."""
        if self.lost:
            return False
        if superseded(self.storage, self.campaign, self.generation):
            self._lose()
            return False
        return True

    def _lose(self) -> None:
        if self._lost.is_set():
            return
        self._lost.set()
        if self._on_lost is not None:
            self._on_lost()

    def renew(self) -> None:
        if self.check():
            self._write_expiry()

    def start_renewing(self, on_lost: Callable[[], None], log: Callable[[str], None] = print) -> None:
        self._on_lost, self._log = on_lost, log
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())  # Ctrl-C and SIGALRM: the main thread's
        while not self._done.wait(lease_s() / RENEWALS_PER_LEASE):
            try:
                self.renew()
                self._outage_said = False
            except Exception as err:  # an outage: keep trying; past the expiry another may take over
                if not self._outage_said:
                    self._outage_said = True
                    self._say(f"lease: could not renew ({type(err).__name__}); retrying")
            if self.lost:
                return

    def _say(self, message: str) -> None:
        try:
            self._log(message)
        except (OSError, ValueError):
            pass

    def release(self) -> None:
        """Stop renewing; mark the lease released so the next `run` (any host) takes it at once."""
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self.lost or superseded(self.storage, self.campaign, self.generation):
            return
        self.storage.set_study_user_attr(self.study_id, RELEASED_ATTR, True)
        self.storage.set_study_user_attr(self.study_id, EXPIRES_ATTR, time.time())

    def successor(self) -> str:
        """Who holds the campaign now (after `lost`), for the last line."""
        try:
            record = read_lease(self.storage, self.campaign)
        except Exception:
            return "another coordinator"
        if record is None or record.holder is None:
            return "another coordinator"
        return f"{record.holder.describe()} (lease {record.generation})"


def _how_let_go(record: LeaseRecord) -> str:
    holder = record.holder.describe() if record.holder else "an unknown coordinator"
    if record.released:
        return f"released by {holder}"
    if record.holder is not None and record.holder.gone():
        return f"held by {holder}, whose process is gone from this host"
    return f"taken over from {holder}, whose lease expired at {_when(record.expires_at)}"
