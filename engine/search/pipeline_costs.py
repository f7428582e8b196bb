"""What the cost-aware pipeline samplers ("eeipu", engine.search.eeipu; "eeipu-gp", engine.search.cost_aware_gp) share.

* The pipeline's structure: its stages in order, the tuned parameters each stage's cache key depends on,
  and the values of those parameters that have a cached result (`pipeline_stages`, `Stage`).
* The cost records the stage runner leaves on a trial (the `stages` user attribute): each stage's seconds
  when computed, a cache hit's seconds, and the trial's cost outside every stage (`stage_cost_samples`,
  `unstaged_cost_samples`).
* The sampler around an acquisition (`PipelineSampler`): the settings both take, the random start-up,
  how much of the budget is spent, and the explanation written on the trial.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

from engine.cache.stages import STAGES_ATTR
from engine.store.optuna_internals import storage_trial_id, study_storage
from engine.store.schema import EXPLANATION_ATTR, FINISHED_TRIAL_STATES

MIN_COST_S = 1e-4  # a computed stage's least cost: log costs stay finite

# The distributions the samplers handle: numeric ones by (low, high, log), categorical by index.
Distribution: TypeAlias = FloatDistribution | IntDistribution | CategoricalDistribution


def supported_distribution(dist: BaseDistribution) -> Distribution:
    if isinstance(dist, (FloatDistribution, IntDistribution, CategoricalDistribution)):
        return dist
    raise TypeError(f"cannot map {type(dist).__name__} to the unit cube: only float, int and categorical")


def objective_value(trial: FrozenTrial) -> float:
    """A complete trial's value; callers pass only trials whose value is set."""
    value = trial.value
    if value is None:
        raise ValueError(f"trial {trial.number} has no value")
    return float(value)


def params_inside(params: dict[str, Any], space: Mapping[str, BaseDistribution]) -> bool:
    for name, dist in space.items():
        if name not in params:
            return False
        try:
            if not dist._contains(dist.to_internal_repr(params[name])):
                return False
        except (ValueError, TypeError):
            return False
    return True


def completed_inside(trials: list[FrozenTrial], space: Mapping[str, BaseDistribution]) -> list[FrozenTrial]:
    """The complete trials with a value and every parameter inside `space`, in trial order."""
    done = (
        t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and params_inside(t.params, space)
    )
    return sorted(done, key=lambda t: t.number)


def running_inside(
    trials: list[FrozenTrial], space: Mapping[str, BaseDistribution], exclude_trial: int | None
) -> list[FrozenTrial]:
    """The running trials inside `space` other than `exclude_trial` (the one being asked for)."""
    return [
        t
        for t in trials
        if t.state == TrialState.RUNNING and t.number != exclude_trial and params_inside(t.params, space)
    ]


def best_first(trials: list[FrozenTrial], direction: optuna.study.StudyDirection) -> list[FrozenTrial]:
    """Complete trials ordered from the best value to the worst (ties in the given order)."""
    sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(trials, key=lambda t: sign * objective_value(t))


# --------------------------------------------------------------------------------------- stages


@dataclass
class Stage:
    name: str
    params: tuple[str, ...]  # tuned parameters that decide the stage's cache key
    cached: set = field(default_factory=set)  # value tuples of `params` with a cached result

    def key(self, params: Mapping[str, Any]) -> tuple:
        """The values of the stage's parameters in `params`: what its cache key depends on."""
        return tuple(params[p] for p in self.params)

    def is_cached(self, params: Mapping[str, Any]) -> bool:
        return self.key(params) in self.cached


def prefix_stages(stages: list[Stage], n_tuned: int) -> list[Stage]:
    """The stages whose cache key fixes some but not every tuned parameter: a candidate can reuse a cached
    result of one and still choose the parameters it leaves free."""
    return [s for s in stages if s.params and len(s.params) < n_tuned]


def pipeline_stages(
    trials: list[FrozenTrial], tuned: list[str], declared: list[dict[str, Any]] | None = None
) -> list[Stage]:
    """The pipeline's stages in order, each with the tuned parameters its cache key depends on (its own
    and every earlier stage's) and the value tuples of those parameters that have a cached result.

    From `declared` (`[{name, params}]`, each stage's own parameters in pipeline order) or else from what
    the stage runner recorded in the trials (`stages` user attribute)."""
    tuned_set = set(tuned)
    stages: list[Stage] = []
    if declared:
        cumulative: list[str] = []
        for item in declared:
            cumulative += [p for p in item.get("params", []) if p in tuned_set and p not in cumulative]
            stages.append(Stage(str(item["name"]), tuple(cumulative)))
    else:
        recorded: dict[str, tuple[int, tuple[str, ...]]] = {}
        for t in trials:
            for name, rec in (t.user_attrs.get(STAGES_ATTR) or {}).items():
                if isinstance(rec, dict) and name not in recorded:
                    params = tuple(p for p in tuned if p in set(rec.get("params", [])))
                    recorded[name] = (int(rec.get("order", len(recorded))), params)
        for name, (_, params) in sorted(recorded.items(), key=lambda kv: kv[1][0]):
            stages.append(Stage(name, params))
    for t in trials:
        for stage in stages:
            rec = (t.user_attrs.get(STAGES_ATTR) or {}).get(stage.name)
            if isinstance(rec, dict) and rec.get("cached") and all(p in t.params for p in stage.params):
                stage.cached.add(stage.key(t.params))
    return stages


# --------------------------------------------------------------------------------------- cost records


@dataclass(frozen=True)
class CostSamples:
    """Observed costs of one part of the trials: which trials (indices into the list given) and their seconds."""

    rows: list[int]
    seconds: list[float]
    hit_s: float = 0.0  # the median seconds of a cache hit (0 when none was seen)


def stage_cost_samples(trials: list[FrozenTrial], stage: str) -> CostSamples:
    """The seconds of each trial that computed `stage` (at least MIN_COST_S); its cache hits give `hit_s`."""
    rows, seconds, hits = [], [], []
    for i, t in enumerate(trials):
        rec = (t.user_attrs.get(STAGES_ATTR) or {}).get(stage)
        if not isinstance(rec, dict):
            continue
        if rec.get("hit"):
            hits.append(float(rec.get("seconds", 0.0)))
        else:
            rows.append(i)
            seconds.append(max(float(rec.get("seconds", 0.0)), MIN_COST_S))
    return CostSamples(rows, seconds, float(np.median(hits)) if hits else 0.0)


def unstaged_cost_samples(trials: list[FrozenTrial], cost_attr: str) -> CostSamples:
    """Each trial's cost outside every recorded stage: its `cost_attr` minus its stages' seconds. Trials
    without `cost_attr` are left out; a value may be below 0 (timing jitter): callers clamp it."""
    rows, seconds = [], []
    for i, t in enumerate(trials):
        if cost_attr not in t.user_attrs:
            continue
        records = t.user_attrs.get(STAGES_ATTR) or {}
        staged = sum(float(r.get("seconds", 0.0)) for r in records.values() if isinstance(r, dict))
        rows.append(i)
        seconds.append(float(t.user_attrs[cost_attr]) - staged)
    return CostSamples(rows, seconds)


# --------------------------------------------------------------------------------------- sampler


@dataclass(frozen=True)
class BudgetUse:
    """How much of the sprint's budget (seconds of `cost_attr`, or trials) the finished trials spent."""

    spent: float
    budget: float
    spent_at_start: float  # what the random start-up spent: cost-awareness starts from there

    @property
    def progress(self) -> float:
        """0 at the end of the start-up, 1 when the budget is spent (may pass 1)."""
        span = self.budget - self.spent_at_start
        return 1.0 if span <= 0 else (self.spent - self.spent_at_start) / span


class PipelineSampler(BaseSampler):
    """A relative sampler over the whole space that starts with random trials, then asks `propose`.

    Like engine.search.skopt_sampler, all state is read from the study, so any worker process can ask.
    """

    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int | None,
        stages: list[dict[str, Any]] | None,
        budget_seconds: float | None,
        n_trials: int | None,
        eta: float | None,
        n_startup_trials: int,
        top_configs: int,
        cost_attr: str,
    ):
        self._space = dict(search_space)
        self._seed = seed
        self._declared = stages
        self.budget_seconds = budget_seconds
        self.n_trials = n_trials
        self.fixed_eta = eta
        self.n_startup = n_startup_trials
        self.top_configs = top_configs
        self.cost_attr = cost_attr  # the user attribute holding a trial's cost in seconds
        self._fallback = RandomSampler(seed=seed)
        self.last: dict[str, Any] | None = None  # the last ask's scores, for tests and explanations

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False)
        if len(completed_inside(trials, search_space)) < self.n_startup:
            return {}  # the random start-up: the independent sampler draws every parameter
        params, explanation = self.propose(study, trial, trials, search_space)
        try:
            study_storage(study).set_trial_system_attr(storage_trial_id(trial), EXPLANATION_ATTR, explanation)
        except Exception:
            pass  # the explanation is for people reading the study; the ask must not fail over it
        return params

    @abc.abstractmethod
    def propose(
        self, study, trial: FrozenTrial, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The parameters for `trial`, and why (a JSON-able explanation); called after the start-up."""

    def trial_seed(self, trial: FrozenTrial, modulus: int) -> int | None:
        """The ask's random seed: each trial its own stream, reproducible from the sampler's seed."""
        return None if self._seed is None else (self._seed * 100_003 + trial.number) % modulus

    def eta(self, study) -> float:
        """The weight of cost in the acquisition now: the fixed `eta` when given, else `cooled_eta`."""
        if self.fixed_eta is not None:
            return float(self.fixed_eta)
        return self.cooled_eta(self.budget_use(study))

    @abc.abstractmethod
    def cooled_eta(self, use: BudgetUse | None) -> float:
        """eta after `use` of the budget (None: no budget set)."""

    def budget_use(self, study) -> BudgetUse | None:
        """The budget spent so far: seconds of `cost_attr` when budget_seconds is set, else trials when
        n_trials is; None without a budget."""
        finished = sorted(study.get_trials(deepcopy=False, states=FINISHED_TRIAL_STATES), key=lambda t: t.number)
        if self.budget_seconds:
            costs = [float(t.user_attrs.get(self.cost_attr, 0.0)) for t in finished]
            return BudgetUse(sum(costs), float(self.budget_seconds), sum(costs[: self.n_startup]))
        if self.n_trials:
            return BudgetUse(float(len(finished)), float(self.n_trials), float(min(self.n_startup, len(finished))))
        return None
