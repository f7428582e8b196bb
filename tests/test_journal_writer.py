"""The ledger's writes appended straight to a journal (engine.store.journal_writer) are what Optuna's own
JournalStorage reads, and what it would have written; a running Optuna writer and the console share the file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import JournalStorage
from optuna.study import StudyDirection
from optuna.trial import TrialState

from engine.errors import GateAlreadyDecided
from engine.store.journal_reader import EVERYTHING, JournalOperation, JournalReader
from engine.store.journal_repair import GuardedJournalBackend
from engine.store.journal_writer import JournalStudyStorage
from engine.store.ledger import Ledger
from engine.store.records import DecisionDraft
from engine.store.schema import campaign_study_name
from engine.store.storage import open_storage
from tui.source import StorageSource

optuna.logging.set_verbosity(optuna.logging.WARNING)


def optuna_storage(journal: Path) -> JournalStorage:
    """A fresh replay by Optuna itself, as any other process would open the journal."""
    return JournalStorage(GuardedJournalBackend(str(journal)))


def journal_campaign(tmp_path: Path, name: str = "camp", trials: int = 5) -> Path:
    """A journal holding a campaign's ledger (written by Optuna's storage) and one study with trials."""
    journal = tmp_path / "journal.log"
    storage = open_storage(f"journal://{journal}", heartbeat=False)
    ledger = Ledger(storage, name, create=True)
    ledger.put("spec", {"name": name, "metric": {"name": "loss", "direction": "minimize"}, "sprints": []})
    ledger.set_state(status="waiting", sprint=0, gate=1, pending_gate=1)
    study = optuna.create_study(study_name=f"{name}/00-explore", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=trials)
    return journal


def light_ledger(journal: Path, name: str = "camp") -> Ledger:
    return Ledger(JournalStudyStorage(JournalReader(str(journal), EVERYTHING)), name)


def test_ledger_writes_read_back_by_optuna(tmp_path):
    journal = journal_campaign(tmp_path)
    ledger = light_ledger(journal)
    ledger.set_state(paused=True)
    big = {"name": "camp", "notes": "x" * 20_000}  # split into parts (engine.store.schema)
    ledger.put("spec", big)
    decision = ledger.record_decision(1, DecisionDraft(action="approve", note="looks right"), source="tui")

    theirs = Ledger(optuna_storage(journal), "camp")
    assert theirs.campaign_state().paused is True
    assert theirs.spec() == big
    assert theirs.decision_record(1) == decision
    assert theirs.records() == ledger.records()
    storage = optuna_storage(journal)
    trials = storage.get_all_trials(storage.get_study_id_from_name("camp/00-explore"))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5  # the trials are untouched


def test_records_have_optunas_format(tmp_path):
    """Byte for byte what Optuna's JournalStorage appends for the same study operations, bar the worker id."""
    mine, theirs = tmp_path / "mine.log", tmp_path / "theirs.log"
    for path in (mine, theirs):
        optuna_storage(path).create_new_study([StudyDirection.MINIMIZE], "s")
    light = JournalStudyStorage(JournalReader(str(mine), EVERYTHING))
    reference = optuna_storage(theirs)
    for storage in (light, reference):
        study_id = storage.get_study_id_from_name("s")
        storage.set_study_user_attr(study_id, "k", {"a": [1, 2.5, None, "é"]})
        storage.set_study_system_attr(study_id, "sys", 3)
        claim = storage.create_new_study([StudyDirection.MAXIMIZE], "claim")
        storage.delete_study(claim)

    def records(path: Path) -> list[dict]:
        return [
            {k: v for k, v in json.loads(line).items() if k != "worker_id"} for line in path.read_bytes().splitlines()
        ]

    assert records(mine) == records(theirs)
    assert optuna_storage(mine).get_study_system_attrs(0) == {"sys": 3}


def test_a_study_name_taken_first_is_a_duplicate_and_missing_studies_are_key_errors(tmp_path):
    journal = journal_campaign(tmp_path)
    light = JournalStudyStorage(JournalReader(str(journal), EVERYTHING))
    optuna_storage(journal).create_new_study([StudyDirection.MINIMIZE], "claim")  # another process, first
    with pytest.raises(DuplicatedStudyError):
        light.create_new_study([StudyDirection.MINIMIZE], "claim")
    written = journal.read_bytes()
    with pytest.raises(KeyError):
        light.set_study_user_attr(99, "k", 1)
    with pytest.raises(KeyError):
        light.delete_study(99)
    assert journal.read_bytes() == written  # nothing written for a study that is not there


def test_the_decision_compare_and_set_holds_between_the_light_writer_and_optuna(tmp_path):
    journal = journal_campaign(tmp_path)
    Ledger(optuna_storage(journal), "camp").record_decision(1, DecisionDraft(action="reject"), source="cli")
    with pytest.raises(GateAlreadyDecided) as raised:
        light_ledger(journal).record_decision(1, DecisionDraft(action="approve"), source="tui")
    assert raised.value.winner is not None and raised.value.winner.action == "reject"

    light_ledger(journal).record_decision(2, DecisionDraft(action="approve"), source="tui")
    with pytest.raises(GateAlreadyDecided):
        Ledger(optuna_storage(journal), "camp").record_decision(2, DecisionDraft(action="reject"), source="cli")


def test_the_console_writes_a_journal_without_optunas_replay(tmp_path):
    journal = journal_campaign(tmp_path)

    def refuse(url: str):
        raise AssertionError(f"the console opened Optuna's storage on {url}")

    source = StorageSource(f"journal://{journal}", "camp", open_storage=refuse)
    assert source.read().pending_gate == 1
    source.set_paused(True)
    source.stage_fidelity(2, ["epochs=9"], {"epochs": 9}, "epochs 9")
    source.record_decision(1, DecisionDraft(action="approve"))
    snapshot = source.read()
    assert snapshot.paused and snapshot.pending_gate is None
    theirs = Ledger(optuna_storage(journal), "camp")
    assert theirs.campaign_state().paused is True
    assert theirs.fidelity_request_record(2) is not None and theirs.fidelity_request_record(2).values == {"epochs": 9}
    decision = theirs.decision_record(1)
    assert decision is not None and decision.source == "tui"


WRITER = textwrap.dedent(
    """
    import sys, optuna
    from engine.store.storage import open_storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage("journal://" + sys.argv[1], heartbeat=False)
    study = optuna.load_study(study_name="camp/00-explore", storage=storage)
    print("started", flush=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=int(sys.argv[2]))
    """
)


def test_appends_interleave_with_a_running_optuna_writer(tmp_path):
    journal = journal_campaign(tmp_path, trials=1)
    engine = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(journal), "150"], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert engine.stdout is not None and engine.stdout.readline().strip() == "started"
    light = JournalStudyStorage(JournalReader(str(journal), EVERYTHING))
    ledger_id = light.get_study_id_from_name(campaign_study_name("camp"))
    written = 0
    while engine.poll() is None or written < 20:
        light.set_study_user_attr(ledger_id, f"note:{written}", written)
        written += 1
        time.sleep(0.005)
    assert engine.wait(timeout=60) == 0

    records = [json.loads(line) for line in journal.read_bytes().splitlines()]
    notes = [i for i, r in enumerate(records) if any(k.startswith("note:") for k in r.get("user_attr", {}))]
    trials_created = [i for i, r in enumerate(records) if r["op_code"] == JournalOperation.CREATE_TRIAL]
    assert notes[0] < trials_created[-1] and trials_created[1] < notes[-1]  # the two writers interleaved
    storage = optuna_storage(journal)  # every line parses, in order
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(campaign_study_name("camp")))
    assert all(attrs[f"note:{i}"] == i for i in range(written))
    trials = storage.get_all_trials(storage.get_study_id_from_name("camp/00-explore"))
    assert len(trials) == 151 and all(t.state == TrialState.COMPLETE for t in trials)
