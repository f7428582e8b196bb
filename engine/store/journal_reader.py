"""A light, read-only replay of an Optuna journal file: what the console shows, in compact form.

Size (~430 lines): Optuna's journal replay rules for every operation the console reads, plus
incremental reading, torn-line handling and re-reading one trial's full record.

Optuna's JournalStorage replays a journal into one FrozenTrial per trial with every parameter,
distribution, attribute and intermediate value (~575 MB at 100,000 trials). `JournalReader`
replays the same operations, read through Optuna's public `JournalFileBackend.read_logs`
incrementally from the last log it applied, and keeps per trial only: number, state, values,
start and end times, parameters, the user and system attributes the caller names, the last step
reported (with the intermediate values the caller needs) and the span of log numbers its
operations occupy. A trial's full record is read again from that span on demand (`full_trial`).

The replay follows `optuna.storages.journal._storage.JournalStorageReplayResult` (optuna 5.0,
pinned in pyproject): duplicate study names and operations on missing studies or finished trials
are ignored, trial ids count every trial created, a parameter whose distribution is incompatible
with the study's earlier trials is dropped. The writer is live: a torn last line is not applied
(the backend neither yields nor counts it), so the next `update` reads it again once complete.
The operation codes are Optuna's own enum (engine.store.journal_repair imports it); study-level
writes that need no replay of the trials go through engine.store.journal_writer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from optuna.distributions import BaseDistribution, check_distribution_compatibility, json_to_distribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from engine.errors import CorruptStorage
from engine.store.journal_repair import GuardedJournalBackend, JournalOperation

__all__ = ["EVERYTHING", "JournalOperation", "JournalReader", "JournalStudy", "JournalTrial", "TrialFilter"]


INTERN_BELOW = 64  # string attribute values shorter than this are interned (worker ids repeat 100,000 times)


@dataclass(frozen=True)
class TrialFilter:
    """What a reader keeps of each trial beyond its number, state, values, times and params.

    `keep_steps(trial)`: the steps of a finished trial's intermediate values to keep (the last step
    is always remembered as `last_step`); the others are dropped when it finishes."""

    user_attrs: Container[str] | None = None  # None: every user attribute
    system_attr_prefixes: tuple[str, ...] | None = None  # None: every system attribute
    keep_steps: Callable[[JournalTrial], Container[int]] | None = None  # None: every intermediate value

    def keeps_user_attr(self, key: str) -> bool:
        return self.user_attrs is None or key in self.user_attrs

    def keeps_system_attr(self, key: str) -> bool:
        return self.system_attr_prefixes is None or key.startswith(self.system_attr_prefixes)


EVERYTHING = TrialFilter()


class JournalTrial:
    """One trial as replayed; mutable while it runs, left as it is once finished."""

    __slots__ = (
        "trial_id",
        "study_id",
        "number",
        "state",
        "values",
        "started",
        "completed",
        "params",
        "distributions",
        "user_attrs",
        "system_attrs",
        "intermediate",
        "last_step",
        "first_log",
        "last_log",
    )

    def __init__(self, trial_id: int, study_id: int, number: int, first_log: int) -> None:
        self.trial_id = trial_id
        self.study_id = study_id
        self.number = number
        self.state = TrialState.RUNNING
        self.values: tuple[float, ...] | None = None
        self.started: float | None = None  # epoch seconds
        self.completed: float | None = None
        self.params: tuple[tuple[str, Any], ...] = ()  # external representation, in the order set
        self.distributions: dict[str, BaseDistribution] = {}  # shared between trials once finished
        self.user_attrs: dict[str, Any] = {}
        self.system_attrs: dict[str, Any] = {}
        self.intermediate: dict[int, float] = {}
        self.last_step: int | None = None
        self.first_log = first_log  # log numbers of the trial's first and last applied operation
        self.last_log = first_log

    @property
    def value(self) -> float | None:
        """The single objective's value (None for a multi-objective trial, as the console shows one)."""
        values = self.values
        return values[0] if values is not None and len(values) == 1 else None

    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def frozen(self) -> FrozenTrial:
        """An Optuna FrozenTrial of what was kept (times in local naive datetimes, as Optuna's replay)."""
        return FrozenTrial(
            number=self.number,
            state=self.state,
            value=None,
            values=list(self.values) if self.values is not None else None,
            datetime_start=_local(self.started),
            datetime_complete=_local(self.completed),
            params=dict(self.params),
            distributions=self.distributions,
            user_attrs=self.user_attrs,
            system_attrs=self.system_attrs,
            intermediate_values=self.intermediate,
            trial_id=self.trial_id,
        )


@dataclass
class JournalStudy:
    study_id: int
    name: str
    directions: tuple[StudyDirection, ...]
    created_by: str  # the worker id of the CREATE_STUDY record that created it (a writer's duplicate check)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    trials: list[JournalTrial] = field(default_factory=list)  # by number
    # per parameter: (number of the earliest trial holding it, its distribution): Optuna checks a new
    # parameter's distribution against that trial's
    first_distribution: dict[str, tuple[int, BaseDistribution]] = field(default_factory=dict)


def _epoch(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text is not None else None


def _local(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch) if epoch is not None else None


class JournalReader:
    """Studies and trials of a journal file, read incrementally. Not thread-safe: one per thread."""

    def __init__(self, path: str, trial_filter: TrialFilter = EVERYTHING, *, campaign: str | None = None) -> None:
        self.path = path
        self.filter = trial_filter
        self._backend = GuardedJournalBackend(path, campaign=campaign)
        self._logs_read = 0  # log number of the next line to apply
        self._studies: dict[int, JournalStudy] = {}
        self._study_by_name: dict[str, int] = {}
        self._next_study_id = 0
        self._trials: list[JournalTrial] = []  # by trial id (across studies)
        self._distribution_of_json: dict[str, BaseDistribution] = {}
        self._layouts: dict[tuple[tuple[str, int], ...], dict[str, BaseDistribution]] = {}
        self._names: dict[str, str] = {}  # one string object per key name

    # Reading ---------------------------------------------------------------------------------
    def update(self) -> int:
        """Apply the operations appended since the last update; the number applied."""
        applied = 0
        for log in self._backend.read_logs(self._logs_read):
            self._apply(log, self._logs_read)
            self._logs_read += 1
            applied += 1
        return applied

    @property
    def logs_read(self) -> int:
        return self._logs_read

    @property
    def backend(self) -> GuardedJournalBackend:
        """The journal file the reader reads (engine.store.journal_writer appends through it)."""
        return self._backend

    def study_id(self, name: str) -> int:
        """The id of a live study by name; KeyError when there is none."""
        return self._study_by_name[name]

    def study(self, study_id: int) -> JournalStudy:
        return self._studies[study_id]

    def studies(self) -> list[JournalStudy]:
        return list(self._studies.values())

    def trials(self, study_id: int) -> list[JournalTrial]:
        """The study's trials by number (the list itself: treat as read-only)."""
        return self._studies[study_id].trials

    def full_trial(self, study_id: int, number: int) -> FrozenTrial:
        """Every field of one trial, replayed again from its span of the journal (KeyError: no such trial)."""
        kept = self._studies[study_id].trials[number]
        trial = JournalTrial(kept.trial_id, kept.study_id, kept.number, kept.first_log)
        replay = _FullReplay(self, trial)
        span = islice(self._backend.read_logs(kept.first_log), kept.last_log - kept.first_log + 1)
        for log_number, log in enumerate(span, start=kept.first_log):
            replay.apply(log, log_number)
        return trial.frozen()

    # Applying one operation ------------------------------------------------------------------
    def _apply(self, log: Mapping[str, Any], log_number: int) -> None:
        try:
            op = JournalOperation(log["op_code"])
        except (KeyError, ValueError):
            raise CorruptStorage(
                f"journal {self.path}: record {log_number} has an operation this optuna cannot read "
                f"({log.get('op_code')!r})"
            ) from None
        if op == JournalOperation.CREATE_STUDY:
            name = log["study_name"]
            if name not in self._study_by_name:
                study_id = self._next_study_id
                self._next_study_id += 1
                directions = tuple(StudyDirection(d) for d in log["directions"])
                self._studies[study_id] = JournalStudy(study_id, name, directions, log["worker_id"])
                self._study_by_name[name] = study_id
        elif op == JournalOperation.DELETE_STUDY:
            gone = self._studies.pop(log["study_id"], None)
            if gone is not None:
                del self._study_by_name[gone.name]
        elif op == JournalOperation.SET_STUDY_USER_ATTR:
            study = self._studies.get(log["study_id"])
            if study is not None:
                study.user_attrs = {**study.user_attrs, **log["user_attr"]}  # a new dict: readers may hold the old
        elif op == JournalOperation.SET_STUDY_SYSTEM_ATTR:
            study = self._studies.get(log["study_id"])
            if study is not None:
                study.system_attrs = {**study.system_attrs, **log["system_attr"]}
        elif op == JournalOperation.CREATE_TRIAL:
            self._create_trial(log, log_number)
        elif op == JournalOperation.DISCARD_TRIALS:
            pass  # written by Rustuna only; Optuna's replay skips it too
        else:
            trial_id = log["trial_id"]
            trial = self._trials[trial_id] if 0 <= trial_id < len(self._trials) else None
            if trial is None or trial.state.is_finished():
                return
            self._update_trial(trial, op, log, self.filter)
            trial.last_log = log_number
            if trial.state.is_finished():
                self._settle(trial)

    def _create_trial(self, log: Mapping[str, Any], log_number: int) -> None:
        study = self._studies.get(log["study_id"])
        if study is None:
            return
        trial = JournalTrial(len(self._trials), study.study_id, len(study.trials), log_number)
        self._trials.append(trial)
        study.trials.append(trial)
        _fill_created(trial, log, self.filter, self._distribution, self._name)
        for name, distribution in trial.distributions.items():
            if name not in study.first_distribution:
                study.first_distribution[name] = (trial.number, distribution)
        if trial.state.is_finished():
            self._settle(trial)

    def _update_trial(
        self, trial: JournalTrial, op: JournalOperation, log: Mapping[str, Any], keep: TrialFilter
    ) -> None:
        _update(trial, op, log, keep, self._check_param, self._distribution, self._name)

    def _check_param(self, trial: JournalTrial, name: str, distribution: BaseDistribution) -> bool:
        study = self._studies.get(trial.study_id)
        if study is None:
            return True
        first = study.first_distribution.get(name)
        if first is not None and first[0] <= trial.number:
            try:
                check_distribution_compatibility(first[1], distribution)
            except Exception:
                return False
        if first is None or trial.number < first[0]:
            study.first_distribution[name] = (trial.number, distribution)
        return True

    def _check_param_readonly(self, trial: JournalTrial, name: str, distribution: BaseDistribution) -> bool:
        study = self._studies.get(trial.study_id)
        first = study.first_distribution.get(name) if study is not None else None
        if first is None or first[0] == trial.number:
            return True
        try:
            check_distribution_compatibility(first[1], distribution)
        except Exception:
            return False
        return True

    def _settle(self, trial: JournalTrial) -> None:
        """A finished trial no longer changes: share its distributions, drop what the filter does not keep."""
        layout_key = tuple((name, id(d)) for name, d in trial.distributions.items())
        trial.distributions = self._layouts.setdefault(layout_key, trial.distributions)
        if trial.intermediate and self.filter.keep_steps is not None:
            steps = self.filter.keep_steps(trial)
            trial.intermediate = {s: v for s, v in trial.intermediate.items() if s in steps}

    def _distribution(self, text: str) -> BaseDistribution:
        distribution = self._distribution_of_json.get(text)
        if distribution is None:
            distribution = self._distribution_of_json[text] = json_to_distribution(text)
        return distribution

    def _name(self, text: str) -> str:
        return self._names.setdefault(text, text)


def _kept_value(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) and len(value) < INTERN_BELOW else value


def _fill_created(
    trial: JournalTrial,
    log: Mapping[str, Any],
    keep: TrialFilter,
    distribution_of: Callable[[str], BaseDistribution],
    name_of: Callable[[str], str],
) -> None:
    trial.state = TrialState(log.get("state", TrialState.RUNNING.value))
    value, values = log.get("value"), log.get("values")
    trial.values = (value,) if value is not None else tuple(values) if values is not None else None
    trial.started = _epoch(log["datetime_start"])
    trial.completed = _epoch(log.get("datetime_complete"))
    distributions = {name_of(k): distribution_of(v) for k, v in (log.get("distributions") or {}).items()}
    trial.distributions = distributions
    trial.params = tuple(
        (name_of(k), distributions[k].to_external_repr(p)) for k, p in (log.get("params") or {}).items()
    )
    trial.user_attrs = {
        name_of(k): _kept_value(v) for k, v in (log.get("user_attrs") or {}).items() if keep.keeps_user_attr(k)
    }
    trial.system_attrs = {
        name_of(k): v for k, v in (log.get("system_attrs") or {}).items() if keep.keeps_system_attr(k)
    }
    trial.intermediate = {int(k): v for k, v in (log.get("intermediate_values") or {}).items()}
    trial.last_step = max(trial.intermediate) if trial.intermediate else None


def _update(
    trial: JournalTrial,
    op: JournalOperation,
    log: Mapping[str, Any],
    keep: TrialFilter,
    check_param: Callable[[JournalTrial, str, BaseDistribution], bool],
    distribution_of: Callable[[str], BaseDistribution],
    name_of: Callable[[str], str],
) -> None:
    """One operation on an unfinished trial, as Optuna's replay applies it."""
    if op == JournalOperation.SET_TRIAL_PARAM:
        name = name_of(log["param_name"])
        distribution = distribution_of(log["distribution"])
        if not check_param(trial, name, distribution):
            return
        value = distribution.to_external_repr(log["param_value_internal"])
        params = dict(trial.params)
        params[name] = value
        trial.params = tuple(params.items())
        trial.distributions = {**trial.distributions, name: distribution}
    elif op == JournalOperation.SET_TRIAL_STATE_VALUES:
        state = TrialState(log["state"])
        if state == trial.state == TrialState.RUNNING:
            return  # another process already runs this (enqueued) trial
        if state == TrialState.RUNNING:
            trial.started = _epoch(log["datetime_start"])
        if state.is_finished():
            trial.completed = _epoch(log["datetime_complete"])
        trial.state = state
        if log["values"] is not None:
            trial.values = tuple(log["values"])
    elif op == JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE:
        step = log["step"]
        trial.intermediate[step] = log["intermediate_value"]
        if trial.last_step is None or step > trial.last_step:
            trial.last_step = step
    elif op == JournalOperation.SET_TRIAL_USER_ATTR:
        attrs = {name_of(k): _kept_value(v) for k, v in log["user_attr"].items() if keep.keeps_user_attr(k)}
        if attrs:
            trial.user_attrs = {**trial.user_attrs, **attrs}
    elif op == JournalOperation.SET_TRIAL_SYSTEM_ATTR:
        attrs = {name_of(k): v for k, v in log["system_attr"].items() if keep.keeps_system_attr(k)}
        if attrs:
            trial.system_attrs = {**trial.system_attrs, **attrs}


class _FullReplay:
    """Replays one trial's span of the journal keeping everything (for `JournalReader.full_trial`).

    A parameter is checked against the study's distributions as the light replay recorded them."""

    def __init__(self, reader: JournalReader, trial: JournalTrial) -> None:
        self.reader = reader
        self.trial = trial

    def apply(self, log: Mapping[str, Any], log_number: int) -> None:
        trial = self.trial
        op = JournalOperation(log["op_code"])
        if log_number == trial.first_log:
            if op != JournalOperation.CREATE_TRIAL:
                raise CorruptStorage(f"journal {self.reader.path} changed under the reader at record {log_number}")
            _fill_created(trial, log, EVERYTHING, self.reader._distribution, self.reader._name)
            return
        if op in _TRIAL_OPS and log.get("trial_id") == trial.trial_id and not trial.state.is_finished():
            _update(
                trial,
                op,
                log,
                EVERYTHING,
                self.reader._check_param_readonly,
                self.reader._distribution,
                self.reader._name,
            )


_TRIAL_OPS = frozenset(
    {
        JournalOperation.SET_TRIAL_PARAM,
        JournalOperation.SET_TRIAL_STATE_VALUES,
        JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE,
        JournalOperation.SET_TRIAL_USER_ATTR,
        JournalOperation.SET_TRIAL_SYSTEM_ATTR,
    }
)
