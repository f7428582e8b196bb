"""The light journal reader replays a journal as Optuna does, keeping what the console shows."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation as OptunaJournalOperation
from optuna.trial import TrialState, create_trial

from engine.store.journal_reader import EVERYTHING, JournalOperation, JournalReader
from engine.store.ledger import Ledger
from engine.store.storage import open_storage
from engine.views.snapshot import SNAPSHOT_FILTER, SnapshotReader, open_snapshot_reader

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_every_operation_code_of_optunas_is_read_as_optuna_reads_it(tmp_path):
    """DISCARD_TRIALS (10, written by Rustuna) included: Optuna's replay skips it, and so does the reader."""
    path = tmp_path / "j.log"
    storage = JournalStorage(JournalFileBackend(str(path)))
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with open(path, "a") as handle:
        handle.write(json.dumps({"op_code": OptunaJournalOperation.DISCARD_TRIALS, "worker_id": "w", "trial_ids": [0]}))
        handle.write("\n")
    reader = JournalReader(str(path))
    reader.update()
    theirs = JournalStorage(JournalFileBackend(str(path)))
    assert [t.number for t in reader.trials(0)] == [t.number for t in theirs.get_all_trials(0)] == [0, 1]
    assert JournalOperation is OptunaJournalOperation  # one source for the codes


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    n = trial.suggest_int("n", 1, 9)
    kind = trial.suggest_categorical("kind", ["adam", "sgd", 3])
    trial.set_user_attr("worker", "h:1:0")
    for step in range(4):
        trial.report(x * x + step, step)
        if kind == "sgd" and step == 2:
            trial.set_user_attr("pruned_at", {"step": step})
            raise optuna.TrialPruned()
    if n == 9:
        trial.set_user_attr("fail_reason", "out of memory")
        trial.set_user_attr("fail_kind", "oom")
        raise RuntimeError("out of memory")
    trial.set_user_attr("duration_s", 0.5 + n)
    trial.set_user_attr("big", list(range(50)))  # not shown by the console
    return x * x + n


def write_studies(storage) -> None:
    """Every operation the console reads, on several studies; a deleted one; a duplicate name."""
    first = optuna.create_study(study_name="a", storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    first.set_user_attr("spec", {"metric": "regret"})
    first.optimize(objective, n_trials=30, catch=(RuntimeError,))
    running = first.ask()
    running.suggest_float("x", -3.0, 3.0)
    running.report(1.5, 0)
    running.storage.set_trial_system_attr(running._trial_id, "failed_trial", 3)
    running.storage.set_trial_system_attr(running._trial_id, "completed_rung_0", 1.5)
    first.enqueue_trial({"x": 0.5, "n": 2, "kind": "adam"})  # WAITING
    doomed = optuna.create_study(study_name="doomed", storage=storage)
    doomed.optimize(lambda t: t.suggest_float("y", 0, 1), n_trials=2)
    optuna.delete_study(study_name="doomed", storage=storage)
    second = optuna.create_study(study_name="b", storage=storage, direction="maximize")
    second.add_trials(
        [
            create_trial(
                state=TrialState.COMPLETE,
                value=float(i),
                params={"y": i / 10, "m": i},
                distributions={"y": FloatDistribution(0, 1), "m": IntDistribution(0, 10)},
                user_attrs={"cost": 0.5},
                intermediate_values={0: 1.0, 3: float(i)},
            )
            for i in range(5)
        ]
    )
    second.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"y": 0.7, "m": 2},
            distributions={"y": FloatDistribution(0, 1), "m": IntDistribution(0, 10)},
            user_attrs={"pruned_at": {"step": 1, "value": 4.0}},
            system_attrs={"completed_rung_0": 1.0, "completed_rung_1": 2.0},
            intermediate_values={0: 9.0, 1: 4.0},
        )
    )
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        optuna.create_study(study_name="b", storage=storage)
    # A parameter whose distribution is incompatible with the study's is dropped by Optuna's replay.
    odd = second.ask()
    with pytest.raises(ValueError):  # the writer refuses it after writing it: the record stays in the journal
        storage.set_trial_param(odd._trial_id, "m", 0, CategoricalDistribution(["p", "q"]))
    storage.set_trial_param(odd._trial_id, "y", 0.25, FloatDistribution(0, 1))


def assert_same_trial(mine: optuna.trial.FrozenTrial, theirs: optuna.trial.FrozenTrial) -> None:
    assert (mine.number, mine._trial_id, mine.state) == (theirs.number, theirs._trial_id, theirs.state)
    assert mine.values == theirs.values
    assert mine.params == theirs.params and list(mine.params) == list(theirs.params)
    assert mine.distributions == theirs.distributions
    assert mine.user_attrs == theirs.user_attrs
    assert mine.system_attrs == theirs.system_attrs
    assert mine.intermediate_values == theirs.intermediate_values
    for ours, optunas in (
        (mine.datetime_start, theirs.datetime_start),
        (mine.datetime_complete, theirs.datetime_complete),
    ):
        assert (ours is None) == (optunas is None)
        if ours is not None:
            assert abs((ours - optunas).total_seconds()) < 1e-5


def assert_same_as_optuna(reader: JournalReader, path: str, *, whole: bool) -> None:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    studies = {s.study_name: s for s in storage.get_all_studies()}
    assert {s.name for s in reader.studies()} == set(studies)
    for name, study in studies.items():
        study_id = reader.study_id(name)
        assert study_id == study._study_id
        assert reader.study(study_id).user_attrs == study.user_attrs
        assert reader.study(study_id).directions == tuple(study.directions)
        trials = storage.get_all_trials(study._study_id)
        assert len(reader.trials(study_id)) == len(trials)
        for kept, trial in zip(reader.trials(study_id), trials, strict=True):
            assert_same_trial(kept.frozen() if whole else reader.full_trial(study_id, kept.number), trial)
            assert kept.last_step == trial.last_step
            assert kept.params == tuple(trial.params.items())


def test_replay_matches_optunas_for_every_operation(tmp_path):
    path = str(tmp_path / "journal.log")
    write_studies(open_storage(f"journal://{path}", heartbeat=False))
    reader = JournalReader(path)
    reader.update()
    assert_same_as_optuna(reader, path, whole=True)
    states = {t.state for t in reader.trials(reader.study_id("a"))}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING}
    assert "m" not in dict(reader.trials(reader.study_id("b"))[-1].params)  # the incompatible parameter


def test_the_console_filter_keeps_what_rows_show_and_details_read_the_rest(tmp_path):
    path = str(tmp_path / "journal.log")
    write_studies(open_storage(f"journal://{path}", heartbeat=False))
    reader = JournalReader(path, SNAPSHOT_FILTER)
    reader.update()
    trials = reader.trials(reader.study_id("a"))
    complete = next(t for t in trials if t.state == TrialState.COMPLETE)
    pruned = next(t for t in trials if t.state == TrialState.PRUNED)
    assert "big" not in complete.user_attrs and complete.intermediate == {} and complete.last_step == 3
    assert pruned.intermediate == {2: pytest.approx(pruned.intermediate[2])} and set(pruned.intermediate) == {2}
    assert_same_as_optuna(reader, path, whole=False)  # full_trial reads every field back


def test_incremental_updates_after_appends(tmp_path):
    path = str(tmp_path / "journal.log")
    storage = open_storage(f"journal://{path}", heartbeat=False)
    study = optuna.create_study(study_name="a", storage=storage)
    reader = JournalReader(path)
    assert reader.update() == 1
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    trial.report(x, 0)
    reader.update()
    (kept,) = reader.trials(0)
    assert kept.state == TrialState.RUNNING and kept.last_step == 0 and dict(kept.params) == {"x": x}
    study.tell(trial, x * 2)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    applied = reader.update()
    assert applied > 0 and reader.update() == 0
    assert kept.state == TrialState.COMPLETE and kept.value == x * 2
    assert_same_as_optuna(reader, path, whole=True)


def test_a_torn_last_line_waits_until_it_is_complete(tmp_path):
    path = tmp_path / "journal.log"
    storage = open_storage(f"journal://{path}", heartbeat=False)
    study = optuna.create_study(study_name="a", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    reader = JournalReader(str(path))
    reader.update()
    line = json.dumps(
        {"op_code": 8, "worker_id": "w", "trial_id": 1, "user_attr": {"worker": "late"}}, separators=(",", ":")
    )
    # Trial 1 is finished, so use a new running trial for the appended attribute.
    running = study.ask()
    reader.update()
    line = line.replace('"trial_id":1', f'"trial_id":{running._trial_id}')
    with open(path, "ab") as handle:
        handle.write(line[:20].encode())  # a writer mid-append
    assert reader.update() == 0
    assert reader.trials(0)[-1].user_attrs == {}
    with open(path, "ab") as handle:
        handle.write(line[20:].encode() + b"\n")
    assert reader.update() == 1
    assert reader.trials(0)[-1].user_attrs == {"worker": "late"}


def test_the_console_shows_the_same_snapshot_from_the_light_reader(tmp_path):
    """A real campaign: the light reader's snapshot, details and importances equal Optuna's replay's."""
    from engine.campaign import Coordinator
    from engine.spec import parse_campaign
    from tests.enginekit import branin_campaign

    data = branin_campaign("light")  # three sprints, gates decided by the auto policy, hyperband in the last
    url = f"journal://{tmp_path / 'journal.log'}"
    Coordinator(parse_campaign(data), url, workers=0, log=lambda m: None).run()
    storage = open_storage(url, heartbeat=False)
    full = SnapshotReader(storage, "light")
    light = open_snapshot_reader(url, "light", lambda u: open_storage(u, heartbeat=False))
    assert light.journal is not None and light._storage is None
    for sprint in (0, 1, 2):
        theirs, ours = full.read(sprint), light.read(sprint)
        assert ours.trials == theirs.trials and len(ours.trials) > 0
        for name in ("counts", "counted", "best", "events", "history", "status", "sprint", "decisions"):
            assert getattr(ours, name) == getattr(theirs, name), name
        for row in ours.trials:
            assert light.trial_detail(sprint, row.number) == full.trial_detail(sprint, row.number)
        assert light.importances(sprint) == full.importances(sprint)
    assert light._storage is None  # nothing above opened Optuna's replay
    assert isinstance(light.ledger, Ledger) and light._storage is not None  # writes do, on first use


def test_a_campaign_that_is_not_there_yet(tmp_path):
    from engine.store.ledger import CampaignNotFound

    url = f"journal://{tmp_path / 'journal.log'}"
    light = open_snapshot_reader(url, "later", lambda u: open_storage(u, heartbeat=False))
    with pytest.raises(CampaignNotFound):
        light.read()
    Ledger(open_storage(url, heartbeat=False), "later", create=True)
    assert light.read().campaign == "later"


def test_everything_is_the_default_filter():
    assert EVERYTHING.keeps_user_attr("anything") and EVERYTHING.keeps_system_attr("anything")
