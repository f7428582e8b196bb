"""The harder efficiency suite: training-like surfaces whose low fidelity prefers a larger learning
rate and less regularisation, an 8-D problem whose low fidelity prefers a local well, the SVM on
digits; and the shipped quickstart's plan as the benchmark runs it."""

from pathlib import Path

import numpy as np
import pytest
from enginekit import RecordingContext

from benchmarks import efficiency as E
from engine.toml_compat import tomllib
from engine.workloads.functions import PROBLEMS
from engine.workloads.svm_digits import objective as svm_objective

ROOT = Path(__file__).resolve().parents[1]
NEW = ["train_mlp", "train_cnn", "wells8"]


def _random_points(problem, n, seed):
    rng = np.random.default_rng(seed)
    return [{k: p.from_unit(rng.random()) for k, p in problem.space.items()} for _ in range(n)]


@pytest.mark.parametrize("name", NEW)
def test_the_recorded_optimum_is_a_minimum(name):
    problem = PROBLEMS[name]
    assert problem.regret(problem.x_opt) < 1e-9
    values = [problem.value(x, 1.0, None) for x in _random_points(problem, 2000, 0)]
    assert min(values) >= problem.f_opt - 1e-9
    # the full fidelity is noisy (a training run's seed-to-seed spread) on the training-like surfaces
    noisy = problem.value(problem.x_opt, 1.0, noise_seed=3) != problem.value(problem.x_opt, 1.0, None)
    assert noisy == (name != "wells8")


def _best_along(problem, name, grid, z):
    values = [problem.value({**problem.x_opt, name: v}, z, None) for v in grid]
    return grid[int(np.argmin(values))]


@pytest.mark.parametrize(
    ("problem_name", "larger", "smaller"),
    [("train_mlp", ["lr"], ["weight_decay", "dropout", "depth"]), ("train_cnn", ["lr"], ["weight_decay", "width"])],
)
def test_short_runs_prefer_a_larger_learning_rate_and_less_regularisation(problem_name, larger, smaller):
    problem = PROBLEMS[problem_name]
    for name in larger + smaller:
        p = problem.space[name]
        grid = sorted({p.from_unit(u) for u in np.linspace(0, 1, 201)})
        low, full = _best_along(problem, name, grid, 0.2), _best_along(problem, name, grid, 1.0)
        assert (low > full) if name in larger else (low < full), name
    assert any(p.log for p in problem.space.values()) and any(p.integer for p in problem.space.values())


def test_wells8_low_fidelity_prefers_a_local_well():
    problem = PROBLEMS["wells8"]
    from engine.workloads.functions import _WELLS_CENTRES

    low = [problem.value(dict(zip(problem.space, c, strict=True)), 0.2, None) for c in _WELLS_CENTRES]
    high = [problem.value(dict(zip(problem.space, c, strict=True)), 1.0, None) for c in _WELLS_CENTRES]
    assert int(np.argmin(high)) == 0 and int(np.argmin(low)) != 0
    assert problem.dim >= 8


def test_svm_digits_objective_uses_hpobench_ranges_and_subsamples(tmp_path):
    data = tomllib.loads((ROOT / "campaigns" / "svm-digits.toml").read_text())
    for name in ("C", "gamma"):
        assert data["space"][name] == {"type": "float", "low": 2.0**-10, "high": 2.0**10, "log": True}

    def run(params, fraction):
        ctx = RecordingContext(
            params=params,
            fidelity={"train_fraction": fraction},
            settings={},
            trial_number=0,
            sprint="t",
            run_dir=tmp_path,
        )
        return svm_objective(ctx), ctx

    good, ctx = run({"C": 10.0, "gamma": 0.05}, 1.0)
    bad, _ = run({"C": 2.0**-10, "gamma": 2.0**10}, 1.0)
    assert good < 0.05 < 0.5 < bad
    assert run({"C": 10.0, "gamma": 0.05}, 1.0)[0] == good  # deterministic
    _, small = run({"C": 10.0, "gamma": 0.05}, 0.1)
    assert small.attrs["n_train"] < ctx.attrs["n_train"] / 5


def test_the_benchmark_runs_the_shipped_quickstart_plan_scaled_to_the_budget():
    problem = E.make_problem("hartmann6")
    for budget in (30.0, 40.0):
        sprints = E.quickstart_sprints(problem, budget)
        data = tomllib.loads(E.QUICKSTART.read_text())
        assert [s["sampler"] for s in sprints] == [s["sampler"] for s in data["sprints"]]
        spent = sum(s["n_trials"] * problem.level_cost(s["fidelity"]) for s in sprints[:-1])
        assert spent + sprints[-1]["budget_cost"] == pytest.approx(budget)
        # the shipped quickstart is the benchmark plan: the same sprints and gate rules
        assert E._plan_key(sprints, data.get("gate")) == E._plan_key(E.phased_sprints(problem, budget), None)
    small = E.quickstart_sprints(problem, 6.0)
    assert all(s["n_trials"] >= s.get("seed_top", 0) for s in small[:-1])
    problem.spec(small, seed=0)  # a valid campaign
    assert sprints[1]["explore_share"] == E.REFINE_PROBES  # the refine sprint probes outside its box
