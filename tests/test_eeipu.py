"""The eeipu sampler (engine.search.eeipu): cost cooling, preference for cached prefixes, cost ignored at eta 0."""

from __future__ import annotations

from collections import Counter

import numpy as np
import optuna
import pytest
from pipeline_studies import FIT_S, MIXED_SPACE, PREP_S, SPACE, mixed_space_study, two_stage_study

from engine.search.eeipu import EEIPUSampler, _Space, cost_cooling, eeipu_acquisition, expected_improvement
from engine.search.samplers import make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(sampler, n=10, seed=0):
    return two_stage_study(sampler, n, seed)


def test_acquisition_and_cooling():
    ei = np.array([0.2, 0.2, 0.1])
    inverse_cost = np.array([1 / 0.05, 1 / 2.05, 1 / 0.05])
    assert np.argmax(eeipu_acquisition(ei, inverse_cost, 1.0)) == 0  # equal improvement: the cheap one
    assert np.array_equal(eeipu_acquisition(ei, inverse_cost, 0.0), ei)  # eta 0: cost plays no part
    assert cost_cooling(0.0, 100.0) == 1.0 and cost_cooling(50.0, 100.0) == 0.5
    assert cost_cooling(100.0, 100.0) == 0.0 and cost_cooling(150.0, 100.0) == 0.0
    assert cost_cooling(10.0, 100.0, spent_at_start=10.0) == 1.0  # the random start-up does not cool
    mu, sd = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.1, 1.0])
    ei = expected_improvement(mu, sd, best=0.5)
    assert ei[0] > ei[1] > 0 and ei[0] > ei[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefers_a_cheap_cached_prefix_when_improvements_are_equal(seed):
    sampler = EEIPUSampler(SPACE, seed=seed, eta=1.0, n_startup_trials=5)
    study = _study(sampler, seed=seed)
    evaluated_a = {t.params["a"] for t in study.trials}
    trial = study.ask()
    a = trial.suggest_float("a", 0.0, 1.0)
    trial.suggest_float("b", 0.0, 1.0)
    last = sampler.last
    choice = last["choice"]
    assert a in evaluated_a  # the prefix of an evaluated configuration, to the bit: the cache will hit
    assert last["cached_stages"][choice] == ["prep"]
    assert 1 / last["inverse_cost"][choice] < 0.2  # it expects to pay the cheap stage only
    explanation = study.trials[-1].system_attrs["eeipu"]
    assert explanation["kind"].startswith("prefix prep") and explanation["eta"] == 1.0
    # Where improvements are alike, the cached candidates win: the best uncached candidate has no less EI
    # (a does not matter), yet a lower acquisition.
    uncached = [i for i, c in enumerate(last["cached_stages"]) if not c]
    best_uncached = max(uncached, key=lambda i: last["acquisition"][i])
    assert last["acquisition"][choice] > last["acquisition"][best_uncached]


def test_ignores_cost_once_the_budget_is_spent():
    budget = 10 * (PREP_S + FIT_S + 0.01) - 0.5  # the ten trials spent more than this: eta = 0
    sampler = EEIPUSampler(SPACE, seed=0, budget_seconds=budget, n_startup_trials=5)
    study = _study(sampler)
    assert sampler.eta(study) == 0.0
    trial = study.ask()
    trial.suggest_float("a", 0.0, 1.0)
    trial.suggest_float("b", 0.0, 1.0)
    last = sampler.last
    assert np.array_equal(last["acquisition"], last["ei"])
    assert last["choice"] == int(np.argmax(last["ei"]))
    # here EI's favourite lies off the cached prefixes, and eeipu takes it although it costs 40x more
    assert not last["cached_stages"][last["choice"]] and 1 / last["inverse_cost"][last["choice"]] > 2.0
    assert study.trials[-1].system_attrs["eeipu"]["eta"] == 0.0

    # the same study with budget left: cost counts, and the pick changes to a cached prefix
    fresh = EEIPUSampler(SPACE, seed=0, budget_seconds=100 * budget, n_startup_trials=5)
    assert fresh.eta(study) > 0.9


def test_every_cached_prefix_is_optimised_not_only_sampled():
    # eta 0: cost cannot push the prefix candidates ahead, so only the per-prefix refinement reaches them all
    sampler = EEIPUSampler(SPACE, seed=0, eta=0.0, n_startup_trials=5, n_candidates=128, refine_rounds=2)
    study = _study(sampler)
    scored = sampler.score_candidates(study, study.get_trials(), _Space(SPACE), np.random.default_rng(0))
    by_number = {t.number: t for t in study.trials}
    groups = Counter(k for k in scored["kinds"] if k.startswith("prefix"))
    assert len(groups) == sampler.top_configs == 5  # one cached prefix ("prep") of each of the 5 best
    sampled = max(16, 128 // 5)
    for kind, count in groups.items():
        assert count >= sampled + 2 * 32, kind  # its best candidate was refined in both rounds
        number = int(kind.rsplit("#", 1)[1])
        values = {p["a"] for p, k in zip(scored["params"], scored["kinds"], strict=False) if k == kind}
        assert values == {by_number[number].params["a"]}  # refinement moved only the free parameter


def test_eta_follows_the_budget_in_seconds_or_trials():
    sampler = EEIPUSampler(SPACE, seed=0, budget_seconds=4 * 2.06 * 2, n_startup_trials=2)
    study = _study(sampler, n=4)
    # 4 trials of 2.06 s spent of 16.48 s; the first two (the start-up) do not count: (16.48-8.24)/(16.48-4.12)
    assert sampler.eta(study) == pytest.approx((16.48 - 8.24) / (16.48 - 4.12))
    by_trials = EEIPUSampler(SPACE, n_trials=12, n_startup_trials=2)
    assert by_trials.eta(study) == pytest.approx((12 - 4) / (12 - 2))


def test_stage_structure_declared_or_recorded():
    declared = EEIPUSampler(SPACE, stages=[{"name": "prep", "params": ["a"]}, {"name": "fit", "params": ["b"]}])
    recorded = EEIPUSampler(SPACE)
    study = _study(recorded, n=3)
    for sampler in (declared, recorded):
        stages = sampler.stage_structure(study.trials, ["a", "b"])
        assert [(s.name, s.params) for s in stages] == [("prep", ("a",)), ("fit", ("a", "b"))]
        assert len(stages[0].cached) == 3


def test_mixed_space_and_engine_name():
    sampler = make_sampler("eeipu", MIXED_SPACE, seed=0, options={"n_startup_trials": 3, "n_candidates": 64})
    assert isinstance(sampler, EEIPUSampler)
    study = mixed_space_study(sampler, n_trials=8)
    assert len({(t.params["lr"], t.params["units"], t.params["act"]) for t in study.trials}) == 8
    assert all(t.params["units"] % 8 == 0 for t in study.trials)
    assert "eeipu" in study.trials[-1].system_attrs  # no stages recorded: plain EI x expected cost still works
