"""Sampler names in campaign files, and the Optuna samplers behind them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from engine.extras import require_for_sampler
from engine.search.skopt_sampler import SkoptGPSampler


def make_sampler(
    name: str, space: dict[str, BaseDistribution], *, seed: int | None, options: dict[str, Any] | None = None
) -> optuna.samplers.BaseSampler:
    require_for_sampler(name)  # gp samplers need torch: name the extra, not a bare ImportError
    options = dict(options or {})
    if name == "tpe":
        options.setdefault("multivariate", True)
        options.setdefault("constant_liar", True)  # parallel workers otherwise ask the same point
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **options)
    if name == "eeipu":
        from engine.search.eeipu import EEIPUSampler

        return EEIPUSampler(space, seed=seed, **options)
    if name == "eeipu-gp":
        from engine.search.cost_aware_gp import CostAwareGPSampler  # torch: imported only when asked for

        return CostAwareGPSampler(space, seed=seed, **options)
    if name == "mf-gp":
        from engine.search.multi_fidelity_gp import MultiFidelityGPSampler  # torch: imported only when asked for

        return MultiFidelityGPSampler(space, seed=seed, **options)
    if name == "skopt-gp":
        return SkoptGPSampler(space, seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        options.setdefault("qmc_type", "sobol")
        options.setdefault("warn_independent_sampling", False)
        return optuna.samplers.QMCSampler(seed=seed, **options)
    if name == "grid":
        points = int(options.pop("points", 5))
        return optuna.samplers.GridSampler(grid_for(space, points), seed=seed)
    if name == "cmaes":
        options.setdefault("warn_independent_sampling", False)
        return optuna.samplers.CmaEsSampler(seed=seed, **options)
    raise ValueError(f"unknown sampler {name!r}")


def grid_for(space: dict[str, BaseDistribution], points: int) -> dict[str, list[Any]]:
    """A grid of `points` values per numeric parameter (log-spaced where the parameter is log)."""
    grid: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, FloatDistribution):
            if dist.log:
                grid[name] = [float(v) for v in np.geomspace(dist.low, dist.high, points)]
            else:
                grid[name] = [float(v) for v in np.linspace(dist.low, dist.high, points)]
        elif isinstance(dist, IntDistribution):
            values = list(range(dist.low, dist.high + 1, dist.step))
            if len(values) > points:
                idx = np.unique(np.round(np.linspace(0, len(values) - 1, points)).astype(int))
                values = [values[i] for i in idx]
            grid[name] = values
    return grid


def grid_size(space: dict[str, BaseDistribution], points: int) -> int:
    return math.prod(len(v) for v in grid_for(space, points).values())
