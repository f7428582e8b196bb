"""The multi-fidelity test functions: published optima, biased/noisy low fidelity, determinism,
learning curves, and pruning through the objective contract."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from enginekit import RecordingContext

from engine.objective import TrialContext, load_objective
from engine.workloads import functions
from engine.workloads.functions import PROBLEMS

# Published optima (high fidelity), as (argmin, value)
PUBLISHED = {
    "branin": (
        [({"x1": -math.pi, "x2": 12.275}), {"x1": math.pi, "x2": 2.275}, {"x1": 9.42478, "x2": 2.475}],
        0.397887,
    ),
    "hartmann6": (
        [{f"x{i + 1}": v for i, v in enumerate([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573])}],
        -3.32237,
    ),
    "currin": ([{"x1": 0.2167, "x2": 0.0}], -13.7987),
    "park": ([{"x1": 1.0, "x2": 1.0, "x3": 1.0, "x4": 1.0}], -25.5893),
    "borehole": (
        [{"rw": 0.05, "r": 50000.0, "Tu": 63070.0, "Hu": 990.0, "Tl": 63.1, "Hl": 820.0, "L": 1680.0, "Kw": 9855.0}],
        7.8197,
    ),
}
OBJECTIVES = ["branin", "hartmann6", "currin", "park", "borehole"]


def _sample(problem, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = {}
        for name, p in problem.space.items():
            u = rng.random()
            x[name] = (
                math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
                if p.log
                else p.low + u * (p.high - p.low)
            )
        out.append(x)
    return out


def _ctx(tmp_path, params, fidelity, settings=None, **kw):
    return RecordingContext(
        params=params, fidelity=fidelity, settings=settings or {}, trial_number=0, sprint="t", run_dir=tmp_path, **kw
    )


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_optimum(name):
    problem = PROBLEMS[name]
    argmins, f_opt = PUBLISHED[name]
    assert problem.f_opt == pytest.approx(f_opt, abs=1e-4)
    for x in argmins:
        assert problem.value(x, 1.0, None) == pytest.approx(f_opt, abs=1e-4)
        assert problem.regret(x) == pytest.approx(0.0, abs=1e-4)
    assert problem.value(problem.x_opt, 1.0, noise_seed=123) == problem.value(
        problem.x_opt, 1.0, None
    )  # no noise at z = 1
    assert problem.regret(problem.x_opt) < 1e-9


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_optimum_is_a_minimum_over_random_points(name):
    problem = PROBLEMS[name]
    values = [problem.value(x, 1.0, None) for x in _sample(problem, 2000, 1)]
    assert min(values) >= problem.f_opt - 1e-9
    assert all(problem.regret(x) >= 0 for x in _sample(problem, 50, 2))


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_low_fidelity_is_biased_but_correlated(name):
    problem = PROBLEMS[name]
    xs = _sample(problem, 300, 3)
    hi = np.array([problem.value(x, 1.0, None) for x in xs])
    lo = np.array([problem.value(x, 0.0, None) for x in xs])
    diff = lo - hi
    assert np.max(np.abs(diff)) > 1e-3 * problem.scale  # biased
    assert np.std(diff) > 0  # not a constant shift
    assert np.corrcoef(hi, lo)[0, 1] > 0.9  # still informative
    mid = np.array([problem.value(x, 0.5, None) for x in xs])
    # the bias shrinks as fidelity rises
    assert np.mean(np.abs(mid - hi)) < np.mean(np.abs(diff)) + 1e-12


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_noise_is_deterministic_and_shrinks_with_fidelity(name):
    problem = PROBLEMS[name]
    x = _sample(problem, 1, 4)[0]
    a = problem.value(x, 0.2, noise_seed=7)
    assert a == problem.value(dict(reversed(list(x.items()))), 0.2, noise_seed=7)  # key order irrelevant
    assert a != problem.value(x, 0.2, noise_seed=8)
    assert a != problem.value(x, 0.2, None)
    xs = _sample(problem, 200, 5)
    noise_low = np.std([problem.value(x, 0.1, 0) - problem.value(x, 0.1, None) for x in xs])
    noise_mid = np.std([problem.value(x, 0.7, 0) - problem.value(x, 0.7, None) for x in xs])
    assert noise_low > noise_mid > 0
    assert noise_low == pytest.approx(problem.noise_sd(0.1), rel=0.3)


def test_fidelity_knobs():
    assert functions.fidelity_of({"fidelity": 0.3, "train_fraction": 0.9}) == 0.3
    assert functions.fidelity_of({"train_fraction": 0.25, "epochs": 3}) == 0.25
    assert functions.fidelity_of({"epochs": 3}) == 1.0
    assert functions.fidelity_of({"train_fraction": 7}) == 1.0


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_reports_a_converging_curve(tmp_path, name):
    problem = PROBLEMS[name]
    func = load_objective(f"engine.workloads.functions:{name}")
    x = _sample(problem, 1, 6)[0]
    ctx = _ctx(tmp_path, x, {"train_fraction": 1.0, "epochs": 30}, {"noise_seed": 0})
    final = func(ctx)
    steps = [s for s, _ in ctx.reports]
    assert steps == list(range(30))
    assert final == ctx.reports[-1][1]
    # regret units by default: converges to the high-fidelity regret, starts pessimistic
    assert final == pytest.approx(problem.regret(x), abs=0.01 * problem.scale)
    assert ctx.reports[0][1] > final
    assert ctx.attrs["true_regret"] == pytest.approx(problem.regret(x))
    # deterministic
    again = _ctx(tmp_path, x, {"train_fraction": 1.0, "epochs": 30}, {"noise_seed": 0})
    assert func(again) == final and again.reports == ctx.reports
    # "value" units
    raw = _ctx(tmp_path, x, {"train_fraction": 1.0, "epochs": 30}, {"noise_seed": 0, "report": "value"})
    assert func(raw) == pytest.approx(final + problem.f_opt)


def test_low_fidelity_objective_is_noisy_and_biased(tmp_path):
    problem = PROBLEMS["hartmann6"]
    xs = _sample(problem, 40, 7)
    lo = [functions.hartmann6(_ctx(tmp_path, x, {"train_fraction": 0.2, "epochs": 3})) for x in xs]
    hi = [problem.regret(x) for x in xs]
    assert np.mean(np.abs(np.subtract(lo, hi))) > 0.02 * problem.scale
    assert np.corrcoef(lo, hi)[0, 1] > 0.5


def test_pruning_stops_the_objective(tmp_path):
    ctx = _ctx(tmp_path, PROBLEMS["branin"].x_opt, {"train_fraction": 1.0, "epochs": 27}, prune_at=2)
    with pytest.raises(optuna.TrialPruned):
        functions.branin(ctx)
    assert [s for s, _ in ctx.reports] == [0, 1, 2]


def test_pruning_with_a_real_optuna_trial(tmp_path):
    class PruneAfterOne(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return trial.last_step is not None and trial.last_step >= 1

    study = optuna.create_study(pruner=PruneAfterOne())
    trial = study.ask()
    ctx = TrialContext(
        params={"x1": 0.5, "x2": 0.5},
        fidelity={"train_fraction": 0.5, "epochs": 9},
        settings={},
        trial_number=trial.number,
        sprint="t",
        run_dir=tmp_path,
        trial=trial,
    )
    with pytest.raises(optuna.TrialPruned):
        functions.currin(ctx)
    assert sorted(trial.storage.get_trial(trial._trial_id).intermediate_values) == [0, 1]


def test_sleep_per_step(tmp_path):
    import time

    t0 = time.perf_counter()
    functions.park(_ctx(tmp_path, PROBLEMS["park"].x_opt, {"epochs": 3}, {"sleep_per_step": 0.02}))
    assert time.perf_counter() - t0 >= 0.06


def test_missing_param_is_an_error(tmp_path):
    with pytest.raises(KeyError):
        functions.branin(_ctx(tmp_path, {"x1": 0.0}, {"epochs": 1}))


def test_space_toml_matches_the_spec_format():
    from engine.spec import FloatParam, IntParam
    from engine.toml_compat import tomllib

    for problem in PROBLEMS.values():
        tables = tomllib.loads(problem.space_toml())["space"]
        assert list(tables) == problem.names
        for name, table in tables.items():
            (IntParam if problem.space[name].integer else FloatParam).model_validate(table)
    assert tomllib.loads(PROBLEMS["borehole"].space_toml())["space"]["r"]["log"] is True
    assert tomllib.loads(PROBLEMS["train_mlp"].space_toml())["space"]["batch_size"]["type"] == "int"
