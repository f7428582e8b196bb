"""The learning-curve extrapolation pruner on synthetic curves: a clearly bad curve is stopped early,
a slow starter that ends best is kept (a median rule would stop it), and no pruning without evidence."""

import math

import optuna
import pytest

from engine.search.curve_pruner import CurvePruner, extrapolate
from engine.search.pruners import make_pruner

EPOCHS = 27


def fast(t):  # good early, ends at 1.0
    return 1.0 + 2.0 * math.exp(-t / 2.0)


def bad(t):  # converges to 4.0: never reaches the top-k
    return 4.0 + 3.0 * math.exp(-t / 3.0)


def slow(t):  # the worst of all early, the best at the end (0.47)
    return 0.3 + 9.0 * t**-1.2


def _study(pruner, n_done=6, direction="minimize"):
    study = optuna.create_study(direction=direction, pruner=pruner)
    sign = -1.0 if direction == "maximize" else 1.0
    for i in range(n_done):
        curve = {s: sign * (fast(s + 1) + 0.05 * i) for s in range(EPOCHS)}
        study.add_trial(
            optuna.trial.create_trial(params={}, distributions={}, value=curve[EPOCHS - 1], intermediate_values=curve)
        )
    return study


def _run(study, curve, sign=1.0) -> int | None:
    """The step at which the pruner stops `curve`, or None when it runs to the end."""
    trial = study.ask()
    for step in range(EPOCHS):
        trial.report(sign * curve(step + 1), step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return step
    study.tell(trial, sign * curve(EPOCHS))
    return None


def test_a_clearly_bad_curve_is_stopped_early():
    study = _study(CurvePruner(max_resource=EPOCHS, min_steps=4, top_k=5))
    stopped = _run(study, bad)
    assert stopped is not None and stopped <= 6


def test_a_slow_starter_that_ends_best_is_kept_where_the_median_rule_stops_it():
    study = _study(CurvePruner(max_resource=EPOCHS, min_steps=4, top_k=5))
    assert _run(study, slow) is None
    assert study.best_value == pytest.approx(slow(EPOCHS))
    median = _study(optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    assert _run(median, slow) is not None  # what the curve pruner avoids


def test_maximize_direction_prunes_the_bad_curve_and_keeps_the_slow_one():
    study = _study(CurvePruner(max_resource=EPOCHS, min_steps=4, top_k=5), direction="maximize")
    assert _run(study, bad, sign=-1.0) is not None
    assert _run(study, slow, sign=-1.0) is None


def test_no_pruning_before_top_k_trials_completed_or_before_min_steps():
    study = _study(CurvePruner(max_resource=EPOCHS, min_steps=4, top_k=5), n_done=3)
    assert _run(study, bad) is None
    study = _study(CurvePruner(max_resource=EPOCHS, min_steps=10, top_k=5))
    stopped = _run(study, bad)
    assert stopped is not None and stopped >= 9


def test_extrapolation_recovers_an_exponential_curve():
    steps = list(range(6))
    fit = extrapolate(steps, [bad(s + 1) for s in steps], EPOCHS - 1)
    assert fit is not None and fit.final == pytest.approx(bad(EPOCHS), abs=0.05)


def test_curve_is_a_campaign_pruner_name():
    pruner = make_pruner("curve", max_resource=EPOCHS, options={"top_k": 3})
    assert isinstance(pruner, CurvePruner) and pruner.max_resource == EPOCHS and pruner.top_k == 3
    with pytest.raises(ValueError, match="min_steps"):
        make_pruner("curve", max_resource=EPOCHS, options={"min_steps": 2})
