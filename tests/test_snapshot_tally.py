"""The reader's running summary (finished rows added once, open rows counted at each read) equals a
summary of every row, however the trials finish."""

from __future__ import annotations

import optuna
import pytest

from engine.store.ledger import Ledger
from engine.store.storage import open_storage
from engine.views.snapshot import SnapshotReader, summarise


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_running_summary_matches_a_full_summary(tmp_path, direction):
    storage = open_storage(f"journal://{tmp_path / 'journal.log'}")
    ledger = Ledger(storage, "c", create=True)
    ledger.put("spec", {"metric": {"name": "loss", "direction": direction}, "sprints": [{"name": "explore"}]})
    ledger.set_state(status="running", sprint=0, gate=0, pending_gate=None, paused=False)
    record = {"index": 0, "name": "explore", "study": "c/00", "sampler": "random", "pruner": "none"}
    record |= {"space": {}, "tuned": ["x"], "fixed": {}, "level": None, "fidelity": {}, "n_trials": 99}
    ledger.put("sprint:0", record | {"status": "running"})
    study = optuna.create_study(study_name="c/00", storage=storage, direction=direction)
    reader = SnapshotReader(storage, "c")
    maximize = direction == "maximize"
    running = []
    # Trials 8 then 6 finish with the same best value (7 is pruned): the earliest trial is the best.
    values = [3.0, 1.0, 2.0, 1.0, 5.0, 1.0, 0.5, 0.5, 0.5, 4.0]
    for step, value in enumerate(values):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("duration_s", 1.0 + step)
        trial.set_user_attr("cost", 0.5)
        running.append((trial, value))
        if step % 3 == 2:  # finish the newest first: trials complete out of trial order
            for open_trial, open_value in reversed(running):
                if open_trial.number % 4 == 3:
                    study.tell(open_trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(open_trial, open_value)
            running.clear()
        snapshot = reader.read()
        expected = summarise(snapshot.trials, maximize)
        assert snapshot.counts == expected.counts
        assert snapshot.counted == expected.counted
        assert snapshot.best == expected.best
        assert snapshot.cost_used == pytest.approx(expected.cost_used)
        assert snapshot.seconds_spent == pytest.approx(expected.seconds_spent)
    assert snapshot.running == 1 and snapshot.best is not None
    assert snapshot.best.number == (4 if maximize else 6)
