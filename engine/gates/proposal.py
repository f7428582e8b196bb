"""Gate proposals: narrowed ranges from the evidence of a finished sprint.

Per numeric parameter: the min/max over the top-k trials, widened by `margin` × their span (in log
space for log parameters), at least `min_width` of the current width, clipped to the campaign's
original bounds. Where the best values sit at a bound of the current range the range is widened
there instead (the optimum may lie outside), up to the original bound.

When the finished sprint re-evaluated configurations of an earlier, lower-fidelity sprint (its
seeds), the gate measures how well the lower fidelity ranked them (Spearman's rho between the two
fidelities' values). Below `trust_rank` the lower fidelity is not trusted to narrow: the margin is
widened (x trust_rank / rho, at most x4) and, at rho <= `reopen_rank` (default 0.5), ranges are not
narrowed at all and the narrowed ones re-open.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from engine.gates.diff import range_change
from engine.gates.reopen import fidelity_drift, reopen_sides
from engine.search.space import Space
from engine.spec import CampaignSpec, GateRules
from engine.store.ledger import now_iso
from engine.store.records import ParamRow, Proposal, ProposalEvidence, ProposalFidelity, SprintRecord
from engine.store.schema import SEEDED_ATTR


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The best k *distinct* configurations: a sampler that re-proposes its incumbent (a GP at a
    corner does) must not make one configuration look like k agreeing ones."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    top, seen = [], set()
    # cast: `done` holds only trials whose value is not None
    for trial in sorted(done, key=lambda t: cast(float, t.value), reverse=reverse):
        key = tuple(sorted((name, repr(value)) for name, value in trial.params.items()))
        if key in seen:
            continue
        seen.add(key)
        top.append(trial)
        if len(top) == k:
            break
    return top


def _to_t(value: float, log: bool) -> float:
    return math.log(value) if log else value


def _from_t(value: float, log: bool) -> float:
    return math.exp(value) if log else value


def narrow_numeric(
    current: dict[str, Any], original: dict[str, Any], values: list[float], best: float, rules: GateRules
) -> tuple[dict[str, Any], str | None, str]:
    """Return (proposed record, edge side or None, note) for one float/int parameter."""
    log = bool(original.get("log"))
    lo_t, hi_t = _to_t(min(values), log), _to_t(max(values), log)
    cur_lo, cur_hi = _to_t(current["low"], log), _to_t(current["high"], log)
    org_lo, org_hi = _to_t(original["low"], log), _to_t(original["high"], log)
    width = cur_hi - cur_lo
    span = hi_t - lo_t
    new_lo, new_hi = lo_t - rules.margin * span, hi_t + rules.margin * span
    floor = rules.min_width * width
    if new_hi - new_lo < floor:
        centre = (new_lo + new_hi) / 2
        new_lo, new_hi = centre - floor / 2, centre + floor / 2

    best_t = _to_t(best, log)
    edge = None
    notes = []
    near = rules.edge_fraction * width
    for side, at_edge in (
        ("low", best_t - cur_lo <= near or lo_t - cur_lo <= near * 0.01),
        ("high", cur_hi - best_t <= near or cur_hi - hi_t <= near * 0.01),
    ):
        if not at_edge:
            continue
        edge = side if edge is None else "both"
        bound = org_lo if side == "low" else org_hi
        current_bound = cur_lo if side == "low" else cur_hi
        if math.isclose(current_bound, bound, rel_tol=1e-9, abs_tol=1e-12):
            notes.append(f"best values sit at the campaign's {side} bound: the optimum may lie beyond it")
        else:
            notes.append(f"best values sit at the {side} edge: widened there, not narrowed")
        if side == "low":
            new_lo = min(new_lo, cur_lo - 0.5 * width)
        else:
            new_hi = max(new_hi, cur_hi + 0.5 * width)
    new_lo, new_hi = max(new_lo, org_lo), min(new_hi, org_hi)
    low, high = _from_t(new_lo, log), _from_t(new_hi, log)
    record = dict(current)
    if original["type"] == "int":
        step = original.get("step", 1)
        base = original["low"]
        low = base + math.floor((low - base) / step + 1e-9) * step
        high = base + math.ceil((high - base) / step - 1e-9) * step
        low, high = max(int(low), original["low"]), min(int(high), original["high"])
        if low >= high:  # an int range needs two values at least
            low, high = (low - step, high) if low - step >= original["low"] else (low, high + step)
    else:
        low, high = float(low), float(high)
        if log:  # exp(log(x)) drifts by an ulp; never step outside the original bounds
            low, high = max(low, original["low"]), min(high, original["high"])
    record.update(low=low, high=high)
    return record, edge, "; ".join(notes)


MIN_AGREEMENT_PAIRS = 4  # re-evaluated configurations needed to judge how well a lower fidelity ranks
MAX_MARGIN_WIDENING = 4.0


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties share their mean rank); None when the two sides differ in length,
    there are fewer than 3 pairs, or either side has no spread."""
    if len(a) != len(b) or len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    # Imported here, not at the top: scipy.stats adds 1.2-1.5 s to the start of every command that imports
    # this module (`hpo-tui status`, `approve`), measured with `import engine.cli` then `import scipy.stats`.
    from scipy.stats import spearmanr

    rho = float(spearmanr(a, b).statistic)
    return rho if math.isfinite(rho) else None


def fidelity_agreement(storage, ledger, record: SprintRecord, study: optuna.Study) -> dict[str, Any] | None:
    """How well lower fidelities ranked the configurations that sprint `record` re-evaluated (its seeds).

    Pairs each completed seeded trial with the same configuration's value in the earlier sprint it
    came from (the latest one at another fidelity). None when no configuration was evaluated at two
    fidelities.
    """
    tuned = list(record.tuned)
    key = lambda params: tuple(repr(params.get(n)) for n in tuned)  # noqa: E731
    seeded = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get(SEEDED_ATTR) and t.value is not None
    ]
    if not seeded:
        return None
    earlier_values: dict[tuple, tuple[float, str]] = {}
    for index in range(record.index - 1, -1, -1):
        earlier = ledger.sprint_record(index)
        if earlier is None or earlier.fidelity == record.fidelity:
            continue
        old = optuna.load_study(study_name=earlier.study, storage=storage)
        for t in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.value is not None:
                earlier_values.setdefault(key({**earlier.fixed, **t.params}), (float(t.value), earlier.level))
    pairs = [
        (earlier_values[key(t.params)], float(t.value))
        for t in seeded
        if t.value is not None and key(t.params) in earlier_values
    ]
    if not pairs:
        return None
    rho = spearman([p[0][0] for p in pairs], [p[1] for p in pairs])
    return {"pairs": len(pairs), "rho": rho, "from": sorted({p[0][1] for p in pairs}), "to": record.level}


def trusted_rules(rules: GateRules, agreement: dict[str, Any] | None) -> tuple[GateRules, bool, str]:
    """(rules to narrow with, whether to narrow at all, a note) given the fidelity agreement."""
    if not agreement or agreement.get("rho") is None or agreement["pairs"] < MIN_AGREEMENT_PAIRS:
        return rules, True, ""
    rho = agreement["rho"]
    seen = f"rank agreement {rho:.2f} between {'/'.join(agreement['from'])} and {agreement['to']} over {agreement['pairs']} re-evaluated configurations"
    if rho >= rules.trust_rank:
        return rules, True, ""
    if rho <= rules.reopen_rank:
        return rules, False, f"{seen}: the lower fidelity misleads; not narrowed"
    factor = min(MAX_MARGIN_WIDENING, rules.trust_rank / rho)
    return rules.model_copy(update={"margin": rules.margin * factor}), True, f"{seen}: margin widened x{factor:.1f}"


def make_proposal(
    spec: CampaignSpec,
    sprint_index: int,
    study: optuna.Study,
    current: Space,
    original: Space,
    importances: dict[str, float],
    agreement: dict[str, Any] | None = None,
    *,
    gate: int | None = None,
) -> Proposal:
    """The proposal after sprint `sprint_index` for the sprint after it, at gate number `gate` (default: the
    sprint index; the two differ once an `extend` has taken a gate number).

    `agreement` (fidelity_agreement) widens or holds the narrowing where a lower fidelity misranked.
    """
    rules, narrow, trust_note = trusted_rules(spec.gate_rules(sprint_index), agreement)
    finished, upcoming = spec.sprints[sprint_index], spec.sprints[sprint_index + 1]
    top = top_trials(study, rules.top_k)
    all_done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = top[0] if top else None
    proposed: Space = {}
    rows: dict[str, ParamRow] = {}
    tuned = finished.params or [n for n, r in current.items() if r["type"] != "fixed"]
    enough, evidence_rule = enough_evidence(len(all_done), rules.top_k, current, tuned)
    reopens: dict[str, list[Any]] = {}
    if higher_fidelity_than_narrowing(spec, sprint_index):
        rho = agreement.get("rho") if agreement and agreement.get("pairs", 0) >= MIN_AGREEMENT_PAIRS else None
        for item in reopen_sides(study, current, original, rules.edge_fraction, rho, rules.reopen_rank):
            reopens.setdefault(item.param, []).append(item)
        for drift in fidelity_drift(study, top, current, original, rules.drift_extrapolate):
            if not any(item.side == drift.side for item in reopens.get(drift.param, [])):
                reopens.setdefault(drift.param, []).append(drift)
    for name, record in current.items():
        row: dict[str, Any] = {  # ParamRow's fields, filled as the evidence allows
            "kind": original[name]["type"],
            "original": original[name],
            "current": record,
            "importance": importances.get(name),
            "edge": None,
            "freeze": False,
            "note": "",
        }
        values = [t.params[name] for t in top if name in t.params]
        proposal_record = dict(record)
        if record["type"] in ("float", "int") and name in tuned and values and best is not None and name in best.params:
            row["top_min"], row["top_max"], row["best"] = min(values), max(values), best.params[name]
            proposal_record, row["edge"], row["note"] = narrow_numeric(
                record, original[name], values, best.params[name], rules
            )
            if not enough:  # too little evidence: keep the current range
                proposal_record = dict(record)
                row["edge"], row["note"] = None, evidence_rule
            elif not narrow:  # keep the current range; widening at an edge still applies
                proposal_record = {
                    **proposal_record,
                    "low": min(proposal_record["low"], record["low"]),
                    "high": max(proposal_record["high"], record["high"]),
                }
            if trust_note:
                row["note"] = "; ".join(n for n in (trust_note, row["note"]) if n)
            if name in reopens:
                proposal_record = dict(proposal_record)
                for item in reopens[name]:
                    bound = getattr(item, "bound", original[name][item.side])  # a Drift extends to its bound
                    outermost = min if item.side == "low" else max
                    proposal_record[item.side] = outermost(proposal_record[item.side], bound)
                row["reopen"] = tuple(item.side for item in reopens[name])
                reasons = list(dict.fromkeys(item.reason for item in reopens[name]))  # both sides may share one
                row["note"] = "; ".join([*reasons, *([row["note"]] if row["note"] else [])])
        elif record["type"] == "categorical" and name in tuned and values:
            counts = Counter(map(repr, values))
            row["top_counts"] = {str(c): counts.get(repr(c), 0) for c in record["choices"]}
            row["best"] = best.params.get(name) if best else None
            if enough and len(all_done) >= 2 * rules.top_k:
                keep = [c for c in record["choices"] if counts.get(repr(c), 0) / len(values) > rules.categorical_keep]
                if keep and len(keep) < len(record["choices"]):
                    proposal_record = {"type": "categorical", "choices": keep}
                    row["note"] = (
                        f"dropped {[c for c in record['choices'] if c not in keep]}: absent from the top {len(values)}"
                    )
            else:
                row["note"] = f"kept all choices: {len(all_done)} completed trials is too little evidence"
        if (
            rules.freeze_importance > 0
            and importances
            and importances.get(name, 0.0) < rules.freeze_importance
            and record["type"] != "fixed"
            and best is not None
            and name in best.params
        ):
            row["freeze"] = True
            proposal_record = {"type": "fixed", "value": best.params[name]}
            row["note"] = (row["note"] + "; " if row["note"] else "") + (
                f"importance {importances.get(name, 0.0):.3f} < {rules.freeze_importance}: frozen at the best value"
            )
        proposed[name] = proposal_record
        rows[name] = ParamRow(proposed=proposal_record, **row)
    return Proposal(
        gate=sprint_index if gate is None else gate,
        sprint=sprint_index,
        after=finished.name,
        next=upcoming.name,
        created=now_iso(),
        params=rows,
        space=proposed,
        fidelity=ProposalFidelity(level=upcoming.fidelity, values=dict(spec.fidelity.levels[upcoming.fidelity])),
        sampler=upcoming.sampler,
        pruner=upcoming.pruner,
        n_trials=upcoming.n_trials,
        evidence=ProposalEvidence(
            completed=len(all_done),
            top_k=len(top),
            best_value=best.value if best else None,
            best_params=dict(best.params) if best else {},
            best_trial=best.number if best else None,
            agreement=agreement,
            narrowing_rule=evidence_rule,
            narrowed=enough,
            reopened=tuple(
                {"param": item.param, "side": item.side, "reason": item.reason}
                for items in reopens.values()
                for item in items
            ),
        ),
    )


def enough_evidence(completed: int, top_k: int, current: Space, tuned: list[str]) -> tuple[bool, str]:
    """Whether a gate may narrow: at least top_k completed trials, and more than the parameters it narrows."""
    narrowable = [n for n in tuned if current.get(n, {}).get("type") in ("float", "int", "categorical")]
    needed = max(top_k, len(narrowable) + 1)
    rule = (
        f"narrows only after at least {needed} completed trials (top_k {top_k}, and more than the "
        f"{len(narrowable)} parameters it narrows)"
    )
    if completed >= needed:
        return True, rule
    return False, f"range kept: {completed} completed trials, and a gate {rule}"


def higher_fidelity_than_narrowing(spec: CampaignSpec, sprint_index: int) -> bool:
    """Whether sprint `sprint_index` ran at a higher fidelity than some earlier sprint, whose gate may have narrowed."""
    levels = spec.level_names()
    rank = levels.index(spec.sprints[sprint_index].fidelity)
    return any(levels.index(s.fidelity) < rank for s in spec.sprints[:sprint_index])


def summary_lines(proposal: Proposal) -> list[str]:
    """What `approve --show` and `status` print: the thin-evidence rule when it held every range, then one line
    per changed range (engine.gates.diff.proposal_diff) with its edge and re-opened sides."""
    lines = []
    if not proposal.evidence.narrowed:
        lines.append(f"no narrowing: {proposal.evidence.narrowing_rule}")
    for name, row in proposal.params.items():
        if not row.changed:
            continue
        flag = f"  [edge: {row.edge}]" if row.edge else ""
        if row.reopen:
            flag += f"  [re-opened: {', '.join(row.reopen)}]"
        lines.append(range_change(name, row.current, row.proposed) + flag)
        if row.reopen:
            lines.append(f"    why: {row.note}")
    return lines
