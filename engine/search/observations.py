"""Earlier sprints' trials as observations at a fidelity coordinate: the data the multi-fidelity GP
(engine.search.multi_fidelity_gp, which needs torch) fits beside its own sprint's trials. Kept apart
so that building them does not import torch."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState


@dataclass(frozen=True)
class Observation:
    """One finished trial of an earlier sprint: its parameters, its value and its fidelity coordinate."""

    params: dict[str, Any]
    value: float
    z: float


def fidelity_z_of(level_costs: Iterable[float], cost: float) -> float:
    """The fidelity coordinate of a trial costing `cost` (relative to a full trial), given every level's
    cost: 0 at the cheapest level, 1 at a full trial, linear in log cost between."""
    lowest = min(level_costs, default=1.0)
    if lowest >= 1.0 or cost >= 1.0:
        return 1.0
    return min(1.0, max(0.0, 1.0 - math.log(max(cost, 1e-12)) / math.log(lowest)))


def observations_of(trials: Iterable[FrozenTrial], fixed: dict[str, Any], z: float) -> list[Observation]:
    """An earlier sprint's completed trials, as observations at its fidelity coordinate z."""
    return [
        Observation({**fixed, **t.params}, float(t.value), z)
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
