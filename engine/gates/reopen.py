"""Narrowing that higher-fidelity evidence can undo: out-of-box probes and the re-open rules.

**Probes.** A sprint whose box is narrower than the campaign's spends `explore_share` of its trials
(floor of share x its trial count; 0 turns it off) on *coordinate probes*: the best configuration
so far with one narrowed parameter moved to a random value in the region the narrowing cut off
(uniform in log space for log parameters), parameters taking turns. They are enqueued like seeds,
count within the sprint's budget, and carry the trial attributes ``probe`` (True),
``probe_param``, ``probe_side`` ("low"/"high") and ``probe_base`` (the configuration they moved).

**Re-opening** (engine.gates.proposal calls `reopen_sides` at every gate whose sprint ran at a higher
fidelity than the one that narrowed): a side of a narrowed range goes back to the campaign's bound
when

* a probe beyond it beat its base configuration (or, when the base was not evaluated in this
  sprint, the sprint's in-box best) at this sprint's fidelity, or
* the sprint's best configuration sits within `edge_fraction` of that narrowed bound.

Where the rank agreement between the lower fidelity and this one is at or below the gate's
`reopen_rank` (default 0.5), every narrowed range re-opens (the narrowing rested on a fidelity that
misranks).

**Drift** (`fidelity_drift`): the sprint's seeds are the lower fidelity's best configurations; when
the centre of this sprint's top-k has moved away from the centre of those seeds by more than
`DRIFT_MIN` of the current width (in log space for log parameters), the fidelity bias has a
direction — short runs prefer a larger learning rate and less regularisation — and the range is
extended that way to the centre plus `drift_extrapolate` x the move (the next fidelity is expected
to move on the same way), up to the campaign's bound.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from engine.search.space import Space
from engine.store.schema import PROBE_ATTR, PROBE_BASE_ATTR, PROBE_PARAM_ATTR, PROBE_SIDE_ATTR, SEEDED_ATTR

# A probe is an enqueued configuration outside the sprint's box, by design; Optuna warns about each.
warnings.filterwarnings("ignore", message=r"Fixed parameter .* is out of range", category=UserWarning)


def _t(value: float, log: bool) -> float:
    return math.log(value) if log else float(value)


def narrowed_sides(current: Space, original: Space) -> dict[str, list[str]]:
    """Per numeric parameter still tuned, the sides ("low"/"high") narrower than the campaign's bounds."""
    sides: dict[str, list[str]] = {}
    for name, record in current.items():
        org = original.get(name, {})
        if record.get("type") not in ("float", "int") or org.get("type") not in ("float", "int"):
            continue
        cut = [
            side
            for side, narrower in (("low", record["low"] > org["low"]), ("high", record["high"] < org["high"]))
            if narrower
        ]
        if cut:
            sides[name] = cut
    return sides


def probe_count(share: float, n_trials: int | None, budget_cost: float | None, level_cost: float) -> int:
    """Probes for a sprint: floor(share x its trial count), the count estimated from budget_cost if need be."""
    if share <= 0:
        return 0
    if n_trials is not None:
        return int(math.floor(share * n_trials + 1e-9))
    if budget_cost is not None and level_cost > 0:
        return int(math.floor(share * budget_cost / level_cost + 1e-9))
    return 0


def _outside_value(record: dict[str, Any], original: dict[str, Any], side: str, rng: random.Random) -> float | int:
    log = bool(original.get("log"))
    if side == "low":
        lo, hi = _t(original["low"], log), _t(record["low"], log)
    else:
        lo, hi = _t(record["high"], log), _t(original["high"], log)
    u = lo + rng.random() * (hi - lo)
    value = math.exp(u) if log else u
    if original["type"] == "int":
        step = original.get("step", 1)
        base = original["low"]
        value = base + round((value - base) / step) * step
        # stay strictly outside the box: an int probe on the bound probes nothing
        if side == "low":
            value = min(value, record["low"] - step)
        else:
            value = max(value, record["high"] + step)
        return int(min(max(value, original["low"]), original["high"]))
    return min(max(value, original["low"]), original["high"])


def plan_probes(
    space: Space, tuned: list[str], original: Space, base: dict[str, Any], count: int, seed: int
) -> list[dict[str, Any]]:
    """`count` coordinate probes around `base` (tuned parameters of the best configuration so far), outside the
    sprint's `space` where it is narrower than `original`."""
    sides = {n: s for n, s in narrowed_sides(space, original).items() if n in tuned}
    if count <= 0 or not sides or any(n not in base for n in tuned):
        return []
    rng = random.Random(seed)
    # every cut side in turn: one random side per parameter first, then the other sides (with enough
    # probes no cut side is left untested); the order of the parameters is shuffled by the seed
    names = sorted(sides)
    rng.shuffle(names)
    order = {n: rng.sample(sides[n], len(sides[n])) for n in names}
    pairs = [(n, order[n][0]) for n in names] + [(n, order[n][1]) for n in names if len(order[n]) > 1]
    probes = []
    for i in range(count):
        name, side = pairs[i % len(pairs)]
        params = {n: base[n] for n in tuned}
        params[name] = _outside_value(space[name], original[name], side, rng)
        probes.append({"params": params, "param": name, "side": side, "base": {n: base[n] for n in tuned}})
    return probes


def enqueue_probes(study: optuna.Study, probes: list[dict[str, Any]]) -> None:
    for probe in probes:
        study.enqueue_trial(
            probe["params"],
            user_attrs={
                PROBE_ATTR: True,
                PROBE_PARAM_ATTR: probe["param"],
                PROBE_SIDE_ATTR: probe["side"],
                PROBE_BASE_ATTR: probe["base"],
            },
            skip_if_exists=False,
        )


def is_probe(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(PROBE_ATTR))


@dataclass(frozen=True)
class Reopen:
    """One side of a narrowed range to put back to the campaign's bound, and why."""

    param: str
    side: str
    reason: str


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((n, repr(v)) for n, v in params.items()))


def reopen_sides(
    study: optuna.Study,
    current: Space,
    original: Space,
    edge_fraction: float,
    agreement_rho: float | None,
    reopen_rank: float,
) -> list[Reopen]:
    """The sides of narrowed ranges that this sprint's (higher-fidelity) evidence says to re-open."""
    sides = narrowed_sides(current, original)
    if not sides:
        return []
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    found: dict[tuple[str, str], str] = {}
    if agreement_rho is not None and agreement_rho <= reopen_rank:
        for name, cut in sides.items():
            for side in cut:
                found[(name, side)] = (
                    f"rank agreement {agreement_rho:.2f} with the fidelity that narrowed it: re-opened to the campaign's bound"
                )
    inside = [t for t in done if not is_probe(t)]
    values = {_key(t.params): t.value for t in inside}
    in_best = None
    for t in inside:
        if in_best is None or better(t.value, in_best.value):
            in_best = t
    for t in done:
        if not is_probe(t):
            continue
        probed, probe_side = t.user_attrs.get(PROBE_PARAM_ATTR), t.user_attrs.get(PROBE_SIDE_ATTR)
        if probed not in sides or probe_side not in sides[probed] or (probed, probe_side) in found:
            continue
        base_value = values.get(_key(t.user_attrs.get(PROBE_BASE_ATTR) or {}))
        if base_value is not None:
            reference, what = base_value, "its base configuration"
        elif in_best is not None:
            # cast: `done` holds only trials whose value is not None
            reference, what = cast(float, in_best.value), "the best in-box trial"
        else:
            continue
        if better(t.value, reference):
            found[(probed, probe_side)] = (
                f"probe trial {t.number} at {probed}={t.params[probed]:.4g}, beyond the {probe_side} bound, scored "
                f"{t.value:.4g} against {reference:.4g} for {what}: re-opened to the campaign's bound"
            )
    if in_best is not None:
        for name, cut in sides.items():
            record, org = current[name], original[name]
            log = bool(org.get("log"))
            value = in_best.params.get(name)
            if value is None:
                continue
            width = _t(record["high"], log) - _t(record["low"], log)
            for side in cut:
                bound = _t(record[side], log)
                if (name, side) not in found and abs(_t(value, log) - bound) <= edge_fraction * width:
                    found[(name, side)] = (
                        f"the best trial at this fidelity sits at the narrowed {side} bound: re-opened to the campaign's bound"
                    )
    return [Reopen(name, side, reason) for (name, side), reason in sorted(found.items())]


DRIFT_MIN = 0.15  # a move below this share of the current width is noise, not a fidelity bias


@dataclass(frozen=True)
class Drift:
    """Extend one side of a parameter's range to `bound` (natural units), and why."""

    param: str
    side: str
    bound: float
    reason: str


def fidelity_drift(
    study: optuna.Study, top: list[FrozenTrial], current: Space, original: Space, factor: float
) -> list[Drift]:
    """Per numeric parameter, how far this sprint's top-k moved from its (lower-fidelity) seeds."""
    if factor <= 0:
        return []
    seeds = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(SEEDED_ATTR)]
    inside_top = [t for t in top if not is_probe(t)]
    if len(seeds) < 2 or len(inside_top) < 2:
        return []
    drifts = []
    for name, record in current.items():
        org = original.get(name, {})
        if record.get("type") not in ("float", "int") or org.get("type") not in ("float", "int"):
            continue
        log = bool(org.get("log"))
        before = [_t(t.params[name], log) for t in seeds if name in t.params]
        after = [_t(t.params[name], log) for t in inside_top if name in t.params]
        if len(before) < 2 or len(after) < 2:
            continue
        width = _t(record["high"], log) - _t(record["low"], log)
        move = sum(after) / len(after) - sum(before) / len(before)
        if width <= 0 or abs(move) < DRIFT_MIN * width:
            continue
        target = sum(after) / len(after) + factor * move
        side = "low" if move < 0 else "high"
        bound_t = max(target, _t(org["low"], log)) if side == "low" else min(target, _t(org["high"], log))
        bound = math.exp(bound_t) if log else bound_t
        if org["type"] == "int":
            bound = int(math.floor(bound)) if side == "low" else int(math.ceil(bound))
        beyond = bound < record["low"] if side == "low" else bound > record["high"]
        if not beyond:
            continue
        drifts.append(
            Drift(
                name,
                side,
                bound,
                f"the top-k moved {'down' if move < 0 else 'up'} from the lower fidelity's best by "
                f"{abs(move) / width:.0%} of the range: extended to {bound:.4g} ({factor:g}x the move beyond the top-k)",
            )
        )
    return drifts
