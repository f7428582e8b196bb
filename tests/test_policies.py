"""Gate policies: auto, plan file, and wait with `hpo-tui approve` from a second process."""

import json
import subprocess
import sys
import time

import pytest
from enginekit import branin_campaign, hpo_tui, spec_of, write_toml

from engine.campaign import Coordinator
from engine.gates.policy import PlanPolicy
from engine.spec import CampaignFileError
from engine.store.ledger import Ledger
from engine.store.storage import open_storage


def test_auto_policy_decides_every_gate(tmp_path):
    url = f"journal://{tmp_path / 'j.log'}"
    summary = Coordinator(
        spec_of(branin_campaign("auto")), url, workers=0, runs_root=tmp_path, log=lambda m: None
    ).run()
    decisions = summary["decisions"]
    assert [d["action"] for d in decisions] == ["approve", "approve"]
    assert all(d["source"] == "policy:auto" and d["who"]["user"] for d in decisions)


def test_plan_policy_applies_edits_reject_and_extend(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[gates.0]\naction = "approve"\nset = { x1 = "0:5" }\nfidelity = ["epochs=3"]\n'
        '[gates.1]\naction = "extend"\nextend = 2\n'
        '[gates.2]\naction = "reject"\n'
    )
    url = f"journal://{tmp_path / 'j.log'}"
    coordinator = Coordinator(
        spec_of(branin_campaign("plan")),
        url,
        workers=0,
        runs_root=tmp_path,
        policy=PlanPolicy(plan),
        log=lambda m: None,
    )
    summary = coordinator.run()
    ledger = Ledger(open_storage(url), "plan")
    d0, d1, d2 = (ledger.decision_record(g) for g in range(3))
    assert d0.action == "edit" and "x1: -5..10 -> 0..5" in d0.diff[0]
    assert ledger.sprint_record(1).space["x1"] == {"type": "float", "low": 0.0, "high": 5.0, "log": False}
    assert ledger.sprint_record(1).fidelity["epochs"] == 3
    assert d1.action == "extend" and ledger.sprint_record(1).n_trials == 6 + 2
    assert summary["sprints"][1]["counts"]["COMPLETE"] == 8
    assert d2.action == "reject" and ledger.sprint_record(2).space == ledger.sprint_record(1).space


def test_plan_with_an_invalid_edit_is_refused_with_the_reason(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[gates.0]\nset = { x1 = "3:-4" }\n')
    url = f"journal://{tmp_path / 'j.log'}"
    coordinator = Coordinator(
        spec_of(branin_campaign("badplan")),
        url,
        workers=0,
        runs_root=tmp_path,
        policy=PlanPolicy(plan),
        log=lambda m: None,
    )
    with pytest.raises(CampaignFileError, match=r"gates.0: x1: low \(3\) must be below high \(-4\)"):
        coordinator.run()
    assert Ledger(open_storage(url), "badplan").decision_record(0) is None


def status_json(campaign, cwd):
    """The campaign's status from a separate `hpo-tui status` process; an empty one before it exists."""
    out = hpo_tui("status", str(campaign), "--json", cwd=cwd)
    if out.returncode == 2 and "no campaign" in out.stderr:
        return {"sprints": [], "pending_gate": None, "decisions": [], "status": "absent"}
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(predicate, timeout=90, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_wait_policy_blocks_until_approve_from_another_process(tmp_path):
    campaign = write_toml(tmp_path / "wait.toml", branin_campaign("waiting"))
    exe = [sys.executable, "-m", "tui.cli", "run", str(campaign), "--headless", "--policy", "wait", "--workers", "1"]
    engine = subprocess.Popen(
        exe, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )
    try:
        status = wait_for(lambda: (s := status_json(campaign, tmp_path))["pending_gate"] == 0 and s, what="gate 0")
        assert status["status"] == "waiting" and status["sprints"][0]["counts"]["COMPLETE"] == 8
        time.sleep(1.0)  # still waiting: nothing decided it
        assert status_json(campaign, tmp_path)["pending_gate"] == 0

        refused = hpo_tui("approve", str(campaign), "--set", "x1=-9:5", cwd=tmp_path)
        assert refused.returncode == 2 and "leaves the campaign's bounds -5..10" in refused.stderr

        ok = hpo_tui("approve", str(campaign), "--set", "x1=0:5", "--note", "x1 matters", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        wait_for(lambda: status_json(campaign, tmp_path)["pending_gate"] == 1, what="gate 1")
        assert hpo_tui("approve", str(campaign), "--reject", cwd=tmp_path).returncode == 0
        output, _ = engine.communicate(timeout=120)
    finally:
        engine.kill()
    assert engine.returncode == 0, output
    assert "waiting for a decision" in output
    status = status_json(campaign, tmp_path)
    assert status["status"] == "finished"
    d0, d1 = status["decisions"]
    assert (d0["action"], d0["source"], d0["note"]) == ("edit", "cli", "x1 matters")
    assert d1["action"] == "reject"
    ledger = Ledger(open_storage(f"journal://{tmp_path / 'runs' / 'waiting' / 'journal.log'}"), "waiting")
    assert ledger.sprint_record(1).space["x1"]["low"] == 0.0 and ledger.sprint_record(1).space["x1"]["high"] == 5.0
    assert ledger.sprint_record(2).space == ledger.sprint_record(1).space
    # a decided gate is not asked again
    again = hpo_tui("approve", str(campaign), cwd=tmp_path)
    assert again.returncode == 1 and "no gate is waiting" in again.stderr


def test_auto_policy_applies_a_fidelity_staged_for_the_gate(tmp_path):
    url = f"journal://{tmp_path / 'j.log'}"
    spec = spec_of(branin_campaign("staged"))
    coordinator = Coordinator(spec, url, workers=0, runs_root=tmp_path, log=lambda m: None)
    coordinator.prepare()
    coordinator.ledger.put("fidelity_request:1", {"edits": ["epochs=4"], "label": "epochs=4"})
    coordinator.run()
    ledger = Ledger(open_storage(url), "staged")
    assert ledger.decision_record(0).fidelity["epochs"] == 2  # nothing staged for gate 0
    assert ledger.decision_record(1).fidelity["epochs"] == 4
    assert ledger.decision_record(1).diff[-1] == "fidelity epochs: 9 -> 4"
    assert ledger.sprint_record(2).fidelity == {"train_fraction": 1.0, "epochs": 4}
