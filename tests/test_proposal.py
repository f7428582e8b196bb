"""Gate narrowing maths: top-k span plus margin, log space, clipping, ints, categoricals, edges, freezing."""

import math

import optuna
import pytest
from enginekit import branin_campaign, spec_of

from engine.gates.proposal import make_proposal, narrow_numeric
from engine.search.space import initial_space
from engine.spec import GateRules

RULES = GateRules(top_k=3, margin=0.5, min_width=0.0, edge_fraction=0.05)


def test_linear_range_is_topk_span_plus_margin():
    record = {"type": "float", "low": 0.0, "high": 10.0, "log": False}
    proposed, edge, _ = narrow_numeric(record, record, [4.0, 5.0, 6.0], best=5.0, rules=RULES)
    assert (proposed["low"], proposed["high"]) == pytest.approx((3.0, 7.0))
    assert edge is None


def test_log_range_narrows_in_log_space():
    record = {"type": "float", "low": 1e-6, "high": 1e-1, "log": True}
    proposed, _, _ = narrow_numeric(record, record, [1e-4, 1e-3], best=3e-4, rules=RULES)
    # span is one decade in log space; half a decade of margin on each side
    assert proposed["low"] == pytest.approx(1e-4 / math.sqrt(10))
    assert proposed["high"] == pytest.approx(1e-3 * math.sqrt(10))


def test_margin_is_clipped_to_original_bounds():
    original = {"type": "float", "low": 0.0, "high": 1.0, "log": False}
    current = {"type": "float", "low": 0.2, "high": 1.0, "log": False}
    proposed, _, _ = narrow_numeric(
        current,
        original,
        [0.5, 0.9, 0.95],
        best=0.5,
        rules=GateRules(top_k=3, margin=1.0, min_width=0.0, edge_fraction=0.01),
    )
    assert proposed["high"] == 1.0
    assert proposed["low"] == pytest.approx(0.05)


def test_edge_warning_widens_instead_of_narrowing():
    original = {"type": "float", "low": 0.0, "high": 100.0, "log": False}
    current = {"type": "float", "low": 40.0, "high": 60.0, "log": False}
    proposed, edge, note = narrow_numeric(current, original, [40.2, 41.0, 45.0], best=40.2, rules=RULES)
    assert edge == "low"
    assert proposed["low"] == pytest.approx(30.0)  # widened by half the current width, past the old bound
    assert "widened" in note


def test_edge_at_the_campaign_bound_says_so():
    record = {"type": "float", "low": 0.0, "high": 1.0, "log": False}
    proposed, edge, note = narrow_numeric(record, record, [0.0, 0.01, 0.2], best=0.0, rules=RULES)
    assert edge == "low" and proposed["low"] == 0.0
    assert "campaign's low bound" in note


def test_min_width_keeps_a_usable_range():
    record = {"type": "float", "low": 0.0, "high": 10.0, "log": False}
    rules = GateRules(top_k=3, margin=0.1, min_width=0.2, edge_fraction=0.0)
    proposed, _, _ = narrow_numeric(record, record, [5.0, 5.0, 5.0], best=5.0, rules=rules)
    assert proposed["high"] - proposed["low"] == pytest.approx(2.0)


def test_int_bounds_round_outward_on_the_step_grid():
    record = {"type": "int", "low": 8, "high": 512, "log": False, "step": 8}
    proposed, _, _ = narrow_numeric(
        record, record, [100, 130], best=120, rules=GateRules(top_k=2, margin=0.1, min_width=0.0, edge_fraction=0.0)
    )
    assert proposed["low"] == 96 and proposed["high"] == 136
    assert (proposed["low"] - 8) % 8 == 0 and (proposed["high"] - 8) % 8 == 0


def _study_with(values_params, direction="minimize"):
    study = optuna.create_study(direction=direction)
    dists = {
        "x1": optuna.distributions.FloatDistribution(-5, 10),
        "x2": optuna.distributions.FloatDistribution(0, 15),
        "act": optuna.distributions.CategoricalDistribution(["relu", "tanh", "gelu"]),
    }
    for value, params in values_params:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    return study


def test_proposal_drops_categories_absent_from_the_top_and_freezes_unimportant():
    data = branin_campaign(gate={"top_k": 3, "margin": 0.2, "min_width": 0.0, "freeze_importance": 0.05})
    data["space"]["act"] = {"type": "categorical", "choices": ["relu", "tanh", "gelu"]}
    spec = spec_of(data)
    rows = []
    for i in range(8):
        act = "relu" if i < 4 else ["tanh", "relu"][i % 2]
        rows.append((float(i), {"x1": 1.0 + 0.1 * i, "x2": 5.0 + i, "act": act}))
    study = _study_with(rows)
    space = initial_space(spec)
    proposal = make_proposal(spec, 0, study, space, space, importances={"x1": 0.9, "x2": 0.08, "act": 0.02})
    act = proposal.params["act"]
    assert act.freeze and proposal.space["act"] == {"type": "fixed", "value": "relu"}
    x1 = proposal.space["x1"]
    assert x1["low"] == pytest.approx(1.0 - 0.2 * 0.2) and x1["high"] == pytest.approx(1.2 + 0.2 * 0.2)
    assert proposal.evidence.best_trial == 0
    assert proposal.next == "refine" and proposal.fidelity.level == "low"


def test_categorical_choice_absent_from_topk_is_dropped_with_enough_evidence():
    data = branin_campaign(gate={"top_k": 3, "margin": 0.2})
    data["space"]["act"] = {"type": "categorical", "choices": ["relu", "tanh", "gelu"]}
    spec = spec_of(data)
    rows = [
        (float(i), {"x1": 1.0, "x2": 5.0 + i, "act": ["relu", "tanh", "gelu"][0 if i < 3 else 1 + i % 2]})
        for i in range(8)
    ]
    space = initial_space(spec)
    proposal = make_proposal(spec, 0, _study_with(rows), space, space, importances={})
    assert proposal.space["act"] == {"type": "categorical", "choices": ["relu"]}
    assert "dropped" in proposal.params["act"].note


def test_maximize_takes_the_largest_values_as_top():
    data = branin_campaign(
        gate={"top_k": 2, "margin": 0.0, "min_width": 0.0}, metric={"name": "acc", "direction": "maximize"}
    )
    spec = spec_of(data)
    rows = [(float(i), {"x1": float(i), "x2": 7.0, "act": "relu"}) for i in range(6)]
    space = initial_space(spec)
    proposal = make_proposal(spec, 0, _study_with(rows, "maximize"), space, space, importances={})
    assert proposal.space["x1"]["low"] == pytest.approx(4.0)
    assert proposal.evidence.best_value == 5.0


# Fidelity agreement: a lower fidelity that misranks the configurations re-evaluated at the next
# fidelity is not trusted to narrow (engine.gates.proposal.trusted_rules).


def test_spearman_ranks_with_ties():
    from engine.gates.proposal import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None
    assert spearman([1, 2, 2, 3], [2, 1, 3, 3]) == pytest.approx(0.5)  # ties share their mean rank


def _rows():
    return [(float(i), {"x1": 1.0 + 0.1 * i, "x2": 5.0 + 0.1 * i, "act": "relu"}) for i in range(8)]


def test_low_agreement_widens_the_margin_and_negative_agreement_holds_the_range():
    spec = spec_of(
        branin_campaign(
            gate={
                "top_k": 3,
                "margin": 0.2,
                "min_width": 0.0,
                "edge_fraction": 0.0,
                "trust_rank": 0.5,
                "reopen_rank": 0.0,
            }
        )
    )
    space = initial_space(spec)
    study = _study_with(_rows())
    trusted = make_proposal(
        spec, 0, study, space, space, {}, agreement={"pairs": 6, "rho": 0.9, "from": ["low"], "to": "mid"}
    )
    x1 = trusted.space["x1"]
    assert (x1["low"], x1["high"]) == pytest.approx((1.0 - 0.04, 1.2 + 0.04))  # the plain rule
    widened = make_proposal(
        spec, 0, study, space, space, {}, agreement={"pairs": 6, "rho": 0.25, "from": ["low"], "to": "mid"}
    )
    x1 = widened.space["x1"]
    assert (x1["low"], x1["high"]) == pytest.approx((1.0 - 0.08, 1.2 + 0.08))  # margin x 0.5 / 0.25
    assert "margin widened x2.0" in widened.params["x1"].note
    held = make_proposal(
        spec, 0, study, space, space, {}, agreement={"pairs": 6, "rho": -0.3, "from": ["low"], "to": "mid"}
    )
    assert held.space["x1"] == space["x1"] and "not narrowed" in held.params["x1"].note
    assert held.evidence.agreement["rho"] == -0.3
    too_few = make_proposal(
        spec, 0, study, space, space, {}, agreement={"pairs": 3, "rho": -1.0, "from": ["low"], "to": "mid"}
    )
    assert too_few.space["x1"] == trusted.space["x1"]


def test_by_default_a_weak_agreement_holds_the_range():
    # reopen_rank defaults to 0.5: at rho 0.25 over 6 pairs the lower fidelity is not trusted to narrow
    spec = spec_of(branin_campaign(gate={"top_k": 3, "margin": 0.2, "min_width": 0.0, "edge_fraction": 0.0}))
    space = initial_space(spec)
    weak = make_proposal(
        spec,
        0,
        _study_with(_rows()),
        space,
        space,
        {},
        agreement={"pairs": 6, "rho": 0.25, "from": ["low"], "to": "mid"},
    )
    assert weak.space["x1"] == space["x1"] and "not narrowed" in weak.params["x1"].note
    strong = make_proposal(
        spec,
        0,
        _study_with(_rows()),
        space,
        space,
        {},
        agreement={"pairs": 6, "rho": 0.6, "from": ["low"], "to": "mid"},
    )
    assert strong.space["x1"]["high"] - strong.space["x1"]["low"] < space["x1"]["high"] - space["x1"]["low"]


def test_fidelity_agreement_pairs_seeds_with_their_lower_fidelity_values(tmp_path):
    from engine.campaign import Coordinator
    from engine.gates.proposal import fidelity_agreement
    from engine.store.ledger import Ledger

    data = branin_campaign("agree", gate={"top_k": 3, "margin": 0.2})
    data["sprints"] = [
        {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 10},
        {"name": "full", "sampler": "random", "fidelity": "high", "n_trials": 6, "seed_top": 5},
    ]
    spec = spec_of(data)
    url = f"journal://{tmp_path / 'journal.log'}"
    coordinator = Coordinator(spec, url, workers=0, log=lambda line: None, runs_root=tmp_path)
    coordinator.run()
    ledger = Ledger(coordinator.storage, spec.name)
    record = ledger.sprint_record(1)
    assert record is not None
    study = optuna.load_study(study_name=record.study, storage=coordinator.storage)
    agreement = fidelity_agreement(coordinator.storage, ledger, record, study)
    assert agreement["pairs"] == 5 and agreement["from"] == ["low"] and agreement["to"] == "high"
    assert -1 <= agreement["rho"] <= 1
    # the first sprint re-evaluated nothing
    first = ledger.sprint_record(0)
    assert first is not None
    assert (
        fidelity_agreement(
            coordinator.storage,
            ledger,
            first,
            optuna.load_study(study_name=first.study, storage=coordinator.storage),
        )
        is None
    )


def test_too_few_completed_trials_keep_every_range_with_the_reason():
    spec = spec_of(branin_campaign(gate={"top_k": 5, "margin": 0.2, "min_width": 0.0}))
    space = initial_space(spec)
    study = _study_with([(float(i), {"x1": 1.0 + 0.1 * i, "x2": 5.0 + i, "act": "relu"}) for i in range(4)])
    proposal = make_proposal(spec, 0, study, space, space, importances={})
    assert proposal.space == space and not proposal.evidence.narrowed
    note = proposal.params["x1"].note
    assert note.startswith("range kept: 4 completed trials") and "at least 5" in note
    from engine.gates.proposal import summary_lines

    assert summary_lines(proposal) == [f"no narrowing: {proposal.evidence.narrowing_rule}"]
    # enough trials for top_k, but not more than the parameters narrowed (3 with `act`): still kept
    data = branin_campaign(gate={"top_k": 2, "margin": 0.2, "min_width": 0.0})
    data["space"]["act"] = {"type": "categorical", "choices": ["relu", "tanh", "gelu"]}
    spec = spec_of(data)
    space = initial_space(spec)
    rows = [(float(i), {"x1": 1.0 + 0.1 * i, "x2": 5.0 + i, "act": "relu"}) for i in range(3)]
    proposal = make_proposal(spec, 0, _study_with(rows), space, space, importances={})
    assert proposal.space == space and "more than the 3 parameters" in proposal.params["x2"].note
    rows.append((3.0, {"x1": 1.3, "x2": 8.0, "act": "relu"}))
    proposal = make_proposal(spec, 0, _study_with(rows), space, space, importances={})
    assert proposal.space["x1"] != space["x1"] and proposal.evidence.narrowed
