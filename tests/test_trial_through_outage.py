"""A connection cut while a trial is being asked: the write that reached the database is taken up by the
retry (no orphaned RUNNING trial for the coordinator to fail a minute later), one that did not is
written again, and an enqueued trial is still popped first. A cut while the objective writes (an
attribute, a report, an artifact) waits and carries on instead of failing the trial. Real Optuna RDB
storage (SQLite); the cut is a ConnectionError raised after (or instead of) the storage's own write."""

import optuna
import pytest
from enginekit import bare_sprint_record
from optuna.trial import TrialState

from engine.execution.trials import ask_through_outage, fail_and_retry, run_trial
from engine.store.optuna_internals import study_storage
from engine.store.schema import ASK_TOKEN_ATTR


@pytest.fixture
def study(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'ask.db'}")
    return optuna.create_study(storage=storage, study_name="ask", sampler=optuna.samplers.RandomSampler(seed=0))


def cut_connection(monkeypatch, study, *, after_commit: bool, times: int = 1) -> list[int]:
    """The next `times` create_new_trial calls lose the connection, after or before their commit."""
    storage = study_storage(study)
    real, calls = storage.create_new_trial, []

    def create_new_trial(study_id, template_trial=None):
        calls.append(1)
        if len(calls) <= times:
            if after_commit:
                real(study_id, template_trial=template_trial)
            raise ConnectionError("server closed the connection unexpectedly")
        return real(study_id, template_trial=template_trial)

    monkeypatch.setattr(storage, "create_new_trial", create_new_trial)
    monkeypatch.setattr("engine.store.storage.time.sleep", lambda s: None)
    return calls


def test_a_trial_written_before_the_cut_is_taken_up_not_orphaned(study, monkeypatch):
    lines: list[str] = []
    calls = cut_connection(monkeypatch, study, after_commit=True)
    trial = ask_through_outage(study, lines.append)
    trials = study.get_trials(deepcopy=False)
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.RUNNING)]
    assert trial.number == 0 and len(calls) == 1  # found by its token: nothing written twice
    assert any("ask a trial failed (server closed the connection" in line for line in lines), lines
    assert any("trial 0: created just before the outage; this worker takes it up" in line for line in lines), lines
    trial.suggest_float("x", 0, 1)
    study.tell(trial, 1.0)
    assert study.get_trials()[0].state == TrialState.COMPLETE


def test_a_trial_not_written_before_the_cut_is_written_again(study, monkeypatch):
    lines: list[str] = []
    calls = cut_connection(monkeypatch, study, after_commit=False, times=2)
    trial = ask_through_outage(study, lines.append)
    assert trial.number == 0 and len(calls) == 3
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    assert not any("takes it up" in line for line in lines)


def test_tokens_belong_to_one_ask(study, monkeypatch):
    first = ask_through_outage(study, print)
    cut_connection(monkeypatch, study, after_commit=True)
    second = ask_through_outage(study, print)  # finds its own trial, not the first ask's
    assert (first.number, second.number) == (0, 1)
    tokens = [t.system_attrs[ASK_TOKEN_ATTR] for t in study.get_trials()]
    assert len(set(tokens)) == 2


def test_an_enqueued_trial_is_popped_first_and_a_retry_does_not_inherit_the_token(study):
    study.enqueue_trial({"x": 0.25})
    trial = ask_through_outage(study, print)
    assert trial.suggest_float("x", 0, 1) == 0.25 and ASK_TOKEN_ATTR not in study.get_trials()[0].system_attrs
    study.tell(trial, 1.0)
    running = ask_through_outage(study, print)
    running.suggest_float("x", 0, 1)
    frozen = study_storage(study).get_trial(running._trial_id)
    assert ASK_TOKEN_ATTR in frozen.system_attrs
    assert fail_and_retry(study, frozen, "stale: test", max_retry=1)
    queued = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(queued) == 1 and ASK_TOKEN_ATTR not in queued[0].system_attrs


def test_an_objective_writing_during_an_outage_waits_and_its_trial_completes(study, tmp_path, monkeypatch):
    storage = study_storage(study)
    real, cuts = storage.set_trial_user_attr, []

    def set_trial_user_attr(trial_id, key, value):
        if key == "true_regret" and len(cuts) < 2:  # cut twice: the objective waits through both
            cuts.append(key)
            raise ConnectionError("server closed the connection unexpectedly")
        return real(trial_id, key, value)

    monkeypatch.setattr(storage, "set_trial_user_attr", set_trial_user_attr)
    monkeypatch.setattr("engine.store.storage.time.sleep", lambda s: None)

    def objective(ctx):
        ctx.report(0.5, 0)
        ctx.set_attr("true_regret", 0.25)
        ctx.set_attr("notes", "after the outage")
        return 0.25

    record = bare_sprint_record(study="ask")
    frozen = run_trial(
        study,
        objective=objective,
        sprint=record,
        settings={},
        full_fidelity={},
        cost_knobs=[],
        run_dir=tmp_path,
        artifact_store=None,
        worker="w0",
    )
    assert cuts == ["true_regret", "true_regret"]
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.25
    assert frozen.user_attrs["true_regret"] == 0.25 and frozen.user_attrs["notes"] == "after the outage"
