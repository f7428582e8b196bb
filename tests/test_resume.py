"""Killing the engine (kill -9 or Ctrl-C) and running the same command again resumes without loss."""

import os
import signal
import subprocess
import sys
import time

import optuna
from enginekit import branin_campaign, write_toml
from optuna.trial import TrialState
from test_policies import status_json, wait_for

from engine.store.storage import open_storage


def slow_campaign(name):
    data = branin_campaign(name, workers=2)
    data["objective"]["settings"]["sleep_per_step"] = 0.4  # ~1 s a trial: the kill lands mid-sprint
    data["sprints"][0]["n_trials"] = 16
    data["sprints"][2]["n_trials"] = 4
    return data


def start(campaign, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", str(campaign), "--headless"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def snapshot(url, study):
    trials = optuna.load_study(study_name=study, storage=open_storage(url, heartbeat=False)).get_trials()
    return {t.number: (t.state, t.value, t.params) for t in trials}


def check_resumed(before, after):
    for number, (state, value, params) in before.items():
        if state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            assert after[number] == (state, value, params), f"finished trial {number} changed"


def test_kill_9_mid_sprint_then_resume(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", slow_campaign("k9"))
    url = f"journal://{tmp_path / 'runs' / 'k9' / 'journal.log'}"
    engine = start(campaign, tmp_path)
    wait_for(
        lambda: (s := status_json(campaign, tmp_path))["sprints"] and s["sprints"][0]["counts"].get("COMPLETE", 0) >= 4,
        what="4 finished trials",
        timeout=120,
    )
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    time.sleep(2.5)  # the orphaned workers notice their coordinator is gone after their trial
    study = status_json(campaign, tmp_path)["sprints"][0]["study"]
    before = snapshot(url, study)
    done_before = sum(1 for s, _, _ in before.values() if s == TrialState.COMPLETE)
    assert 4 <= done_before < 16

    again = start(campaign, tmp_path)
    output, _ = again.communicate(timeout=240)
    assert again.returncode == 0, output
    assert "resuming at sprint 1/3" in output
    after = snapshot(url, study)
    check_resumed(before, after)
    status = status_json(campaign, tmp_path)
    assert status["status"] == "finished"
    counted = [t for t in after.values()]
    assert sum(1 for s, _, _ in counted if s == TrialState.COMPLETE) >= 16 - sum(
        1 for s, _, _ in counted if s == TrialState.FAIL
    )
    assert not any(s == TrialState.RUNNING for s, _, _ in counted)
    assert [d["gate"] for d in status["decisions"]] == [0, 1]


def test_ctrl_c_stops_cleanly_and_a_decision_is_not_asked_again(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", slow_campaign("cc"))
    engine = start(campaign, tmp_path)
    wait_for(lambda: len(status_json(campaign, tmp_path)["sprints"]) >= 2, timeout=120, what="sprint 2")
    engine.send_signal(signal.SIGINT)
    output, _ = engine.communicate(timeout=60)
    assert engine.returncode == 0, output
    assert "campaign stopped; run the same command again to resume" in output
    stopped = status_json(campaign, tmp_path)
    assert stopped["status"] == "stopped"
    assert not any(s["counts"].get("RUNNING") for s in stopped["sprints"])
    decided = stopped["decisions"]
    assert [d["gate"] for d in decided] == [0]

    again = start(campaign, tmp_path)
    output, _ = again.communicate(timeout=240)
    assert again.returncode == 0, output
    final = status_json(campaign, tmp_path)
    assert final["status"] == "finished"
    assert final["decisions"][0] == decided[0]  # untouched, not re-decided
    assert [d["gate"] for d in final["decisions"]] == [0, 1]
    # every interrupted trial was re-run: each sprint reached its budget in counted trials
    for sprint, planned in zip(final["sprints"], (16, 6, 4), strict=False):
        c = sprint["counts"]
        assert c.get("COMPLETE", 0) + c.get("PRUNED", 0) + c.get("FAIL", 0) >= planned
