"""A synthetic three-stage pipeline with stage costs of known shape, for memoization and eeipu.

Objective ``engine.workloads.pipeline:objective`` (minimise). Parameters x1..x6 in [0, 1]; the value
(setting ``function``) is the Hartmann-6 simple regret of the configuration (``hartmann6``, default:
the stages' parameters interact), or ``separable``: the construction of the EEIPU paper's synthetic
pipelines, a sum of one 2-D function per stage on that stage's parameters (Branin on x1, x2; Currin on
x3, x4; Branin on x5, x6; each regret divided by the function's spread). Both are 0 at the optimum.
The work runs through three stages (ctx.stage), each sleeping its cost and handing a small array on:

=======  ==========================  ===================================================
stage    depends on                  cost (cost units; x `time_scale` seconds)
=======  ==========================  ===================================================
prep     x1, x2                      prep_cost  x (0.5 + x1)      "data preparation"
train    prep + x3, x4               train_cost x (0.5 + x3)      "training"
eval     train + x5, x6              eval_cost                    "evaluation"
=======  ==========================  ===================================================

Defaults: prep_cost 1.0, train_cost 1.0, eval_cost 0.25, time_scale 0.02 s: a trial costs about
0.05 s, 0.025 s with prep cached, 0.005 s with prep and train cached. Settings: ``time_scale``,
``prep_cost``, ``train_cost``, ``eval_cost``, ``function``, ``noise`` (sd of a deterministic per-configuration
noise added to the value; default 0). Deterministic.
"""

from __future__ import annotations

import hashlib
import struct
import time
from typing import Any

import numpy as np

from engine.workloads.functions import PROBLEMS

NAMES = ("x1", "x2", "x3", "x4", "x5", "x6")
STAGES = [
    {"name": "prep", "params": ["x1", "x2"]},
    {"name": "train", "params": ["x3", "x4"]},
    {"name": "eval", "params": ["x5", "x6"]},
]
SPACE = {n: {"type": "float", "low": 0.0, "high": 1.0} for n in NAMES}


def stage_costs(params: dict[str, float], settings: dict[str, Any] | None = None) -> dict[str, float]:
    """Each stage's cost in seconds (the known shape)."""
    s = dict(settings or {})
    scale = float(s.get("time_scale", 0.02))
    return {
        "prep": scale * float(s.get("prep_cost", 1.0)) * (0.5 + params["x1"]),
        "train": scale * float(s.get("train_cost", 1.0)) * (0.5 + params["x3"]),
        "eval": scale * float(s.get("eval_cost", 0.25)),
    }


# "separable": the construction of the EEIPU paper's synthetic pipelines, a sum of one 2-D test
# function per stage on the stage's own parameters (each regret divided by the function's spread).
SEPARABLE = (("branin", ("x1", "x2")), ("currin", ("x3", "x4")), ("branin", ("x5", "x6")))


def _hartmann6_regret(x: dict[str, float]) -> float:
    return PROBLEMS["hartmann6"].regret(x)


def _separable_regret(x: dict[str, float]) -> float:
    total = 0.0
    for name, names in SEPARABLE:
        problem = PROBLEMS[name]
        natural = {p: spec.from_unit(x[n]) for (p, spec), n in zip(problem.space.items(), names, strict=False)}
        total += problem.regret(natural) / problem.scale
    return total


FUNCTIONS = {"hartmann6": _hartmann6_regret, "separable": _separable_regret}


def value_function(function: str):
    """The regret function named `function`: Hartmann-6 (stages interact) or the separable sum (they do not)."""
    if function not in FUNCTIONS:
        raise ValueError(f"unknown pipeline function {function!r}; known: {', '.join(FUNCTIONS)}")
    return FUNCTIONS[function]


def pipeline_regret(x: dict[str, float], function: str = "hartmann6") -> float:
    """The value of a configuration under the named function."""
    return value_function(function)(x)


def _work(seconds: float, *inputs: Any) -> np.ndarray:
    time.sleep(seconds)
    digest = hashlib.sha256(repr(inputs).encode()).digest()
    return np.frombuffer(digest, dtype=np.uint8).astype(np.float32)


def objective(ctx) -> float:
    x = {n: float(ctx.params[n]) for n in NAMES}
    # looked up before any stage runs: a typo must not cost a trial's work
    regret = value_function(str((ctx.settings or {}).get("function", "hartmann6")))
    costs = stage_costs(x, ctx.settings)
    prep = ctx.stage("prep", lambda: _work(costs["prep"], x["x1"], x["x2"]), depends_on={"x1": x["x1"], "x2": x["x2"]})
    model = ctx.stage(
        "train",
        lambda: _work(costs["train"], prep.tobytes(), x["x3"], x["x4"]),
        depends_on={"x3": x["x3"], "x4": x["x4"]},
        upstream=("prep",),
    )
    ctx.stage(
        "eval",
        lambda: _work(costs["eval"], model.tobytes(), x["x5"], x["x6"]),
        depends_on={"x5": x["x5"], "x6": x["x6"]},
        upstream=("train",),
    )
    value = regret(x)
    noise = float((ctx.settings or {}).get("noise", 0.0))
    if noise:
        h = hashlib.sha256(struct.pack("6d", *(x[n] for n in NAMES))).digest()
        value += noise * float(np.random.default_rng(int.from_bytes(h[:8], "little")).standard_normal())
    return value
