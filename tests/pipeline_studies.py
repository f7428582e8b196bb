"""Studies of a two-stage pipeline for the cost-aware sampler tests (tests/test_eeipu.py, tests/test_cost_aware_gp.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

SPACE = {"a": FloatDistribution(0.0, 1.0), "b": FloatDistribution(0.0, 1.0)}
PREP_S, FIT_S = 2.0, 0.05  # the prefix stage (on a) costs 40x the rest (on b)


def two_stage_study(
    sampler: optuna.samplers.BaseSampler | None,
    n: int,
    seed: int = 0,
    prep_seconds: Callable[[float], float] = lambda a: PREP_S,
) -> optuna.Study:
    """`n` finished trials of a pipeline "prep" (on a) -> "fit" (on a, b), every stage computed and cached.
    The value, (b - 0.37)^2, does not depend on the prefix parameter a."""
    rng = np.random.default_rng(seed)
    study = optuna.create_study(sampler=sampler)
    for i in range(n):
        a, b = float(rng.random()), float(rng.random())
        prep_s = prep_seconds(a)
        stages = {
            "prep": {"order": 0, "seconds": prep_s, "hit": False, "cached": True, "key": f"p{i}", "params": ["a"]},
            "fit": {"order": 1, "seconds": FIT_S, "hit": False, "cached": True, "key": f"f{i}", "params": ["a", "b"]},
        }
        study.add_trial(
            optuna.trial.create_trial(
                params={"a": a, "b": b},
                distributions=SPACE,
                value=(b - 0.37) ** 2,
                user_attrs={"stages": stages, "duration_s": prep_s + FIT_S + 0.01},
            )
        )
    return study


MIXED_SPACE = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "units": IntDistribution(8, 64, step=8),
    "act": CategoricalDistribution(["relu", "tanh"]),
}


def mixed_space_study(sampler: optuna.samplers.BaseSampler, n_trials: int) -> optuna.Study:
    """`n_trials` trials of a quadratic over MIXED_SPACE (a log float, a stepped int, a categorical), each
    with a cost and no stage records."""
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        units = trial.suggest_int("units", 8, 64, step=8)
        act = trial.suggest_categorical("act", ["relu", "tanh"])
        trial.set_user_attr("duration_s", 0.1)
        return (np.log10(lr) + 2) ** 2 + (units - 32) ** 2 / 1000 + (act == "tanh")

    study.optimize(objective, n_trials=n_trials)
    return study
