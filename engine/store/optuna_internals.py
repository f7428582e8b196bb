"""Optuna's private attributes the engine needs, each behind one named function.

Optuna has no public API for these: the storage behind a study, a study's storage id, a trial's storage id
(the key every `BaseStorage` method takes), the RDB storage under Optuna's cache wrapper and its query for
trials whose heartbeat lapsed. They are stable within the pinned optuna (pyproject: >=5.0,<5.1); when the
pin moves, this is the one module to check (private Optuna modules imported elsewhere: engine.search.cost_aware_gp
and engine.search.multi_fidelity_gp use optuna._gp; engine.store.journal_repair the journal file's lock and the
journal's operation codes (JournalOperation), which engine.store.journal_reader and journal_writer take from it).
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes through (Optuna's cached wrapper around the RDB storage)."""
    return study._storage


def study_id(study: Any) -> int:
    """The storage id of an `optuna.Study` or a `FrozenStudy` (`get_all_studies()` returns those)."""
    return study._study_id


def storage_trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage: unique across studies, unlike `trial.number`."""
    return trial._trial_id


def pop_waiting_trial_id(study: optuna.Study) -> int | None:
    """What `Study.ask()` does first: move a WAITING (enqueued) trial to RUNNING and return its id, or None."""
    return study._pop_waiting_trial_id()


def forget_cached_trials(study: optuna.Study) -> None:
    """What `Study.ask()` does before a trial: samplers read the study's trials afresh, not this thread's copy."""
    study._thread_local.cached_all_trials = None


def heartbeat_storage(study: optuna.Study) -> Any | None:
    """The storage that records the study's heartbeats (the RDB storage under Optuna's `_CachedStorage`), or
    None when it keeps none (journal and in-memory storages, or heartbeats off).

    Any: its `heartbeat_interval` and `grace_period` are RDBStorage attributes that BaseStorage does not declare.
    """
    storage = study_storage(study)
    backend = getattr(storage, "_backend", storage)
    if not getattr(backend, "heartbeat_interval", None) or not hasattr(backend, "_get_stale_trial_ids"):
        return None
    return backend


def stale_trial_ids(backend: Any, study: optuna.Study) -> list[int]:
    """Running trials of `study` whose heartbeat lapsed past the grace period (what
    optuna.storages.fail_stale_trials asks, before failing them without saying why)."""
    return backend._get_stale_trial_ids(study_id(study))
