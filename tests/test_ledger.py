"""The ledger's attribute layout: every record readable in full in optuna-dashboard (no study
attribute over 1,024 characters), read back identical, old one-attribute records still read."""

from __future__ import annotations

import copy
import json

import optuna
import pytest
import tomllib
from enginekit import ROOT

from engine.campaign import Coordinator
from engine.spec import parse_campaign
from engine.store.ledger import Ledger
from engine.store.schema import (
    ATTR_VALUE_LIMIT,
    SPRINT_STUDY_ATTRS,
    STATE_KEY,
    campaign_study_name,
    decision_key,
    decode_records,
    encode_record,
    proposal_key,
    sprint_key,
)
from engine.store.storage import open_storage

DASHBOARD_LIMIT = 1024  # optuna-dashboard cuts a study attribute's value here


def journal(tmp_path) -> optuna.storages.BaseStorage:
    return open_storage(f"journal://{tmp_path / 'journal.log'}")


def big_record() -> dict:
    return {
        "index": 0,
        "space": {f"encoder/layer_{i}/lr": {"type": "float", "low": 1e-6, "high": 0.1, "log": True} for i in range(40)},
        "diff": [f"encoder/layer_{i}/lr: 1e-06..0.1 -> 1e-05..0.01" for i in range(60)],
        "note": "a long note; " * 300,
        "nothing": None,
        "empty": {},
        "odd %2F/key": [1, 2.5, "three", {"four": 4}],
    }


def test_a_large_record_is_split_into_parts_that_fit_and_reads_back_identical():
    attrs = encode_record("proposal:3", big_record())
    assert len(attrs) > 1
    assert max(len(json.dumps(v)) for v in attrs.values()) <= ATTR_VALUE_LIMIT
    assert decode_records(attrs) == {"proposal:3": big_record()}


def test_rewriting_a_record_smaller_or_larger_leaves_no_stale_part(tmp_path):
    ledger = Ledger(journal(tmp_path), "c", create=True)
    small = {"index": 0, "status": "running"}
    for value in (big_record(), small, big_record(), small):
        ledger.put("sprint:0", value)
        assert ledger.records() == {"sprint:0": value}
    live = {k: v for k, v in ledger.storage.get_study_user_attrs(ledger.study_id).items() if v is not None}
    assert live == {"sprint:0": small}


def test_records_written_in_the_old_layout_still_read(tmp_path):
    """Before the split layout every record was one attribute; a thresholds key held the study's `/`."""
    storage = journal(tmp_path)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], campaign_study_name("old"))
    old = {
        "state": {"status": "finished", "sprint": 1, "paused": False},
        "sprint:0": big_record(),
        "decision:0": {"gate": 0, "action": "approve", "who": {"user": "a"}, "source": "cli", "when": "t"},
        "thresholds:old/01-full:7": {
            "metric": "micro_f1",
            "optimizer": "grid",
            "folds": 5,
            "classes": ["a", "b", "c"],
            "thresholds": {"a": 0.5, "b": 0.5, "c": 0.5},
            "global_threshold": 0.5,
            "table": [],
            "overall": {"val_cv": {}, "test": None},
            "recommended": "at_0.5",
            "n_val": 10,
            "study": "old/01-full",
            "trial": 7,
        },
    }
    for key, value in old.items():
        storage.set_study_user_attr(study_id, key, value)
    ledger = Ledger(storage, "old")
    assert ledger.records() == old
    assert ledger.records()["sprint:0"] == big_record()
    assert [keeps(d.to_json(), old["decision:0"]) for d in ledger.decision_records()] == [True]
    assert ledger.campaign_state().status == "finished"
    assert list(ledger.thresholds()) == ["old/01-full:7"]
    assert keeps(ledger.thresholds()["old/01-full:7"].to_json(), old["thresholds:old/01-full:7"])


def keeps(typed: object, stored: object) -> bool:
    """Whether `typed` holds every field of `stored` with its value (and maybe defaults besides)."""
    if isinstance(stored, dict):
        return isinstance(typed, dict) and all(k in typed and keeps(typed[k], v) for k, v in stored.items())
    return typed == stored


def quickstart_like(name: str) -> dict:
    """The quickstart campaign (Hartmann-6, three sprints, two gates), with few, fast trials."""
    data = tomllib.loads((ROOT / "campaigns" / "quickstart.toml").read_text())
    data["name"] = name
    data["objective"]["settings"]["sleep_per_step"] = 0.0
    for sprint, n_trials in zip(data["sprints"], (12, 10, 6), strict=True):
        sprint["n_trials"] = n_trials
        sprint["sampler"] = "random" if sprint["sampler"] in ("skopt-gp", "gp") else sprint["sampler"]
        sprint.pop("sampler_options", None)
    # Thirty more (fixed) parameters make the spec, sprint records and proposals larger than one attribute.
    for i in range(30):
        data["space"][f"encoder/layer_{i}/dropout"] = {"type": "fixed", "value": 0.1}
    return data


@pytest.mark.xdist_group("ledger_layout")
def test_a_finished_campaign_fits_the_dashboard_and_reads_back_what_was_written(tmp_path, monkeypatch):
    written: dict[str, object] = {}
    put = Ledger.put

    def recording_put(self, key, value):
        written[key] = copy.deepcopy(json.loads(json.dumps(value, default=str)))
        put(self, key, value)

    monkeypatch.setattr(Ledger, "put", recording_put)
    spec = parse_campaign(quickstart_like("dash"))
    url = f"journal://{tmp_path / 'journal.log'}"
    summary = Coordinator(spec, url, workers=0, runs_root=tmp_path, log=lambda line: None).run()
    assert summary["status"] == "finished"

    storage = open_storage(url)
    studies = {s.study_name: s for s in storage.get_all_studies()}
    for name, study in studies.items():
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
        for key, value in attrs.items():
            text = json.dumps(value)
            assert len(text) <= DASHBOARD_LIMIT, (name, key, len(text))
            assert json.loads(text) == value
    ledger = Ledger(storage, "dash")
    records = ledger.records()
    assert set(written) <= set(records)
    for key, value in written.items():
        assert records[key] == value, key
    assert len(ledger.decision_records()) == 2

    # The typed records carry every stored field (JSON -> record -> JSON keeps each, adds only defaults).
    view = ledger.view()
    pairs = [(s.to_json(), records[sprint_key(s.index)]) for s in view.sprints]
    pairs += [(d.to_json(), records[decision_key(d.gate)]) for d in view.decisions]
    pairs += [(p.to_json(), records[proposal_key(g)]) for g, p in view.proposals.items()]
    pairs += [(view.state.to_json(), records[STATE_KEY])]
    for typed, stored in pairs:
        assert keeps(typed, stored)
    assert len(pairs) == 3 + 2 + 2 + 1 and view.state.status == "finished"
    assert view.pending_gate is None and view.decisions[0].who.user
    assert len(json.dumps(records["spec"])) > DASHBOARD_LIMIT  # the layout was exercised, not avoided

    # Each sprint study names its metric and says what it is, in short attributes.
    for record in ledger.sprint_records():
        study = optuna.load_study(study_name=record.study, storage=storage)
        assert study.metric_names == ["regret"]
        assert {k: study.user_attrs[k] for k in SPRINT_STUDY_ATTRS} == {
            "campaign": "dash",
            "sprint": record.name,
            "index": record.index,
            "sampler": record.sampler,
            "pruner": record.pruner,
            "fidelity": dict(record.fidelity),
            "level": record.level,
            "tuned": list(record.tuned),
        }
