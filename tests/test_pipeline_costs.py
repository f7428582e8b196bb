"""What the cost-aware samplers share (engine.search.pipeline_costs): cost records, stages, the budget."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from pipeline_studies import FIT_S, PREP_S, SPACE, two_stage_study

from engine.search.pipeline_costs import (
    MIN_COST_S,
    BudgetUse,
    Stage,
    pipeline_stages,
    prefix_stages,
    stage_cost_samples,
    unstaged_cost_samples,
)


def _trial(stages: dict | None, duration_s: float | None):
    attrs = {"stages": stages} if stages is not None else {}
    if duration_s is not None:
        attrs["duration_s"] = duration_s
    return optuna.trial.create_trial(
        params={"a": 0.5}, distributions={"a": FloatDistribution(0.0, 1.0)}, value=1.0, user_attrs=attrs
    )


def test_stage_and_unstaged_cost_samples():
    trials = [
        _trial({"prep": {"seconds": 3.0, "hit": False}, "fit": {"seconds": 1.0}}, 5.0),
        _trial({"prep": {"seconds": 0.02, "hit": True}}, 0.5),
        _trial({"prep": {"seconds": 0.0, "hit": False}}, None),  # no cost: only its stage counts
        _trial(None, 2.0),  # nothing recorded: all of it is outside the stages
        _trial({"prep": {"seconds": 0.04, "hit": True}, "fit": {"seconds": 0.7}}, 0.6),  # jitter: below the stages
    ]
    prep = stage_cost_samples(trials, "prep")
    assert prep.rows == [0, 2] and prep.seconds == [3.0, MIN_COST_S]  # a computed stage costs at least MIN_COST_S
    assert prep.hit_s == pytest.approx(0.03)  # the median hit
    assert stage_cost_samples(trials, "eval").rows == [] and stage_cost_samples(trials, "eval").hit_s == 0.0
    rest = unstaged_cost_samples(trials, "duration_s")
    assert rest.rows == [0, 1, 3, 4]
    assert rest.seconds == pytest.approx([1.0, 0.48, 2.0, -0.14])  # callers clamp the negative one


def test_stages_prefixes_and_cache_keys():
    study = two_stage_study(None, 3)
    stages = pipeline_stages(study.trials, list(SPACE))
    assert [(s.name, s.params) for s in stages] == [("prep", ("a",)), ("fit", ("a", "b"))]
    assert [s.name for s in prefix_stages(stages, len(SPACE))] == ["prep"]  # "fit" fixes every parameter
    first = study.trials[0].params
    assert stages[0].key(first) == (first["a"],) and stages[0].is_cached(first)
    assert not stages[0].is_cached({"a": -1.0, "b": 0.0})
    assert prefix_stages([Stage("data", ())], 2) == []  # a stage no tuned parameter decides leaves all free
    assert study.trials[0].user_attrs["duration_s"] == pytest.approx(PREP_S + FIT_S + 0.01)


def test_budget_progress():
    assert BudgetUse(spent=10.0, budget=30.0, spent_at_start=10.0).progress == 0.0
    assert BudgetUse(spent=20.0, budget=30.0, spent_at_start=10.0).progress == 0.5
    assert BudgetUse(spent=40.0, budget=30.0, spent_at_start=10.0).progress == 1.5
    assert BudgetUse(spent=12.0, budget=10.0, spent_at_start=12.0).progress == 1.0  # the start-up spent it all
