"""Pruner names in campaign files, and the Optuna pruners behind them."""

from __future__ import annotations

from typing import Any

import optuna

from engine.search.curve_pruner import CurvePruner


def make_pruner(
    name: str, *, max_resource: int | None, options: dict[str, Any] | None = None
) -> optuna.pruners.BasePruner:
    """`max_resource` is the number of steps a full trial reports (its epochs), when known."""
    options = dict(options or {})
    if name == "hyperband":
        options.setdefault("min_resource", 1)
        options.setdefault("max_resource", max_resource or "auto")
        options.setdefault("reduction_factor", 3)
        return optuna.pruners.HyperbandPruner(**options)
    if name == "successive-halving":
        options.setdefault("min_resource", 1)
        options.setdefault("reduction_factor", 3)
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    if name == "median":
        options.setdefault("n_startup_trials", 5)
        options.setdefault("n_warmup_steps", 1)
        return optuna.pruners.MedianPruner(**options)
    if name == "curve":
        options.setdefault("max_resource", max_resource)
        return CurvePruner(**options)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}")
