"""Memoization and cost-aware search at an equal budget in seconds of trial cost.

Size (~420 lines): the method grid (sampler × cache × cooling), two synthetic pipelines and tiny
jerex, run through the same trial path and scored by one table printer.

    python -m benchmarks.memoization                      # both synthetic pipelines + tiny jerex, default seeds
    python -m benchmarks.memoization --workloads synthetic --seeds 5 --budget 3
    python -m benchmarks.memoization --workloads jerex --seeds 3 --jerex-budget 60 --json runs/bench/memo.json
    python -m benchmarks.memoization --workloads synthetic --seeds 3 --methods "eeipu-gp+cache@cooling=linear"

**Methods** (every one runs through the engine's real trial path, engine.execution.trials.run_trial, with a
stage runner; the budget is the sprint rule engine.execution.sprint.budget_left with `budget_seconds`):

* ``tpe``: Optuna TPE (the engine's settings), stages timed but not cached;
* ``tpe+cache``: the same with the stage cache (engine.cache.stages) on;
* ``gp+cache``: Optuna GPSampler with the stage cache;
* ``eeipu+cache``: engine.search.eeipu (EI x E[1/cost]^eta, eta cooling over the budget) with the stage cache.
* ``eeipu-gp+cache``: engine.search.cost_aware_gp (log-EI per expected cost on Optuna's GP, cached prefixes
  kept) with the stage cache. ``eeipu-gp+cache@cooling=linear;min_ei_ratio=0`` runs a variant with those
  sampler options (for traces; reported under its own name).

**No pruning.** Every trial runs to its end (NopPruner), so a candidate is a whole evaluation for every
method alike.

**Budget.** B seconds of trial cost: the sum of the trials' `duration_s` (the objective's wall time; the
sampler's own time is recorded apart as `sample_s` and reported as overhead), the engine's own
`budget_seconds` rule. A run stops starting trials once it has spent B; the last trial may run past B,
and is not counted (neither its candidate nor its value). The jerex workload is CPU-bound, and on a
shared machine its wall time follows the other processes' load more than the method: there B counts the
objective's CPU seconds instead (`cpu_s`, time.process_time around the objective; eeipu cools on the same
attribute). The synthetic workload sleeps, so it uses wall time.

**Workloads.**

* ``synthetic``: engine.workloads.pipeline — Hartmann-6 regret behind three sleeping stages of known
  cost (prep on x1, x2; train on x3, x4; eval on x5, x6). Metric: regret (lower is better).
* ``separable``: the same stages and costs; the value is the EEIPU paper's kind of synthetic pipeline,
  a sum of one 2-D function per stage on the stage's own parameters (stages do not interact).
* ``jerex``: the tiny entity-relation model (engine.workloads.jerex, CPU, 1 thread). Tuned: encoder_lr,
  head_lr (they shape the warm-up) and hold_pct, decay, final_lr_ratio (they shape only what follows
  the warm-up); pct_start 0.5 of a 4-epoch schedule, so epochs 1-2 are the cacheable warm-up prefix
  (a checkpoint, engine.cache.checkpoints) and 3-4 the rest. Metric: validation relation micro-F1 (higher
  is better).

**Output**, per workload and method over the seeds: median (and min-max) candidates evaluated within B,
median best metric, median cache hits and the seconds they saved, and the sampler's overhead; for
every method alike, the candidates that fit in B when each trial is charged its ask (`sample_s`) too;
and the budget (trial cost) each method needed to reach gp+cache's final median best — median over
seeds, "> B" when most seeds never reached it, with the count of seeds that did.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from engine.cache.stages import StageCache, StageRunner
from engine.execution.sprint import budget_left
from engine.execution.trials import run_trial
from engine.objective import load_objective
from engine.search.samplers import make_sampler
from engine.search.space import distributions
from engine.store.records import SprintRecord

optuna.logging.set_verbosity(optuna.logging.ERROR)

METHODS = ("tpe", "tpe+cache", "gp+cache", "eeipu+cache", "eeipu-gp+cache")


@dataclass
class Workload:
    name: str
    objective: str
    space: dict[str, dict[str, Any]]
    fixed: dict[str, Any]
    fidelity: dict[str, Any]
    settings: dict[str, Any]
    direction: str
    metric: str
    budget_s: float
    clock: str = "wall"  # "wall": duration_s, the engine's own rule; "cpu": the objective's CPU seconds
    eeipu_options: dict[str, Any] = field(default_factory=dict)


def synthetic(
    budget_s: float,
    time_scale: float,
    costs: tuple[float, float, float] = (1.0, 1.0, 0.25),
    function: str = "hartmann6",
) -> Workload:
    from engine.workloads.pipeline import SPACE

    settings = {
        "time_scale": time_scale,
        "prep_cost": costs[0],
        "train_cost": costs[1],
        "eval_cost": costs[2],
        "function": function,
    }
    name = "synthetic" if function == "hartmann6" else function
    if costs != (1.0, 1.0, 0.25):
        name += f" {costs[0]:g}/{costs[1]:g}/{costs[2]:g}"
    return Workload(
        name, "engine.workloads.pipeline:objective", dict(SPACE), {}, {}, settings, "minimize", "regret", budget_s
    )


def jerex(budget_s: float, n_train: int) -> Workload:
    space = {
        "encoder_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "head_lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
        "hold_pct": {"type": "float", "low": 0.0, "high": 0.5},
        "decay": {"type": "categorical", "choices": ["cosine", "linear", "none"]},
        "final_lr_ratio": {"type": "float", "low": 0.0, "high": 0.5},
    }
    fixed = {"pct_start": 0.5, "batch_size": 16}
    settings = {"n_train": n_train, "n_val": 120, "n_test": 20, "save_artifacts": False}
    return Workload(
        "jerex",
        "engine.workloads.jerex.objective:objective",
        space,
        fixed,
        {"epochs": 4, "train_fraction": 1.0, "max_length": 64},
        settings,
        "maximize",
        "val relation F1",
        budget_s,
        clock="cpu",
    )


@dataclass
class Result:
    workload: str
    method: str
    seed: int
    candidates: int
    best: float | None
    spent_s: float
    hits: int
    saved_s: float
    inherited: int
    sampler_s: float
    wall_s: float
    candidates_with_sampler: int = 0  # within B when the sampler's own time counts too (every method alike)
    trace: list[tuple[float, float]] = field(default_factory=list)  # (trial cost spent, best so far) per trial


def cpu_clocked(objective: Callable) -> Callable:
    """The objective's CPU seconds (all threads of this process) as the trial attribute `cpu_s`."""

    def run(ctx):
        started = time.process_time()
        try:
            return objective(ctx)
        finally:
            ctx.set_attr("cpu_s", round(time.process_time() - started, 4))

    return run


def run_one(w: Workload, method: str, seed: int, workdir: Path, log: Callable[[str], None] = lambda m: None) -> Result:
    sampler_name, _, cached = method.partition("+")
    sampler_options = dict(w.eeipu_options)
    if "@" in cached:  # e.g. "eeipu-gp+cache@cooling=linear;eta_floor=0.3": a variant (traces, not in METHODS)
        cached, _, variant = cached.partition("@")
        for item in variant.split(";"):
            key, _, value = item.partition("=")
            sampler_options[key] = json.loads(value) if value[:1].isdigit() else value
    dists = distributions(w.space, list(w.space))
    cost_attr = "cpu_s" if w.clock == "cpu" else "duration_s"
    options = (
        {"budget_seconds": w.budget_s, "cost_attr": cost_attr, **sampler_options}
        if sampler_name in ("eeipu", "eeipu-gp")
        else {}
    )
    sampler = make_sampler(sampler_name, dists, seed=seed, options=options)
    # No pruner: Optuna's default (median) would stop jerex trials after their first epoch, making every
    # method's trials cheap and, on a seed whose good configurations start slowly, all of them wrong.
    study = optuna.create_study(
        study_name=f"bench/00-{method}",
        storage=optuna.storages.InMemoryStorage(),
        sampler=sampler,
        direction=w.direction,
        pruner=optuna.pruners.NopPruner(),
    )
    run_dir = workdir / f"{w.name}-{method}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    runner = StageRunner(StageCache(run_dir / "cache") if cached else None, salt=f"bench-{seed}")
    record = SprintRecord(
        index=0,
        name="bench",
        study=study.study_name,
        sampler="tpe",
        pruner="none",
        space=w.space,
        tuned=tuple(w.space),
        fixed=w.fixed,
        level="bench",
        fidelity=w.fidelity,
        budget_seconds=w.budget_s,
        started_ts=time.time(),
    )
    objective = load_objective(w.objective)
    if w.clock == "cpu":
        objective = cpu_clocked(objective)

    def more() -> bool:
        trials = study.get_trials(deepcopy=False)
        if w.clock == "cpu":
            return sum(float(t.user_attrs.get("cpu_s", 0.0)) for t in trials) < w.budget_s
        return budget_left(record, trials)  # the engine's rule for budget_seconds

    started = time.perf_counter()
    while more():
        t = run_trial(
            study,
            objective=objective,
            sprint=record,
            settings=w.settings,
            full_fidelity=w.fidelity,
            cost_knobs=[],
            run_dir=run_dir,
            artifact_store=None,
            worker="bench",
            stage_runner=runner,
        )
        if t.state.name == "FAIL":
            log(f"  trial {t.number} failed: {t.user_attrs.get('fail_reason')}")
    wall = time.perf_counter() - started
    spent, counted = 0.0, []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        spent += float(t.user_attrs.get(cost_attr, 0.0))
        if spent <= w.budget_s:
            counted.append(t)
    trace, spent_so_far, best_so_far = [], 0.0, None
    better = (lambda a, b: a > b) if w.direction == "maximize" else (lambda a, b: a < b)
    for t in counted:
        spent_so_far += float(t.user_attrs.get(cost_attr, 0.0))
        if t.value is not None and (best_so_far is None or better(t.value, best_so_far)):
            best_so_far = float(t.value)
        if best_so_far is not None:
            trace.append((round(spent_so_far, 4), best_so_far))
    values = [t.value for t in counted if t.value is not None]
    best = (max if w.direction == "maximize" else min)(values) if values else None
    hits = sum(1 for t in counted for r in (t.user_attrs.get("stages") or {}).values() if r.get("hit"))
    saved = sum(float(r.get("saved_s", 0.0)) for t in counted for r in (t.user_attrs.get("stages") or {}).values())
    saved += sum(float((t.user_attrs.get("inherited") or {}).get("saved_s", 0.0)) for t in counted)
    inherited = sum(1 for t in counted if t.user_attrs.get("inherited"))
    sampler_s = sum(float(t.user_attrs.get("sample_s", 0.0)) for t in study.get_trials(deepcopy=False))
    charged, with_sampler = 0.0, 0  # the same budget, charging each trial its ask as well
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        charged += float(t.user_attrs.get(cost_attr, 0.0)) + float(t.user_attrs.get("sample_s", 0.0))
        if charged > w.budget_s:
            break
        with_sampler += 1
    shutil.rmtree(run_dir, ignore_errors=True)
    return Result(
        w.name,
        method,
        seed,
        len(counted),
        best,
        min(spent, w.budget_s),
        hits,
        saved,
        inherited,
        sampler_s,
        wall,
        with_sampler,
        trace,
    )


REFERENCE = "gp+cache"  # the bar: the best non-cost-aware method with the same cache


def reach_cost(r: Result, target: float, direction: str) -> float:
    """The trial cost a run had spent when its best first matched `target` (inf: never within the budget)."""
    for spent, best in r.trace:
        if (best >= target) if direction == "maximize" else (best <= target):
            return spent
    return math.inf


def budget_to_reach(runs: list[Result], target: float | None, w: Workload) -> str:
    """Median over seeds of the cost to reach `target`, "> B" when most seeds never do; k/n seeds reached."""
    if target is None:
        return "-"
    costs = sorted(reach_cost(r, target, w.direction) for r in runs)
    reached = sum(1 for c in costs if math.isfinite(c))
    median = statistics.median(costs) if reached * 2 > len(costs) else math.inf
    shown = f"{median:.2f} s" if math.isfinite(median) else f"> {w.budget_s:g} s"
    return f"{shown} ({reached}/{len(costs)})"


def table(results: list[Result], workloads: list[Workload]) -> str:
    lines = []
    for w in workloads:
        rows = [r for r in results if r.workload == w.name]
        if not rows:
            continue
        base = [r.candidates for r in rows if r.method == "tpe"]
        base_median = statistics.median(base) if base else None
        seeds = sorted({r.seed for r in rows})
        clock = "CPU seconds of the objective" if w.clock == "cpu" else "seconds of trial cost (duration_s)"
        lines.append(
            f"\n{w.name}: budget {w.budget_s:g} {clock} per run, seeds {seeds}, "
            f"metric {w.metric} ({'higher' if w.direction == 'maximize' else 'lower'} is better)"
        )
        reference = [r.best for r in rows if r.method == REFERENCE and r.best is not None]
        target = statistics.median(reference) if reference else None
        lines.append(
            f"| method | candidates (median, min-max) | vs tpe | best {w.metric} (median) | best (min-max) "
            f"| cache hits | saved s | sampler s | wall s | candidates, sampler time charged too | vs tpe "
            f"| budget to reach {REFERENCE}'s median |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        base_sampled = [r.candidates_with_sampler for r in rows if r.method == "tpe"]
        base_sampled_median = statistics.median(base_sampled) if base_sampled else None
        for method in dict.fromkeys(r.method for r in rows):  # in the order they ran
            mine = [r for r in rows if r.method == method]
            if not mine:
                continue
            cands = [r.candidates for r in mine]
            charged = [r.candidates_with_sampler for r in mine]
            charged_ratio = f"{statistics.median(charged) / base_sampled_median:.2f}x" if base_sampled_median else "-"
            bests = [r.best for r in mine if r.best is not None]
            ratio = f"{statistics.median(cands) / base_median:.2f}x" if base_median else "-"
            lines.append(
                f"| {method} | {statistics.median(cands):g} ({min(cands)}-{max(cands)}) | {ratio} | "
                f"{statistics.median(bests):.4g} | {min(bests):.4g}-{max(bests):.4g} | "
                f"{statistics.median(r.hits for r in mine):g} | {statistics.median(r.saved_s for r in mine):.1f} | "
                f"{statistics.median(r.sampler_s for r in mine):.1f} | {statistics.median(r.wall_s for r in mine):.1f} | "
                f"{statistics.median(charged):g} ({min(charged)}-{max(charged)}) | "
                f"{charged_ratio} | {budget_to_reach(mine, target, w)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memoization", description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="synthetic,separable,jerex")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=5.0, help="synthetic: seconds of trial cost per run")
    parser.add_argument("--time-scale", type=float, default=0.05, help="synthetic: seconds per stage cost unit")
    parser.add_argument("--costs", default="1,1,0.25", help="synthetic: prep,train,eval cost units (see pipeline.py)")
    parser.add_argument("--jerex-budget", type=float, default=30.0, help="jerex: seconds of trial cost per run")
    parser.add_argument("--jerex-seeds", type=int, default=None, help="jerex: seeds (default: --seeds)")
    parser.add_argument("--jerex-train", type=int, default=200, help="jerex: training sentences")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted({m for m in methods if m.partition("@")[0] not in METHODS})
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    workloads = []
    for name in args.workloads.split(","):
        if name in ("synthetic", "separable"):
            costs = tuple(float(c) for c in args.costs.split(","))
            if len(costs) != 3:
                parser.error("--costs takes three numbers: prep,train,eval")
            workloads.append(
                synthetic(args.budget, args.time_scale, costs, "hartmann6" if name == "synthetic" else "separable")
            )
        elif name == "jerex":
            workloads.append(jerex(args.jerex_budget, args.jerex_train))
        elif name:
            parser.error(f"unknown workload {name!r}; known: synthetic, separable, jerex")
    results: list[Result] = []
    workdir = Path(tempfile.mkdtemp(prefix="hpo-memo-"))
    for w in workloads:
        if w.name == "jerex":  # one corpus directory, so every run trains the same tiny tokenizer (per process)
            from engine.workloads.jerex.corpus import prepare_generated_corpus

            sizes = (w.settings["n_train"], w.settings["n_val"], w.settings["n_test"])
            w.settings["data_dir"] = str(prepare_generated_corpus(workdir / "corpus", 13, *sizes))
    try:
        for w in workloads:
            seeds = args.jerex_seeds if w.name == "jerex" and args.jerex_seeds else args.seeds
            for seed in range(seeds):
                for method in methods:
                    r = run_one(w, method, seed, workdir, log=lambda m: print(m, file=sys.stderr, flush=True))
                    results.append(r)
                    print(
                        f"{w.name:<10}{method:<13}seed {seed}: {r.candidates:>4} candidates, best {r.best:.4g}, "
                        f"hits {r.hits}, saved {r.saved_s:.1f}s, sampler {r.sampler_s:.1f}s, wall {r.wall_s:.1f}s",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(results, workloads))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
