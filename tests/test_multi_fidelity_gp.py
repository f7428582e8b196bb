"""The multi-fidelity GP sampler ("mf-gp", engine.search.multi_fidelity_gp): it models the parameters and
the fidelity together, so cheap trials inform it where the fidelities agree and full-fidelity trials
overrule them where they do not; and it runs inside a campaign on the earlier sprints' trials."""

import math

import numpy as np
import optuna
import pytest
from enginekit import spec_of
from optuna._gp.search_space import SearchSpace

from engine.campaign import Coordinator
from engine.execution.sprint import fidelity_coordinate
from engine.search.multi_fidelity_gp import MultiFidelityGPSampler
from engine.search.observations import Observation, fidelity_z_of, observations_of
from engine.store.ledger import Ledger

SPACE = {"x": optuna.distributions.FloatDistribution(0.0, 1.0), "y": optuna.distributions.FloatDistribution(0.0, 1.0)}


def _shifted(x: float, y: float, z: float) -> float:
    """Optimum at (0.75, 0.5) at z = 0 and (0.25, 0.5) at z = 1: the cheap fidelity is biased in x only."""
    return (x - (0.75 - 0.5 * z)) ** 2 + (y - 0.5) ** 2


def _unbiased(x: float, y: float, z: float) -> float:
    """Optimum at (0.25, 0.5) at every fidelity; the cheap one is only offset."""
    return (x - 0.25) ** 2 + (y - 0.5) ** 2 + 0.2 * (1.0 - z)


def _low_observations(n: int, f=_shifted, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.0, 1.0, size=(n, 2))
    return [Observation({"x": float(a), "y": float(b)}, f(a, b, 0.0), 0.0) for a, b in points]


def _study(sampler, full_points: list[tuple[float, float]], f=_shifted) -> optuna.Study:
    study = optuna.create_study(sampler=sampler, direction="minimize")
    for a, b in full_points:
        study.add_trial(optuna.trial.create_trial(params={"x": a, "y": b}, distributions=SPACE, value=f(a, b, 1.0)))
    return study


def _ask(study: optuna.Study) -> dict[str, float]:
    trial = study.ask(SPACE)
    return dict(trial.params)


def test_fidelity_coordinate_runs_from_the_cheapest_level_to_the_full_one_in_log_cost():
    costs = [1 / 45, 1 / 5, 1.0]
    assert fidelity_z_of(costs, 1 / 45) == 0.0
    assert fidelity_z_of(costs, 1.0) == 1.0
    assert fidelity_z_of(costs, 1 / 5) == pytest.approx(1 - math.log(5) / math.log(45))
    assert fidelity_z_of([1.0], 1.0) == 1.0  # one level: everything is full fidelity


def test_cheap_trials_that_agree_with_the_full_fidelity_shape_the_model_before_many_full_trials_exist():
    # the optimum is the same at every fidelity: 40 cheap trials pin it down, three full ones could not
    observations = _low_observations(40, _unbiased)
    sampler = MultiFidelityGPSampler(SPACE, seed=0, observations=observations, n_startup_trials=10)
    study = _study(sampler, [(0.1, 0.1), (0.8, 0.9), (0.6, 0.2)], _unbiased)
    asked = _ask(study)
    assert abs(asked["x"] - 0.25) < 0.15 and abs(asked["y"] - 0.5) < 0.15, asked
    assert sampler.last["earlier"] == 40 and sampler.last["trials"] == 3
    # without the cheap trials two full ones are below the start-up: the ask is random
    plain = MultiFidelityGPSampler(SPACE, seed=0, observations=[], n_startup_trials=10)
    assert plain.sample_relative(_study(plain, [(0.2, 0.1), (0.8, 0.9)]), None, SPACE) == {}  # type: ignore[arg-type]


def test_full_fidelity_trials_overrule_a_biased_cheap_fidelity():
    # the cheap fidelity puts x's optimum at 0.75; six full trials along x say 0.25
    full = [(0.05, 0.5), (0.2, 0.5), (0.3, 0.45), (0.5, 0.55), (0.75, 0.5), (0.95, 0.5)]
    sampler = MultiFidelityGPSampler(SPACE, seed=1, observations=_low_observations(60), n_startup_trials=10)
    study = _study(sampler, full)
    asked = _ask(study)
    assert abs(asked["x"] - 0.25) < 0.15, asked
    assert sampler.last["z_length_scale"] > 0


def test_observations_skip_unfinished_and_non_finite_trials():
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    trials = [
        optuna.trial.create_trial(params={"x": 0.1}, distributions=dist, value=1.0),
        optuna.trial.create_trial(params={"x": 0.2}, distributions=dist, state=optuna.trial.TrialState.PRUNED),
        optuna.trial.create_trial(params={"x": 0.3}, distributions=dist, state=optuna.trial.TrialState.FAIL),
    ]
    assert observations_of(trials, {"depth": 2}, 0.3) == [Observation({"depth": 2, "x": 0.1}, 1.0, 0.3)]


def test_a_campaign_whose_full_sprint_is_mf_gp_fits_the_earlier_sprints_trials(tmp_path):
    spec = spec_of(
        {
            "name": "mf-gp",
            "seed": 0,
            "objective": {"path": "objectives_biased:biased"},
            "metric": {"name": "loss", "direction": "minimize"},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "fidelity": {
                "cost_knobs": ["epochs"],
                "levels": {"low": {"z": 0, "epochs": 1}, "high": {"z": 1, "epochs": 9}},
            },
            "gate": {"top_k": 5, "margin": 5.0},
            "sprints": [
                {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 12},
                {"name": "full", "sampler": "mf-gp", "fidelity": "high", "n_trials": 6, "seed_top": 2},
            ],
        }
    )
    assert fidelity_coordinate(spec, spec.fidelity.levels["low"]) == 0.0
    assert fidelity_coordinate(spec, spec.fidelity.levels["high"]) == 1.0
    coordinator = Coordinator(
        spec, f"journal://{tmp_path / 'journal.log'}", workers=0, log=lambda line: None, runs_root=tmp_path
    )
    coordinator.run()
    ledger = Ledger(coordinator.storage, spec.name)
    full = ledger.sprint_record(1)
    assert full.sampler == "mf-gp"
    trials = optuna.load_study(study_name=full.study, storage=coordinator.storage).get_trials()
    assert len([t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]) == 6


def test_after_the_handoff_the_sampler_models_its_own_trials_alone():
    observations = _low_observations(40, _unbiased)
    sampler = MultiFidelityGPSampler(SPACE, seed=0, observations=observations, n_startup_trials=10, handoff_trials=4)
    study = _study(sampler, [(0.1, 0.1), (0.8, 0.9), (0.6, 0.2)], _unbiased)
    _ask(study)
    assert sampler.last.get("handoff") is None and sampler.last["earlier"] == 40
    study = _study(sampler, [(0.1, 0.1), (0.8, 0.9), (0.6, 0.2), (0.3, 0.5)], _unbiased)
    asked = _ask(study)
    assert sampler.last == {"trials": 4, "earlier": 0, "handoff": True}
    assert 0.0 <= asked["x"] <= 1.0 and 0.0 <= asked["y"] <= 1.0


def test_at_most_max_earlier_trials_are_fitted_nearest_to_the_box_and_best_first():
    box = {"x": optuna.distributions.FloatDistribution(0.0, 0.5), "y": optuna.distributions.FloatDistribution(0.0, 1.0)}
    inside = [Observation({"x": 0.1 * i / 10, "y": 0.5}, float(i), 0.0) for i in range(10)]
    near = [Observation({"x": 0.6, "y": 0.5}, -100.0, 0.0)]  # outside the box, within half its width
    far = [Observation({"x": 0.99, "y": 0.5}, -1000.0, 0.0)]  # outside the neighbourhood: never fitted
    sampler = MultiFidelityGPSampler(box, seed=0, observations=near + far + inside, max_earlier=5, n_startup_trials=3)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.add_trial(optuna.trial.create_trial(params={"x": 0.2, "y": 0.5}, distributions=box, value=1.0))
    study.ask(box)
    assert sampler.last["earlier"] == 5
    candidates = inside + near
    kept = sampler.closest(
        candidates,
        SearchSpace(box).get_normalized_params([None] * 11, [o.params for o in inside + near]),
        study.direction,
    )
    assert [candidates[i] for i in kept] == inside[
        :5
    ]  # inside the box before the one just outside, the best values first
