"""Narrowing that higher-fidelity evidence can undo (engine.gates.reopen), on a constructed case: the low
fidelity hides the optimum, the first gate cuts it off, a probe at the next fidelity finds it, the
next gate re-opens the range under `auto`, and the campaign then finds the optimum."""

import optuna
import pytest
from enginekit import spec_of
from objectives_biased import true_value

from engine.campaign import Coordinator
from engine.gates.proposal import summary_lines
from engine.gates.reopen import narrowed_sides, plan_probes, probe_count
from engine.store.ledger import Ledger

# a probe is a configuration outside the sprint's box by design (engine.gates.reopen silences this outside pytest)
pytestmark = pytest.mark.filterwarnings("ignore:Fixed parameter .* is out of range")


def _campaign(explore_share: float) -> dict:
    return {
        "name": f"reopen-{int(explore_share * 100)}",
        "seed": 0,
        "objective": {"path": "objectives_biased:biased"},
        "metric": {"name": "loss", "direction": "minimize"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "fidelity": {
            "cost_knobs": ["epochs"],
            "levels": {"low": {"z": 0, "epochs": 1}, "mid": {"z": 1, "epochs": 3}, "high": {"z": 1, "epochs": 9}},
        },
        "gate": {"top_k": 5, "margin": 0.15},
        "sprints": [
            {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 30},
            {
                "name": "refine",
                "sampler": "random",
                "fidelity": "mid",
                "n_trials": 10,
                "seed_top": 3,
                "explore_share": explore_share,
            },
            {
                "name": "full",
                "sampler": "tpe",
                "fidelity": "high",
                "n_trials": 12,
                "seed_top": 3,
                "explore_share": explore_share,
            },
        ],
    }


def _run(tmp_path, explore_share):
    spec = spec_of(_campaign(explore_share))
    coordinator = Coordinator(
        spec, f"journal://{tmp_path / 'journal.log'}", workers=0, log=lambda line: None, runs_root=tmp_path
    )
    coordinator.run()
    ledger = Ledger(coordinator.storage, spec.name)
    full = ledger.sprint_record(2)
    best = optuna.load_study(study_name=full.study, storage=coordinator.storage).best_trial
    return ledger, coordinator.storage, best


def test_a_later_gate_reopens_what_the_first_cut_off_and_the_campaign_finds_the_optimum(tmp_path):
    ledger, storage, best = _run(tmp_path / "probes", 0.3)
    first = ledger.proposal_record(0).space["x"]
    assert first["high"] < 0.5  # the first gate narrowed around the low fidelity's basin: 0.85 is cut off
    refine = ledger.sprint_record(1)
    assert len(refine.probes) == 3 and {p["param"] for p in refine.probes} == {"x"}
    probes = [
        t for t in optuna.load_study(study_name=refine.study, storage=storage).get_trials() if t.user_attrs.get("probe")
    ]
    assert len(probes) == 3 and all(not first["low"] <= t.params["x"] <= first["high"] for t in probes)
    second = ledger.proposal_record(1)
    assert second is not None
    assert second.space["x"]["high"] == 1.0  # re-opened to the campaign's bound, with the reason
    assert second.params["x"].reopen == ("high",)
    assert "re-opened to the campaign's bound" in second.params["x"].note
    assert [r["param"] for r in second.evidence.reopened] == ["x"]
    shown = summary_lines(second)  # what `hpo-tui approve --show` and `status` print
    assert shown[0].endswith("[re-opened: high]") and shown[1].startswith("    why: probe trial")
    assert ledger.sprint_record(2).space["x"]["high"] == 1.0  # `auto` applied it
    assert best.params["x"] == pytest.approx(0.85, abs=0.1) and true_value(best.params["x"]) < 0.02

    # without probes (explore_share = 0) nothing contradicts the first gate: the campaign stays in the local basin
    _, _, stuck = _run(tmp_path / "none", 0.0)
    assert true_value(stuck.params["x"]) >= 0.3


def test_probes_sit_outside_the_box_on_narrowed_parameters_only():
    original = {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "depth": {"type": "int", "low": 1, "high": 8, "step": 1},
        "wd": {"type": "float", "low": 0.0, "high": 1.0},
    }
    current = {
        "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        "depth": {"type": "int", "low": 3, "high": 8, "step": 1},
        "wd": {"type": "float", "low": 0.0, "high": 1.0},
    }
    assert narrowed_sides(current, original) == {"lr": ["low", "high"], "depth": ["low"]}
    base = {"lr": 3e-3, "depth": 5, "wd": 0.5}
    probes = plan_probes(current, ["lr", "depth", "wd"], original, base, 6, seed=1)
    # every cut side is probed, one side per parameter before any parameter's second side
    sides = [(p["param"], p["side"]) for p in probes]
    assert sorted(sides[:3]) == [("depth", "low"), ("lr", "high"), ("lr", "low")] and sides[3:] == sides[:3]
    assert {p for p, _ in sides[:2]} == {"depth", "lr"}
    for p in probes:
        value = p["params"][p["param"]]
        box = current[p["param"]]
        assert original[p["param"]]["low"] <= value <= original[p["param"]]["high"]
        assert value < box["low"] if p["side"] == "low" else value > box["high"]
        assert {n: v for n, v in p["params"].items() if n != p["param"]} == {
            n: v for n, v in base.items() if n != p["param"]
        }
    assert all(isinstance(p["params"]["depth"], int) for p in probes)
    assert probe_count(0.1, 25, None, 1.0) == 2 and probe_count(0.1, 9, None, 1.0) == 0
    assert probe_count(0.1, None, 30.0, 1.0) == 3 and probe_count(0.0, 100, None, 1.0) == 0


def test_drift_extends_the_range_the_way_the_top_k_moved_from_the_lower_fidelity_seeds():
    from engine.gates.proposal import top_trials
    from engine.gates.reopen import fidelity_drift

    dist = {"x": optuna.distributions.FloatDistribution(0.4, 0.8)}
    study = optuna.create_study()
    for x in (0.70, 0.72, 0.68):  # the lower fidelity's best, re-evaluated here
        study.add_trial(
            optuna.trial.create_trial(params={"x": x}, distributions=dist, value=1.0, user_attrs={"seeded": True})
        )
    for i, x in enumerate((0.50, 0.52, 0.48)):  # this fidelity's best sit lower
        study.add_trial(optuna.trial.create_trial(params={"x": x}, distributions=dist, value=0.1 * i))
    current = {"x": {"type": "float", "low": 0.4, "high": 0.8}}
    original = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    top = top_trials(study, 3)
    (drift,) = fidelity_drift(study, top, current, original, factor=1.5)
    assert drift.side == "low" and drift.bound == pytest.approx(0.5 - 1.5 * 0.2)
    assert "moved down" in drift.reason
    assert fidelity_drift(study, top, current, original, factor=0.0) == []
    # a move within the noise (below DRIFT_MIN of the width) extends nothing
    still = optuna.create_study()
    for x, seeded in ((0.60, True), (0.62, True), (0.61, False), (0.59, False)):
        still.add_trial(
            optuna.trial.create_trial(
                params={"x": x}, distributions=dist, value=0.0 if not seeded else 1.0, user_attrs={"seeded": seeded}
            )
        )
    assert fidelity_drift(still, top_trials(still, 2), current, original, factor=1.5) == []
