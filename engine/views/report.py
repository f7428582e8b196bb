"""`hpo-tui report`: one self-contained, offline HTML page to share a campaign with a colleague.

Sections: the campaign at a glance, the space narrowing gate by gate (range bars per parameter:
the original range and each sprint's), the gate decisions (who, when, via what, the diff), the
best value so far per sprint and fidelity, parameter importance per sprint, and the learned
thresholds. Charts are inline SVG drawn here; the page references no URL at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from engine.search.importance import param_importances
from engine.search.space import describe
from engine.spec import CampaignSpec, MetricSpec
from engine.store.ledger import Ledger
from engine.store.queries import state_counts
from engine.store.records import Decision, Proposal, SprintRecord, ThresholdsResult
from engine.store.schema import COMPLETE, FAIL, PRUNED
from engine.thresholds import STRATEGIES
from engine.views.report_svg import RangeRow, Series, best_so_far_chart, importance_chart, range_chart
from engine.views.sprint_progress import describe_fidelity

SECTIONS = ("overview", "space", "decisions", "best", "importance", "thresholds")


@dataclass(frozen=True)
class SprintSummary:
    index: int
    name: str
    sampler: str
    pruner: str
    level: str
    fidelity: dict[str, Any]
    status: str
    space: dict[str, Any]
    tuned: tuple[str, ...]
    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    best_params: dict[str, Any] | None
    best_so_far: tuple[tuple[int, float], ...]  # (trial number, best so far) in completion order
    importances: dict[str, float]


@dataclass(frozen=True)
class CampaignReport:
    campaign: str
    description: str
    status: str
    metric: str
    direction: str
    original_space: dict[str, Any]
    sprints: tuple[SprintSummary, ...]
    decisions: tuple[Decision, ...]
    proposals: Mapping[int, Proposal]  # by gate
    thresholds: Mapping[str, ThresholdsResult]  # by `STUDY:TRIAL`
    generated: str = field(default_factory=lambda: dt.datetime.now().astimezone().isoformat(timespec="seconds"))


def collect_report(storage: optuna.storages.BaseStorage, campaign: str) -> CampaignReport:
    view = Ledger(storage, campaign).view()
    spec = CampaignSpec.model_validate(view.spec) if view.spec is not None else None
    metric = spec.metric if spec is not None else MetricSpec()
    maximize = metric.direction == "maximize"
    sprints = []
    for record in view.sprints:
        try:
            study = optuna.load_study(study_name=record.study, storage=storage)
        except KeyError:
            continue
        sprints.append(_sprint_summary(record, study, maximize))
    return CampaignReport(
        campaign=campaign,
        description=spec.description if spec is not None else "",
        status=view.state.status,
        metric=metric.name,
        direction=metric.direction,
        original_space=dict(view.original_space),
        sprints=tuple(sprints),
        decisions=view.decisions,
        proposals=view.proposals,
        thresholds=view.thresholds,
    )


def _sprint_summary(record: SprintRecord, study: optuna.Study, maximize: bool) -> SprintSummary:
    trials = study.get_trials(deepcopy=False)
    counts = state_counts(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    complete.sort(key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
    series: list[tuple[int, float]] = []
    best: FrozenTrial | None = None
    best_value = 0.0  # the value of `best`, once there is one
    for t in complete:
        value = t.value
        if value is None:  # never: `complete` holds valued trials; narrows the type
            continue
        if best is None or (value > best_value if maximize else value < best_value):
            best, best_value = t, value
        series.append((t.number, best_value))
    return SprintSummary(
        index=record.index,
        name=record.name,
        sampler=record.sampler,
        pruner=record.pruner,
        level=record.level,
        fidelity=dict(record.fidelity),
        status=record.status,
        space=dict(record.space),
        tuned=record.tuned,
        counts=counts,
        best_value=best.value if best else None,
        best_trial=best.number if best else None,
        best_params={**record.fixed, **best.params} if best else None,
        best_so_far=tuple(series),
        importances=param_importances(study, list(record.tuned)),
    )


# Rendering -----------------------------------------------------------------------------------

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #777; } .param { margin: 0.6em 0; } .param h3 { margin: 0.2em 0; font-size: 14px; }
ul.diff { margin: 0; padding-left: 1.2em; font-family: monospace; font-size: 12px; }
"""


def render_html(report: CampaignReport) -> str:
    sections = {
        "overview": ("Campaign", _overview(report)),
        "space": ("Space narrowing, gate by gate", _space(report)),
        "decisions": ("Gate decisions", _decisions(report)),
        "best": ("Best so far, per sprint and fidelity", _best(report)),
        "importance": ("Parameter importance", _importance(report)),
        "thresholds": ("Decision thresholds", _thresholds(report)),
    }
    body = "".join(
        f'<section id="{key}"><h2>{escape(title)}</h2>{content}</section>' for key, (title, content) in sections.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>hpo-tui report: {escape(report.campaign)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(report.campaign)}</h1>"
        f'<p class="muted">{escape(report.description)}</p>{body}'
        f'<p class="muted">Written by hpo-tui report at {escape(report.generated)}.</p></body></html>\n'
    )


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | frozenset = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _overview(report: CampaignReport) -> str:
    best = _campaign_best(report)
    rows = [
        ["status", escape(report.status)],
        ["metric", escape(f"{report.metric} ({report.direction})")],
        ["sprints run", str(len(report.sprints))],
        ["trials", str(sum(sum(s.counts.values()) for s in report.sprints))],
        ["gate decisions", str(len(report.decisions))],
    ]
    if best is not None:
        params = ", ".join(f"{k}={_short(v)}" for k, v in (best.best_params or {}).items())
        rows.append(["best", escape(f"{_num(best.best_value)} in {best.name} trial {best.best_trial}: {params}")])
    return _table(["", ""], rows)


def _campaign_best(report: CampaignReport) -> SprintSummary | None:
    """The latest sprint's best: the highest fidelity so far."""
    for sprint in reversed(report.sprints):
        if sprint.best_value is not None:
            return sprint
    return None


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _space(report: CampaignReport) -> str:
    if not report.original_space:
        return '<p class="muted">The campaign has not stored its space yet.</p>'
    header = ["parameter", "original", *(f"{s.index + 1} {s.name}" for s in report.sprints)]
    rows = [
        [
            escape(name),
            escape(describe(original)),
            *(escape(describe(s.space.get(name, original))) for s in report.sprints),
        ]
        for name, original in report.original_space.items()
    ]
    charts = []
    for name, original in report.original_space.items():
        if original["type"] == "fixed":
            continue
        bars = [RangeRow("original", original)] + [
            RangeRow(f"{s.index + 1} {s.name}", s.space.get(name, original)) for s in report.sprints
        ]
        charts.append(f'<div class="param"><h3>{escape(name)}</h3>{range_chart(original, bars)}</div>')
    return _table(header, rows) + "".join(charts)


def _decisions(report: CampaignReport) -> str:
    if not report.decisions:
        return '<p class="muted">No gate has been decided yet.</p>'
    rows = []
    for d in report.decisions:
        proposal = report.proposals.get(d.gate)
        diff = d.diff
        diff_html = (
            '<ul class="diff">' + "".join(f"<li>{escape(line)}</li>" for line in diff) + "</ul>"
            if diff
            else '<span class="muted">no change</span>'
        )
        rows.append(
            [
                str(d.gate),
                escape(f"{proposal.after} -> {proposal.next}" if proposal else "? -> ?"),
                escape(d.action),
                escape(f"{d.who.user}@{d.who.host}"),
                escape(d.when),
                escape(d.source),
                escape(d.note),
                diff_html,
            ]
        )
    return _table(["gate", "sprints", "action", "who", "when", "source", "note", "diff"], rows, {0})


def _best(report: CampaignReport) -> str:
    if not report.sprints:
        return '<p class="muted">No sprint has started yet.</p>'
    rows = [
        [
            str(s.index + 1),
            escape(s.name),
            escape(f"{s.level} ({describe_fidelity(s.fidelity)})"),
            escape(f"{s.sampler} / {s.pruner}"),
            escape(s.status),
            str(s.counts.get(COMPLETE, 0)),
            str(s.counts.get(PRUNED, 0)),
            str(s.counts.get(FAIL, 0)),
            _num(s.best_value),
            "-" if s.best_trial is None else str(s.best_trial),
        ]
        for s in report.sprints
    ]
    table = _table(
        ["#", "sprint", "fidelity", "sampler / pruner", "status", "complete", "pruned", "failed", "best", "trial"],
        rows,
        {0, 5, 6, 7, 8, 9},
    )
    # One chart per sprint: values at different fidelities do not share a scale.
    charts = "".join(
        f"<h3>{s.index + 1} {escape(s.name)}: {escape(s.level)} ({escape(describe_fidelity(s.fidelity))})</h3>"
        + best_so_far_chart([Series(f"{s.name} ({s.level})", s.best_so_far)], report.metric, height=180)
        for s in report.sprints
        if s.best_so_far
    )
    return table + charts


def _importance(report: CampaignReport) -> str:
    parts = []
    for s in report.sprints:
        if s.importances:
            parts.append(f"<h3>{s.index + 1} {escape(s.name)}</h3>{importance_chart(s.importances)}")
    if not parts:
        return '<p class="muted">Too few completed trials in every sprint to rank the parameters.</p>'
    return '<p class="muted">PED-ANOVA importance over each sprint\'s completed trials.</p>' + "".join(parts)


def _thresholds(report: CampaignReport) -> str:
    if not report.thresholds:
        return '<p class="muted">No per-class thresholds were learned in this campaign.</p>'
    parts = []
    for key, result in report.thresholds.items():
        rows = [
            [
                escape(str(row["class"])),
                f"{row['threshold']:.2f}",
                str(row.get("val_positives", "")),
                *(f"{row['val_cv'][s]:.3f}" for s in STRATEGIES),
            ]
            for row in result.table
        ]
        caption = (
            f"{key}: {result.metric}, optimizer {result.optimizer}, {result.folds}-fold CV, "
            f"recommended {result.recommended}"
        )
        parts.append(
            f"<h3>{escape(caption)}</h3>"
            + _table(["class", "threshold", "n_val", *(f"val CV {s}" for s in STRATEGIES)], rows, {1, 2, 3, 4, 5})
        )
    return "".join(parts)
