"""Search efficiency at equal fidelity-weighted budget: the phased campaign against flat searchers.

Size (~1,000 lines): one script: the suites, seven methods run at an equal fidelity-weighted budget,
the phased plan read from a campaign file, scoring (regret, AUC, budget to target) and the tables.

    python -m benchmarks.efficiency --suite quick --seeds 3
    python -m benchmarks.efficiency --suite hard --seeds 2 --json benchmarks/out/hard.json
    python -m benchmarks.efficiency --suite full --seeds 5 --json runs/bench/efficiency.json
    python -m benchmarks.efficiency --problems branin,park --methods random,tpe-hyperband --seeds 2

**Budget.** Every method gets the same budget B in fidelity-weighted cost units: a trial at the
highest fidelity level costs 1; a trial at a lower level costs the product of the cost knobs
(train_fraction x epochs, ...) relative to the highest level; a pruned trial costs the epochs it
ran (engine.execution.trials.trial_cost, the same rule the engine records). A method stops once it has spent
B; a result that would land past B is not counted.

**Methods.**

* ``random``: Optuna RandomSampler, every trial at the highest fidelity.
* ``skopt-gp``: ``skopt.gp_minimize`` with its defaults, every call at the highest fidelity.
* ``tpe-hyperband``: Optuna TPE (the engine's settings: multivariate) + HyperbandPruner (the
  engine's settings: min_resource 1, max_resource = epochs, reduction factor 3) at the highest
  fidelity, one report per epoch.
* ``tpe-curve``: the same TPE with the engine's learning-curve extrapolation pruner
  (engine.search.curve_pruner, ``pruner = "curve"``) instead of Hyperband.
* ``gp``: Optuna GPSampler with its defaults, every trial at the highest fidelity.
* ``phased``: this product's campaign run through the real engine (engine.campaign.Coordinator,
  trials in process, ``workers=0``) on a journal-file storage with the ``auto`` policy: one plan for every problem, built by
  ``phased_sprints`` (Optuna GP at the lowest level -> gate -> GP at the middle level, seeded, 30%
  of it probing outside its box -> gate, which may re-open what the first narrowed (engine.gates.reopen)
  -> GP at the highest level, seeded; the last sprint gets what is left of B).
* ``quickstart``: the shipped ``campaigns/quickstart.toml``'s plan read from the file and scaled to B
  (``quickstart_sprints``), so the shipped recipe and the benchmark plan cannot drift apart. Where
  the scaled plan and gate rules equal the benchmark plan's (problems with the test functions'
  levels), the row reuses the phased run of the same seed (the runs are deterministic).

**Regret.** Only results at the highest fidelity can make a configuration the incumbent (the best
observed so far); a method's simple regret at cost c is the *true* regret of its incumbent at c.
For the test functions the truth is the noise-free high fidelity minus the known optimum
(engine.workloads.functions). For workloads without a known optimum (digits, campaign files) the
truth is the observed full-fidelity metric (as a loss), and regret is measured against the best
value any run of this benchmark invocation found. Before a method has any full-fidelity result its
regret is the regret of an uninformed guess: the median regret of 256 random points (functions),
or the worst full-fidelity value any run observed (other workloads).

**Output**, per problem and method, over the seeds: the median and interquartile range of the
final simple regret; the area under the best-so-far regret curve divided by B (mean regret over the
budget; lower is better); the budget needed to reach flat TPE + Hyperband's final median regret
(lower median over seeds, as a fraction of B; "-" where fewer than half of the seeds reach it). Then a
summary line per method across problems. With ``--explain``, per sprint of every phased run on a
test function: the share of the box it searched, whether that box held the optimum (else which
parameters cut it off), how well its fidelity ranked configurations against the truth (Spearman,
all and top-k), the true regret of the best configuration it evaluated and of the one it picked,
and the fidelity agreement its gate measured (see ``diagnose_phased``). docs/benchmarks.md has
the figures and what they led to.

Suites: ``quick`` (the five classic test functions, B = 30), ``hard`` (the class where phasing is
at risk: train_mlp and train_cnn, training-like surfaces whose low fidelity prefers a larger
learning rate and less regularisation; wells8, 8-D, whose low fidelity prefers a local well; the
RBF SVM on digits with HPOBench's SVM space; B = 40), ``suite`` (both), ``full`` (+ digits-mlp and
jerex-tiny). The column "→best flat" is the budget at which a method first reaches the best flat
method's final median (within 10%), as a fraction of B.

Run times on the shared 2-core machine: quick, 3 seeds: ~3.5 min; full without jerex-tiny,
3 seeds: ~16 min (jerex-tiny adds 45-60 min per seed); the phased runs dominate (Optuna's GP
sampler over 100+ trials).

Deterministic for a given seed list: every sampler is seeded with the run's seed, the test
functions' low-fidelity noise uses ``noise_seed = seed``, and trials run one at a time in process
(one BLAS / torch thread).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from engine.execution.trials import trial_cost
from engine.gates.proposal import spearman
from engine.objective import TrialContext, check_value, load_objective
from engine.spec import CampaignSpec, GateRules, SprintSpec, parse_campaign
from engine.toml_compat import tomllib

ROOT = Path(__file__).resolve().parent.parent
FLAT_METHODS = ("random", "skopt-gp", "tpe-hyperband", "tpe-curve", "gp")
METHODS = FLAT_METHODS + ("phased", "quickstart")
PHASED_METHODS = ("phased", "quickstart")
QUICKSTART = ROOT / "campaigns" / "quickstart.toml"
REFERENCE = "tpe-hyperband"  # the budget column measures the cost to reach this method's final median
FUNCTION_LEVELS = {
    "low": {"train_fraction": 0.2, "epochs": 3},
    "mid": {"train_fraction": 0.5, "epochs": 9},
    "high": {"train_fraction": 1.0, "epochs": 27},
}
SUITES = {
    "quick": {"problems": ["branin", "hartmann6", "currin", "park", "borehole"], "budget": 30.0},
    # the class where phasing is at risk: misleading low fidelity, wrong basins, a real model
    "hard": {"problems": ["train_mlp", "train_cnn", "wells8", "svm-digits"], "budget": 40.0},
    "suite": {
        "problems": [
            "branin",
            "hartmann6",
            "currin",
            "park",
            "borehole",
            "train_mlp",
            "train_cnn",
            "wells8",
            "svm-digits",
        ],
        "budget": 40.0,
    },
    "full": {
        "problems": [
            "branin",
            "hartmann6",
            "currin",
            "park",
            "borehole",
            "train_mlp",
            "train_cnn",
            "wells8",
            "svm-digits",
            "digits-mlp",
            "campaign:campaigns/jerex-tiny.toml",
        ],
        "budget": 40.0,
    },
}


# ---------------------------------------------------------------------------------------------
# Problems


@dataclass
class BenchProblem:
    """A campaign without sprints, plus how to score a configuration."""

    name: str
    base: dict[str, Any]  # campaign-file data without 'sprints' (objective, metric, space, fidelity, ...)
    truth: Callable[[dict[str, Any]], float] | None = None  # params -> true regret (None: use the observed metric)
    initial_regret: float | None = None  # regret of an uninformed guess (None: worst observed)
    seed_settings: Callable[[int], dict[str, Any]] = field(default=lambda seed: {})
    optima: list[dict[str, float]] = field(default_factory=list)  # known global optima (test functions)

    def spec(
        self,
        sprints: list[dict[str, Any]],
        *,
        seed: int,
        name: str | None = None,
        storage: str | None = None,
        gate: dict[str, Any] | None = None,
    ) -> CampaignSpec:
        data = json.loads(json.dumps(self.base))
        if gate:
            data["gate"] = gate
        data["name"] = name or data["name"]
        data["seed"] = seed
        data["workers"] = 1
        data["policy"] = "auto"
        data.pop("storage", None)
        data["objective"]["settings"] = {**data["objective"].get("settings", {}), **self.seed_settings(seed)}
        data["sprints"] = sprints
        if storage:
            data["storage"] = storage
        data.pop("thresholds", None)
        return parse_campaign(data, f"<benchmark {self.name}>")

    @property
    def levels(self) -> dict[str, dict[str, Any]]:
        return self.base["fidelity"]["levels"]

    @property
    def top_level(self) -> str:
        return list(self.levels)[-1]

    @property
    def maximize(self) -> bool:
        return self.base.get("metric", {}).get("direction", "minimize") == "maximize"

    def level_cost(self, level: str) -> float:
        knobs = self.base["fidelity"].get("cost_knobs", [])
        return trial_cost(self.levels[level], self.levels[self.top_level], knobs, None)


def function_problem(name: str) -> BenchProblem:
    from engine.workloads.functions import PROBLEMS

    problem = PROBLEMS[name]
    space = {}
    for pname, p in problem.space.items():
        kind, low, high = ("int", int(p.low), int(p.high)) if p.integer else ("float", p.low, p.high)
        space[pname] = {"type": kind, "low": low, "high": high, **({"log": True} if p.log else {})}
    rng = np.random.default_rng(12345)
    guesses = []
    for _ in range(256):
        x = {}
        for pname, p in problem.space.items():
            u = rng.random()
            x[pname] = p.from_unit(u)
        guesses.append(problem.regret(x))
    base = {
        "name": f"bench-{name}",
        "objective": {"path": f"engine.workloads.functions:{name}", "settings": {"sleep_per_step": 0.0}},
        "metric": {"name": "regret", "direction": "minimize"},
        "space": space,
        "fidelity": {"cost_knobs": ["train_fraction", "epochs"], "levels": FUNCTION_LEVELS},
    }
    return BenchProblem(
        name=name,
        base=base,
        truth=problem.regret,
        initial_regret=float(np.median(guesses)),
        seed_settings=lambda seed: {"noise_seed": seed},
        optima=[dict(zip(problem.space, xs, strict=False)) for xs in problem.extra.get("argmins", [])]
        or [dict(problem.x_opt)],
    )


def campaign_problem(path: str | Path, name: str | None = None) -> BenchProblem:
    """Any campaign file: its objective, metric, space and fidelity levels (its sprints are ignored)."""
    path = Path(path)
    if not path.is_absolute():
        path = ROOT / path
    data = tomllib.loads(path.read_text())
    parse_campaign(data, path)  # validate
    base = {k: v for k, v in data.items() if k not in ("sprints", "gate", "thresholds", "storage", "workers", "policy")}
    return BenchProblem(
        name=name or data["name"],
        base=base,
        seed_settings=lambda seed: {"seed": seed} if "seed" in data["objective"].get("settings", {}) else {},
    )


def make_problem(name: str) -> BenchProblem:
    from engine.workloads.functions import PROBLEMS

    if name in PROBLEMS:
        return function_problem(name)
    if name == "digits-mlp":
        return campaign_problem("campaigns/digits-mlp.toml", "digits-mlp")
    if name == "svm-digits":
        return campaign_problem("campaigns/svm-digits.toml", "svm-digits")
    if name.startswith("campaign:"):
        return campaign_problem(name.partition(":")[2])
    raise SystemExit(f"unknown problem {name!r} (functions: {', '.join(PROBLEMS)}; digits-mlp; campaign:PATH)")


# ---------------------------------------------------------------------------------------------
# Running methods. Every method returns its events in order: (cost of that trial, loss observed at the
# highest fidelity or None, full params).


@dataclass
class Event:
    cost: float
    loss: float | None  # observed metric as a loss, only for completed highest-fidelity trials
    params: dict[str, Any]


def _ctx(
    problem: BenchProblem, spec: CampaignSpec, params: dict, fidelity: dict, trial=None, run_dir=None
) -> TrialContext:
    return TrialContext(
        params=params,
        fidelity=dict(fidelity),
        settings=dict(spec.objective.settings),
        trial_number=trial.number if trial is not None else 0,
        sprint="bench",
        run_dir=Path(run_dir or tempfile.gettempdir()),
        trial=trial,
    )


def _loss(problem: BenchProblem, value: float) -> float:
    return -value if problem.maximize else value


def _flat_optuna(problem: BenchProblem, seed: int, budget: float, sampler_name: str, pruner_name: str) -> list[Event]:
    from engine.execution.trials import suggest
    from engine.search.pruners import make_pruner
    from engine.search.samplers import make_sampler
    from engine.search.space import distributions, initial_space

    spec = problem.spec([{"name": "flat", "fidelity": problem.top_level, "n_trials": 1}], seed=seed)
    space = initial_space(spec)
    tuned = [n for n, r in space.items() if r["type"] != "fixed"]
    fixed = {n: r["value"] for n, r in space.items() if r["type"] == "fixed"}
    fidelity = problem.levels[problem.top_level]
    knobs = spec.fidelity.cost_knobs
    epochs = fidelity.get("epochs")
    sampler = make_sampler(sampler_name, distributions(space, tuned), seed=seed)
    pruner = make_pruner(pruner_name, max_resource=int(epochs) if epochs else None)
    # a fixed study name: Hyperband assigns brackets by a hash of the study name and trial number
    study = optuna.create_study(
        study_name=f"bench-{problem.name}-{sampler_name}-{pruner_name}-{seed}",
        direction=spec.metric.direction,
        sampler=sampler,
        pruner=pruner,
    )
    objective = load_objective(spec.objective.path)
    use_trial = pruner_name != "none"
    events: list[Event] = []
    spent = 0.0
    while spent < budget - 1e-9:
        trial = study.ask()
        params = {**fixed, **suggest(trial, space, tuned)}
        ctx = _ctx(problem, spec, params, fidelity, trial if use_trial else None)
        try:
            value = check_value(objective(ctx))
        except optuna.TrialPruned:
            steps = ctx.last_step + 1 if ctx.last_step is not None else None
            cost = trial_cost(fidelity, fidelity, knobs, steps)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            events.append(Event(cost, None, params))
        else:
            study.tell(trial, value)
            events.append(Event(trial_cost(fidelity, fidelity, knobs, None), _loss(problem, value), params))
        spent += events[-1].cost
    return events


def run_random(problem, seed, budget, workdir):
    return _flat_optuna(problem, seed, budget, "random", "none")


def run_gp(problem, seed, budget, workdir):
    import torch

    torch.set_num_threads(1)
    return _flat_optuna(problem, seed, budget, "gp", "none")


def run_tpe_hyperband(problem, seed, budget, workdir):
    return _flat_optuna(problem, seed, budget, "tpe", "hyperband")


def run_tpe_curve(problem, seed, budget, workdir):
    return _flat_optuna(problem, seed, budget, "tpe", "curve")


def run_skopt(problem, seed, budget, workdir):
    import skopt
    from skopt.space import Categorical, Integer, Real

    from engine.search.space import initial_space

    spec = problem.spec([{"name": "flat", "fidelity": problem.top_level, "n_trials": 1}], seed=seed)
    space = initial_space(spec)
    fixed = {n: r["value"] for n, r in space.items() if r["type"] == "fixed"}
    names, dims = [], []
    for n, r in space.items():
        if r["type"] == "float":
            dims.append(Real(r["low"], r["high"], prior="log-uniform" if r.get("log") else "uniform", name=n))
        elif r["type"] == "int":
            if r.get("step", 1) != 1:
                dims.append(Categorical(list(range(r["low"], r["high"] + 1, r["step"])), name=n))
            else:
                dims.append(Integer(r["low"], r["high"], prior="log-uniform" if r.get("log") else "uniform", name=n))
        elif r["type"] == "categorical":
            dims.append(Categorical(r["choices"], name=n))
        else:
            continue
        names.append(n)
    fidelity = problem.levels[problem.top_level]
    cost = trial_cost(fidelity, fidelity, spec.fidelity.cost_knobs, None)
    n_calls = int(math.floor(budget / cost + 1e-9))
    objective = load_objective(spec.objective.path)
    events: list[Event] = []

    def f(point):
        params = {**fixed, **{n: (v.item() if hasattr(v, "item") else v) for n, v in zip(names, point, strict=False)}}
        value = check_value(objective(_ctx(problem, spec, params, fidelity)))
        events.append(Event(cost, _loss(problem, value), params))
        return _loss(problem, value)

    skopt.gp_minimize(f, dims, n_calls=n_calls, random_state=seed, n_initial_points=min(10, n_calls))
    return events


# -- the phased campaign -----------------------------------------------------------------------

EXPLORE_TRIALS, EXPLORE_SHARE = 100, 0.10
REFINE_TRIALS, REFINE_SHARE, REFINE_SEEDS = 15, 0.20, 8
REFINE_PROBES = 0.3  # share of the refine sprint's trials probing outside its box (engine.gates.reopen)
FULL_SEEDS = 5


def phased_sprints(problem: BenchProblem, budget: float) -> list[dict[str, Any]]:
    """The one phased plan used for every problem (not tuned per problem).

    explore: Optuna GP at the lowest level, up to 100 trials or 10% of B (the reference study ran
             90-120 low-fidelity GP iterations);
    refine:  Optuna GP at the middle level, up to 15 trials or 20% of B, seeded with the best 8
             (their re-evaluation tells the next gate how well the low fidelity ranks);
    full:    the multi-fidelity GP (engine.search.multi_fidelity_gp: one GP over the parameters and
             the fidelity, fitted on every earlier trial too, log-EI at full fidelity; Optuna's GP
             on the sprint's own trials from its 10th on) at the highest level with the rest of B,
             seeded with the best 5.
    With two levels there is no refine sprint. The gates use the engine's default rules.
    """
    levels = list(problem.levels)
    low, top = levels[0], levels[-1]
    sprints = []
    spent = 0.0
    n = max(1, min(EXPLORE_TRIALS, int(EXPLORE_SHARE * budget / problem.level_cost(low))))
    sprints.append({"name": "explore", "sampler": "gp", "fidelity": low, "n_trials": n})
    spent += n * problem.level_cost(low)
    if len(levels) >= 3:
        mid = levels[len(levels) // 2]
        n = max(1, min(REFINE_TRIALS, int(REFINE_SHARE * budget / problem.level_cost(mid))))
        sprints.append(
            {
                "name": "refine",
                "sampler": "gp",
                "fidelity": mid,
                "n_trials": n,
                "seed_top": REFINE_SEEDS,
                "explore_share": REFINE_PROBES,
            }
        )
        spent += n * problem.level_cost(mid)
    sprints.append(
        {
            "name": "full",
            "sampler": "mf-gp",
            "fidelity": top,
            "budget_cost": max(budget - spent, 1e-6),
            "seed_top": FULL_SEEDS,
        }
    )
    return sprints


class PhasedUnavailable(RuntimeError):
    pass


def _run_campaign_in_process(spec: CampaignSpec, storage_url: str, workdir: Path) -> None:
    """Run a campaign to its end with the auto policy, trials in this process, through the engine."""
    try:
        from engine import campaign
    except ImportError as err:
        raise PhasedUnavailable(f"engine.campaign is not available ({err})") from None
    quiet = lambda line: None  # noqa: E731
    if hasattr(campaign, "Coordinator"):
        from engine.gates.policy import AutoPolicy

        # runs_root keeps the run folders (artifacts, logs) under the benchmark's work folder
        campaign.Coordinator(spec, storage_url, policy=AutoPolicy(), workers=0, log=quiet, runs_root=workdir).run()
    elif hasattr(campaign, "run_campaign"):
        campaign.run_campaign(spec, storage_url=storage_url, policy="auto", workers=0)
    else:
        raise PhasedUnavailable("engine.campaign has neither Coordinator nor run_campaign")


def _read_phased_events(problem: BenchProblem, spec: CampaignSpec, storage_url: str) -> list[Event]:
    from engine.store.ledger import Ledger
    from engine.store.storage import open_storage

    storage = open_storage(storage_url, heartbeat=False)
    ledger = Ledger(storage, spec.name)
    top = problem.levels[problem.top_level]
    events: list[Event] = []
    for index, sprint in enumerate(spec.sprints):
        record = ledger.sprint_record(index)
        if record is None:
            continue
        fidelity = record.fidelity
        at_top = all(fidelity.get(k) == v for k, v in top.items())
        study = optuna.load_study(study_name=record.study, storage=storage)
        for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
            if not t.state.is_finished():
                continue
            cost = float(t.user_attrs.get("cost", 0.0))
            params = {**record.fixed, **t.params}
            loss = _loss(problem, t.value) if at_top and t.state == optuna.trial.TrialState.COMPLETE else None
            events.append(Event(cost, loss, params))
    return events


PHASED_DIAGNOSTICS: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (problem, seed) -> one row per sprint


def quickstart_sprints(problem: BenchProblem, budget: float, path: Path = QUICKSTART) -> list[dict[str, Any]]:
    """The shipped quickstart's plan (campaigns/quickstart.toml), scaled to the budget.

    Its sprints keep their samplers, pruners, seeds, probes and gate rules; their fidelity levels map
    onto the problem's by position (first = lowest, last = highest, the rest to the middle). Every
    sprint but the last keeps its n_trials, capped at its share of the quickstart's own
    fidelity-weighted cost applied to B; the last gets what is left of B.
    """
    data = tomllib.loads(path.read_text())
    levels = list(data["fidelity"]["levels"])
    mine = list(problem.levels)
    knobs = data["fidelity"].get("cost_knobs", [])
    top = data["fidelity"]["levels"][levels[-1]]

    def level_for(name: str) -> str:
        i = levels.index(name)
        if i == 0:
            return mine[0]
        if i == len(levels) - 1:
            return mine[-1]
        return mine[len(mine) // 2]

    own_cost = [
        s.get("n_trials", 0) * trial_cost(data["fidelity"]["levels"][s["fidelity"]], top, knobs, None)
        for s in data["sprints"]
    ]
    total = max(sum(own_cost), 1e-9)
    sprints, spent = [], 0.0
    for i, sprint in enumerate(data["sprints"]):
        out = {k: v for k, v in sprint.items() if k not in ("n_trials", "budget_cost", "timeout_s", "budget_seconds")}
        out["fidelity"] = level_for(sprint["fidelity"])
        cost = problem.level_cost(out["fidelity"])
        if i == len(data["sprints"]) - 1:
            out["budget_cost"] = max(budget - spent, 1e-6)
        else:
            cap = int(math.floor(own_cost[i] / total * budget / cost + 1e-9))
            out["n_trials"] = max(1, out.get("seed_top", 0), min(sprint["n_trials"], cap))
            spent += out["n_trials"] * cost
        sprints.append(out)
    return sprints


def _phased_run(problem, seed, budget, workdir, sprints, tag, gate=None):
    spec_dir = Path(workdir) / f"{problem.name}-{tag}-{seed}"
    spec_dir.mkdir(parents=True, exist_ok=True)
    storage_url = f"journal://{(spec_dir / 'journal.log').resolve()}"
    spec = problem.spec(sprints, seed=seed, name=f"bench-{problem.name}-{seed}", storage=None, gate=gate)
    _run_campaign_in_process(spec, storage_url, spec_dir)
    if problem.optima and tag == "phased":
        PHASED_DIAGNOSTICS[(problem.name, seed)] = diagnose_phased(problem, spec, storage_url)
    return _read_phased_events(problem, spec, storage_url)


_PHASED_EVENTS: dict[tuple[str, int, float], tuple[str, list[Event]]] = {}  # the benchmark plan's runs, by plan


def _plan_key(sprints: list[dict[str, Any]], gate: dict[str, Any] | None) -> str:
    rules = GateRules(**(gate or {})).model_dump()
    plan = [SprintSpec(**s).model_dump() for s in sprints]  # defaults filled in: the same plan, the same key
    return json.dumps([plan, rules], sort_keys=True, default=str)


def run_phased(problem, seed, budget, workdir):
    sprints = phased_sprints(problem, budget)
    events = _phased_run(problem, seed, budget, workdir, sprints, "phased")
    _PHASED_EVENTS[(problem.name, seed, budget)] = (_plan_key(sprints, None), events)
    return events


def run_quickstart(problem, seed, budget, workdir):
    gate = tomllib.loads(QUICKSTART.read_text()).get("gate")
    sprints = quickstart_sprints(problem, budget)
    cached = _PHASED_EVENTS.get((problem.name, seed, budget))
    if cached and cached[0] == _plan_key(sprints, gate):
        return list(cached[1])  # the same plan, gate rules and seed: the same deterministic run
    return _phased_run(problem, seed, budget, workdir, sprints, "quickstart", gate=gate)


def _spearman(a: list[float], b: list[float]) -> float:
    rho = spearman(a, b)  # the gate's own rank correlation (scipy.stats.spearmanr)
    return math.nan if rho is None else rho


def diagnose_phased(problem: BenchProblem, spec: CampaignSpec, storage_url: str) -> list[dict[str, Any]]:
    """Per sprint of a finished phased run on a test function (whose optimum is known):

    volume   the sprint's space as a share of the original box (product of per-parameter widths,
             log parameters in log space)
    opt_in   whether the sprint's space holds a global optimum (every coordinate inside its range)
    cut      the parameters whose range excludes the optimum nearest to the box
    rho      Spearman rank correlation, over the sprint's completed trials, between the values it
             observed at its fidelity and their true (noise-free, highest-fidelity) regret
    rho_top  the same over its top-k (the trials the next gate narrows on)
    found    the smallest true regret among the sprint's configurations
    picked   the true regret of the sprint's observed best
    """
    from engine.store.ledger import Ledger
    from engine.store.storage import open_storage

    storage = open_storage(storage_url, heartbeat=False)
    ledger = Ledger(storage, spec.name)
    original = ledger.original_space() or {}
    rows = []
    for index, sprint in enumerate(spec.sprints):
        record = ledger.sprint_record(index)
        if record is None:
            continue
        space = record.space
        volume = 1.0
        for name, r in space.items():
            o = original[name]
            if o["type"] not in ("float", "int"):
                continue
            if r["type"] == "fixed":
                volume *= 0.0
                continue
            t = (lambda v: math.log(v)) if o.get("log") else (lambda v: v)
            volume *= (t(r["high"]) - t(r["low"])) / (t(o["high"]) - t(o["low"]))

        def outside(x):
            bad = []
            for name, r in space.items():
                if r["type"] == "fixed":
                    if not math.isclose(float(r["value"]), x[name], rel_tol=1e-6, abs_tol=1e-6):
                        bad.append(name)
                elif r["type"] in ("float", "int") and not r["low"] - 1e-9 <= x[name] <= r["high"] + 1e-9:
                    bad.append(name)
            return bad

        cuts = [outside(x) for x in problem.optima]
        study = optuna.load_study(study_name=record.study, storage=storage)
        done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
        done.sort(key=lambda t: _loss(problem, t.value))
        truths = [problem.truth({**record.fixed, **t.params}) for t in done]
        observed = [_loss(problem, t.value) for t in done]
        k = spec.gate_rules(index).top_k
        proposal = ledger.proposal_record(index)  # the gate after this sprint (one gate per sprint under `auto`)
        agreement = (proposal.evidence.agreement if proposal else None) or {}
        rows.append(
            {
                "sprint": record.name,
                "level": record.level,
                "sampler": record.sampler,
                "trials": len(done),
                "volume": volume,
                "opt_in": any(not c for c in cuts),
                "cut": min(cuts, key=len) if cuts else [],
                "rho": _spearman(observed, truths),
                "rho_top": _spearman(observed[:k], truths[:k]),
                "found": min(truths) if truths else math.nan,
                "picked": truths[0] if truths else math.nan,
                "agreement": agreement.get("rho"),
                "agreement_pairs": agreement.get("pairs", 0),
            }
        )
    return rows


def print_diagnostics(out=None) -> None:
    out = out or sys.stdout
    if not PHASED_DIAGNOSTICS:
        return
    print(
        "\n## phased, per sprint (volume: share of the box; opt in: the box holds an optimum, else the parameters that cut it off;"
        "\n##   rho: rank correlation of observed values with the true regret, all / top-k; found / picked: true regret of the best"
        "\n##   configuration evaluated / of the observed best; gate agree: at the gate after the sprint, the rank agreement"
        "\n##   between the lower fidelity and this one on the n configurations the sprint re-evaluated)",
        file=out,
    )
    print(
        f"{'problem':<11}{'seed':>5}  {'sprint':<9}{'trials':>7}{'volume':>9}  {'opt in':<14}{'rho':>6}{'rho top':>8}"
        f"{'found':>10}{'picked':>10}{'gate agree':>14}",
        file=out,
    )
    for (pname, seed), rows in PHASED_DIAGNOSTICS.items():
        for r in rows:
            opt = "yes" if r["opt_in"] else "no: " + ",".join(r["cut"])
            agree = "-" if r.get("agreement") is None else f"{r['agreement']:.2f} (n={r['agreement_pairs']})"
            print(
                f"{pname:<11}{seed:>5}  {r['sprint']:<9}{r['trials']:>7}{_fmt(r['volume']):>9}  {opt:<14}"
                f"{r['rho']:>6.2f}{r['rho_top']:>8.2f}{_fmt(r['found']):>10}{_fmt(r['picked']):>10}"
                f"{agree:>14}",
                file=out,
            )


RUNNERS = {
    "random": run_random,
    "skopt-gp": run_skopt,
    "tpe-hyperband": run_tpe_hyperband,
    "tpe-curve": run_tpe_curve,
    "gp": run_gp,
    "phased": run_phased,
    "quickstart": run_quickstart,
}


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Run:
    problem: str
    method: str
    seed: int
    events: list[Event]
    seconds: float
    curve: list[tuple[float, float]] = field(default_factory=list)  # (cumulative cost, regret) steps
    final: float = math.nan
    auc: float = math.nan


def score_runs(problem: BenchProblem, runs: list[Run], budget: float) -> str:
    """Fill each run's best-so-far curve, final regret and normalised area; returns how regret is measured."""
    losses = [e.loss for r in runs for e in r.events if e.loss is not None]
    best_known = min(losses) if losses else 0.0
    worst_known = max(losses) if losses else 0.0
    if problem.truth is not None:
        truth = lambda e: problem.truth(e.params)  # noqa: E731
        initial = problem.initial_regret
    else:
        truth = lambda e: e.loss - best_known  # noqa: E731
        initial = worst_known - best_known if problem.initial_regret is None else problem.initial_regret
    for run in runs:
        spent, best_loss, regret = 0.0, math.inf, initial
        curve = [(0.0, initial)]
        for e in run.events:
            spent += e.cost
            if spent > budget + 1e-9:
                break
            if e.loss is not None and e.loss < best_loss:
                best_loss, regret = e.loss, truth(e)
                curve.append((spent, regret))
        run.curve = curve
        run.final = curve[-1][1]
        area = 0.0
        for (c0, r0), (c1, _) in zip(curve, curve[1:] + [(budget, None)], strict=False):
            area += r0 * (min(c1, budget) - c0)
        run.auc = area / budget
    if problem.truth is not None:
        return f"true regret (noise-free high fidelity minus the optimum); uninformed guess {initial:.3g}"
    metric = problem.base.get("metric", {}).get("name", "metric")
    best = -best_known if problem.maximize else best_known
    return f"regret = {metric} distance to the best value any run found ({best:.6g}); uninformed guess {initial:.3g}"


def cost_to_reach(run: Run, target: float) -> float:
    for cost, regret in run.curve:
        if regret <= target + 1e-12:
            return cost
    return math.inf


def quartiles(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    return float(np.percentile(a, 25)), float(np.median(a)), float(np.percentile(a, 75))


def summarise(problem: BenchProblem, runs: list[Run], budget: float) -> dict[str, dict[str, Any]]:
    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    target = None
    if REFERENCE in by_method:
        target = float(np.median([r.final for r in by_method[REFERENCE]]))
    flat_finals = [float(np.median([r.final for r in by_method[m]])) for m in FLAT_METHODS if m in by_method]
    best_flat = min(flat_finals) if flat_finals else None

    def lower_median_reach(rs: list[Run], goal: float | None) -> float:
        """Lower median over seeds of the cost to reach `goal`, counting "never" as infinite, over B."""
        if goal is None:
            return math.nan
        reach = sorted(cost_to_reach(r, goal) for r in rs)
        value = float(np.percentile(reach, 50, method="lower"))
        return value / budget if math.isfinite(value) else math.inf

    table = {}
    for method, rs in by_method.items():
        q1, med, q3 = quartiles([r.final for r in rs])
        reach = sorted(cost_to_reach(r, target) for r in rs) if target is not None else []
        # lower median over seeds, counting "never" as infinite: finite when at least half reach it
        reach_median = float(np.percentile(reach, 50, method="lower")) if reach else math.nan
        table[method] = {
            "final_median": med,
            "final_q1": q1,
            "final_q3": q3,
            "auc_median": float(np.median([r.auc for r in rs])),
            "budget_to_target": reach_median / budget
            if math.isfinite(reach_median)
            else (math.inf if reach else math.nan),
            "target": target,
            # where a phased plan first matches the best flat method's final median (fraction of B)
            "budget_to_best_flat": lower_median_reach(rs, best_flat * (1 + MATCH_TOLERANCE) + 1e-12)
            if best_flat is not None
            else math.nan,
            "best_flat": best_flat,
            "seconds_median": float(np.median([r.seconds for r in rs])),
            "trials_median": float(np.median([len(r.events) for r in rs])),
            "seeds": [r.seed for r in rs],
            "finals": [r.final for r in rs],
        }
    return table


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def print_problem(name: str, table: dict[str, dict[str, Any]], budget: float, out=None, how: str = "") -> None:
    out = out or sys.stdout
    target = next(iter(table.values()))["target"] if table else None
    print(
        f"\n## {name}  (budget {budget:g} full-fidelity units; target = {REFERENCE} final median {_fmt(target) if target is not None else 'n/a'})",
        file=out,
    )
    if how:
        print(f"   {how}", file=out)
    print(
        f"{'method':<15}{'final regret median [IQR]':<32}{'AUC/B':>10}{'budget→target':>15}{'→best flat':>12}"
        f"{'trials':>8}{'s/run':>8}",
        file=out,
    )
    for method in METHODS:
        if method not in table:
            continue
        row = table[method]
        final = f"{_fmt(row['final_median'])} [{_fmt(row['final_q1'])}, {_fmt(row['final_q3'])}]"
        reach = row["budget_to_target"]
        reach_s = (
            "n/a"
            if isinstance(reach, float) and math.isnan(reach)
            else ("-" if math.isinf(reach) else f"{reach:.2f}×B")
        )
        flat = row.get("budget_to_best_flat", math.nan)
        flat_s = "n/a" if math.isnan(flat) else ("-" if math.isinf(flat) else f"{flat:.2f}×B")
        print(
            f"{method:<15}{final:<32}{_fmt(row['auc_median']):>10}{reach_s:>15}{flat_s:>12}"
            f"{row['trials_median']:>8.0f}{row['seconds_median']:>8.1f}",
            file=out,
        )


MATCH_TOLERANCE = 0.10  # "matches" = a median final regret within 10% of the best flat method's


def summary_lines(tables: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Per method across problems: matches/beats of the best other flat method, mean rank, budget to target."""
    lines = []
    methods = [m for m in METHODS if any(m in t for t in tables.values())]
    for method in methods:
        ranks, beats, n, reach = [], 0, 0, []
        for table in tables.values():
            if method not in table:
                continue
            n += 1
            mine = table[method]["final_median"]
            ranks.append(1 + sum(table[m]["final_median"] < mine - 1e-12 for m in table))
            flat = [table[m]["final_median"] for m in FLAT_METHODS if m in table and m != method]
            if flat and mine <= min(flat) * (1 + MATCH_TOLERANCE) + 1e-12:
                beats += 1
            reach.append(table[method]["budget_to_target"])
        known = [r for r in reach if not math.isnan(r)]
        if not known:
            reach_s = "n/a"
        else:
            med = float(np.median(known))
            reach_s = "not reached" if math.isinf(med) else f"{med:.2f}×B"
        lines.append(
            f"{method:<15} matches (within {MATCH_TOLERANCE:.0%}) or beats the best other flat method on {beats}/{n} problems; "
            f"mean rank {np.mean(ranks):.2f}; median budget to reach {REFERENCE}'s final median: {reach_s}"
        )
    return lines


# ---------------------------------------------------------------------------------------------


def run_suite(
    problems: list[str],
    methods: list[str],
    seeds: list[int],
    budget: float,
    workdir: Path,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, list[Run]], list[str], dict[str, str]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    all_runs: dict[str, list[Run]] = {}
    notes: list[str] = []
    how: dict[str, str] = {}
    for pname in problems:
        try:
            problem = make_problem(pname)
        except (FileNotFoundError, OSError) as err:
            notes.append(f"{pname}: skipped ({err})")
            log(f"[skip] {pname}: {err}")
            continue
        runs: list[Run] = []
        for method in methods:
            for seed in seeds:
                t0 = time.perf_counter()
                try:
                    events = RUNNERS[method](problem, seed, budget, workdir)
                except PhasedUnavailable as err:
                    if str(err) not in notes:
                        notes.append(f"phased: skipped ({err})")
                    log(f"[skip] phased: {err}")
                    break
                runs.append(Run(problem.name, method, seed, events, time.perf_counter() - t0))
                log(f"[{problem.name}] {method} seed {seed}: {len(events)} trials, {runs[-1].seconds:.1f}s")
        how[problem.name] = score_runs(problem, runs, budget)
        tables[problem.name] = summarise(problem, runs, budget)
        all_runs[problem.name] = runs
    return tables, all_runs, notes, how


def plot_curves(all_runs: dict[str, list[Run]], budget: float, path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    grid = np.linspace(0, budget, 201)
    fig, axes = plt.subplots(1, len(all_runs), figsize=(4 * len(all_runs), 3.2), squeeze=False)
    for ax, (pname, runs) in zip(axes[0], all_runs.items(), strict=False):
        for method in METHODS:
            rs = [r for r in runs if r.method == method]
            if not rs:
                continue
            ys = []
            for r in rs:
                costs = [c for c, _ in r.curve]
                idx = np.searchsorted(costs, grid, side="right") - 1
                ys.append([r.curve[i][1] for i in idx])
            ax.plot(grid, np.maximum(np.median(ys, axis=0), 1e-9), label=method)
        ax.set_yscale("log")
        ax.set_title(pname)
        ax.set_xlabel("fidelity-weighted cost")
    axes[0][0].set_ylabel("simple regret (median)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"plot written to {path}"


def _finite_json(obj: Any) -> Any:
    """JSON without Infinity/NaN: non-finite numbers become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.efficiency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="quick")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. N-1)")
    parser.add_argument("--seed-list", help="explicit comma-separated seeds (overrides --seeds)")
    parser.add_argument("--problems", help="comma-separated problems (default: the suite's)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    parser.add_argument("--budget", type=float, help="fidelity-weighted budget per run (default: the suite's)")
    parser.add_argument("--workdir", help="where the phased runs keep their storages (default: a temporary folder)")
    parser.add_argument("--json", help="write all results to this JSON file")
    parser.add_argument("--plot", help="write a PNG of the median anytime curves (needs matplotlib)")
    parser.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="per sprint of every phased run: the space kept, whether it "
        "holds the optimum, how well the sprint's fidelity ranks configurations (test functions only)",
    )
    args = parser.parse_args(argv)

    suite = SUITES[args.suite]
    problems = args.problems.split(",") if args.problems else list(suite["problems"])
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in RUNNERS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    budget = float(args.budget or suite["budget"])
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))

    import warnings

    # skopt re-draws a random point when its optimum sits on an evaluated corner; it says so each time
    warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        tables, all_runs, notes, how = run_suite(problems, methods, seeds, budget, workdir, log)
    elapsed = time.perf_counter() - started

    print(f"# search efficiency: suite {args.suite}, seeds {seeds}, budget {budget:g}, {elapsed:.0f}s")
    for pname, table in tables.items():
        print_problem(pname, table, budget, how=how.get(pname, ""))
    print("\n## summary")
    for line in summary_lines(tables):
        print(line)
    for note in notes:
        print(f"note: {note}")
    if args.explain:
        print_diagnostics()
    if args.plot:
        print(plot_curves(all_runs, budget, Path(args.plot)))
    if args.json:
        payload = {
            "suite": args.suite,
            "seeds": seeds,
            "budget": budget,
            "seconds": elapsed,
            "tables": tables,
            "curves": {
                p: [{"method": r.method, "seed": r.seed, "curve": r.curve} for r in rs] for p, rs in all_runs.items()
            },
            "notes": notes,
            "regret": how,
            "phased_diagnostics": {f"{p}/{seed}": rows for (p, seed), rows in PHASED_DIAGNOSTICS.items()},
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_finite_json(payload), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
