"""Every sampler and pruner name runs a real sprint; seeding carries the best configurations forward."""

import optuna
import pytest
from enginekit import branin_campaign, spec_of
from optuna.trial import TrialState

from engine.campaign import Coordinator
from engine.spec import PRUNERS, SAMPLERS
from engine.store.ledger import Ledger
from engine.store.storage import open_storage


def one_sprint(name, sampler="random", pruner="none", n_trials=6, options=None, epochs=2):
    return branin_campaign(
        name,
        fidelity={
            "levels": {"low": {"train_fraction": 0.2, "epochs": epochs}, "high": {"train_fraction": 1.0, "epochs": 9}}
        },
        sprints=[
            {
                "name": "only",
                "sampler": sampler,
                "pruner": pruner,
                "fidelity": "high" if pruner != "none" else "low",
                "n_trials": n_trials,
                "sampler_options": options or {},
            }
        ],
    )


def storage_url(kind, tmp_path):
    return f"journal://{tmp_path / 'j.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 's.db'}"


def run(data, url, tmp_path, **kw):
    coordinator = Coordinator(spec_of(data), url, workers=0, runs_root=tmp_path / "runs", log=lambda m: None, **kw)
    return coordinator, coordinator.run()


def trials_of(url, study):
    return optuna.load_study(study_name=study, storage=open_storage(url, heartbeat=False)).get_trials()


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_a_sprint(tmp_path, storage_kind, sampler):
    options = {"n_startup_trials": 3} if sampler in ("skopt-gp", "gp", "tpe") else {}
    url = storage_url(storage_kind, tmp_path)
    _, summary = run(one_sprint(f"s-{sampler}", sampler, n_trials=6, options=options), url, tmp_path)
    assert summary["status"] == "finished"
    trials = trials_of(url, summary["sprints"][0]["study"])
    assert len(trials) == 6
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # points are distinct and inside the space
    points = {(round(t.params["x1"], 9), round(t.params["x2"], 9)) for t in trials}
    assert len(points) == 6
    assert all(-5 <= t.params["x1"] <= 10 and 0 <= t.params["x2"] <= 15 for t in trials)


@pytest.mark.parametrize("pruner", PRUNERS)
def test_every_pruner_name(tmp_path, pruner):
    url = storage_url("journal", tmp_path)
    _, summary = run(one_sprint(f"p-{pruner}", "random", pruner, n_trials=16), url, tmp_path)
    trials = trials_of(url, summary["sprints"][0]["study"])
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if pruner == "none":
        assert not pruned
    else:
        assert pruned, f"{pruner} pruned nothing in 16 trials"
        assert all(t.last_step is not None and t.last_step < 8 for t in pruned)
        assert all("pruned_at" in t.user_attrs for t in pruned)
        # a pruned trial costs only the epochs it ran
        assert all(t.user_attrs["cost"] < 1.0 for t in pruned)


def test_seeding_enqueues_best_earlier_configurations_inside_the_new_space(tmp_path):
    url = storage_url("journal", tmp_path)
    coordinator, summary = run(branin_campaign("seeds"), url, tmp_path)
    ledger = Ledger(open_storage(url), "seeds")
    explore, refine = ledger.sprint_record(0), ledger.sprint_record(1)
    assert len(refine.seeded) == 2
    first = trials_of(url, explore.study)
    best_two = sorted((t for t in first if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    refine_trials = trials_of(url, refine.study)
    seeded = [t for t in refine_trials if t.user_attrs.get("seeded")]
    assert len(seeded) == 2
    seeded_params = [t.params for t in seeded]
    inside = [
        t.params
        for t in best_two
        if refine.space["x1"]["low"] <= t.params["x1"] <= refine.space["x1"]["high"]
        and refine.space["x2"]["low"] <= t.params["x2"] <= refine.space["x2"]["high"]
    ]
    assert seeded_params == inside[:2]
    # the next sprint's space is the approved proposal
    assert refine.space == ledger.decision_record(0).space == ledger.proposal_record(0).space
    assert summary["status"] == "finished" and len(summary["sprints"]) == 3


def test_untuned_parameters_stay_at_the_best_value(tmp_path):
    data = branin_campaign("fixedp")
    data["sprints"][1]["params"] = ["x1"]
    url = storage_url("journal", tmp_path)
    run(data, url, tmp_path)
    ledger = Ledger(open_storage(url), "fixedp")
    explore_best = optuna.load_study(study_name=ledger.sprint_record(0).study, storage=open_storage(url)).best_trial
    refine = ledger.sprint_record(1)
    assert refine.tuned == ("x1",)
    assert refine.fixed["x2"] == explore_best.params["x2"]
    assert all(set(t.params) == {"x1"} for t in trials_of(url, refine.study))


def test_cost_budget_and_fidelity_weighted_cost(tmp_path):
    data = branin_campaign(
        "costly", sprints=[{"name": "only", "sampler": "random", "fidelity": "low", "budget_cost": 0.5}]
    )
    url = storage_url("journal", tmp_path)
    _, summary = run(data, url, tmp_path)
    trials = trials_of(url, summary["sprints"][0]["study"])
    costs = [t.user_attrs["cost"] for t in trials]
    assert costs[0] == pytest.approx(0.2 * 2 / 9)  # train_fraction 0.2 x 2 of 9 epochs
    assert sum(costs) >= 0.5 and sum(costs[:-1]) < 0.5
