"""Sprints: one Optuna study each, described by a sprint record (engine.store.records.SprintRecord) in the ledger.

The record is everything a worker on any host needs to run the sprint's trials:
name, study name, sampler, pruner, space, tuned and fixed parameters, fidelity and budget.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from typing import Any, Literal, cast

import optuna
from optuna.trial import TrialState

from engine.execution.trials import counted_trials, trial_cost
from engine.gates.reopen import enqueue_probes, plan_probes, probe_count
from engine.search.observations import Observation, fidelity_z_of, observations_of
from engine.search.pruners import make_pruner
from engine.search.samplers import make_sampler
from engine.search.space import Space, contains, default_value, distributions
from engine.spec import CampaignSpec
from engine.store.ledger import Ledger
from engine.store.queries import best_trial, sprint_trials
from engine.store.records import SprintRecord
from engine.store.schema import (
    COST_ATTR,
    DURATION_ATTR,
    SEEDED_ATTR,
    SPRINT_STUDY_ATTRS,
    SprintStatus,
    now_iso,
    sprint_study_name,
)

SEEDED_GP_STARTUP = 5  # a seeded GP sprint's start-up trials: its seeds, and at least this many


study_name = sprint_study_name  # the older name


def direction(spec: CampaignSpec) -> Literal["minimize", "maximize"]:
    return spec.metric.direction


def best_params_so_far(spec: CampaignSpec, storage, ledger: Ledger, before: int) -> dict[str, Any]:
    """The best trial's parameters, latest sprint first (its fidelity is the highest so far)."""
    maximize = spec.metric.direction == "maximize"
    for record in reversed([r for r in ledger.sprint_records() if r.index < before]):
        best = best_trial(sprint_trials(storage, record) or [], maximize)
        if best is not None:
            return {**record.fixed, **best.params}
    return {}


def make_record(
    spec: CampaignSpec, ledger: Ledger, storage, index: int, space: Space, fidelity: Mapping[str, Any] | None = None
) -> SprintRecord:
    """Sprint `index`'s record over `space`, at `fidelity` (default: its level's); not yet seeded or stored."""
    sprint = spec.sprints[index]
    tuned = [n for n in (sprint.params or list(space)) if space[n]["type"] != "fixed"]
    best = best_params_so_far(spec, storage, ledger, index)
    fixed = {}
    for name, bounds in space.items():
        if name in tuned:
            continue
        if bounds["type"] == "fixed":
            fixed[name] = bounds["value"]
        elif name in best and contains({name: bounds}, {name: best[name]}):
            fixed[name] = best[name]
        else:
            fixed[name] = default_value(spec, name)
    return SprintRecord(
        index=index,
        name=sprint.name,
        study=study_name(spec.name, index, sprint.name),
        sampler=sprint.sampler,
        pruner=sprint.pruner,
        sampler_options=sprint.sampler_options,
        pruner_options=sprint.pruner_options,
        space=space,
        tuned=tuple(tuned),
        fixed=fixed,
        level=sprint.fidelity,
        fidelity=dict(fidelity or spec.fidelity.levels[sprint.fidelity]),
        n_trials=sprint.n_trials,
        timeout_s=sprint.timeout_s,
        budget_cost=sprint.budget_cost,
        budget_seconds=sprint.budget_seconds,
        status=SprintStatus.RUNNING,
        started=now_iso(),
        started_ts=time.time(),
    )


def open_study(spec: CampaignSpec, storage, record: SprintRecord, *, worker_index: int = 0) -> optuna.Study:
    dists = distributions(dict(record.space), list(record.tuned))
    seed = spec.seed * 1_000_003 + record.index * 1009 + worker_index * 7919
    options = dict(record.sampler_options or {})
    if record.sampler in ("eeipu", "eeipu-gp"):  # its cost cooling runs down the sprint's budget
        options.setdefault("budget_seconds", record.budget_seconds)
        options.setdefault("n_trials", record.n_trials)
    if record.sampler == "mf-gp":  # the earlier sprints' trials, each at its fidelity coordinate
        options.setdefault("observations", earlier_observations(spec, storage, record))
        options.setdefault("fidelity_z", fidelity_coordinate(spec, record.fidelity))
    if record.sampler in ("gp", "skopt-gp", "mf-gp") and record.seeded:
        # A seeded GP sprint models from its seeds on: its start-up trials are the seeds, not
        # the samplers' default 10 (benchmarks/efficiency.py: random full-fidelity start-up trials
        # on top of the seeds delayed and worsened the phased campaign's results).
        options.setdefault("n_startup_trials", max(len(record.seeded), SEEDED_GP_STARTUP))
    sampler = make_sampler(record.sampler, dists, seed=seed, options=options)
    epochs = record.fidelity.get("epochs")
    max_resource = int(epochs) if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) else None
    pruner = make_pruner(
        record.pruner,
        max_resource=max_resource,
        options=dict(record.pruner_options) if record.pruner_options is not None else None,
    )
    study = optuna.create_study(
        study_name=record.study,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=direction(spec),
        load_if_exists=True,
    )
    describe_study(study, spec, record)
    return study


def fidelity_coordinate(spec: CampaignSpec, fidelity: Mapping[str, Any]) -> float:
    """z for the multi-fidelity GP: 0 at the cheapest level, 1 at the full one, linear in log cost."""
    full = list(spec.fidelity.levels.values())[-1]
    knobs = spec.fidelity.cost_knobs
    costs = [trial_cost(dict(level), full, knobs, None) for level in spec.fidelity.levels.values()]
    return fidelity_z_of(costs, trial_cost(dict(fidelity), full, knobs, None))


def earlier_observations(spec: CampaignSpec, storage, record: SprintRecord) -> list[Observation]:
    """Every completed trial of the sprints before `record`'s, with its sprint's fidelity coordinate."""
    ledger = Ledger(storage, spec.name)
    observations: list[Observation] = []
    for earlier in ledger.sprint_records():
        if earlier.index >= record.index:
            continue
        trials = sprint_trials(storage, earlier) or []
        observations += observations_of(trials, dict(earlier.fixed), fidelity_coordinate(spec, earlier.fidelity))
    return observations


def describe_study(study: optuna.Study, spec: CampaignSpec, record: SprintRecord) -> None:
    """Short study attributes and the metric's name, for optuna-dashboard and plain Optuna (written once)."""
    if study.metric_names is None:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([spec.metric.name])
    attrs = study.user_attrs
    wanted = {
        "campaign": spec.name,
        "sprint": record.name,
        "index": record.index,
        "sampler": record.sampler,
        "pruner": record.pruner,
        "fidelity": dict(record.fidelity),
        "level": record.level,
        "tuned": list(record.tuned),
    }
    for key in SPRINT_STUDY_ATTRS:
        if attrs.get(key) != wanted[key]:
            study.set_user_attr(key, wanted[key])


def enqueue_limit(spec: CampaignSpec, record: SprintRecord) -> int:
    """How many trials may be enqueued at a sprint's start: queued trials always run, so they must fit
    within n_trials and budget_cost (a full trial at the sprint's fidelity costs its level's cost)."""
    limit = record.n_trials if record.n_trials is not None else 1_000_000
    if record.budget_cost is not None:
        limit = min(limit, max(1, int(math.floor(record.budget_cost / _level_cost(spec, record) + 1e-9))))
    return limit


def seed_study(spec: CampaignSpec, storage, ledger: Ledger, study: optuna.Study, record: SprintRecord) -> SprintRecord:
    """Enqueue the best configurations of earlier sprints that fall inside this sprint's space, then
    the sprint's out-of-box probes (engine.gates.reopen); returns the record listing both (`seeded`, `probes`).

    Seeds and probes count within the sprint's n_trials and budget_cost (enqueue_limit).
    """
    limit = enqueue_limit(spec, record)
    sprint = spec.sprints[record.index]
    count = min(sprint.seed_top, limit)
    candidates: list[tuple[int, float, dict]] = []
    for index in range(record.index - 1, -1, -1) if count > 0 or sprint.explore_share > 0 else ():
        earlier = ledger.sprint_record(index)
        if earlier is None:
            continue
        old = optuna.load_study(study_name=earlier.study, storage=storage)
        done = [t for t in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        # cast: a COMPLETE trial of a single-objective study always carries its value
        done.sort(key=lambda t: cast(float, t.value), reverse=spec.metric.direction == "maximize")
        for rank, trial in enumerate(done):
            candidates.append((rank, -index, {**earlier.fixed, **trial.params}))
    candidates.sort(key=lambda c: (c[0], c[1]))  # best of each sprint first, latest sprint first
    inside: list[dict] = []
    for _, _, params in candidates:
        tuned = {n: params[n] for n in record.tuned if n in params}
        if len(tuned) != len(record.tuned) or not contains(dict(record.space), tuned) or tuned in inside:
            continue
        inside.append(tuned)
        if len(inside) >= max(count, 1):
            break
    seeds = inside[:count]
    for params in seeds:
        study.enqueue_trial(params, user_attrs={SEEDED_ATTR: True})
    original = ledger.original_space() or {}
    n_probes = min(
        probe_count(sprint.explore_share, record.n_trials, record.budget_cost, _level_cost(spec, record)),
        limit - len(seeds),
    )
    probes = []
    if inside and original and n_probes > 0:
        seed = spec.seed * 1_000_003 + record.index * 1009 + 17
        probes = plan_probes(dict(record.space), list(record.tuned), original, inside[0], n_probes, seed)
        enqueue_probes(study, probes)
    listed = tuple({"param": p["param"], "side": p["side"], "value": p["params"][p["param"]]} for p in probes)
    return record.replace(seeded=tuple(seeds), probes=listed)


def _level_cost(spec: CampaignSpec, record: SprintRecord) -> float:
    full = list(spec.fidelity.levels.values())[-1]
    return trial_cost(dict(record.fidelity), full, spec.fidelity.cost_knobs, None)


def budget_left(record: SprintRecord, trials: list) -> bool:
    """Whether a worker may start another trial in this sprint."""
    if not record.running:
        return False
    if (
        record.timeout_s is not None
        and record.started_ts is not None
        and time.time() - record.started_ts >= record.timeout_s
    ):
        return False
    if any(t.state == TrialState.WAITING for t in trials):
        return True  # queued seeds and retries were counted when they were queued
    if record.n_trials is not None and counted_trials(trials) >= record.n_trials:
        return False
    if record.budget_cost is not None:
        costs = [t.user_attrs[COST_ATTR] for t in trials if COST_ATTR in t.user_attrs]
        spent = sum(costs)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        expected = running * (spent / len(costs) if costs else 0.0)
        if spent + expected >= record.budget_cost:
            return False
    return not (record.budget_seconds is not None and seconds_spent(trials) >= record.budget_seconds)


def seconds_spent(trials: list, now: float | None = None) -> float:
    """Seconds of trial cost: finished trials' duration, plus the time running ones have run so far."""
    spent = sum(float(t.user_attrs[DURATION_ATTR]) for t in trials if DURATION_ATTR in t.user_attrs)
    now = time.time() if now is None else now
    for t in trials:
        if t.state == TrialState.RUNNING and DURATION_ATTR not in t.user_attrs and t.datetime_start is not None:
            spent += max(0.0, now - t.datetime_start.timestamp())
    return spent


def sprint_done(record: SprintRecord, trials: list) -> bool:
    """Budget spent and no trial still running (seeds still queued past a time limit are dropped)."""
    return not budget_left(record, trials) and not any(t.state == TrialState.RUNNING for t in trials)
