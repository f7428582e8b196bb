"""Where a campaign lives: its Optuna storage, run directory and artifact store."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalFileBackend

RUNS_ROOT = Path("runs")
HEARTBEAT_INTERVAL_S = 5
HEARTBEAT_GRACE_S = 20


def run_dir(campaign: str, root: Path | None = None) -> Path:
    path = (root or RUNS_ROOT) / campaign
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_storage_url(campaign: str, root: Path | None = None) -> str:
    return f"journal://{(run_dir(campaign, root) / 'journal.log').resolve()}"


def redact(url: str) -> str:
    """Hide the password of a storage URL for display and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str, *, retries: int = 1, heartbeat: bool = True) -> optuna.storages.BaseStorage:
    """Open any storage by URL: journal://PATH for the embedded file, else an SQLAlchemy URL.

    RDB storages heartbeat, so a trial whose worker died is failed and re-run (`retries` times).
    """
    if url.startswith("journal://"):
        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}} if url.startswith("postgresql") else {}
    if heartbeat:
        kwargs.update(
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=HEARTBEAT_GRACE_S,
            failed_trial_callback=RetryFailedTrialCallback(max_retry=retries, inherit_intermediate_values=False),
        )
    return with_retries(lambda: RDBStorage(url, **kwargs), what=f"open storage {redact(url)}")


def with_retries(action, *, what: str, attempts: int = 8, first_wait_s: float = 0.5, log=print):
    """Run `action`, waiting with exponential backoff while the database is unreachable or locked."""
    from sqlalchemy.exc import OperationalError, InterfaceError

    wait = first_wait_s
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (OperationalError, InterfaceError, ConnectionError) as err:
            if attempt == attempts:
                raise StorageUnavailable(f"{what}: gave up after {attempts} attempts: {_first_line(err)}") from err
            log(f"storage: {what} failed ({_first_line(err)}); retry {attempt}/{attempts - 1} in {wait:.1f}s")
            time.sleep(wait)
            wait = min(wait * 2, 10.0)


class StorageUnavailable(RuntimeError):
    pass


def _first_line(err: BaseException) -> str:
    return redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)


def artifact_store(campaign: str, root: Path | None = None) -> FileSystemArtifactStore:
    path = run_dir(campaign, root) / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))
