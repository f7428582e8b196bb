"""EEIPU: memoization-aware, cost-aware Bayesian optimization for multi-stage pipelines (sampler "eeipu").

Size (~500 lines): one algorithm: its GP fits, per-stage cost models, candidates and local refinement (what
it shares with the "eeipu-gp" sampler is in engine.search.pipeline_costs).

The acquisition of a candidate x is

    EEIPU(x) = EI(x) * E[1 / C(x)] ** eta

* EI: expected improvement under a Gaussian process on the objective (scikit-learn GP, Matern 5/2).
* C(x) = sum over the pipeline's stages of the stage's cost, plus the trial's unstaged remainder. Each
  stage's log cost has its own GP over the parameters the stage depends on. A stage whose inputs match
  a cached entry (an earlier trial of this sprint ran it with the same values of the stage's
  parameters, and cached it) costs what a cache load costs (~0). E[1/C] is estimated by Monte Carlo
  over the stage GPs' posteriors (common random numbers across candidates).
* eta ("cost cooling") decays linearly from 1 to 0 as the sprint's budget is spent: budget_seconds
  (sum of trials' duration_s) when set, else n_trials; after the budget, cost is ignored (plain EI).
* Candidates: unconstrained ones (uniform, and perturbations of the best configurations) plus, for each
  of the `top_configs` best configurations and each of its cached stages that does not depend on every
  tuned parameter, candidates with that stage's parameters fixed to the configuration's exact values
  and the rest drawn afresh — they reuse the cached prefix. Local refinement rounds then perturb the
  leaders (the best few overall and the best of every prefix group, its prefix kept), so the parameters
  each cached prefix leaves free are optimised, not only sampled.

Which parameters each stage depends on comes from `sampler_options.stages`
(`[{name = "prep", params = ["a", "b"]}, {name = "train", params = ["c"]}]`: each stage's own
parameters, in pipeline order; a stage depends on its own and every earlier stage's), or else from
what the stage runner recorded in the trials (`stages` user attribute: each stage's `params`).

Like engine.search.skopt_sampler, all state is read from the study, so any worker process can ask. The
choice is explained in the trial's system attribute `eeipu` (eta, candidate kind, EI, expected cost).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from engine.search.pipeline_costs import (
    MIN_COST_S,
    BudgetUse,
    CostSamples,
    Distribution,
    PipelineSampler,
    Stage,
    best_first,
    completed_inside,
    objective_value,
    params_inside,
    pipeline_stages,
    prefix_stages,
    running_inside,
    stage_cost_samples,
    supported_distribution,
    unstaged_cost_samples,
)

REST = "_rest"  # the part of a trial outside every recorded stage


def eeipu_acquisition(ei: np.ndarray, inverse_cost: np.ndarray, eta: float) -> np.ndarray:
    """EI x E[1/C]^eta (eta = 0: EI alone)."""
    ei = np.asarray(ei, dtype=float)
    if eta <= 0:
        return ei
    return ei * np.power(np.asarray(inverse_cost, dtype=float), eta)


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """EI for minimisation."""
    sd = np.maximum(sd, 1e-12)
    improvement = best - mu - xi
    z = improvement / sd
    return np.maximum(improvement * norm.cdf(z) + sd * norm.pdf(z), 0.0)


def cost_cooling(spent: float, budget: float, spent_at_start: float = 0.0) -> float:
    """eta: 1 when the search starts (after the random start-up), 0 once the budget is spent."""
    if budget <= spent_at_start:
        return 0.0
    return float(np.clip((budget - spent) / (budget - spent_at_start), 0.0, 1.0))


# --------------------------------------------------------------------------------------- space


class _Space:
    """Parameters <-> unit cube (numeric) / choice index (categorical); GP features one-hot categoricals."""

    def __init__(self, space: dict[str, BaseDistribution]):
        self.names = list(space)
        self.dists = [supported_distribution(space[n]) for n in self.names]

    def to_unit(self, params: dict[str, Any]) -> np.ndarray:
        return np.array([_to_unit(d, params[n]) for n, d in zip(self.names, self.dists, strict=False)], dtype=float)

    def from_unit(self, row: np.ndarray) -> dict[str, Any]:
        return {n: _from_unit(d, u) for n, d, u in zip(self.names, self.dists, row, strict=False)}

    def from_units(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """from_unit for many rows at once, column by column (same values as from_unit row by row)."""
        rows = np.asarray(rows, dtype=float).reshape(-1, len(self.names))
        columns = []
        for j, d in enumerate(self.dists):
            u = np.clip(rows[:, j], 0.0, 1.0)
            if isinstance(d, CategoricalDistribution):
                index = np.rint(rows[:, j]).astype(int) % len(d.choices)
                columns.append([d.choices[i] for i in index])
                continue
            low, high = float(d.low), float(d.high)
            if d.log:
                value = np.exp(math.log(low) + u * (math.log(high) - math.log(low)))
            else:
                value = low + u * (high - low)
            if isinstance(d, IntDistribution):
                value = np.clip(d.low + np.round((value - d.low) / d.step) * d.step, d.low, d.high)
                columns.append([int(v) for v in value])
            else:
                columns.append([float(v) for v in np.clip(value, low, high)])
        return [dict(zip(self.names, values, strict=False)) for values in zip(*columns, strict=False)]

    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.random((n, len(self.names)))
        for j, d in enumerate(self.dists):
            if isinstance(d, CategoricalDistribution):
                u[:, j] = rng.integers(0, len(d.choices), n)
        return u

    def perturb(self, rows: np.ndarray, rng: np.random.Generator, scale: float, columns: list[int]) -> np.ndarray:
        out = rows.copy()
        for j in columns:
            d = self.dists[j]
            if isinstance(d, CategoricalDistribution):
                flip = rng.random(len(out)) < 0.2
                out[flip, j] = rng.integers(0, len(d.choices), int(flip.sum()))
            else:
                out[:, j] = np.clip(out[:, j] + rng.normal(0, scale, len(out)), 0.0, 1.0)
        return out

    def features(self, rows: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
        columns = list(range(len(self.names))) if columns is None else columns
        blocks = []
        for j in columns:
            d = self.dists[j]
            if isinstance(d, CategoricalDistribution):
                blocks.append(np.eye(len(d.choices))[rows[:, j].astype(int)])
            else:
                blocks.append(rows[:, j : j + 1])
        return np.hstack(blocks) if blocks else np.zeros((len(rows), 0))


def _to_unit(d: Distribution, value: Any) -> float:
    if isinstance(d, CategoricalDistribution):
        return float(d.choices.index(value))
    low, high, v = float(d.low), float(d.high), float(value)
    if d.log:
        low, high, v = math.log(low), math.log(high), math.log(v)
    return 0.0 if high == low else (v - low) / (high - low)


def _from_unit(d: Distribution, u: float) -> Any:
    if isinstance(d, CategoricalDistribution):
        return d.choices[int(round(u)) % len(d.choices)]
    # plain floats, not np.clip: this runs for every parameter of every candidate of every ask
    u = min(max(float(u), 0.0), 1.0)
    low, high = float(d.low), float(d.high)
    value = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if d.log else low + u * (high - low)
    if isinstance(d, IntDistribution):
        step = d.step
        return int(min(max(d.low + round((value - d.low) / step) * step, d.low), d.high))
    return min(max(value, low), high)


# --------------------------------------------------------------------------------------- models


def _fit_gp(x: np.ndarray, y: np.ndarray, seed: int, warm: dict | None = None, name: str = "", refit_every: int = 1):
    """A GP with a Matern 5/2 ARD kernel; `warm` keeps each model's last fitted kernel as the next start.

    With `refit_every` > 1 the kernel's hyperparameters are re-optimised only every `refit_every`-th
    fit (one ask adds about one point); in between the GP is conditioned on the new data with the
    kept hyperparameters (one Cholesky, no optimiser): most of an ask's cost, for a model that changes
    little from one point to the next."""
    d = x.shape[1]
    kept = (warm or {}).get((name, d))
    kernel, fits_since = kept if kept is not None else (None, 0)  # fits since the last optimisation
    optimise = kernel is None or fits_since + 1 >= max(1, refit_every)
    if kernel is None:
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
            length_scale=np.full(d, 0.5), length_scale_bounds=(1e-2, 1e2), nu=2.5
        ) + WhiteKernel(1e-4, (1e-9, 1e-1))
    gp = GaussianProcessRegressor(
        kernel=kernel,
        normalize_y=True,
        n_restarts_optimizer=0,
        random_state=seed,
        optimizer="fmin_l_bfgs_b" if optimise else None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        gp.fit(x, y)
    if warm is not None:
        warm[(name, d)] = (gp.kernel_, 0) if optimise else (kernel, fits_since + 1)
    return gp


@dataclass
class _CostModel:
    """Log-cost of one stage: a GP over its parameters, or a constant log-normal."""

    columns: list[int]
    gp: Any = None
    mean: float = 0.0
    sd: float = 0.0
    hit_s: float = 0.0

    def predict(self, space: _Space, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.gp is None:
            return np.full(len(rows), self.mean), np.full(len(rows), self.sd)
        mu, sd = self.gp.predict(space.features(rows, self.columns), return_std=True)
        return mu, np.maximum(sd, 1e-6)


# --------------------------------------------------------------------------------------- sampler


class EEIPUSampler(PipelineSampler):
    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int | None = None,
        stages: list[dict[str, Any]] | None = None,
        budget_seconds: float | None = None,
        n_trials: int | None = None,
        eta: float | None = None,
        n_startup_trials: int = 5,
        n_candidates: int = 512,
        top_configs: int = 5,
        mc_samples: int = 64,
        xi: float = 0.0,
        max_points: int = 256,
        min_cost_fraction: float = 0.01,
        cost_attr: str = "duration_s",
        refit_every: int = 5,
        refine_rounds: int = 2,
    ):
        super().__init__(
            search_space,
            seed=seed,
            stages=stages,
            budget_seconds=budget_seconds,
            n_trials=n_trials,
            eta=eta,
            n_startup_trials=n_startup_trials,
            top_configs=top_configs,
            cost_attr=cost_attr,
        )
        self.n_candidates = n_candidates
        self.mc_samples = mc_samples
        self.xi = xi
        self.max_points = max_points
        self.min_cost_fraction = min_cost_fraction
        self._warm: dict = {}  # fitted kernels, the next fit's starting point (this process only)
        self.refit_every = refit_every  # re-optimise GP hyperparameters every this many new points
        self.refine_rounds = refine_rounds  # local refinement rounds of the leading candidates

    # eta -----------------------------------------------------------------------------------
    def cooled_eta(self, use: BudgetUse | None) -> float:
        """Linear from 1 after the start-up to 0 when the budget is spent; 1 without a budget."""
        return 1.0 if use is None else cost_cooling(use.spent, use.budget, use.spent_at_start)

    # the ask ---------------------------------------------------------------------------------
    def propose(
        self, study, trial: FrozenTrial, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        space = _Space(search_space)
        rng = np.random.default_rng(self.trial_seed(trial, 2**32))
        scored = self.score_candidates(study, trials, space, rng, exclude_trial=trial.number)
        best = int(np.argmax(scored["acquisition"]))
        params = scored["params"][best]
        self.last = {**scored, "choice": best}
        explanation = {
            "eta": round(scored["eta"], 4),
            "kind": scored["kinds"][best],
            "ei": float(scored["ei"][best]),
            "expected_cost_s": float(1.0 / max(scored["inverse_cost"][best], 1e-12)),
            "cached_stages": scored["cached_stages"][best],
        }
        return params, explanation

    def score_candidates(
        self,
        study,
        trials: list[FrozenTrial],
        space: _Space,
        rng: np.random.Generator,
        exclude_trial: int | None = None,
    ) -> dict[str, Any]:
        """Every candidate with its EI, E[1/C], acquisition and kind; the core of the sampler."""
        search = dict(zip(space.names, space.dists, strict=False))
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        done = completed_inside(trials, search)[-self.max_points :]
        x_done = np.array([space.to_unit(t.params) for t in done])
        y_done = np.array([sign * objective_value(t) for t in done])
        running = running_inside(trials, search, exclude_trial)
        x_fit, y_fit = x_done, y_done
        if running:  # constant liar: pending points take the best value, so parallel asks spread out
            x_fit = np.vstack([x_done, [space.to_unit(t.params) for t in running]])
            y_fit = np.concatenate([y_done, np.full(len(running), y_done.min())])
        seed = int(rng.integers(0, 2**31 - 1))
        gp = _fit_gp(space.features(x_fit), y_fit, seed, self._warm, "objective", self.refit_every)

        stages = self.stage_structure(trials, space.names)
        models = self.cost_models(trials, space, stages, seed)
        ranked = best_first(done, study.direction)

        eta = self.eta(study)
        seen = {tuple(t.params[n] for n in space.names) for t in trials if params_inside(t.params, search)}
        normals = rng.standard_normal(self.mc_samples)  # common random numbers: candidates compare on equal draws
        best_y = float(y_done.min())

        def score(rows: np.ndarray, overrides: list[dict[str, Any]], kinds: list[str]) -> dict[str, Any]:
            params = space.from_units(rows)
            for p, fixed in zip(params, overrides, strict=False):
                if fixed:
                    p.update(fixed)
            keep = [i for i, p in enumerate(params) if tuple(p[n] for n in space.names) not in seen]
            params = [params[i] for i in keep]
            units = np.array([space.to_unit(p) for p in params]).reshape(len(params), len(space.names))
            mu, sd = gp.predict(space.features(units), return_std=True)
            ei = expected_improvement(mu, sd, best_y, self.xi)
            inverse_cost, cached_stages = self.inverse_cost(space, stages, models, units, params, normals, done)
            return {
                "params": params,
                "units": units,
                "overrides": [overrides[i] for i in keep],
                "kinds": [kinds[i] for i in keep],
                "ei": ei,
                "inverse_cost": inverse_cost,
                "acquisition": eeipu_acquisition(ei, inverse_cost, eta),
                "cached_stages": cached_stages,
            }

        scored = score(*self.candidates(space, stages, ranked, rng))
        for scale in (0.05, 0.02, 0.008)[: self.refine_rounds]:  # local refinement of the leaders, prefixes kept
            if not scored["params"]:
                break
            leaders = self.leaders(scored)
            rows, overrides, kinds = [], [], []
            for i in leaders:
                fixed = scored["overrides"][i]
                free = [j for j, n in enumerate(space.names) if n not in fixed]
                base = np.repeat(scored["units"][i][None, :], 32, axis=0)
                rows.append(space.perturb(base, rng, scale, free))
                overrides += [fixed] * 32
                kinds += [scored["kinds"][i]] * 32
            more = score(np.vstack(rows), overrides, kinds)
            scored = {
                k: (
                    np.concatenate([scored[k], more[k]])
                    if isinstance(scored[k], np.ndarray) and k != "units"
                    else (np.vstack([scored[k], more[k]]) if k == "units" else scored[k] + more[k])
                )
                for k in scored
            }
        return {**scored, "eta": eta, "stages": [s.name for s in stages]}

    @staticmethod
    def leaders(scored: dict[str, Any], overall: int = 4) -> list[int]:
        """Candidates to refine: the best few overall, and the best of every cached-prefix group, so the
        parameters left free by each prefix are optimised too, not only sampled."""
        order = np.argsort(-scored["acquisition"])
        chosen = [int(i) for i in order[:overall]]
        groups = {k for k in scored["kinds"] if k.startswith("prefix")}
        for i in order:
            kind = scored["kinds"][i]
            if kind in groups:
                groups.discard(kind)
                if int(i) not in chosen:
                    chosen.append(int(i))
            if not groups:
                break
        return chosen

    # pipeline structure and costs ------------------------------------------------------------
    def stage_structure(self, trials: list[FrozenTrial], tuned: list[str]) -> list[Stage]:
        return pipeline_stages(trials, tuned, self._declared)

    def cost_models(
        self, trials: list[FrozenTrial], space: _Space, stages: list[Stage], seed: int
    ) -> dict[str, _CostModel]:
        search = dict(zip(space.names, space.dists, strict=False))
        complete = completed_inside(trials, search)[-self.max_points :]
        models: dict[str, _CostModel] = {}
        for stage in stages + [Stage(REST, tuple(space.names))]:
            columns = [space.names.index(p) for p in stage.params]
            if stage.name == REST:
                unstaged = unstaged_cost_samples(complete, self.cost_attr)
                samples = CostSamples(unstaged.rows, [max(s, MIN_COST_S) for s in unstaged.seconds])
            else:
                samples = stage_cost_samples(complete, stage.name)
            xs = [space.to_unit(complete[i].params) for i in samples.rows]
            ys = [math.log(s) for s in samples.seconds]
            model = _CostModel(columns, hit_s=samples.hit_s)
            if ys:
                model.mean = float(np.mean(ys))
                model.sd = max(float(np.std(ys)), 0.05)
                # The unstaged remainder (setup, bookkeeping) is modelled as a constant: it rarely tracks parameters.
                if stage.name != REST and columns and len(ys) >= 4 and np.ptp(ys) > 1e-9:
                    model.gp = _fit_gp(
                        space.features(np.array(xs), columns),
                        np.array(ys),
                        seed,
                        self._warm,
                        stage.name,
                        self.refit_every,
                    )
            else:
                model.mean, model.sd = math.log(MIN_COST_S), 0.05  # never seen: costs nothing known
            models[stage.name] = model
        return models

    def inverse_cost(
        self,
        space: _Space,
        stages: list[Stage],
        models: dict[str, _CostModel],
        units: np.ndarray,
        params: list[dict[str, Any]],
        normals: np.ndarray,
        done: list[FrozenTrial],
    ):
        """E[1/C] per candidate (Monte Carlo over the stage GPs, on the given standard normal draws)."""
        n, m = len(units), len(normals)
        total = np.zeros((n, m))
        cached_stages: list[list[str]] = [[] for _ in range(n)]
        for stage in stages + [Stage(REST, tuple(space.names))]:
            model = models[stage.name]
            mu, sd = model.predict(space, units)
            draws = np.exp(mu[:, None] + sd[:, None] * normals[None, :])
            if stage.name != REST and stage.cached:
                hit = np.array([stage.is_cached(p) for p in params])
                draws[hit] = model.hit_s
                for i in np.flatnonzero(hit):
                    cached_stages[i].append(stage.name)
            total += draws
        durations = [float(t.user_attrs[self.cost_attr]) for t in done if self.cost_attr in t.user_attrs]
        floor = self.min_cost_fraction * float(np.median(durations)) if durations else 1e-6
        total = np.maximum(total, max(floor, 1e-6))
        return (1.0 / total).mean(axis=1), cached_stages

    # candidates ------------------------------------------------------------------------------
    def candidates(self, space: _Space, stages: list[Stage], ranked: list[FrozenTrial], rng: np.random.Generator):
        n = self.n_candidates
        all_columns = list(range(len(space.names)))
        rows = [space.random(n, rng)]
        kinds = ["random"] * n
        overrides: list[dict[str, Any]] = [{}] * n
        top = ranked[: self.top_configs]
        k = max(8, n // 16)
        for t in top:  # local: the best configurations, every parameter perturbed, at three scales
            for scale in (0.15, 0.05, 0.02):
                base = np.repeat(space.to_unit(t.params)[None, :], k, axis=0)
                rows.append(space.perturb(base, rng, scale, all_columns))
                kinds += [f"local #{t.number}"] * k
                overrides += [{}] * k
        prefixes = prefix_stages(stages, len(space.names))
        for t in top:  # fix a cached prefix of a best configuration, draw the rest afresh or nearby
            for stage in prefixes:
                if not stage.is_cached(t.params):
                    continue
                k = max(16, n // max(1, len(top) * len(prefixes)))  # as many as the unconstrained ones in all
                free = [j for j, name in enumerate(space.names) if name not in stage.params]
                base = np.repeat(space.to_unit(t.params)[None, :], k, axis=0)
                block = space.perturb(base, rng, 0.15, free)  # half nearby ...
                block[: k // 2, free] = space.random(k // 2, rng)[:, free]  # ... half anywhere
                rows.append(block)
                kinds += [f"prefix {stage.name} of #{t.number}"] * k
                overrides += [{p: t.params[p] for p in stage.params}] * k
        return np.vstack(rows), overrides, kinds
