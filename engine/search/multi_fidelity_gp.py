"""Multi-fidelity GP (sampler "mf-gp"): one Gaussian process over the parameters and the fidelity,
fitted on this sprint's trials and every earlier sprint's, asked for the best point at full fidelity.

Why: short runs are biased (they prefer a larger learning rate and less regularisation than full
training) but still informative, and a plain GP in a later sprint throws them away. A GP over
(x, z), with its own length scale for z, learns how far the cheap trials' picture carries to the full
fidelity: where the fidelities agree, the cheap trials shape the full-fidelity model; where they
disagree, the higher-fidelity trials win as they accumulate, because the correlation decays with
the distance in z (the multi-fidelity GP of Kandasamy et al. 2017, BOCA, and of Swersky et al. 2013).

* Fidelity coordinate z (engine.execution.sprint.fidelity_coordinate): 0 at the cheapest level,
  1 at the full one, linear in the log of the level's cost.
* Surrogate: Optuna's own GP (optuna._gp: Matern 5/2 ARD kernel, its priors and fit), the inputs
  being the normalised parameters and z. The parameters are normalised over the sprint's box, so an
  earlier trial outside the box sits outside [0, 1]: it still informs the model, further away.
  Earlier trials further than `neighbourhood` box widths from the box are left out: inside a narrow
  box their values would set the scale the GP standardises to and blur the differences that matter
  there (measured on Branin: regret 0.03 with them, see docs/benchmarks.md). At most `max_earlier`
  (300) of them are fitted: nearest to the box, then the highest fidelity, then the best value.
* Acquisition: log-EI at z = 1 against the best posterior mean at z = 1 among the configurations
  evaluated so far (a plug-in incumbent: a low-fidelity or noisy value is not a full-fidelity value),
  optimised over the sprint's box with Optuna's mixed optimiser (QMC samples, then local search
  from the best starts and from the incumbent). Running trials enter as kriging believers at their
  own fidelity, so parallel workers spread out.
* Hand-off: from `handoff_trials` completed trials of its own on (default 10), the sampler is
  Optuna's GPSampler on those trials alone. The earlier trials tell it where to look; one noise
  level for every fidelity then blurs the last digits, which the plain GP resolves (measured:
  Currin 2.6e-4 without the hand-off, 8.2e-6 with it; Branin 2.4e-3 and 9.5e-4; docs/benchmarks.md).

This module relies on Optuna's private GP package, as engine.search.cost_aware_gp does;
tests/test_multi_fidelity_gp.py exercises every part it uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from optuna._gp import acqf as optuna_acqf
from optuna._gp import gp as optuna_gp
from optuna._gp import optim_mixed, prior
from optuna._gp.search_space import SearchSpace
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, GPSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from engine.search.observations import Observation


class FullFidelityLogEI(optuna_acqf.BaseAcquisitionFunc):
    """log-EI of the GP over (x, z) with z held at `z_target`, as a function of x alone."""

    def __init__(self, gpr: optuna_gp.GPRegressor, search_space: SearchSpace, z_target: float, threshold: float):
        self._gpr = gpr
        self._z = z_target
        self._threshold = threshold
        super().__init__(gpr.length_scales[:-1], search_space)

    def with_z(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.full((*x.shape[:-1], 1), self._z, dtype=torch.float64)], dim=-1)

    def eval_acqf(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self._gpr.posterior(self.with_z(x))
        return optuna_acqf.logei(mean=mean, var=var + 1e-12, f0=self._threshold)


class MultiFidelityGPSampler(BaseSampler):
    def __init__(
        self,
        search_space: dict[str, BaseDistribution],
        *,
        seed: int | None = None,
        observations: list[Observation] | tuple[Observation, ...] = (),
        fidelity_z: float = 1.0,
        z_target: float = 1.0,
        n_startup_trials: int = 10,
        n_preliminary_samples: int = 1024,
        n_local_search: int = 6,
        neighbourhood: float = 0.5,
        max_earlier: int = 300,
        handoff_trials: int | None = 10,
        deterministic_objective: bool = False,
    ):
        self._space = {n: d for n, d in search_space.items() if not d.single()}
        self._observations = list(observations)
        self._z_here = float(fidelity_z)
        self._z_target = float(z_target)
        self._n_startup = n_startup_trials
        self._n_preliminary = n_preliminary_samples
        self._n_local_search = n_local_search
        self._neighbourhood = neighbourhood  # earlier trials count within this many box widths of the box
        self._max_earlier = max_earlier
        self._deterministic = deterministic_objective
        self._rng = np.random.RandomState(seed)
        self._independent = RandomSampler(seed=seed)
        # From `handoff_trials` own completed trials on, Optuna's plain GP on them alone (None: never)
        self._handoff = handoff_trials
        self._plain = GPSampler(seed=seed, n_startup_trials=0, deterministic_objective=deterministic_objective)
        self._kept: optuna_gp.GPRegressor | None = None  # the last fit: warm start of the next
        self.last: dict[str, Any] = {}  # what the last ask saw (for tests and --explain)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._independent.reseed_rng()
        self._plain.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def usable_observations(self, search_space: dict[str, BaseDistribution]) -> list[Observation]:
        """The earlier trials that have every parameter of the space, with a categorical value it knows."""
        usable = []
        for obs in self._observations:
            if not np.isfinite(obs.value) or any(n not in obs.params for n in search_space):
                continue
            if any(
                isinstance(d, CategoricalDistribution) and obs.params[n] not in d.choices
                for n, d in search_space.items()
            ):
                continue
            usable.append(obs)
        return usable

    def closest(self, earlier: list[Observation], x_earlier: np.ndarray, direction: StudyDirection) -> np.ndarray:
        """Positions of the `max_earlier` earlier trials that say most about the box: nearest to it first,
        then the highest fidelity, then the best value. The GP's fit grows with the cube of its data (an
        ask takes 0.26 s with 300 earlier trials in 6-D, 9 s with 1,000)."""
        outside = np.sum(np.clip(-x_earlier, 0.0, None) ** 2 + np.clip(x_earlier - 1.0, 0.0, None) ** 2, axis=1)
        sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
        order = sorted(range(len(earlier)), key=lambda i: (outside[i], -earlier[i].z, sign * earlier[i].value))
        return np.array(order[: self._max_earlier], dtype=np.intp)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING), use_cache=True)
        done = [
            t
            for t in trials
            if t.state == TrialState.COMPLETE and t.value is not None and all(n in t.params for n in search_space)
        ]
        if self._handoff is not None and len(done) >= self._handoff:
            self.last = {"trials": len(done), "earlier": 0, "handoff": True}
            return self._plain.sample_relative(study, trial, search_space)
        earlier = self.usable_observations(search_space)
        space = SearchSpace(search_space)
        x_earlier = space.get_normalized_params([trial] * len(earlier), [o.params for o in earlier])
        # Only the earlier trials near the box: far ones say nothing about it, and their values would
        # set the scale the GP standardises to, blurring the differences inside a narrow box.
        near = np.flatnonzero(
            np.all((x_earlier >= -self._neighbourhood) & (x_earlier <= 1.0 + self._neighbourhood), axis=1)
        )
        if len(near) > self._max_earlier:
            near = near[self.closest([earlier[i] for i in near], x_earlier[near], study.direction)]
        earlier = [earlier[i] for i in near]
        if len(done) + len(earlier) < self._n_startup:
            return {}
        x = np.vstack([space.get_normalized_params(done), x_earlier[near]])
        z = np.array([self._z_here] * len(done) + [o.z for o in earlier])
        x = np.hstack([x, z[:, None]])
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0  # the GP maximises
        values = sign * np.array([float(t.value) for t in done] + [o.value for o in earlier])  # type: ignore[arg-type]
        y = (values - values.mean()) / max(float(values.std()), 1e-10)
        is_categorical = np.append(space.is_categorical, False)
        cache = (
            self._kept
            if self._kept is not None and len(self._kept.inverse_squared_lengthscales) == x.shape[1]
            else None
        )
        gpr = optuna_gp.fit_kernel_params(
            X=x,
            Y=y,
            is_categorical=is_categorical,
            log_prior=prior.default_log_prior,
            minimum_noise=prior.DEFAULT_MINIMUM_NOISE_VAR,
            deterministic_objective=self._deterministic,
            gpr_cache=cache,
        )
        self._kept = gpr
        # The incumbent: the best posterior mean at full fidelity among the configurations evaluated.
        at_target = torch.from_numpy(np.hstack([x[:, :-1], np.full((len(x), 1), self._z_target)]))
        with torch.no_grad():
            mean_at_target = gpr.posterior(at_target)[0].numpy()
        best = int(np.argmax(mean_at_target))
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number != trial.number]
        running = [t for t in running if all(n in t.params for n in search_space)]
        if running:
            pending = np.hstack([space.get_normalized_params(running), np.full((len(running), 1), self._z_here)])
            x_running = torch.from_numpy(pending)
            with torch.no_grad():
                gpr.append_running_data(x_running, gpr.posterior(x_running)[0])
        acqf = FullFidelityLogEI(gpr, space, self._z_target, float(mean_at_target[best]))
        start = np.clip(x[best : best + 1, :-1], 0.0, 1.0)  # an earlier trial may lie outside the box
        normalized, value = optim_mixed.optimize_acqf_mixed(
            acqf,
            warmstart_normalized_params_array=start,
            n_preliminary_samples=self._n_preliminary,
            n_local_search=self._n_local_search,
            tol=1e-4,
            rng=self._rng,
        )
        self.last = {
            "trials": len(done),
            "earlier": len(earlier),
            "z_length_scale": float(gpr.length_scales[-1]),
            "log_ei": float(value),
        }
        return space.get_unnormalized_param(normalized)
