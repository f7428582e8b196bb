"""Budgets that hold: enqueued seeds and probes count within a sprint's n_trials and budget_cost, and a
seed_top larger than n_trials is refused at validation with the reason."""

import optuna
import pytest
from enginekit import branin_campaign, hpo_tui, spec_of, write_toml

from engine.campaign import Coordinator
from engine.spec import CampaignFileError
from engine.store.ledger import Ledger

WORKERS = 2


def test_validate_refuses_seed_top_above_n_trials(tmp_path):
    data = branin_campaign("refuse")
    data["sprints"][1]["seed_top"] = 7  # n_trials = 6
    with pytest.raises(CampaignFileError, match="seed_top"):
        spec_of(data)
    result = hpo_tui("validate", str(write_toml(tmp_path / "c.toml", data)), cwd=tmp_path)
    assert result.returncode != 0
    assert "sprints.1: seed_top (7) is larger than n_trials (6)" in result.stdout + result.stderr


@pytest.mark.xdist_group("workers")
def test_no_sprint_runs_past_its_budget_beyond_the_documented_overshoot(tmp_path):
    data = branin_campaign("budget", workers=WORKERS)
    data["objective"]["settings"]["sleep_per_step"] = 0.02
    data["sprints"] = [
        {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 12},
        # every trial of this sprint is a seed or a probe: none may run past n_trials
        {"name": "refine", "sampler": "tpe", "fidelity": "low", "n_trials": 3, "seed_top": 3, "explore_share": 0.5},
        # seed_top is not checked against a cost budget at validation; the queue is cut to fit it
        {"name": "full", "sampler": "tpe", "fidelity": "high", "budget_cost": 2.0, "seed_top": 5},
    ]
    spec = spec_of(data)
    coordinator = Coordinator(spec, f"journal://{tmp_path / 'journal.log'}", log=lambda line: None, runs_root=tmp_path)
    coordinator.run()
    ledger = Ledger(coordinator.storage, spec.name)
    counts = {}
    for index, sprint in enumerate(spec.sprints):
        record = ledger.sprint_record(index)
        trials = optuna.load_study(study_name=record.study, storage=coordinator.storage).get_trials()
        counts[sprint.name] = (len(trials), len(record.seeded), len(record.probes))
        assert all(t.state.is_finished() for t in trials)
    assert counts["refine"][1] + counts["refine"][2] <= 3 and counts["refine"][0] <= 3 + WORKERS - 1
    assert counts["full"][1] == 2  # two full-fidelity seeds fit a budget of 2 units, not five
    assert counts["full"][0] <= 2 + WORKERS - 1
    assert counts["explore"][0] <= 12 + WORKERS - 1
