"""`hpo-tui status`: the campaign as stored — sprints, trial counts, best, pending gate, decisions."""

from __future__ import annotations

from typing import Any

from engine.gates.proposal import summary_lines
from engine.store.ledger import Ledger
from engine.store.queries import best_trial, fail_kind_counts, retried_count, sprint_trials, state_counts
from engine.store.records import Proposal, ThresholdsResult
from engine.thresholds import format_report


def campaign_status(storage, campaign: str) -> dict[str, Any]:
    """The campaign as a JSON report (`hpo-tui status --json`), from one read of the ledger."""
    view = Ledger(storage, campaign).view()
    spec = view.spec or {}
    metric = spec.get("metric", {})
    maximize = metric.get("direction") == "maximize"
    sprints = []
    best: dict[str, Any] | None = None
    for record in view.sprints:
        trials = sprint_trials(storage, record)
        if trials is None:
            continue
        sprint_best = best_trial(trials, maximize)
        best_params = {**record.fixed, **sprint_best.params} if sprint_best else None
        sprints.append(
            {
                "index": record.index,
                "name": record.name,
                "study": record.study,
                "sampler": record.sampler,
                "pruner": record.pruner,
                "level": record.level,
                "fidelity": dict(record.fidelity),
                "n_trials": record.n_trials,
                "status": record.status,
                "counts": state_counts(trials),
                "tuned": list(record.tuned),
                # why trials failed (engine.execution.trials.FAIL_KINDS: stale and worker_died are the engine's, not the objective's)
                "fail_kinds": fail_kind_counts(trials),
                "retried": retried_count(trials),
                "best_value": sprint_best.value if sprint_best else None,
                "best_trial": sprint_best.number if sprint_best else None,
                "best_params": best_params,
            }
        )
        if sprint_best is not None:  # the latest sprint's best: highest fidelity so far
            best = {
                "sprint": record.name,
                "trial": sprint_best.number,
                "value": sprint_best.value,
                "params": best_params,
            }
    pending = view.pending_gate
    proposal = view.proposals.get(pending) if pending is not None else None
    return {
        "campaign": campaign,
        "status": view.state.status,
        "paused": view.state.paused,
        "sprint": view.state.sprint,
        "sprints_planned": len(spec.get("sprints", [])),
        "metric": metric,
        "sprints": sprints,
        "best": best,
        "pending_gate": pending,
        "pending_proposal": proposal.to_json() if proposal else None,
        "decisions": [d.to_json() for d in view.decisions],
        "thresholds": {k: v.to_json() for k, v in view.thresholds.items()},
        "error": view.state.error,
    }


def format_status(status: dict[str, Any]) -> str:
    metric = status["metric"]
    lines = [
        f"campaign {status['campaign']}: {status['status']}"
        + (" (paused)" if status["paused"] else "")
        + f", sprint {min(status['sprint'] + 1, status['sprints_planned'])}/{status['sprints_planned']}"
        + f", metric {metric.get('name', 'value')} ({metric.get('direction', 'minimize')})",
    ]
    if status.get("error"):
        lines.append(f"error: {status['error']}")
    lines.append(
        f"{'#':>2}  {'sprint':<14}{'sampler':<10}{'pruner':<19}{'fidelity':<10}{'status':<9}"
        f"{'done':>5}{'pruned':>7}{'failed':>7}{'run':>5}  best"
    )
    for s in status["sprints"]:
        c = s["counts"]
        best = f"{s['best_value']:.6g} (#{s['best_trial']})" if s["best_value"] is not None else "-"
        lines.append(
            f"{s['index'] + 1:>2}  {s['name']:<14}{s['sampler']:<10}{s['pruner']:<19}{s['level']:<10}"
            f"{s['status']:<9}{c.get('COMPLETE', 0):>5}{c.get('PRUNED', 0):>7}{c.get('FAIL', 0):>7}"
            f"{c.get('RUNNING', 0):>5}  {best}"
        )
        if s.get("fail_kinds"):
            kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(s["fail_kinds"].items()))
            lines.append(f"    failed: {kinds}; {s.get('retried', 0)} queued again")
    if status["best"]:
        b = status["best"]
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in b["params"].items())
        lines.append(f"best: {b['value']:.6g} in {b['sprint']} trial {b['trial']}: {params}")
    if status["pending_gate"] is not None:
        p = status["pending_proposal"]
        lines.append(
            f"PENDING gate {status['pending_gate']} after {p['after']} -> {p['next']} "
            f"(fidelity {p['fidelity']['level']}): approve with `hpo-tui approve {status['campaign']}`"
        )
        lines += [f"    {line}" for line in summary_lines(Proposal.from_json(p))] or ["    (no range changes proposed)"]
    if status["decisions"]:
        lines.append("decisions:")
        for d in status["decisions"]:
            lines.append(
                f"  gate {d['gate']}: {d['action']} by {d['who']['user']}@{d['who']['host']} "
                f"via {d['source']} at {d['when']}"
            )
            lines += [f"      {line}" for line in d.get("diff", [])]
    for key, result in status["thresholds"].items():
        lines.append(f"thresholds for {key}:")
        lines += ["  " + line for line in format_report(ThresholdsResult.from_json(result)).splitlines()]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
