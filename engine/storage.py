"""Where a campaign lives: its Optuna storage, run directory and artifact store."""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

RUNS_ROOT = Path("runs")

# We drive trials with ask/tell and our own heartbeat thread, which Optuna warns about; and
# fail_stale_trials, QMCSampler are stable enough for us though marked experimental.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
HEARTBEAT_INTERVAL_S = 5
HEARTBEAT_GRACE_S = 20
DEFAULT_PATIENCE_S = 120.0


def run_dir(campaign: str, root: Path | None = None) -> Path:
    path = (root or RUNS_ROOT) / campaign
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_storage_url(campaign: str, root: Path | None = None) -> str:
    return f"journal://{(run_dir(campaign, root) / 'journal.log').resolve()}"


def redact(url: str) -> str:
    """Hide the password of a storage URL for display and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def normalize_url(url: str) -> str:
    """`postgresql://` (or `postgres://`) means psycopg2 unless psycopg 3 is installed.

    SQLAlchemy 2.1 maps a bare postgresql:// URL to psycopg 3; the project depends on psycopg2-binary.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                return "postgresql+psycopg2://" + url[len(prefix) :]
            return "postgresql://" + url[len(prefix) :]
    return url


def heartbeat_settings(stale_after_s: float) -> tuple[int, int]:
    """(heartbeat interval, grace period) in whole seconds: a trial is stale after `stale_after_s`."""
    grace = max(2, int(round(stale_after_s)))
    return max(1, min(HEARTBEAT_INTERVAL_S, grace // 4)), grace


def open_storage(
    url: str, *, retries: int = 1, heartbeat: bool = True, stale_after_s: float = HEARTBEAT_GRACE_S
) -> optuna.storages.BaseStorage:
    """Open any storage by URL: journal://PATH for the embedded file, else an SQLAlchemy URL.

    RDB storages heartbeat, so a trial whose worker died is failed and re-run (`retries` times)
    once it has sent no heartbeat for `stale_after_s` seconds (engine.pool.fail_stale_trials).
    """
    if url.startswith("journal://"):
        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    shown, url = redact(url), normalize_url(url)
    kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}} if url.startswith("postgresql") else {}
    if heartbeat:
        interval, grace = heartbeat_settings(stale_after_s)
        kwargs.update(
            heartbeat_interval=interval,
            grace_period=grace,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=retries),
        )
    try:
        return with_retries(lambda: RDBStorage(url, **kwargs), what=f"open storage {shown}")
    except StorageUnavailable:
        raise
    except Exception as err:
        raise StorageUnavailable(f"cannot open storage {shown}: {type(err).__name__}: {_first_line(err)}") from None


def tune_heartbeat(storage, stale_after_s: float) -> None:
    """Apply a campaign's stale_after_s to a storage opened before the campaign's spec was read."""
    if getattr(storage, "heartbeat_interval", None):
        storage.heartbeat_interval, storage.grace_period = heartbeat_settings(stale_after_s)


def storage_patience_s() -> float:
    """How long to wait for an unreachable database before giving up (HPO_TUI_STORAGE_PATIENCE_S)."""
    try:
        return max(0.0, float(os.environ.get("HPO_TUI_STORAGE_PATIENCE_S", DEFAULT_PATIENCE_S)))
    except ValueError:
        return DEFAULT_PATIENCE_S


def outage_cause(err: BaseException | None) -> BaseException | None:
    """The database error behind `err` if it is an outage (unreachable, restarting, locked), else None.

    Optuna wraps SQLAlchemy's errors in StorageInternalError, so the causes are searched too.
    """
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, (OperationalError, InterfaceError, ConnectionError)):
            return err
        if isinstance(err, DBAPIError) and getattr(err, "connection_invalidated", False):
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
            err = outage_cause(raised)
            if err is None:
                raise
            waited = time.monotonic() - started
            if (attempt >= attempts) if attempts is not None else (waited + wait > patience):
                raise StorageUnavailable(
                    f"{what}: the database stayed unreachable; gave up after {attempt} attempts in {waited:.0f} s "
                    f"({_first_line(err)})"
                ) from raised
            _say(
                log,
                f"storage: {what} failed ({_first_line(err)}); waiting {wait:.1f} s before retry {attempt} "
                f"(gives up after {patience:g} s)"
                if attempts is None
                else f"storage: {what} failed ({_first_line(err)}); retry {attempt}/{attempts - 1} in {wait:.1f} s",
            )
            time.sleep(wait)
            wait = min(wait * 2, 10.0)


def _say(log, message: str) -> None:
    try:
        log(message)
    except (OSError, ValueError):  # a vanished terminal must not turn an outage into a crash
        pass


class StorageUnavailable(RuntimeError):
    pass


def _first_line(err: BaseException) -> str:
    return redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


def artifact_store(campaign: str, root: Path | None = None) -> FileSystemArtifactStore:
    path = run_dir(campaign, root) / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))
