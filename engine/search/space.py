"""Search spaces between sprints: plain JSON-able ranges, their Optuna distributions, and edit checks.

A space maps a parameter name to one of
  {"type": "float", "low", "high", "log"}      {"type": "int", "low", "high", "log", "step"}
  {"type": "categorical", "choices": [...]}    {"type": "fixed", "value": v}
A parameter frozen at a gate becomes "fixed".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from engine.spec import MAX_ABS_BOUND, CampaignSpec

Space = dict[str, dict[str, Any]]


class SpaceEditError(ValueError):
    """An edit that would make an invalid space; the message says why."""


def initial_space(spec: CampaignSpec) -> Space:
    space: Space = {}
    for name, param in spec.space.items():
        record = param.model_dump(exclude={"default"})
        space[name] = record
    return space


def default_value(spec: CampaignSpec, name: str) -> Any:
    """A value for a parameter that a sprint does not tune and no trial has chosen yet."""
    param = spec.space[name]
    if param.type == "fixed":
        return param.value
    if param.default is not None:
        return param.default
    if param.type == "categorical":
        return param.choices[0]
    if param.log:
        mid = math.sqrt(param.low * param.high)
    else:
        mid = (param.low + param.high) / 2
    if param.type == "int":
        return int(param.low + round((mid - param.low) / param.step) * param.step)
    return mid


def to_distribution(record: dict[str, Any]) -> BaseDistribution | None:
    kind = record["type"]
    if kind == "float":
        return FloatDistribution(record["low"], record["high"], log=record.get("log", False))
    if kind == "int":
        return IntDistribution(record["low"], record["high"], log=record.get("log", False), step=record.get("step", 1))
    if kind == "categorical":
        return CategoricalDistribution(record["choices"])
    return None


def distributions(space: Space, tuned: list[str] | None) -> dict[str, BaseDistribution]:
    names = tuned if tuned is not None else list(space)
    out = {}
    for name in names:
        dist = to_distribution(space[name])
        if dist is not None:
            out[name] = dist
    return out


def contains(space: Space, params: dict[str, Any]) -> bool:
    for name, value in params.items():
        record = space.get(name)
        if record is None:
            continue
        kind = record["type"]
        if kind in ("float", "int"):
            if not isinstance(value, (int, float)) or not record["low"] <= value <= record["high"]:
                return False
        elif kind == "categorical":
            if value not in record["choices"]:
                return False
    return True


def check_range(name: str, record: dict[str, Any], original: dict[str, Any]) -> None:
    """Refuse, with the reason, a range that is invalid or outside the campaign's original bounds."""
    kind = original["type"]
    if record["type"] == "fixed":
        if kind in ("float", "int"):
            value = record["value"]
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpaceEditError(f"{name}: frozen value {value!r} is not a finite number")
            if not original["low"] <= value <= original["high"]:
                raise SpaceEditError(
                    f"{name}: frozen value {value:g} is outside [{original['low']:g}, {original['high']:g}]"
                )
        elif kind == "categorical" and record["value"] not in original["choices"]:
            raise SpaceEditError(f"{name}: frozen value {record['value']!r} is not one of {original['choices']}")
        return
    if record["type"] != kind:
        raise SpaceEditError(f"{name}: is a {kind} parameter, not {record['type']}")
    if kind in ("float", "int"):
        low, high = record["low"], record["high"]
        for label, bound in (("low", low), ("high", high)):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                raise SpaceEditError(f"{name}: {label} {bound!r} is not a finite number")
            if abs(bound) > MAX_ABS_BOUND:
                raise SpaceEditError(f"{name}: {label} {bound:g} is beyond ±{MAX_ABS_BOUND:g}")
        if kind == "int" and (int(low) != low or int(high) != high):
            raise SpaceEditError(f"{name}: an int parameter needs whole-number bounds, got {low:g}..{high:g}")
        if not low < high:
            raise SpaceEditError(f"{name}: low ({low:g}) must be below high ({high:g}); to fix a value, freeze it")
        if original.get("log") and low <= 0:
            raise SpaceEditError(f"{name}: is log-scaled, so low must be positive (got {low:g})")
        if low < original["low"] or high > original["high"]:
            raise SpaceEditError(
                f"{name}: {low:g}..{high:g} leaves the campaign's bounds {original['low']:g}..{original['high']:g}"
            )
    elif kind == "categorical":
        choices = record["choices"]
        if not choices:
            raise SpaceEditError(f"{name}: keep at least one choice")
        unknown = [c for c in choices if c not in original["choices"]]
        if unknown:
            raise SpaceEditError(f"{name}: {unknown} are not among the campaign's choices {original['choices']}")


def parse_bound_edit(name: str, text: str, original: dict[str, Any]) -> dict[str, Any]:
    """Parse an edit like '1e-5:3e-4' (range), 'a,b' (choices) or '=v' (freeze) into a record."""
    kind = original["type"]
    text = text.strip()
    if text.startswith("="):
        return {"type": "fixed", "value": parse_scalar(text[1:], original, name)}
    if kind in ("float", "int"):
        low_text, sep, high_text = text.partition(":")
        if not sep:
            raise SpaceEditError(f"{name}: write a range as LOW:HIGH (or =VALUE to freeze), got {text!r}")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise SpaceEditError(f"{name}: {text!r} is not two numbers LOW:HIGH") from None
        record = {k: v for k, v in original.items() if k not in ("low", "high")}
        if kind == "int":
            if not (math.isfinite(low) and math.isfinite(high)) or low != int(low) or high != int(high):
                raise SpaceEditError(f"{name}: an int parameter needs whole-number bounds, got {text!r}")
            low, high = int(low), int(high)
        record.update(low=low, high=high)
        check_range(name, record, original)
        return record
    if kind == "categorical":
        choices = [parse_scalar(part, original, name) for part in text.split(",") if part.strip()]
        record = {"type": "categorical", "choices": choices}
        check_range(name, record, original)
        return record
    raise SpaceEditError(f"{name}: is fixed by the campaign file and cannot be edited")


def parse_scalar(text: str, original: dict[str, Any], name: str | None = None) -> Any:
    text = text.strip()
    who = f"{name}: " if name else ""
    if original["type"] == "categorical":
        for choice in original["choices"]:
            if str(choice).lower() == text.lower():
                return choice
        raise SpaceEditError(f"{who}{text!r} is not one of {original['choices']}")
    try:
        value = float(text)
    except ValueError:
        raise SpaceEditError(f"{who}{text!r} is not a number") from None
    if original["type"] == "int":
        if value != int(value):
            raise SpaceEditError(f"{who}{text!r} is not a whole number")
        return int(value)
    return value


def describe(record: Mapping[str, Any]) -> str:
    kind = record["type"]
    if kind in ("float", "int"):
        suffix = " log" if record.get("log") else ""
        return f"{record['low']:.4g}..{record['high']:.4g}{suffix}"
    if kind == "categorical":
        return "{" + ", ".join(map(str, record["choices"])) + "}"
    return f"= {record['value']!r}"
