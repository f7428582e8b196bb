"""Variants of the efficiency benchmark's phased plan, phased runs only: how docs/benchmarks.md's
"What changed, by measurement" table was measured.

    python -m benchmarks.plan_variants --problems train_mlp,branin --variants base,gp-full,no-handoff --seeds 5

Each variant is the plan of benchmarks.efficiency.phased_sprints with one change:

    base        the plan as shipped (mf-gp full sprint, the gate's default reopen_rank)
    gp-full     Optuna's GP in the full sprint instead of mf-gp
    no-handoff  mf-gp without the hand-off to Optuna's GP
    reopen-0    gates that re-open only at a rank agreement <= 0 (the rule before reopen_rank)
    seeds-N     the full sprint seeded with the best N earlier configurations (the plan: 5)
    margin-X    gates that add X times the top-k span on each side (the default rule: 1; before: 0.15)
    handoff-N   mf-gp hands off to Optuna's GP from its N-th own completed trial (the plan: 10)
    no-refine   no mid-fidelity sprint: its budget goes to the full sprint, which starts after explore
    refine-N    a mid-fidelity sprint of N trials (the plan: 15; its seeds at most N), the rest to full
    check-N     instead of the refine sprint, the best N at full fidelity (a gate re-opens where they
                disagree with the low fidelity's ranking); the full sprint, unseeded, has the rest

Variants combine with "+" (`gp-full+reopen-0` is the plan before issue 15's second round). Prints the
final regret per seed and the median per problem and variant; with `--targets branin=0.0217,...` also
the share of B at which each run first reached that regret and their lower median (as the efficiency
benchmark's budget column, whose target is flat TPE + Hyperband's final median). The regret is the benchmark's own
(benchmarks.efficiency.score_runs); where a problem has no known optimum (svm-digits, digits-mlp) it
is measured against the best value these runs found, so compare such rows only within one call.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from benchmarks import efficiency

VARIANTS = (
    "base",
    "gp-full",
    "no-handoff",
    "reopen-0",
    "seeds-N",
    "margin-X",
    "handoff-N",
    "no-refine",
    "refine-N",
    "check-N",
)


def variant_plan(
    name: str, problem: efficiency.BenchProblem, budget: float
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The phased plan and gate rules with the named changes applied."""
    sprints = efficiency.phased_sprints(problem, budget)
    gate: dict[str, Any] | None = None
    for part in name.split("+"):
        gate = _apply(part, sprints, gate, problem)
    return sprints, gate


def _apply(
    part: str,
    sprints: list[dict[str, Any]],
    gate: dict[str, Any] | None,
    problem: efficiency.BenchProblem | None = None,
) -> dict[str, Any] | None:
    """One named change to the plan's sprints (in place) or to the gate rules (returned)."""
    prefix, _, value = part.partition("-")
    if part == "base":
        return gate
    if part == "gp-full":
        sprints[-1]["sampler"] = "gp"
    elif part == "no-refine":
        if len(sprints) == 3 and problem is not None:  # with two levels there is no refine sprint
            refine = sprints.pop(1)
            sprints[-1]["budget_cost"] += refine["n_trials"] * problem.level_cost(refine["fidelity"])
    elif prefix == "refine" and value.isdigit() and int(value) > 0:
        if len(sprints) == 3 and problem is not None:
            refine = sprints[1]
            saved = (refine["n_trials"] - int(value)) * problem.level_cost(refine["fidelity"])
            refine["n_trials"] = int(value)
            refine["seed_top"] = min(refine["seed_top"], int(value))
            sprints[-1]["budget_cost"] += saved
    elif prefix == "check" and value.isdigit() and int(value) > 0:
        if len(sprints) == 3 and problem is not None:
            refine, full = sprints[1], sprints[2]
            saved = refine["n_trials"] * problem.level_cost(refine["fidelity"]) - int(value)
            sprints[1] = {
                "name": "check",
                "sampler": "gp",
                "fidelity": full["fidelity"],
                "n_trials": int(value),
                "seed_top": int(value),
            }
            full["budget_cost"] += saved
            full["seed_top"] = 0
    elif part == "no-handoff":
        sprints[-1]["sampler_options"] = {"handoff_trials": None}
    elif part == "reopen-0":
        return {**(gate or {}), "reopen_rank": 0.0}
    elif prefix == "seeds" and value.isdigit():
        sprints[-1]["seed_top"] = int(value)
    elif prefix == "handoff" and value.isdigit():
        sprints[-1]["sampler_options"] = {"handoff_trials": int(value)}
    elif prefix == "margin" and _is_number(value):
        return {**(gate or {}), "margin": float(value)}
    else:
        raise ValueError(f"unknown variant {part!r}; known: {', '.join(VARIANTS)}")
    return gate


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _known(part: str) -> bool:
    try:
        _apply(part, [{}], None)
    except ValueError:
        return False
    return True


def run_variant(problem: efficiency.BenchProblem, name: str, seed: int, budget: float, workdir: Path) -> efficiency.Run:
    sprints, gate = variant_plan(name, problem, budget)
    started = time.perf_counter()
    events = efficiency._phased_run(problem, seed, budget, workdir, sprints, f"variant-{name}", gate=gate)
    return efficiency.Run(problem.name, name, seed, events, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plan_variants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", required=True, help="comma-separated (benchmarks.efficiency's names)")
    parser.add_argument(
        "--variants", default="base", help=f"comma-separated, each from {', '.join(VARIANTS)} joined by +"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=40.0)
    parser.add_argument(
        "--targets", default="", help="problem=regret,...: print the share of B at which each run reached it"
    )
    args = parser.parse_args(argv)
    targets = {k: float(v) for k, v in (item.split("=", 1) for item in args.targets.split(",") if item)}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    variants = args.variants.split(",")
    unknown = sorted({part for name in variants for part in name.split("+") if not _known(part)})
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}, joined by +")
    with tempfile.TemporaryDirectory(prefix="hpo-variants-") as tmp:
        for problem_name in args.problems.split(","):
            problem = efficiency.make_problem(problem_name)
            runs = [
                run_variant(problem, name, seed, args.budget, Path(tmp))
                for name in variants
                for seed in range(args.seeds)
            ]
            efficiency.score_runs(problem, runs, args.budget)  # one scale for every run of this problem
            for name in variants:
                finals = [r.final for r in runs if r.method == name]
                per_seed = ", ".join(f"{v:.3g}" for v in finals)
                print(f"{problem_name:12s} {name:28s} median {statistics.median(finals):.3g}   seeds: {per_seed}")
                if problem_name in targets:
                    reach = sorted(
                        efficiency.cost_to_reach(r, targets[problem_name]) / args.budget
                        for r in runs
                        if r.method == name
                    )
                    shown = ", ".join("never" if v == float("inf") else f"{v:.2f}" for v in reach)
                    lower_median = reach[(len(reach) - 1) // 2]
                    print(
                        f"{'':12s} {'':28s} budget to {targets[problem_name]:.3g}: {lower_median:.2f} x B   seeds: {shown}"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
