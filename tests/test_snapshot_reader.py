"""engine.views.snapshot: immutable campaign snapshots read incrementally from a real journal storage."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from engine.execution.trials import RETRY_ATTR
from engine.store.ledger import Ledger
from engine.store.records import DecisionDraft
from engine.store.storage import open_storage
from engine.views.snapshot import (
    CampaignSnapshot,
    SnapshotReader,
    TrialRow,
    best_with_artifact,
    downsample_history,
    fidelity_request_key,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
DISTS = {"x1": FloatDistribution(-5, 10), "x2": FloatDistribution(0, 15)}


class CountingStorage:
    """Wraps a storage and counts trial reads, to prove the reader skips finished trials."""

    def __init__(self, inner):
        self.inner = inner
        self.single_reads = 0
        self.bulk_reads = 0

    def get_trial(self, trial_id):
        self.single_reads += 1
        return self.inner.get_trial(trial_id)

    def get_all_trials(self, *args, **kwargs):
        self.bulk_reads += 1
        return self.inner.get_all_trials(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def campaign(tmp_path):
    storage = open_storage(f"journal://{tmp_path / 'journal.log'}")
    ledger = Ledger(storage, "c", create=True)
    ledger.put(
        "spec",
        {
            "metric": {"name": "regret", "direction": "minimize"},
            "sprints": [{"name": "explore"}, {"name": "refine"}],
            "fidelity": {"levels": {"low": {"epochs": 2}, "high": {"epochs": 9}}},
        },
    )
    ledger.put("original_space", {"x1": {"type": "float", "low": -5, "high": 10}})
    ledger.set_state(status="running", sprint=0, gate=0, pending_gate=None, paused=False)
    ledger.put(
        "sprint:0",
        {
            "index": 0,
            "name": "explore",
            "study": "c/00-explore",
            "sampler": "random",
            "pruner": "hyperband",
            "space": {},
            "tuned": ["x1", "x2"],
            "fixed": {"x3": 1.0},
            "level": "low",
            "fidelity": {"epochs": 2},
            "n_trials": 50,
            "status": "running",
            "started_ts": 0.0,
        },
    )
    study = optuna.create_study(study_name="c/00-explore", storage=storage)
    return storage, ledger, study


def add(study, state, value=None, number_params=(1.0, 2.0), **user_attrs):
    study.add_trial(
        create_trial(
            state=state,
            value=value,
            params={"x1": number_params[0], "x2": number_params[1]},
            distributions=DISTS,
            user_attrs=user_attrs,
            intermediate_values={0: 5.0, 1: 4.0} if state != TrialState.WAITING else {},
        )
    )


def test_snapshot_of_a_sprint(campaign):
    storage, ledger, study = campaign
    add(study, TrialState.COMPLETE, 3.0, duration_s=1.5, worker="h:1:0", cost=0.2, artifacts={"val_probs": "id"})
    add(study, TrialState.COMPLETE, 1.0, duration_s=2.0, worker="h:1:1", cost=0.2)
    add(study, TrialState.PRUNED, None, pruned_at={"step": 1, "value": 4.0})
    add(study, TrialState.FAIL, None, fail_reason="out of memory: boom", retried=True)
    trial = study.ask()
    trial.report(7.0, 0)

    snapshot = SnapshotReader(storage, "c").read()

    assert isinstance(snapshot, CampaignSnapshot) and dataclasses.is_dataclass(snapshot)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.status = "x"  # type: ignore[misc]
    assert snapshot.status == "running" and snapshot.sprints_planned == 2 and snapshot.metric == "regret"
    assert snapshot.sprint.name == "explore" and snapshot.sprint.pruner == "hyperband"
    assert snapshot.param_names == ("x1", "x2")
    assert [r.state for r in snapshot.trials] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL", "RUNNING"]
    assert snapshot.running == 1 and snapshot.count("COMPLETE") == 2
    assert snapshot.best.number == 1 and snapshot.best.value == 1.0
    assert snapshot.trials[0].artifacts == ("val_probs",) and snapshot.trials[0].worker == "h:1:0"
    assert snapshot.trials[2].reason == "pruned at step 1" and snapshot.trials[3].retried
    assert snapshot.trials[4].last_step == 0 and snapshot.trials[4].duration_s is not None
    assert snapshot.cost_used == pytest.approx(0.4)
    kinds = [(e.trial, e.kind) for e in snapshot.events]
    assert sorted(kinds) == [(2, "pruned"), (3, "failed")]
    pruned = next(e for e in snapshot.events if e.kind == "pruned")
    assert pruned.step == 1 and pruned.value == 4.0 and pruned.reason == "hyperband"
    assert "queued again" in next(e for e in snapshot.events if e.kind == "failed").reason
    assert [p.trial for p in snapshot.history] == [0, 1] and snapshot.history[-1].best == 1.0
    assert best_with_artifact(snapshot.trials, "val_probs", maximize=False).number == 0


def test_reads_only_open_and_new_trials(campaign):
    storage, ledger, study = campaign
    for i in range(100):
        add(study, TrialState.COMPLETE, float(i))
    running = study.ask()
    counting = CountingStorage(storage)
    reader = SnapshotReader(counting, "c")
    first = reader.read()
    assert len(first.trials) == 101 and counting.bulk_reads == 1

    counting.single_reads = counting.bulk_reads = 0
    second = reader.read()
    assert counting.bulk_reads == 0 and counting.single_reads == 1  # only the running trial
    assert second.trials[0] is first.trials[0]  # finished rows are cached, not rebuilt
    assert second.events is first.events and second.history is first.history

    study.tell(running, -1.0)
    add(study, TrialState.COMPLETE, 7.0)
    counting.single_reads = 0
    third = reader.read()
    assert counting.single_reads == 2  # the one that finished and the new one
    assert third.best.number == 100 and len(third.trials) == 102
    counting.single_reads = 0
    fourth = reader.read()
    assert counting.single_reads == 0 and fourth.trials is third.trials  # nothing open: nothing read


def test_a_retry_marks_the_failed_trial(campaign):
    storage, ledger, study = campaign
    add(study, TrialState.FAIL, None, fail_reason="worker died")
    reader = SnapshotReader(storage, "c")
    assert not reader.read().trials[0].retried
    study.add_trial(
        create_trial(
            state=TrialState.WAITING, params={"x1": 1.0, "x2": 2.0}, distributions=DISTS, system_attrs={RETRY_ATTR: 0}
        )
    )
    snapshot = reader.read()
    assert snapshot.trials[0].retried and snapshot.trials[1].retry_of == 0
    assert snapshot.counted == 1  # a failure that was re-run counts once against the budget


def test_failure_kinds_and_retries(campaign):
    storage, ledger, study = campaign
    add(study, TrialState.FAIL, None, fail_reason="ValueError: boom (at obj.py:3)", fail_kind="raised")
    add(study, TrialState.FAIL, None, fail_reason="stale: no heartbeat for over 60 s", fail_kind="stale", retried=True)
    add(study, TrialState.FAIL, None, fail_reason="worker process 7 is gone", fail_kind="worker_died", retried=False)
    add(study, TrialState.FAIL, None, fail_reason="an old trial, recorded before fail kinds")
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=1.0,
            params={"x1": 1.0, "x2": 2.0},
            distributions=DISTS,
            system_attrs={RETRY_ATTR: 1},
        )
    )
    snapshot = SnapshotReader(storage, "c").read()
    raised, stale, died, old, rerun = snapshot.trials
    assert (raised.fail_kind, raised.lost, raised.retried) == ("raised", False, False)
    assert (stale.fail_kind, stale.lost, stale.retried) == ("stale", True, True)
    assert (died.fail_kind, died.lost, died.retried) == ("worker_died", True, False)
    assert old.fail_kind == "raised" and not old.lost
    assert rerun.retry_of == 1 and rerun.fail_kind is None and not rerun.lost
    events = {e.trial: e for e in snapshot.events}
    assert events[1].fail_kind == "stale" and "queued again" in events[1].reason
    assert events[0].fail_kind == "raised"
    detail = SnapshotReader(storage, "c").trial_detail(0, 1)
    assert detail.fail_kind == "stale"


STAGES = {
    "data": {"order": 0, "seconds": 0.2, "hit": True, "cached": True, "key": "k0", "params": [], "saved_s": 4.0},
    "warmup": {
        "order": 1,
        "seconds": 0.3,
        "hit": True,
        "cached": True,
        "key": "k1",
        "params": ["x1"],
        "inherited": True,
    },
    "train": {
        "order": 2,
        "seconds": 9.0,
        "hit": False,
        "cached": True,
        "key": "k2",
        "params": ["x1", "x2"],
        "gpu_s": 8.5,
    },
    "eval": {"order": 3, "seconds": 1.0, "hit": False, "cached": False, "key": "k3", "params": ["x1", "x2"]},
}


def test_stage_costs_cache_hits_and_inherited_checkpoints(campaign):
    storage, ledger, study = campaign
    add(
        study,
        TrialState.COMPLETE,
        2.0,
        duration_s=11.0,
        stages=STAGES,
        inherited={"name": "train", "epoch": 2, "key": "k1", "from_sprint": "warmup", "from_trial": 17, "saved_s": 6.5},
    )
    add(
        study,
        TrialState.COMPLETE,
        3.0,
        duration_s=15.0,
        stages={"data": dict(STAGES["data"], hit=False, seconds=4.0, saved_s=None)},
    )
    add(study, TrialState.COMPLETE, 4.0, duration_s=5.0, stages="not a dict")  # malformed: ignored, never fatal
    reader = SnapshotReader(storage, "c")
    snapshot = reader.read()
    staged, missed, malformed = snapshot.trials
    assert (staged.stage_runs, staged.stage_hits, staged.inherited) == (4, 2, True)
    assert staged.saved_s == pytest.approx(4.0 + 6.5)  # the hit's saved compute + the inherited checkpoint's, once
    assert (missed.stage_runs, missed.stage_hits, missed.saved_s, missed.inherited) == (1, 0, 0.0, False)
    assert (malformed.stage_runs, malformed.saved_s) == (0, 0.0)
    assert snapshot.staged and snapshot.seconds_saved == pytest.approx(10.5)
    assert snapshot.seconds_spent == pytest.approx(11.0 + 15.0 + 5.0)
    hash(staged)  # rows stay hashable (the table caches rendered rows by row)

    detail = reader.trial_detail(0, 0)
    assert [s.name for s in detail.stages] == ["data", "warmup", "train", "eval"]
    data, warmup, train, evaluation = detail.stages
    assert data.hit and data.saved_s == 4.0 and warmup.inherited and warmup.saved_s == 0.0
    assert (train.hit, train.cached, train.gpu_s, train.params) == (False, True, 8.5, ("x1", "x2"))
    assert not evaluation.cached
    assert detail.inherited.epoch == 2 and detail.inherited.from_trial == 17 and detail.inherited.saved_s == 6.5
    assert detail.fail_kind is None


def test_stage_savings_of_a_real_campaign_match_the_cache_report(tmp_path, monkeypatch):
    """The console's `saved` is the same figure as `hpo-tui cache`'s (engine.cache.stage_stats.stage_stats)."""
    from engine.cache.stage_stats import stage_stats
    from engine.campaign import Coordinator
    from engine.spec import parse_campaign
    from engine.workloads.pipeline import SPACE, STAGES

    monkeypatch.chdir(tmp_path)
    data = {
        "name": "memo",
        "objective": {"path": "engine.workloads.pipeline:objective", "settings": {"time_scale": 0.01}},
        "metric": {"name": "regret", "direction": "minimize"},
        "space": dict(SPACE),
        "fidelity": {"levels": {"only": {"epochs": 1}}},
        "sprints": [
            {
                "name": "search",
                "sampler": "eeipu",
                "fidelity": "only",
                "budget_seconds": 0.6,
                "sampler_options": {"n_startup_trials": 4, "n_candidates": 64, "stages": STAGES},
            }
        ],
        "cache": {"enabled": True},
    }
    url = f"journal://{tmp_path / 'journal.log'}"
    assert Coordinator(parse_campaign(data), url, workers=0, log=lambda m: None).run()["status"] == "finished"
    storage = open_storage(url, heartbeat=False)
    snapshot = SnapshotReader(storage, "memo").read()
    trials = optuna.load_study(study_name=snapshot.sprint.study, storage=storage).get_trials()
    stats = stage_stats({"search": trials})["total"]
    assert snapshot.staged and snapshot.sprint.budget_seconds == 0.6
    assert all(row.stage_runs == 3 for row in snapshot.trials)
    assert sum(row.stage_hits for row in snapshot.trials) == stats["hits"] > 0
    assert snapshot.seconds_saved == pytest.approx(stats["saved_s"] + stats["inherited_saved_s"])
    assert snapshot.seconds_spent == pytest.approx(stats["trial_s"])


def test_no_stages_no_stage_columns(campaign):
    storage, ledger, study = campaign
    add(study, TrialState.COMPLETE, 1.0, duration_s=2.0)
    snapshot = SnapshotReader(storage, "c").read()
    assert not snapshot.staged and snapshot.seconds_saved == 0.0 and snapshot.trials[0].stage_runs == 0


def test_pending_gate_proposal_and_staged_fidelity(campaign):
    storage, ledger, study = campaign
    ledger.put("proposal:0", {"gate": 0, "after": "explore", "next": "refine", "params": {}})
    ledger.put(fidelity_request_key(0), {"edits": ["high"], "label": "high"})
    ledger.set_state(status="waiting", pending_gate=0)
    reader = SnapshotReader(storage, "c")
    snapshot = reader.read()
    assert snapshot.pending_gate == 0 and snapshot.proposal.next == "refine"
    assert snapshot.fidelity_request.edits == ("high",) and snapshot.fidelity_request.label == "high"
    assert snapshot.levels == {"low": {"epochs": 2}, "high": {"epochs": 9}}
    ledger.record_decision(0, DecisionDraft(action="approve"), source="test")
    assert reader.read().pending_gate is None


def test_stale_running_trials_when_no_engine_runs(campaign):
    storage, ledger, study = campaign
    study.ask()
    reader = SnapshotReader(storage, "c")
    assert not reader.read().trials[0].stale
    ledger.set_state(status="stopped")
    assert reader.read().trials[0].stale


def test_before_the_first_sprint(tmp_path):
    storage = open_storage(f"journal://{tmp_path / 'j.log'}")
    Ledger(storage, "new", create=True)
    snapshot = SnapshotReader(storage, "new").read()
    assert snapshot.sprint is None and snapshot.trials == () and snapshot.status == "new"


def test_trial_detail_and_importances(campaign):
    storage, ledger, study = campaign
    for i in range(12):
        add(study, TrialState.COMPLETE, float((i * 7) % 5), number_params=(float(i % 4), float(i)))
    reader = SnapshotReader(storage, "c")
    detail = reader.trial_detail(0, 3)
    assert detail.number == 3 and detail.intermediate == ((0, 5.0), (1, 4.0)) and detail.fixed == (("x3", 1.0),)
    assert reader.trial_detail(0, 99) is None
    importances = reader.importances(0)
    assert set(importances) <= {"x1", "x2"} and importances


def test_downsampled_history_keeps_the_best():
    values = [(i, float((i * 37) % 101)) for i in range(5000)]
    points = downsample_history(values, maximize=False, limit=300)
    assert len(points) <= 300
    assert min(p.value for p in points) == 0.0 and points[-1].best == 0.0
    assert [p.trial for p in points] == sorted(p.trial for p in points)


def test_rows_are_hashable_and_frozen():
    row = TrialRow(1, "COMPLETE", 1.0, 2.0, 3, (("x", 1.0),))
    assert hash(row) == hash(TrialRow(1, "COMPLETE", 1.0, 2.0, 3, (("x", 1.0),)))
    assert row.param("x") == 1.0 and row.param("y", "-") == "-"


def test_the_snapshot_module_needs_no_textual():
    import subprocess
    import sys

    code = "import engine.views.snapshot, sys; print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
