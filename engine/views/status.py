"""`hpo-tui status`: the campaign as stored — sprints, trial counts, best, pending gate, decisions.

`status_report` reads it into typed records once; `format_status` renders them as text and
`CampaignStatusReport.to_json` as the `--json` document (also what `Coordinator.run` returns).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.gates.proposal import summary_lines
from engine.spec import CampaignSpec, MetricSpec
from engine.store.ledger import Ledger
from engine.store.queries import best_trial, fail_kind_counts, retried_count, sprint_trials, state_counts
from engine.store.records import CampaignState, Decision, Proposal, ThresholdsResult
from engine.store.schema import COMPLETE, FAIL, PRUNED, RUNNING
from engine.thresholds import format_report


@dataclass(frozen=True)
class SprintStatus:
    """One sprint whose study exists: its record's settings, trial counts and best trial."""

    index: int
    name: str
    study: str
    sampler: str
    pruner: str
    level: str
    fidelity: Mapping[str, Any]
    n_trials: int | None
    status: str
    counts: Mapping[str, int]  # trials by Optuna state name
    tuned: tuple[str, ...]
    # why trials failed (engine.execution.trials.FAIL_KINDS: stale and worker_died are the engine's, not the objective's)
    fail_kinds: Mapping[str, int]
    retried: int
    best_value: float | None
    best_trial: int | None
    best_params: Mapping[str, Any] | None  # the sprint's fixed parameters too

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "study": self.study,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "level": self.level,
            "fidelity": dict(self.fidelity),
            "n_trials": self.n_trials,
            "status": self.status,
            "counts": dict(self.counts),
            "tuned": list(self.tuned),
            "fail_kinds": dict(self.fail_kinds),
            "retried": self.retried,
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "best_params": dict(self.best_params) if self.best_params is not None else None,
        }


@dataclass(frozen=True)
class BestSoFar:
    """The latest sprint's best trial (the highest fidelity so far)."""

    sprint: str
    trial: int
    value: float
    params: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"sprint": self.sprint, "trial": self.trial, "value": self.value, "params": dict(self.params)}


@dataclass(frozen=True)
class CampaignStatusReport:
    campaign: str
    state: CampaignState
    sprints_planned: int
    metric: MetricSpec
    sprints: tuple[SprintStatus, ...]
    best: BestSoFar | None
    pending_gate: int | None
    pending_proposal: Proposal | None
    decisions: tuple[Decision, ...]
    thresholds: Mapping[str, ThresholdsResult]  # by `STUDY:TRIAL`

    def to_json(self) -> dict[str, Any]:
        """The `hpo-tui status --json` document."""
        return {
            "campaign": self.campaign,
            "status": self.state.status,
            "paused": self.state.paused,
            "sprint": self.state.sprint,
            "sprints_planned": self.sprints_planned,
            "metric": self.metric.model_dump(),
            "sprints": [s.to_json() for s in self.sprints],
            "best": self.best.to_json() if self.best else None,
            "pending_gate": self.pending_gate,
            "pending_proposal": self.pending_proposal.to_json() if self.pending_proposal else None,
            "decisions": [d.to_json() for d in self.decisions],
            "thresholds": {k: v.to_json() for k, v in self.thresholds.items()},
            "error": self.state.error,
        }


def status_report(storage, campaign: str) -> CampaignStatusReport:
    """The campaign's status, from one read of the ledger and one of each sprint's trials."""
    view = Ledger(storage, campaign).view()
    spec = CampaignSpec.model_validate(view.spec) if view.spec is not None else None
    metric = spec.metric if spec is not None else MetricSpec()
    maximize = metric.direction == "maximize"
    sprints = []
    best: BestSoFar | None = None
    for record in view.sprints:
        trials = sprint_trials(storage, record)
        if trials is None:
            continue
        sprint_best = best_trial(trials, maximize)
        best_params = {**record.fixed, **sprint_best.params} if sprint_best else None
        sprints.append(
            SprintStatus(
                index=record.index,
                name=record.name,
                study=record.study,
                sampler=record.sampler,
                pruner=record.pruner,
                level=record.level,
                fidelity=record.fidelity,
                n_trials=record.n_trials,
                status=record.status,
                counts=state_counts(trials),
                tuned=record.tuned,
                fail_kinds=fail_kind_counts(trials),
                retried=retried_count(trials),
                best_value=sprint_best.value if sprint_best else None,
                best_trial=sprint_best.number if sprint_best else None,
                best_params=best_params,
            )
        )
        if sprint_best is not None and sprint_best.value is not None and best_params is not None:
            best = BestSoFar(record.name, sprint_best.number, sprint_best.value, best_params)
    pending = view.pending_gate
    return CampaignStatusReport(
        campaign=campaign,
        state=view.state,
        sprints_planned=len(spec.sprints) if spec is not None else 0,
        metric=metric,
        sprints=tuple(sprints),
        best=best,
        pending_gate=pending,
        pending_proposal=view.proposals.get(pending) if pending is not None else None,
        decisions=view.decisions,
        thresholds=view.thresholds,
    )


def campaign_status(storage, campaign: str) -> dict[str, Any]:
    """The campaign as a JSON document (`hpo-tui status --json`)."""
    return status_report(storage, campaign).to_json()


def format_status(report: CampaignStatusReport) -> str:
    state = report.state
    lines = [
        f"campaign {report.campaign}: {state.status}"
        + (" (paused)" if state.paused else "")
        + f", sprint {min(state.sprint + 1, report.sprints_planned)}/{report.sprints_planned}"
        + f", metric {report.metric.name} ({report.metric.direction})",
    ]
    if state.error:
        lines.append(f"error: {state.error}")
    lines.append(
        f"{'#':>2}  {'sprint':<14}{'sampler':<10}{'pruner':<19}{'fidelity':<10}{'status':<9}"
        f"{'done':>5}{'pruned':>7}{'failed':>7}{'run':>5}  best"
    )
    for s in report.sprints:
        c = s.counts
        best = f"{s.best_value:.6g} (#{s.best_trial})" if s.best_value is not None else "-"
        lines.append(
            f"{s.index + 1:>2}  {s.name:<14}{s.sampler:<10}{s.pruner:<19}{s.level:<10}"
            f"{s.status:<9}{c.get(COMPLETE, 0):>5}{c.get(PRUNED, 0):>7}{c.get(FAIL, 0):>7}"
            f"{c.get(RUNNING, 0):>5}  {best}"
        )
        if s.fail_kinds:
            kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(s.fail_kinds.items()))
            lines.append(f"    failed: {kinds}; {s.retried} queued again")
    if report.best:
        b = report.best
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in b.params.items())
        lines.append(f"best: {b.value:.6g} in {b.sprint} trial {b.trial}: {params}")
    p = report.pending_proposal
    if report.pending_gate is not None and p is not None:
        lines.append(
            f"PENDING gate {report.pending_gate} after {p.after} -> {p.next} "
            f"(fidelity {p.fidelity.level}): approve with `hpo-tui approve {report.campaign}`"
        )
        lines += [f"    {line}" for line in summary_lines(p)] or ["    (no range changes proposed)"]
    if report.decisions:
        lines.append("decisions:")
        for d in report.decisions:
            lines.append(f"  gate {d.gate}: {d.line()}")
            lines += [f"      {line}" for line in d.diff]
    for key, result in report.thresholds.items():
        lines.append(f"thresholds for {key}:")
        lines += ["  " + line for line in format_report(result).splitlines()]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
