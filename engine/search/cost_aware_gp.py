"""Cost-aware, memoization-aware BO on Optuna's own GP (sampler "eeipu-gp").

Size (~450 lines): one sampler: acquisition, cost terms, prefix groups and the glue to Optuna's private GP.

The acquisition of a candidate x is expected improvement per expected cost, in logs:

    log a(x) = logEI(x) - eta * log E[C(x)]

* logEI: Optuna's GP (optuna._gp: Matern 5/2 ARD kernel, its hyperparameter priors, the numerically
  stable log-EI), the same surrogate GPSampler uses; running trials enter as kriging believers.
* C(x) = sum over the pipeline's stages of the stage's expected cost, plus the trial's unstaged
  remainder. Each stage's log cost has its own GP (the same machinery) over the parameters the
  stage's cache key depends on; E[C] is the log-normal mean. A stage whose parameters are fixed to a
  cached entry's values costs what a cache load costs (~0).
* Candidates: the whole space, and for each of the `top_configs` best configurations and each of its
  cached stages that leaves some parameter free, the free parameters with that prefix fixed (the
  configuration's exact values): the acquisition is optimised over the free parameters only, with
  Optuna's optimiser (QMC preliminary samples, then batched L-BFGS-B / discrete local search from
  the best starts). The best of every group competes on the same log a(x).
* eta: `cooling = "floor"` (default; chosen by measurement, docs/memoization.md) decays linearly from
  1 to `eta_floor` over the budget (budget_seconds of the cost attribute, else n_trials) and stays
  there: cost-awareness never switches off, so a cached prefix keeps winning when its improvement is
  close. `"linear"` decays to 0 (plain log-EI at the end, the original EEIPU schedule); `"none"`
  holds eta at 1.

The pipeline structure (which parameters each stage depends on) and the cached prefixes come from
engine.search.pipeline_costs.pipeline_stages: declared in `sampler_options.stages`, or recorded by the stage runner.

This module relies on Optuna's private GP package (optuna._gp, optuna 5.0.0 as pinned in
pyproject.toml): GPRegressor, fit_kernel_params, logei, SearchSpace, local_search_mixed_batched. A
new Optuna may move them; tests/test_cost_aware_gp.py exercises every one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch
from optuna._gp import acqf as optuna_acqf
from optuna._gp import gp as optuna_gp
from optuna._gp import optim_mixed, prior
from optuna._gp.search_space import SearchSpace
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from engine.search.pipeline_costs import (
    MIN_COST_S,
    BudgetUse,
    PipelineSampler,
    Stage,
    best_first,
    completed_inside,
    objective_value,
    pipeline_stages,
    prefix_stages,
    running_inside,
    stage_cost_samples,
    supported_distribution,
    unstaged_cost_samples,
)

COOLINGS = ("floor", "linear", "none")


def eta_schedule(progress: float, cooling: str, floor: float) -> float:
    """eta after `progress` (0 at the end of the start-up, 1 when the budget is spent)."""
    if cooling == "none":
        return 1.0
    linear = float(np.clip(1.0 - progress, 0.0, 1.0))
    if cooling == "linear":
        return linear
    return max(floor, linear)


def _standardize(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    mean, std = float(np.mean(values)), float(np.std(values))
    std = max(std, 1e-10)
    return (values - mean) / std, mean, std


@dataclass(frozen=True)
class CostTerm:
    """One stage's log-cost model: exp(mean + std * GP) seconds, or a constant when there is no GP."""

    name: str
    columns: tuple[int, ...]  # the full space's columns the stage's cost depends on
    gpr: Any  # optuna._gp.gp.GPRegressor on the standardized log cost, or None
    mean: float
    std: float
    hit_s: float  # what a cache load of this stage costs

    def expected(self, x_full: torch.Tensor) -> torch.Tensor:
        """E[cost] in seconds (log-normal mean) at each row of x_full."""
        if self.gpr is None:
            return torch.full(x_full.shape[:-1], math.exp(self.mean + 0.5 * self.std**2), dtype=torch.float64)
        mu, var = self.gpr.posterior(x_full[..., list(self.columns)])
        return torch.exp(self.mean + self.std * mu + 0.5 * self.std**2 * var)


class PrefixAcquisition(optuna_acqf.BaseAcquisitionFunc):
    """log-EI minus eta x log E[cost] over the free parameters, the fixed ones held at `fixed_values`.

    With nothing fixed it is the whole space. Stages in `cached` cost their hit time; the others their
    GP's expected cost."""

    def __init__(
        self,
        gpr,
        full_space: SearchSpace,
        free_space: SearchSpace,
        free: np.ndarray,
        fixed_values: np.ndarray,
        threshold: float,
        costs: list[CostTerm],
        cached: frozenset[str],
        constant_s: float,
        eta: float,
    ):
        self._gpr = gpr
        self._threshold = threshold
        self._eta = eta
        self._constant_s = constant_s  # the unstaged remainder
        self._costs = [c for c in costs if c.name not in cached]
        self._hits_s = sum(c.hit_s for c in costs if c.name in cached)
        dim = full_space.dim
        self.free = np.asarray(free, dtype=int)
        fixed = np.array([j for j in range(dim) if j not in set(self.free.tolist())], dtype=int)
        self._fixed = torch.from_numpy(np.asarray(fixed_values, dtype=float)[fixed])
        # x_full = cat(x_free, x_fixed)[..., order]: differentiable in the free parameters
        self._order = torch.from_numpy(np.argsort(np.concatenate([self.free, fixed])))
        super().__init__(gpr.length_scales[self.free], free_space)

    def full(self, x_free: torch.Tensor) -> torch.Tensor:
        fixed = self._fixed.expand(*x_free.shape[:-1], len(self._fixed))
        return torch.cat([x_free, fixed], dim=-1)[..., self._order]

    def log_cost(self, x_full: torch.Tensor) -> torch.Tensor:
        total = torch.full(x_full.shape[:-1], self._constant_s + self._hits_s, dtype=torch.float64)
        for term in self._costs:
            total = total + term.expected(x_full)
        return torch.log(total.clamp_min(MIN_COST_S))

    def log_ei(self, x_full: torch.Tensor) -> torch.Tensor:
        mean, var = self._gpr.posterior(x_full)
        return optuna_acqf.logei(mean=mean, var=var + 1e-12, f0=self._threshold)

    def eval_acqf(self, x: torch.Tensor) -> torch.Tensor:
        x_full = self.full(x)
        value = self.log_ei(x_full)
        if self._eta > 0:
            value = value - self._eta * self.log_cost(x_full)
        return value


@dataclass(frozen=True)
class Group:
    """A family of candidates: the whole space (`fixed` empty) or one cached prefix of one configuration."""

    kind: str
    fixed: tuple[str, ...]  # parameter names held at the configuration's values
    values: dict[str, Any]  # their values
    cached: frozenset[str]  # stages those values hit


class CostAwareGPSampler(PipelineSampler):
    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int | None = None,
        stages: list[dict[str, Any]] | None = None,
        budget_seconds: float | None = None,
        n_trials: int | None = None,
        eta: float | None = None,
        cooling: str = "floor",
        eta_floor: float = 0.5,
        n_startup_trials: int = 10,
        top_configs: int = 5,
        n_preliminary_samples: int = 512,
        n_prefix_samples: int = 128,
        n_local_search: int = 4,
        local_search: str = "perturb",
        refit_every: int = 3,
        min_ei_ratio: float = 0.5,
        cost_attr: str = "duration_s",
        deterministic_objective: bool = False,
    ):
        if cooling not in COOLINGS:
            raise ValueError(f"unknown cooling {cooling!r}; known: {', '.join(COOLINGS)}")
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
        self.cooling = cooling
        self.eta_floor = eta_floor
        self.n_preliminary = n_preliminary_samples
        self.n_prefix_samples = n_prefix_samples
        self.n_local_search = n_local_search
        if local_search not in ("perturb", "lbfgs"):
            raise ValueError(f"unknown local_search {local_search!r}; known: perturb, lbfgs")
        self.local_search = local_search  # "lbfgs": Optuna's gradient local search (better optima, ~5x the ask)
        self.refit_every = max(1, refit_every)  # re-optimise kernel hyperparameters every this many fits
        self.min_ei_ratio = min_ei_ratio  # > 0: only candidates with at least this share of the best EI compete
        self.deterministic = deterministic_objective
        self._kept: dict[str, tuple[Any, int]] = {}  # per model: (fitted GP, fits since its optimisation)

    # eta -----------------------------------------------------------------------------------
    def cooled_eta(self, use: BudgetUse | None) -> float:
        """`cooling`'s schedule over the budget's progress; 1 without a budget."""
        return eta_schedule(0.0 if use is None else use.progress, self.cooling, self.eta_floor)

    # models ----------------------------------------------------------------------------------
    def _fit(
        self, name: str, x: np.ndarray, y: np.ndarray, is_categorical: np.ndarray, deterministic: bool, every: int = 0
    ):
        """Optuna's GP fit, warm-started; kernel hyperparameters re-optimised every `refit_every` fits and
        kept in between (the GP is conditioned on the new data with them: one Cholesky, no optimiser)."""
        kept, since = self._kept.get(name, (None, 0))
        if kept is not None and len(kept.inverse_squared_lengthscales) != x.shape[1]:
            kept, since = None, 0
        if kept is not None and since + 1 < (every or self.refit_every):
            gpr = optuna_gp.GPRegressor(
                is_categorical=torch.from_numpy(is_categorical),
                X_train=torch.from_numpy(x),
                y_train=torch.from_numpy(y),
                inverse_squared_lengthscales=kept.inverse_squared_lengthscales,
                kernel_scale=kept.kernel_scale,
                noise_var=kept.noise_var,
            )
            gpr._cache_matrix()
            self._kept[name] = (kept, since + 1)
            return gpr
        gpr = optuna_gp.fit_kernel_params(
            X=x,
            Y=y,
            is_categorical=is_categorical,
            log_prior=prior.default_log_prior,
            minimum_noise=prior.DEFAULT_MINIMUM_NOISE_VAR,
            deterministic_objective=deterministic,
            gpr_cache=kept,
        )
        self._kept[name] = (gpr, 0)
        return gpr

    def cost_terms(
        self, done: list[FrozenTrial], stages: list[Stage], space: SearchSpace, x_done: np.ndarray, names: list[str]
    ) -> tuple[list[CostTerm], float]:
        """Each stage's log-cost model from the trials that computed it (not hit), and the unstaged remainder."""
        terms = []
        for stage in stages:
            columns = tuple(names.index(p) for p in stage.params)
            samples = stage_cost_samples(done, stage.name)
            rows, hit_s = samples.rows, samples.hit_s
            if not samples.seconds:
                terms.append(CostTerm(stage.name, columns, None, math.log(MIN_COST_S), 0.0, hit_s))
                continue
            logs = np.log(samples.seconds)
            gpr = None
            # A stage whose cost hardly varies (timing jitter) is a constant: a GP there buys nothing.
            if columns and len(logs) >= 4 and np.std(logs) > 0.05:
                y, mean, std = _standardize(logs)
                gpr = self._fit(
                    f"cost:{stage.name}",
                    x_done[np.ix_(rows, list(columns))],
                    y,
                    space.is_categorical[list(columns)],
                    deterministic=False,
                    every=3 * self.refit_every,  # costs are smooth and change slowly: refit less often
                )
                terms.append(CostTerm(stage.name, columns, gpr, mean, std, hit_s))
            else:
                terms.append(CostTerm(stage.name, columns, None, float(np.mean(logs)), 0.0, hit_s))
        rest = [max(s, 0.0) for s in unstaged_cost_samples(done, self.cost_attr).seconds]
        return terms, float(np.median(rest)) if rest else 0.0

    # the ask ---------------------------------------------------------------------------------
    def propose(
        self, study, trial: FrozenTrial, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        rng = np.random.RandomState(self.trial_seed(trial, 2**31))
        # No `with torch.device("cpu")` as GPSampler has: its function mode costs ~40% of an ask, and every
        # tensor here comes from numpy (CPU) anyway.
        choice = self.choose(study, trials, search_space, rng, exclude_trial=trial.number)
        return choice["params"], choice["explanation"]

    def choose(
        self,
        study,
        trials: list[FrozenTrial],
        search_space: dict[str, BaseDistribution],
        rng: np.random.RandomState,
        exclude_trial: int | None = None,
    ) -> dict[str, Any]:
        """The best candidate over every group, with the scores behind it (the core of the sampler)."""
        names = list(search_space)
        space = SearchSpace(search_space)
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0  # GP maximises
        done = completed_inside(trials, search_space)
        x_done = space.get_normalized_params(done)
        y, _, _ = _standardize(sign * np.array([objective_value(t) for t in done]))
        gpr = self._fit("objective", x_done, y, space.is_categorical, self.deterministic)
        running = running_inside(trials, search_space, exclude_trial)
        if running:  # kriging believer: pending points take the posterior mean, so parallel asks spread out
            x_running = torch.from_numpy(space.get_normalized_params(running))
            with torch.no_grad():
                gpr.append_running_data(x_running, gpr.posterior(x_running)[0])
        stages = pipeline_stages(trials, names, self._declared)
        costs, rest_s = self.cost_terms(done, stages, space, x_done, names)
        eta = self.eta(study)
        threshold = float(y.max())
        seen = {tuple(t.params.get(n) for n in names) for t in trials if t.state != TrialState.FAIL}

        # A cached stage no tuned parameter decides (featurised data, say) hits for every candidate.
        always = frozenset(s.name for s in stages if not s.params and () in s.cached)
        groups = [Group("space", (), {}, always)] + self.prefix_groups(done, stages, names, study.direction)
        acqfs = [self._acquisition(g, gpr, space, search_space, names, threshold, costs, rest_s, eta) for g in groups]
        # Every group's preliminary samples are scored (cheap, batched); the local search runs from the
        # best few starts over all groups and from each group's best start.
        # (acquisition value, order, group, acquisition, normalised point) per preliminary sample
        starts: list[tuple[float, int, Group, PrefixAcquisition, np.ndarray]] = []
        samples: dict[str, np.ndarray] = {}
        for g, acqf in zip(groups, acqfs, strict=True):
            xs = acqf.search_space.sample_normalized_params(
                self.n_preliminary if not g.fixed else self.n_prefix_samples, rng
            )
            samples[g.kind] = xs
            starts += [(float(v), len(starts), g, acqf, x) for v, x in zip(acqf.eval_acqf_no_grad(xs), xs, strict=True)]
        starts.sort(key=lambda s: (-s[0], s[1]))
        # The best few starts overall and the best start of every group: a prefix group (fewer samples,
        # fewer free parameters) must not lose only because its samples were not refined.
        chosen = starts[: self.n_local_search]
        for g in groups:
            if not any(c[2] is g for c in chosen):
                chosen.append(next(c for c in starts if c[2] is g))
        best_x = x_done[int(np.argmax(y))]  # as GPSampler does: one local search starts at the best point
        scored = []
        for g, acqf in zip(groups, acqfs, strict=True):
            mine = [s[4] for s in chosen if s[2] is g] + [best_x[acqf.free]]
            if mine:
                scored.append(self._refine(g, acqf, space, np.array(mine), rng))
        if eta > 0 and self.min_ei_ratio > 0:
            # The plain log-EI optimum of the space: cost may choose only among candidates whose expected
            # improvement is within `min_ei_ratio` of it, so cheapness never buys a candidate with
            # (almost) nothing to gain — what trapped prefix reuse in one basin on Hartmann-6.
            plain = self._acquisition(groups[0], gpr, space, search_space, names, threshold, costs, rest_s, 0.0)
            xs = samples[groups[0].kind]
            top = np.argsort(-plain.eval_acqf_no_grad(xs))[: self.n_local_search]
            ei_best = self._refine(Group("space (EI)", (), {}, always), plain, space, np.vstack([xs[top], best_x]), rng)
            with torch.no_grad():  # its cost-aware value, to compete with the others on the same scale
                # with trial_params given, the trials only set the row count
                x = torch.from_numpy(space.get_normalized_params(done[:1], [ei_best["params"]]))
                ei_best["value"] = float(acqfs[0].eval_acqf(x)[0])
                ei_best["cost_s"] = float(torch.exp(acqfs[0].log_cost(x))[0])
            scored.append(ei_best)
            floor = ei_best["log_ei"] + math.log(self.min_ei_ratio)
            for item in scored:
                item["admissible"] = item["log_ei"] >= floor or item is ei_best
        order = sorted(range(len(scored)), key=lambda i: (not scored[i].get("admissible", True), -scored[i]["value"]))
        for i in order:
            params = scored[i]["params"]
            if tuple(params[n] for n in names) not in seen:
                break
        else:  # every group's best was evaluated already (a converged study): a random point
            params = space.get_unnormalized_param(space.sample_normalized_params(1, rng)[0])
            i = order[0]
        best = scored[i]
        self.last = {"groups": groups, "scored": scored, "choice": i, "eta": eta, "starts": len(chosen)}
        explanation = {
            "eta": round(eta, 4),
            "kind": best["group"].kind,
            "log_ei": round(best["log_ei"], 4),
            "expected_cost_s": round(best["cost_s"], 6),
            "cached_stages": sorted(best["group"].cached),
        }
        return {"params": params, "explanation": explanation}

    def prefix_groups(
        self, done: list[FrozenTrial], stages: list[Stage], names: list[str], direction: optuna.study.StudyDirection
    ) -> list[Group]:
        """For each of the best configurations, each cached stage that leaves parameters free."""
        ranked = best_first(done, direction)[: self.top_configs]
        groups, keys = [], set()
        for t in ranked:
            for stage in prefix_stages(stages, len(names)):
                values = stage.key(t.params)
                if values not in stage.cached or (stage.params, values) in keys:
                    continue
                keys.add((stage.params, values))
                fixed = set(stage.params)
                cached = frozenset(s.name for s in stages if set(s.params) <= fixed and s.is_cached(t.params))
                groups.append(
                    Group(f"prefix {stage.name} of #{t.number}", stage.params, {p: t.params[p] for p in fixed}, cached)
                )
        return groups

    def _acquisition(self, group: Group, gpr, space, search_space, names, threshold, costs, rest_s, eta):
        free = np.array([j for j, n in enumerate(names) if n not in group.fixed], dtype=int)
        free_space = SearchSpace({names[j]: search_space[names[j]] for j in free})
        fixed_values = np.zeros(len(names))
        if group.fixed:  # the free columns are placeholders: PrefixAcquisition keeps only the fixed ones
            filled = {n: group.values[n] if n in group.values else _any_value(search_space[n]) for n in names}
            fixed_values = space.get_normalized_params([None], [filled])[0]
        return PrefixAcquisition(
            gpr, space, free_space, free, fixed_values, threshold, costs, group.cached, rest_s, eta
        )

    def _refine(
        self, group: Group, acqf: PrefixAcquisition, space: SearchSpace, starts: np.ndarray, rng: np.random.RandomState
    ) -> dict[str, Any]:
        """From the group's starts: Optuna's local search (batched L-BFGS-B, discrete line search), or
        rounds of batched random perturbations at shrinking scales (a fraction of the ask's time)."""
        if self.local_search == "lbfgs":
            xs, fvals = optim_mixed.local_search_mixed_batched(acqf, starts, tol=1e-4)
        else:
            xs, fvals = _perturbation_search(acqf, starts, rng)
        best = int(np.argmax(fvals))
        x_full = acqf.full(torch.from_numpy(xs[best]))
        with torch.no_grad():
            log_ei = float(acqf.log_ei(x_full))
            cost_s = float(torch.exp(acqf.log_cost(x_full)))
        params = space.get_unnormalized_param(x_full.detach().numpy())
        params.update(group.values)  # the exact cached values, not a round trip through the unit cube
        return {"group": group, "params": params, "value": float(fvals[best]), "log_ei": log_ei, "cost_s": cost_s}


def _any_value(dist: BaseDistribution) -> Any:
    """A valid value of the distribution (a placeholder to be overwritten)."""
    supported = supported_distribution(dist)
    return supported.choices[0] if isinstance(supported, CategoricalDistribution) else supported.low


def _perturbation_search(
    acqf: PrefixAcquisition, starts: np.ndarray, rng: np.random.RandomState, per_start: int = 48
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the best of each start and `per_start` Gaussian perturbations of it, at three shrinking scales."""
    space = acqf.search_space
    best_xs = starts.copy()
    best_fvals = acqf.eval_acqf_no_grad(best_xs)
    continuous = ~space.is_categorical
    for scale in (0.08, 0.025, 0.008):
        cloud = np.repeat(best_xs, per_start, axis=0)
        step = rng.normal(0.0, scale, cloud.shape)
        cloud[:, continuous] = np.clip(cloud[:, continuous] + step[:, continuous], 0.0, 1.0)
        for j in np.flatnonzero(space.is_categorical):
            flip = rng.random_sample(len(cloud)) < 0.2
            cloud[flip, j] = rng.randint(0, int(space._bounds[j, 1]), int(flip.sum()))
        values = acqf.eval_acqf_no_grad(cloud).reshape(len(best_xs), per_start)
        winner = values.argmax(axis=1)
        better = values[np.arange(len(best_xs)), winner] > best_fvals
        best_xs[better] = cloud.reshape(len(best_xs), per_start, -1)[better, winner[better]]
        best_fvals[better] = values[better, winner[better]]
    return best_xs, best_fvals
