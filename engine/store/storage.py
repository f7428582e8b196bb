"""Where a campaign lives: its Optuna storage, run directory and artifact store."""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback

from engine.errors import StorageMissing, StorageRefused, StorageUnreachable, StorageUrlError
from engine.extras import require_for_storage
from engine.store.journal_repair import GuardedJournalBackend
from engine.store.schema import ENV_STORAGE_PATIENCE_S

RUNS_ROOT = Path("runs")

# We drive trials with ask/tell and our own heartbeat thread, which Optuna warns about; and
# fail_stale_trials, QMCSampler are stable enough for us though marked experimental.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
HEARTBEAT_INTERVAL_S = 5
HEARTBEAT_GRACE_S = 20
DEFAULT_PATIENCE_S = 120.0


def run_dir(campaign: str, root: Path | None = None, *, create: bool = True) -> Path:
    """runs/<campaign>/; read-only commands pass create=False so they leave no directory behind."""
    path = (root or RUNS_ROOT) / campaign
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def default_storage_url(campaign: str, root: Path | None = None) -> str:
    return f"journal://{(run_dir(campaign, root, create=False) / 'journal.log').resolve()}"


# Passwords seen in storage URLs this process opened: scrubbed from any text shown (driver errors too).
_SECRETS: set[str] = set()
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*[^\s:;,.)\]'\"]")  # not the sentence's ':' after it
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd|pass)=)[^&#]*", re.IGNORECASE)
MASK = "***"


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme == "journal":
        return url
    rest = _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, rest)
    first_at = rest.find("@")
    if first_at < 0:
        return f"{scheme}://{rest}"
    query = rest.find("?", first_at)  # an '@' in the query (application_name=a@b) is not the userinfo's
    at = (rest[:query] if query >= 0 else rest).rfind("@")
    if at == first_at and rest.find("/") > at:
        try:  # SQLAlchemy's own parser and renderer when the URL is unambiguous
            from sqlalchemy.engine import make_url  # sqlalchemy (~0.4 s): only database URLs need it

            parsed = make_url(f"{scheme}://{rest}")
            if parsed.password is not None:
                _SECRETS.add(str(parsed.password))
            return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, parsed.render_as_string(hide_password=True))
        except Exception:
            pass
    # A password with an unencoded '@', ':' or '/': everything after the user up to the last '@' goes.
    user, colon, secret = rest[:at].partition(":")
    if "/" in user:  # not a userinfo we can read: hide it all
        return f"{scheme}://{MASK}@{rest[at + 1 :]}"
    if colon and secret:
        _SECRETS.add(secret)
    return f"{scheme}://{user}{':' + MASK if colon else ''}@{rest[at + 1 :]}"


def redact(text: str) -> str:
    """Hide passwords in a storage URL, or in any text holding URLs, for display, logs and records.

    Every form: user:pw@, :pw@ (empty user), ?password= in the query (any case), a password with an
    unencoded '@' ':' or '/', percent-encoded passwords; and any password of a URL redacted before.
    """
    if not text:
        return text
    shown = _redact_url(text) if _URL_IN_TEXT.fullmatch(text) else _URL_IN_TEXT.sub(lambda m: _redact_url(m[0]), text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if len(secret) >= 3:
            shown = shown.replace(secret, MASK)
            quoted = quote(secret, safe="")
            if quoted != secret:
                shown = shown.replace(quoted, MASK)
    return shown


def check_driver(url: str) -> None:
    """The URL is opened as given, as plain Optuna, the `optuna` CLI and optuna-dashboard open it.

    `postgresql://` means psycopg 3 (SQLAlchemy 2.1's default; the `postgres` extra); `postgres://`
    is refused with the fix, since none of those tools reads it.
    """
    if url.startswith("postgres://"):
        raise StorageUrlError(
            f"write postgresql://, not postgres://, in {redact(url)} (SQLAlchemy, hence Optuna, reads only the first)"
        )
    require_for_storage(url)


def heartbeat_settings(stale_after_s: float) -> tuple[int, int]:
    """(heartbeat interval, grace period) in whole seconds: a trial is stale after `stale_after_s`."""
    grace = max(2, int(round(stale_after_s)))
    return max(1, min(HEARTBEAT_INTERVAL_S, grace // 4)), grace


def open_storage(
    url: str,
    *,
    retries: int = 1,
    heartbeat: bool = True,
    stale_after_s: float = HEARTBEAT_GRACE_S,
    create: bool = True,
    campaign: str | None = None,
) -> optuna.storages.BaseStorage:
    """Open any storage by URL: journal://PATH for the embedded file, else an SQLAlchemy URL.

    RDB storages heartbeat, so a trial whose worker died is failed and re-run (`retries` times)
    once it has sent no heartbeat for `stale_after_s` seconds (engine.execution.pool.fail_stale_trials).
    With create=False (read-only commands) a journal or SQLite file that does not exist raises
    StorageMissing and nothing is created. A torn journal raises CorruptStorage; a permanent
    error (permissions, authentication, read-only) StorageRefused at once.
    """
    if url.startswith("journal://"):
        return _open_journal(Path(url.removeprefix("journal://")), create=create, campaign=campaign)
    shown = redact(url)
    sqlite_file = _sqlite_path(url)
    if not create and sqlite_file is not None and not sqlite_file.exists():
        raise StorageMissing(f"{shown} does not exist")
    check_driver(url)
    kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}} if url.startswith("postgresql") else {}
    if heartbeat:
        interval, grace = heartbeat_settings(stale_after_s)
        kwargs.update(
            heartbeat_interval=interval,
            grace_period=grace,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries),
        )
    try:
        return with_retries(lambda: _create_rdb_storage(url, kwargs), what=f"open storage {shown}")
    except (StorageUnavailable, StorageRefused):
        raise
    except Exception as err:
        raise StorageUrlError(f"cannot open storage {shown}: {type(err).__name__}: {first_line(err)}") from None


def _create_rdb_storage(url: str, kwargs: dict[str, Any]) -> RDBStorage:
    """RDBStorage, tolerating a second process that creates the same new database at the same moment.

    Both then write Optuna's schema version, and the slower one meets a unique-constraint error on
    `alembic_version`: the schema is there by then, so opening again succeeds.
    """
    for attempt in range(3):
        try:
            return RDBStorage(url, **kwargs)
        except Exception as err:
            if attempt == 2 or "alembic_version" not in str(err) or "UNIQUE" not in str(err).upper():
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def storage_missing(url: str) -> bool:
    """A journal or SQLite file that does not exist (a database server is never "missing" here)."""
    if url.startswith("journal://"):
        return not Path(url.removeprefix("journal://")).is_file()
    path = _sqlite_path(url)
    return path is not None and not path.exists()


def _sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for other URLs and for :memory:)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _open_journal(path: Path, *, create: bool, campaign: str | None) -> JournalStorage:
    if not path.is_file():
        if not create:
            raise StorageMissing(f"journal://{path} does not exist")
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise StorageRefused(f"cannot create journal {path}: {blocking} is a file, not a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageRefused(f"cannot create the journal's directory {path.parent}: {_os_reason(err)}") from None
    try:
        return JournalStorage(GuardedJournalBackend(str(path), campaign=campaign))
    except OSError as err:
        raise StorageRefused(f"cannot open journal {path}: {_os_reason(err)}") from None


def _os_reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def tune_heartbeat(storage, stale_after_s: float) -> None:
    """Apply a campaign's stale_after_s to a storage opened before the campaign's spec was read."""
    if getattr(storage, "heartbeat_interval", None):
        storage.heartbeat_interval, storage.grace_period = heartbeat_settings(stale_after_s)


def storage_patience_s() -> float:
    """How long to wait for an unreachable database before giving up (HPO_TUI_STORAGE_PATIENCE_S)."""
    try:
        return max(0.0, float(os.environ.get(ENV_STORAGE_PATIENCE_S, DEFAULT_PATIENCE_S)))
    except ValueError:
        return DEFAULT_PATIENCE_S


def outage_cause(err: BaseException | None) -> BaseException | None:
    """The database error behind `err` if it is an outage (unreachable, restarting, locked), else None.

    Optuna wraps SQLAlchemy's errors in StorageInternalError, so the causes are searched too.
    """
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError  # ~0.4 s: journal-only commands skip it

    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, (OperationalError, InterfaceError, ConnectionError)):
            return err
        if isinstance(err, DBAPIError) and getattr(err, "connection_invalidated", False):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


# Database errors that waiting cannot fix: wrong password, no such role/database, no permission,
# a read-only file or directory. Matched in the driver's message (psycopg2/psycopg 3, sqlite3).
_PERMANENT = re.compile(
    r"password authentication failed|authentication failed|no password supplied|role .* does not exist"
    r"|database .* does not exist|permission denied|readonly database|read-only|unable to open database file"
    r"|pg_hba\.conf rejects|must be owner",
    re.IGNORECASE,
)


def permanent_cause(err: BaseException | None) -> BaseException | None:
    """The database error behind `err` if retrying cannot help (authentication, permissions, read-only)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, PermissionError) or _PERMANENT.search(str(err)):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def is_storage_outage(err: BaseException) -> bool:
    """A database that is unreachable, restarting or locked (worth waiting for), not a bug."""
    return outage_cause(err) is not None


def with_retries(
    action,
    *,
    what: str,
    attempts: int | None = None,
    first_wait_s: float = 0.5,
    log=print,
    patience_s: float | None = None,
):
    """Run `action`, waiting with exponential backoff while the database is unreachable or locked.

    Gives up with StorageUnavailable after `attempts` tries if given, else once waiting longer
    would exceed `patience_s` (default: HPO_TUI_STORAGE_PATIENCE_S, 120 s).
    """
    patience = storage_patience_s() if patience_s is None else patience_s
    started = time.monotonic()
    wait = first_wait_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except Exception as raised:
            refused = permanent_cause(raised)
            if refused is not None:
                raise StorageRefused(f"{what}: {first_line(refused)}") from None
            err = outage_cause(raised)
            if err is None:
                raise
            waited = time.monotonic() - started
            if (attempt >= attempts) if attempts is not None else (waited + wait > patience):
                raise StorageUnavailable(
                    f"{what}: the database stayed unreachable; gave up after {attempt} attempts in {waited:.0f} s "
                    f"({first_line(err)})"
                ) from raised
            _say(
                log,
                f"storage: {what} failed ({first_line(err)}); waiting {wait:.1f} s before retry {attempt} "
                f"(gives up after {patience:g} s)"
                if attempts is None
                else f"storage: {what} failed ({first_line(err)}); retry {attempt}/{attempts - 1} in {wait:.1f} s",
            )
            time.sleep(wait)
            wait = min(wait * 2, 10.0)


def _say(log, message: str) -> None:
    try:
        log(message)
    except (OSError, ValueError):  # a vanished terminal must not turn an outage into a crash
        pass


class StorageUnavailable(StorageUnreachable):
    """The database stayed unreachable past the patience (exit 3)."""


def first_line(err: BaseException) -> str:
    """The first line of an error (with the reason psycopg puts on the next), passwords hidden."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    lines = text.splitlines()
    first = lines[0]
    # psycopg2 puts the reason on the second line ("connection to server ... failed: FATAL: ...")
    if first.rstrip().endswith("failed:") and len(lines) > 1:
        first = f"{first.strip()} {lines[1].strip()}"
    return redact(first)


def artifact_store(campaign: str, root: Path | None = None, *, create: bool = True) -> FileSystemArtifactStore:
    path = run_dir(campaign, root, create=create) / "artifacts"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))
