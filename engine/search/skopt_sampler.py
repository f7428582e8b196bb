"""scikit-optimize's Gaussian-process optimizer as an Optuna sampler.

Optuna no longer ships one. Each ask rebuilds a `skopt.Optimizer` from the study's finished
trials (the storage is the only state, so any worker process on any host can ask), tells it
the running trials with a constant liar so parallel workers spread out, and asks one point.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState


class SkoptGPSampler(BaseSampler):
    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        acq_func: str = "gp_hedge",
        base_estimator: str = "GP",
    ):
        self._space = dict(search_space)
        self._seed = seed
        self._n_startup = n_startup_trials
        self._acq_func = acq_func
        self._estimator = base_estimator
        self._fallback = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        done = [t for t in trials if t.state == TrialState.COMPLETE and _inside(t.params, search_space)]
        if len(done) < self._n_startup:
            return {}  # independent (random) sampling until the GP has something to fit
        import skopt  # ~3 s on import (sklearn): engine.search.samplers loads this module for every campaign

        names = list(search_space)
        dims = [_dimension(search_space[n]) for n in names]
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        xs = [[_encode(search_space[n], t.params[n]) for n in names] for t in done]
        ys = [sign * float(t.value) for t in done]
        # Constant liar: pending points take the best value seen, so the next ask looks elsewhere.
        liar = min(ys)
        for t in trials:
            if t.state == TrialState.RUNNING and t.number != trial.number and _inside(t.params, search_space):
                if all(n in t.params for n in names):
                    xs.append([_encode(search_space[n], t.params[n]) for n in names])
                    ys.append(liar)
        seed = None if self._seed is None else (self._seed * 100_003 + trial.number) % (2**31)
        optimizer = skopt.Optimizer(
            dims,
            base_estimator=self._estimator,
            n_initial_points=0,
            acq_func=self._acq_func,
            random_state=seed,
        )
        optimizer.tell(xs, ys)
        point = optimizer.ask()
        return {n: _decode(search_space[n], v) for n, v in zip(names, point, strict=False)}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def _inside(params: dict[str, Any], space: dict[str, BaseDistribution]) -> bool:
    for name, dist in space.items():
        if name not in params or not dist._contains(dist.to_internal_repr(params[name])):
            return False
    return True


def _dimension(dist: BaseDistribution):
    from skopt.space import Categorical, Integer, Real  # lazy: see `import skopt` above

    if isinstance(dist, FloatDistribution):
        return Real(dist.low, dist.high, prior="log-uniform" if dist.log else "uniform")
    if isinstance(dist, IntDistribution):
        if dist.step != 1:  # skopt has no stepped integers: search the step index
            return Integer(0, (dist.high - dist.low) // dist.step)
        return Integer(dist.low, dist.high, prior="log-uniform" if dist.log else "uniform")
    if isinstance(dist, CategoricalDistribution):
        return Categorical(list(range(len(dist.choices))), transform="onehot" if len(dist.choices) > 2 else "identity")
    raise TypeError(f"unsupported distribution {dist!r}")


def _encode(dist: BaseDistribution, value: Any) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices.index(value)
    if isinstance(dist, IntDistribution):
        return (int(value) - dist.low) // dist.step if dist.step != 1 else int(value)
    return float(value)


def _decode(dist: BaseDistribution, value: Any) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(value)]
    if isinstance(dist, IntDistribution):
        return int(dist.low + int(value) * dist.step) if dist.step != 1 else int(value)
    assert isinstance(dist, FloatDistribution)  # the space holds categorical, int and float only
    value = float(np.clip(float(value), dist.low, dist.high))
    return value if math.isfinite(value) else dist.low
