"""Where a running sprint stands: n/N trials, best so far, elapsed time and an ETA from its budget.

A sprint ends at the first of its budgets to run out (n_trials, timeout_s, budget_cost,
budget_seconds), so the ETA is the smallest of the estimates those budgets give at the pace so far.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, cast

from optuna.trial import FrozenTrial, TrialState

from engine.execution.sprint import seconds_spent
from engine.store.records import SprintRecord
from engine.store.schema import COST_ATTR, FINISHED_TRIAL_STATES, RETRY_OF_ATTR


@dataclass(frozen=True)
class SprintProgress:
    sprint: str
    done: int  # finished trials that count against the budget (a failure that was re-run counts once)
    planned: int | None  # n_trials, when the sprint has one
    running: int
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    best_trial: int | None
    elapsed_s: float
    eta_s: float | None  # None: no budget to estimate from, or nothing finished yet
    cost_spent: float
    budget_cost: float | None

    def fields(self) -> dict[str, Any]:
        """The JSON fields of a progress event."""
        return {
            "sprint": self.sprint,
            "done": self.done,
            "planned": self.planned,
            "running": self.running,
            "complete": self.complete,
            "pruned": self.pruned,
            "failed": self.failed,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "elapsed_s": round(self.elapsed_s, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "cost_spent": round(self.cost_spent, 4),
            "budget_cost": self.budget_cost,
        }


def sprint_progress(
    record: SprintRecord, trials: list[FrozenTrial], *, maximize: bool, now: float | None = None
) -> SprintProgress:
    now = time.time() if now is None else now
    rerun = {t.system_attrs.get(RETRY_OF_ATTR) for t in trials} - {None}
    finished = [t for t in trials if t.state in FINISHED_TRIAL_STATES]
    done = sum(1 for t in finished if t.number not in rerun)
    complete = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    # cast: `complete` holds only trials whose value is not None
    best = (max if maximize else min)(complete, key=lambda t: cast(float, t.value)) if complete else None
    started = record.started_ts or min((t.datetime_start.timestamp() for t in trials if t.datetime_start), default=now)
    elapsed = max(0.0, now - started)
    cost_spent = sum(float(t.user_attrs[COST_ATTR]) for t in trials if COST_ATTR in t.user_attrs)
    return SprintProgress(
        sprint=record.name,
        done=done,
        planned=record.n_trials,
        running=sum(1 for t in trials if t.state == TrialState.RUNNING),
        complete=len(complete),
        pruned=sum(1 for t in finished if t.state == TrialState.PRUNED),
        failed=sum(1 for t in finished if t.state == TrialState.FAIL),
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        elapsed_s=elapsed,
        eta_s=_eta(record, trials, done, cost_spent, elapsed, now),
        cost_spent=cost_spent,
        budget_cost=record.budget_cost,
    )


def _eta(
    record: SprintRecord, trials: list[FrozenTrial], done: int, cost_spent: float, elapsed: float, now: float
) -> float | None:
    estimates = []
    if record.timeout_s is not None:
        estimates.append(record.timeout_s - elapsed)
    if elapsed > 0:
        if record.n_trials is not None and done > 0:
            estimates.append((record.n_trials - done) * elapsed / done)
        if record.budget_cost is not None and cost_spent > 0:
            estimates.append((record.budget_cost - cost_spent) * elapsed / cost_spent)
        if record.budget_seconds is not None:
            spent = seconds_spent(trials, now)
            if spent > 0:
                estimates.append((record.budget_seconds - spent) * elapsed / spent)
    estimates = [e for e in estimates if math.isfinite(e)]
    return max(0.0, min(estimates)) if estimates else None


def format_duration(seconds: float | None) -> str:
    """0:42, 12:05, 3:04:10; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def describe_fidelity(fidelity: dict[str, Any]) -> str:
    """`train_fraction=0.17 epochs=1`, not a dict repr."""
    return " ".join(f"{knob}={format_value(value)}" for knob, value in fidelity.items())


def describe_counts(progress: SprintProgress) -> str:
    return f"{progress.complete} complete, {progress.pruned} pruned, {progress.failed} failed" + (
        f", {progress.running} running" if progress.running else ""
    )


def describe_best(progress: SprintProgress) -> str:
    if progress.best_value is None:
        return "best -"
    return f"best {progress.best_value:.6g} (trial {progress.best_trial})"


def done_of_planned(progress: SprintProgress) -> str:
    return f"{progress.done}/{progress.planned}" if progress.planned is not None else f"{progress.done}"


def describe_progress(progress: SprintProgress) -> str:
    """The periodic status line: `explore 23/50 trials (...), best ..., elapsed 1:02, ETA 1:30`."""
    budget = ""
    if progress.budget_cost is not None:
        budget = f", cost {progress.cost_spent:.3g}/{progress.budget_cost:g}"
    return (
        f"{progress.sprint} {done_of_planned(progress)} trials ({describe_counts(progress)}){budget}, "
        f"{describe_best(progress)}, elapsed {format_duration(progress.elapsed_s)}, "
        f"ETA {format_duration(progress.eta_s)}"
    )
