"""A trial that raises, returns NaN, or kills its worker ends as FAIL with its reason; the campaign goes on."""

import optuna
from enginekit import ROOT, branin_campaign, spec_of
from optuna.trial import TrialState

from engine.campaign import Coordinator
from engine.store.ledger import Ledger
from engine.store.storage import open_storage


def test_raising_and_nan_trials_fail_with_reasons_and_the_campaign_goes_on(tmp_path):
    data = branin_campaign("flaky", objective={"path": "objectives_bad:flaky"})
    data["sprints"][0]["n_trials"] = 14
    url = f"journal://{tmp_path / 'j.log'}"
    summary = Coordinator(spec_of(data), url, workers=0, runs_root=tmp_path, log=lambda m: None).run()
    assert summary["status"] == "finished"
    storage = open_storage(url)
    trials = optuna.load_study(study_name=summary["sprints"][0]["study"], storage=storage).get_trials()
    assert len(trials) == 14
    reasons = {t.number: t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
    raised = [
        r for r in reasons.values() if r.startswith("RuntimeError: diverged: loss exploded (at objectives_bad.py:")
    ]
    nans = [r for r in reasons.values() if r == "objective returned nan"]
    assert raised and nans and len(raised) + len(nans) == len(reasons)
    for t in trials:
        x1 = t.params["x1"]
        assert (t.state == TrialState.COMPLETE) == (x1 >= 1)


def test_a_killed_worker_fails_its_trial_which_is_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}:{ROOT}")
    data = branin_campaign("killed", objective={"path": "objectives_bad:suicidal"}, trial_retries=1)
    data["sprints"] = data["sprints"][:1]
    url = f"journal://{tmp_path / 'j.log'}"
    messages = []
    summary = Coordinator(spec_of(data), url, workers=1, runs_root=tmp_path, log=messages.append).run()
    assert summary["status"] == "finished"
    trials = optuna.load_study(study_name=summary["sprints"][0]["study"], storage=open_storage(url)).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    assert "worker process died by SIGKILL" in failed[0].user_attrs["fail_reason"]
    assert failed[0].user_attrs["retried"] is True
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == failed[0].params
    # the retry replaces the failed trial in the budget: 8 counted trials, 9 in storage
    assert len(trials) == 9 and sum(t.state == TrialState.COMPLETE for t in trials) == 8
    assert any("restarted" in m for m in messages)
    assert Ledger(open_storage(url), "killed").campaign_state().status == "finished"
