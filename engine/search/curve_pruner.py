"""Learning-curve extrapolation pruner (`pruner = "curve"`).

After `min_steps` reports, fit a few parametric learning curves to the trial's values (Domhan et al.
2015 in spirit, without the MCMC ensemble): pow3 ``c + a t^-alpha``, exponential ``c + a e^(-b t)``
and log-power ``c + a / (1 + (t / e^b))^alpha``, with t = step + 1 and a >= 0 (the curve improves).
Each is fitted by least squares in (c, a) over a grid of its shape parameters; the form with the
smallest residual wins (a form needs more points than parameters). Its value at the final step, made
optimistic by `sigmas` standard errors (the fit's residual spread, at least `min_rel_sd` of the
curve's range), is compared with the k-th best final value of the study's completed trials: a
trial that cannot reach the current top-k even optimistically is pruned. Fewer than `top_k`
completed trials, or no form that fits, means no pruning. It judges at `min_steps` reports and
then each time the curve has grown by a quarter (4, 5, 7, 9, 12, 15, 19, 24, ...), not every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

# Each form is c + a * g(t; theta): linear in (c, a) for a fixed shape theta. A grid over theta and a
# closed-form least-squares fit of (c, a) per grid point is fast and never fails to converge.
_ALPHAS = np.geomspace(0.02, 8.0, 48)
_RATES = np.geomspace(1e-3, 5.0, 48)
_LP_B, _LP_ALPHA = np.meshgrid(np.linspace(-2.0, 5.0, 12), np.array([0.25, 0.5, 1.0, 2.0, 4.0]))


@dataclass(frozen=True)
class CurveForm:
    name: str
    shapes: Callable[[np.ndarray], np.ndarray]  # t (n,) -> g for every grid point (m, n)
    n_params: int


FORMS = (
    CurveForm("pow3", lambda t: np.power(t[None, :], -_ALPHAS[:, None]), 3),
    CurveForm("exp3", lambda t: np.exp(-_RATES[:, None] * t[None, :]), 3),
    CurveForm(
        "logpower",
        lambda t: 1.0 / np.power(1.0 + t[None, :] / np.exp(_LP_B.ravel()[:, None]), _LP_ALPHA.ravel()[:, None]),
        4,
    ),
)


@dataclass(frozen=True)
class Extrapolation:
    form: str
    final: float  # predicted value at the final step
    sd: float  # its standard error: the fit's residual spread
    rmse: float


def extrapolate(steps: list[int], values: list[float], final_step: int) -> Extrapolation | None:
    """The best-fitting form's prediction at `final_step` (steps are 0-based), or None."""
    t = np.asarray(steps, dtype=float) + 1.0
    y = np.asarray(values, dtype=float)
    if len(t) < 3 or not np.all(np.isfinite(y)):
        return None
    t_final = np.asarray([final_step + 1.0])
    best: Extrapolation | None = None
    for form in FORMS:
        if len(t) <= form.n_params:
            continue
        g = form.shapes(t)  # (m, n)
        g_mean, y_mean = g.mean(axis=1, keepdims=True), y.mean()
        var = np.sum((g - g_mean) ** 2, axis=1)
        ok = var > 1e-12
        if not np.any(ok):
            continue
        a = np.where(ok, np.sum((g - g_mean) * (y - y_mean), axis=1) / np.where(ok, var, 1.0), 0.0)
        c = y_mean - a * g_mean[:, 0]
        sse = np.sum((y[None, :] - (c[:, None] + a[:, None] * g)) ** 2, axis=1)
        sse = np.where(ok & (a >= 0), sse, np.inf)  # a learning curve improves with training
        i = int(np.argmin(sse))
        if not math.isfinite(sse[i]):
            continue
        rmse = float(math.sqrt(sse[i] / max(1, len(t) - form.n_params)))
        final = float(c[i] + a[i] * form.shapes(t_final)[i, 0])
        if math.isfinite(final) and (best is None or rmse < best.rmse):
            best = Extrapolation(form.name, final, rmse, rmse)
    return best


class CurvePruner(optuna.pruners.BasePruner):
    """Prune a trial whose extrapolated final value is unlikely to reach the study's top-k."""

    def __init__(
        self,
        *,
        max_resource: int | None = None,
        min_steps: int = 4,
        top_k: int = 5,
        sigmas: float = 2.0,
        min_rel_sd: float = 0.05,
    ):
        if min_steps < 4:
            raise ValueError("min_steps must be at least 4 (the curve forms have up to 4 parameters)")
        self.max_resource, self.min_steps, self.top_k = max_resource, min_steps, top_k
        self.sigmas, self.min_rel_sd = sigmas, min_rel_sd

    def _threshold(self, study: optuna.Study, final_step: int) -> float | None:
        """The k-th best final value so far, or None with fewer than top_k completed trials."""
        done = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
        if len(done) < self.top_k:
            return None
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        return sorted(done, reverse=maximize)[self.top_k - 1]

    def _checkpoint(self, n_reports: int) -> bool:
        """Judge at min_steps and then every time the curve has grown by a quarter (fits are not free)."""
        n = self.min_steps
        while n < n_reports:
            n = max(n + 1, int(math.ceil(n * 1.25)))
        return n == n_reports

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        reports = trial.intermediate_values
        if len(reports) < self.min_steps or not self._checkpoint(len(reports)):
            return False
        final_step = self.max_resource - 1 if self.max_resource else None
        if final_step is None:  # the longest curve any trial reported so far
            final_step = max((t.last_step or 0) for t in study.get_trials(deepcopy=False))
        last = max(reports)
        if last >= final_step:
            return False
        threshold = self._threshold(study, final_step)
        if threshold is None:
            return False
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        steps = sorted(reports)
        sign = -1.0 if maximize else 1.0  # fit a decreasing loss either way
        values = [sign * reports[s] for s in steps]
        fit = extrapolate(steps, values, final_step)
        if fit is None:
            return False
        sd = max(fit.sd, self.min_rel_sd * (max(values) - min(values)))
        optimistic = fit.final - self.sigmas * sd
        return optimistic > sign * threshold
