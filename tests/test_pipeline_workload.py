"""The synthetic staged pipeline (engine.workloads.pipeline): its two value functions and bad settings."""

from __future__ import annotations

import math

import pytest

from engine.cache.stages import StageRunner
from engine.workloads.functions import PROBLEMS
from engine.workloads.pipeline import SEPARABLE, objective, pipeline_regret
from tests.enginekit import RecordingContext

BRANIN_OPT = {"x1": (math.pi + 5) / 15, "x2": 2.275 / 15}  # Branin's optimum (pi, 2.275) on the unit square
CURRIN_OPT = {"x1": 0.21666666666666667, "x2": 0.0}


def _optimum() -> dict[str, float]:
    return {
        "x1": BRANIN_OPT["x1"],
        "x2": BRANIN_OPT["x2"],
        "x3": CURRIN_OPT["x1"],
        "x4": CURRIN_OPT["x2"],
        "x5": BRANIN_OPT["x1"],
        "x6": BRANIN_OPT["x2"],
    }


def test_separable_is_a_sum_of_one_function_per_stage():
    best = _optimum()
    assert pipeline_regret(best, "separable") == pytest.approx(0.0, abs=1e-6)
    # moving only the eval stage's parameters adds exactly that stage's regret: stages do not interact
    moved = {**best, "x5": 0.9, "x6": 0.9}
    branin = PROBLEMS["branin"]
    expected = branin.regret({"x1": -5 + 0.9 * 15, "x2": 0.9 * 15}) / branin.scale
    assert pipeline_regret(moved, "separable") == pytest.approx(expected)
    moved_prep = {**moved, "x1": 0.9, "x2": 0.9}
    assert pipeline_regret(moved_prep, "separable") == pytest.approx(2 * expected)
    assert [names for _, names in SEPARABLE] == [("x1", "x2"), ("x3", "x4"), ("x5", "x6")]
    # Hartmann-6, the default, is not separable: the same move of x5, x6 costs differently at another prefix
    h = PROBLEMS["hartmann6"].x_opt
    shift = lambda x: pipeline_regret({**x, "x5": 0.9, "x6": 0.9}) - pipeline_regret(x)  # noqa: E731
    assert abs(shift(dict(h)) - shift({**h, "x1": 0.8, "x2": 0.8})) > 0.05


def test_objective_runs_its_stages_and_refuses_an_unknown_function_before_any_work(tmp_path):
    runner = StageRunner(None)  # stages timed, not cached
    ctx = RecordingContext(
        params=_optimum(),
        fidelity={},
        settings={"time_scale": 0.001, "function": "separable"},
        trial_number=0,
        sprint="t",
        run_dir=tmp_path,
        stage_runner=runner,
    )
    assert objective(ctx) == pytest.approx(0.0, abs=1e-6)
    assert list(runner.records(ctx)) == ["prep", "train", "eval"]
    bad = RecordingContext(
        params=_optimum(),
        fidelity={},
        settings={"function": "rosenbrock"},
        trial_number=1,
        sprint="t",
        run_dir=tmp_path,
        stage_runner=runner,
    )
    with pytest.raises(ValueError, match="unknown pipeline function 'rosenbrock'; known: hartmann6, separable"):
        objective(bad)
    assert not runner.records(bad)  # refused before the first stage slept
