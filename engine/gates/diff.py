"""The one renderer of range changes: a proposal's or a decision's diff, a line per parameter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.search.space import describe
from engine.store.records import ParamRow


def proposal_diff(params: Mapping[str, ParamRow]) -> list[str]:
    """`name: current -> proposed` for each parameter a proposal changes."""
    return [range_change(name, row.current, row.proposed) for name, row in params.items() if row.changed]


def space_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """`name: before -> after` for each parameter whose range a decision changes."""
    return [range_change(name, record, after[name]) for name, record in before.items() if record != after.get(name)]


def range_change(name: str, current: Mapping[str, Any], proposed: Mapping[str, Any]) -> str:
    """One line of a diff: `name: current -> proposed` (engine.search.space.describe)."""
    return f"{name}: {describe(current)} -> {describe(proposed)}"
