"""The eeipu-gp sampler (engine.search.cost_aware_gp): log-EI per expected cost on Optuna's GP, cached prefixes kept."""

from __future__ import annotations

import math
import shutil

import numpy as np
import optuna
import pytest
import torch
from pipeline_studies import MIXED_SPACE, PREP_S, SPACE, mixed_space_study, two_stage_study

from benchmarks.memoization import run_one, synthetic
from engine.search.cost_aware_gp import CostAwareGPSampler, Group, eta_schedule
from engine.search.samplers import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(sampler, n=12, seed=0):
    # the prefix's cost varies with a: its cost GP has something to learn
    return two_stage_study(sampler, n, seed, prep_seconds=lambda a: PREP_S * (0.8 + 0.4 * a))


def _ask(study):
    trial = study.ask()
    return trial.suggest_float("a", 0.0, 1.0), trial.suggest_float("b", 0.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keeps_a_cached_prefix_when_improvement_is_similar(seed):
    sampler = CostAwareGPSampler(SPACE, seed=seed, eta=1.0, n_startup_trials=5)
    study = _study(sampler, seed=seed)
    evaluated_a = {t.params["a"] for t in study.trials}
    a, b = _ask(study)
    assert a in evaluated_a  # an evaluated configuration's prefix, to the bit: the cache will hit
    explanation = study.trials[-1].system_attrs["eeipu"]
    assert explanation["kind"].startswith("prefix prep") and explanation["cached_stages"] == ["prep"]
    assert explanation["expected_cost_s"] < 0.2  # it expects to pay the cheap stage only
    assert abs(b - 0.37) < 0.1  # the free parameter was optimised, not only kept: near the value's optimum
    # every group was scored; the uncached space's best has no less log-EI (a does not matter) but costs 40x
    scored = sampler.last["scored"]
    space = next(s for s in scored if s["group"].kind == "space")
    assert space["cost_s"] > 1.5 and space["value"] < scored[sampler.last["choice"]]["value"]


def test_log_ei_per_cost_differs_by_eta_times_the_log_cost_ratio():
    # The same point scored with its prefix cached and uncached: the acquisitions differ by exactly
    # eta x log(cost uncached / cost cached), and not at all at eta = 0.
    sampler = CostAwareGPSampler(SPACE, seed=0, eta=1.0, n_startup_trials=5)
    study = _study(sampler)
    best = min(study.trials, key=lambda t: t.value)
    for eta in (1.0, 0.4, 0.0):
        sampler.fixed_eta = eta
        sampler.choose(study, study.get_trials(), SPACE, np.random.RandomState(0))
        groups = {g.kind: g for g in sampler.last["groups"]}
        prefix = groups[f"prefix prep of #{best.number}"]
        assert prefix.values == {"a": best.params["a"]} and prefix.cached == frozenset({"prep"})
        uncached = Group("space", (), {}, frozenset())
        rebuilt = [_acquisition(sampler, study, g) for g in (prefix, uncached)]
        x_full = torch.tensor([[best.params["a"], 0.37]], dtype=torch.float64)  # a, b in [0, 1]: normalized as is
        with torch.no_grad():
            cached_value = float(rebuilt[0].eval_acqf(x_full[:, 1:]))
            uncached_value = float(rebuilt[1].eval_acqf(x_full))
            ratio = float(rebuilt[1].log_cost(x_full) - rebuilt[0].log_cost(rebuilt[0].full(x_full[:, 1:])))
        assert ratio > math.log(10)  # the prefix is most of the cost
        assert cached_value - uncached_value == pytest.approx(eta * ratio, rel=1e-9, abs=1e-12)


def _acquisition(sampler, study, group):
    """Rebuild the sampler's acquisition for one group from the study (what `choose` does inside)."""
    from optuna._gp.search_space import SearchSpace

    from engine.search.pipeline_costs import pipeline_stages

    done = sorted(study.trials, key=lambda t: t.number)
    names = list(SPACE)
    space = SearchSpace(SPACE)
    x = space.get_normalized_params(done)
    y = -np.array([t.value for t in done])
    y = (y - y.mean()) / y.std()
    gpr = sampler._fit("objective", x, y, space.is_categorical, False)
    costs, rest_s = sampler.cost_terms(done, pipeline_stages(done, names), space, x, names)
    return sampler._acquisition(group, gpr, space, SPACE, names, float(y.max()), costs, rest_s, sampler.fixed_eta)


def test_deterministic_with_a_seed():
    picks = []
    for _ in range(2):
        sampler = CostAwareGPSampler(SPACE, seed=7, n_trials=30, n_startup_trials=5)
        study = _study(sampler, seed=3)
        picks.append([_ask(study) for _ in range(3)])
    assert picks[0] == picks[1]
    other = CostAwareGPSampler(SPACE, seed=8, n_trials=30, n_startup_trials=5)
    assert [_ask(_study(other, seed=3)) for _ in range(3)] != picks[0]


def test_cooling_schedules():
    assert eta_schedule(0.0, "floor", 0.5) == 1.0 and eta_schedule(0.25, "floor", 0.5) == 0.75
    assert eta_schedule(0.9, "floor", 0.5) == 0.5 and eta_schedule(2.0, "floor", 0.5) == 0.5  # never below
    assert eta_schedule(0.9, "linear", 0.5) == pytest.approx(0.1) and eta_schedule(2.0, "linear", 0.5) == 0.0
    assert eta_schedule(0.9, "none", 0.5) == 1.0
    sampler = CostAwareGPSampler(SPACE, seed=0, budget_seconds=1.0, n_startup_trials=5)  # spent long ago
    assert sampler.eta(_study(sampler)) == 0.5
    with pytest.raises(ValueError, match="unknown cooling"):
        CostAwareGPSampler(SPACE, cooling="cubic")


def test_on_the_synthetic_pipeline_it_reuses_cached_prefixes(tmp_path):
    # The real trial path (engine.execution.trials.run_trial, the stage cache) on the three-stage pipeline, 1.5 s of trial cost.
    workload = synthetic(budget_s=1.5, time_scale=0.02)
    result = run_one(workload, "eeipu-gp+cache", seed=0, workdir=tmp_path)
    shutil.rmtree(tmp_path, ignore_errors=True)
    # after the 10 random start-up trials, prefixes were chosen and hit (quality: benchmarks/memoization.py)
    assert result.hits >= 5 and result.saved_s > 0.1
    assert result.best is not None and len(result.trace) == result.candidates


def test_mixed_space_and_engine_name():
    sampler = make_sampler("eeipu-gp", MIXED_SPACE, seed=0, options={"n_startup_trials": 3, "n_trials": 10})
    assert isinstance(sampler, CostAwareGPSampler)
    study = mixed_space_study(sampler, n_trials=8)
    assert len({(t.params["lr"], t.params["units"], t.params["act"]) for t in study.trials}) == 8
    assert all(t.params["units"] % 8 == 0 and t.params["act"] in ("relu", "tanh") for t in study.trials)
    assert study.trials[-1].system_attrs["eeipu"]["kind"] == "space"  # no stages recorded: plain log-EI per cost
