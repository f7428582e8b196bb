"""Sprints: one Optuna study each, described by a JSON record in the ledger.

The record is everything a worker on any host needs to run the sprint's trials:
name, study name, sampler, pruner, space, tuned and fixed parameters, fidelity and budget.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import TrialState

from engine.ledger import Ledger, now_iso
from engine.pruners import make_pruner
from engine.samplers import make_sampler
from engine.space import Space, contains, default_value, distributions
from engine.spec import CampaignSpec
from engine.trials import counted_trials

SEEDED_GP_STARTUP = 5  # a seeded GP sprint's start-up trials: its seeds, and at least this many


def study_name(campaign: str, index: int, sprint: str) -> str:
    return f"{campaign}/{index:02d}-{sprint}"


def direction(spec: CampaignSpec) -> str:
    return spec.metric.direction


def best_params_so_far(spec: CampaignSpec, storage, ledger: Ledger, before: int) -> dict[str, Any]:
    """The best trial's parameters, latest sprint first (its fidelity is the highest so far)."""
    for index in range(before - 1, -1, -1):
        record = ledger.sprint(index)
        if record is None:
            continue
        study = optuna.load_study(study_name=record["study"], storage=storage)
        if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return {**record["fixed"], **study.best_trial.params}
    return {}


def make_record(
    spec: CampaignSpec, ledger: Ledger, storage, index: int, space: Space, fidelity: dict[str, Any] | None = None
) -> dict[str, Any]:
    sprint = spec.sprints[index]
    tuned = [n for n in (sprint.params or list(space)) if space[n]["type"] != "fixed"]
    best = best_params_so_far(spec, storage, ledger, index)
    fixed = {}
    for name, record in space.items():
        if name in tuned:
            continue
        if record["type"] == "fixed":
            fixed[name] = record["value"]
        elif name in best and contains({name: record}, {name: best[name]}):
            fixed[name] = best[name]
        else:
            fixed[name] = default_value(spec, name)
    return {
        "index": index,
        "name": sprint.name,
        "study": study_name(spec.name, index, sprint.name),
        "sampler": sprint.sampler,
        "pruner": sprint.pruner,
        "sampler_options": sprint.sampler_options,
        "pruner_options": sprint.pruner_options,
        "space": space,
        "tuned": tuned,
        "fixed": fixed,
        "level": sprint.fidelity,
        "fidelity": fidelity or dict(spec.fidelity.levels[sprint.fidelity]),
        "n_trials": sprint.n_trials,
        "timeout_s": sprint.timeout_s,
        "budget_cost": sprint.budget_cost,
        "budget_seconds": sprint.budget_seconds,
        "status": "running",
        "started": now_iso(),
        "started_ts": time.time(),
        "seeded": [],
    }


def open_study(spec: CampaignSpec, storage, record: dict[str, Any], *, worker_index: int = 0) -> optuna.Study:
    dists = distributions(record["space"], record["tuned"])
    seed = spec.seed * 1_000_003 + record["index"] * 1009 + worker_index * 7919
    options = dict(record.get("sampler_options") or {})
    if record["sampler"] == "eeipu":  # its cost cooling runs down the sprint's budget
        options.setdefault("budget_seconds", record.get("budget_seconds"))
        options.setdefault("n_trials", record.get("n_trials"))
    if record["sampler"] in ("gp", "skopt-gp") and record.get("seeded"):
        # A seeded GP sprint models from its seeds on: its start-up trials are the seeds, not
        # the samplers' default 10 (benchmarks/efficiency.py: random full-fidelity start-up trials
        # on top of the seeds delayed and worsened the phased campaign's results).
        options.setdefault("n_startup_trials", max(len(record["seeded"]), SEEDED_GP_STARTUP))
    sampler = make_sampler(record["sampler"], dists, seed=seed, options=options)
    epochs = record["fidelity"].get("epochs")
    max_resource = int(epochs) if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) else None
    pruner = make_pruner(record["pruner"], max_resource=max_resource, options=record.get("pruner_options"))
    return optuna.create_study(
        study_name=record["study"],
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=direction(spec),
        load_if_exists=True,
    )


def seed_study(spec: CampaignSpec, storage, ledger: Ledger, study: optuna.Study, record: dict[str, Any]) -> list[dict]:
    """Enqueue the best configurations of earlier sprints that fall inside this sprint's space."""
    count = spec.sprints[record["index"]].seed_top
    if count <= 0:
        return []
    candidates: list[tuple[int, float, dict]] = []
    for index in range(record["index"] - 1, -1, -1):
        earlier = ledger.sprint(index)
        if earlier is None:
            continue
        old = optuna.load_study(study_name=earlier["study"], storage=storage)
        done = [t for t in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        done.sort(key=lambda t: t.value, reverse=spec.metric.direction == "maximize")
        for rank, trial in enumerate(done):
            candidates.append((rank, -index, {**earlier["fixed"], **trial.params}))
    candidates.sort(key=lambda c: (c[0], c[1]))  # best of each sprint first, latest sprint first
    seeds: list[dict] = []
    for _, _, params in candidates:
        tuned = {n: params[n] for n in record["tuned"] if n in params}
        if len(tuned) != len(record["tuned"]) or not contains(record["space"], tuned) or tuned in seeds:
            continue
        seeds.append(tuned)
        if len(seeds) == count:
            break
    for params in seeds:
        study.enqueue_trial(params, user_attrs={"seeded": True})
    return seeds


def budget_left(record: dict[str, Any], trials: list) -> bool:
    """Whether a worker may start another trial in this sprint."""
    if record.get("status") != "running":
        return False
    if record.get("timeout_s") is not None and time.time() - record["started_ts"] >= record["timeout_s"]:
        return False
    if any(t.state == TrialState.WAITING for t in trials):
        return True  # queued seeds and retries were counted when they were queued
    if record.get("n_trials") is not None and counted_trials(trials) >= record["n_trials"]:
        return False
    if record.get("budget_cost") is not None:
        costs = [t.user_attrs["cost"] for t in trials if "cost" in t.user_attrs]
        spent = sum(costs)
        running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        expected = running * (spent / len(costs) if costs else 0.0)
        if spent + expected >= record["budget_cost"]:
            return False
    return not (record.get("budget_seconds") is not None and seconds_spent(trials) >= record["budget_seconds"])


def seconds_spent(trials: list, now: float | None = None) -> float:
    """Seconds of trial cost: finished trials' duration, plus the time running ones have run so far."""
    spent = sum(float(t.user_attrs["duration_s"]) for t in trials if "duration_s" in t.user_attrs)
    now = time.time() if now is None else now
    for t in trials:
        if t.state == TrialState.RUNNING and "duration_s" not in t.user_attrs and t.datetime_start is not None:
            spent += max(0.0, now - t.datetime_start.timestamp())
    return spent


def sprint_done(record: dict[str, Any], trials: list) -> bool:
    """Budget spent and no trial still running (seeds still queued past a time limit are dropped)."""
    return not budget_left(record, trials) and not any(t.state == TrialState.RUNNING for t in trials)
