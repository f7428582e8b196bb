"""Optuna's private attributes the engine needs, each behind one named function.

Optuna has no public API for these: the storage behind a study, a study's storage id, and a trial's storage id
(the key every `BaseStorage` method takes). They are stable within the pinned optuna (pyproject: >=5.0,<5.1);
when the pin moves, this is the one module to check.
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
