"""Questions asked of a campaign's trials, each answered once: a sprint's trials, counts by state
and by failure kind, the best trial (and the best that saved an artifact).
The one renderer of range changes is engine.gates.diff.

`engine.views.status`, the coordinator and the CLI ask them of Optuna's FrozenTrials; the snapshot
reader keeps its own incremental rows (engine.views.snapshot) but uses the same rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from engine.store.records import SprintRecord
from engine.store.schema import ARTIFACTS_ATTR, FAIL_KIND_ATTR, RETRIED_ATTR

DEFAULT_FAIL_KIND = "raised"  # a failure with no recorded kind: the objective raised


def sprint_trials(storage: optuna.storages.BaseStorage, record: SprintRecord) -> list[FrozenTrial] | None:
    """The trials of a sprint's study; None if the study is not created yet."""
    try:
        study_id = storage.get_study_id_from_name(record.study)
    except KeyError:
        return None
    return storage.get_all_trials(study_id, deepcopy=False)


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Trials by Optuna state name."""
    return dict(Counter(t.state.name for t in trials))


def fail_kind_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """Failed trials by why they failed (engine.execution.trials.FAIL_KINDS)."""
    return dict(
        Counter(t.user_attrs.get(FAIL_KIND_ATTR, DEFAULT_FAIL_KIND) for t in trials if t.state == TrialState.FAIL)
    )


def retried_count(trials: Iterable[FrozenTrial]) -> int:
    """Failed trials queued again."""
    return sum(1 for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(RETRIED_ATTR))


def best_trial(trials: Iterable[FrozenTrial], maximize: bool, artifact: str | None = None) -> FrozenTrial | None:
    """The best completed trial (that saved `artifact`, if given); the first of equals."""
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.value is not None
        and (artifact is None or artifact in (t.user_attrs.get(ARTIFACTS_ATTR) or {}))
    ]
    if not done:
        return None
    return (max if maximize else min)(done, key=_value)


def _value(trial: FrozenTrial) -> float:
    return float(cast(float, trial.value))  # cast: callers pass completed trials with a value only


def latest_best_with_artifact(
    storage: optuna.storages.BaseStorage, sprints: Iterable[SprintRecord], artifact: str, maximize: bool
) -> tuple[str, FrozenTrial] | None:
    """(study name, trial): the best completed trial that saved `artifact`, latest sprint first (its
    fidelity is the highest so far); what threshold learning runs on."""
    for record in reversed(list(sprints)):
        best = best_trial(sprint_trials(storage, record) or [], maximize, artifact)
        if best is not None:
            return record.study, best
    return None
