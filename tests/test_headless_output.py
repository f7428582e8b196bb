"""Headless output: timestamped lines with n/N, best so far, elapsed and ETA; `--log-format json`."""

import json
import re
import time

import optuna
import pytest
from enginekit import bare_sprint_record, branin_campaign, hpo_tui, write_toml
from optuna.trial import TrialState

from engine.store.records import SprintRecord
from engine.views.progress_log import EVENTS, EventLog, emit
from engine.views.sprint_progress import describe_fidelity, format_duration, sprint_progress

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}  ")
TRIAL_LINE = re.compile(
    r"^\S+ \S+    \[(?P<sprint>\w+)\] trial +(?P<number>\d+) (?P<state>[A-Z]+) +\S+.*  (?P<n>\d+)/(?P<of>\d+), best "
)
ETA = re.compile(r"elapsed \d+:\d\d, ETA \d+:\d\d$")
N_TRIALS = {"explore": 8, "refine": 6, "full": 8}


def slow_branin(name: str) -> dict:
    # 10 ms per step so that status lines come while trials run
    return branin_campaign(name, objective={"settings": {"noise_seed": 0, "sleep_per_step": 0.01}})


@pytest.mark.xdist_group("headless_output")
def test_text_output_has_timestamps_counts_best_and_eta(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", slow_branin("text"))
    out = hpo_tui(
        "run", str(campaign), "--headless", "--status-every", "0.3", "--workers", "1", cwd=tmp_path, timeout=180
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    # Every line up to the closing status table (one message of several lines) starts with a timestamp,
    # but for the indented continuation lines of a gate or decision.
    table = next(i for i, line in enumerate(lines) if "campaign text: finished, sprint 3/3" in line)
    assert STAMP.match(lines[table])
    assert all(STAMP.match(line) for line in lines[:table] if not line.startswith(" ")), out.stdout
    trials = [m for m in map(TRIAL_LINE.match, lines) if m]
    assert {m["sprint"] for m in trials} == set(N_TRIALS)
    for sprint, planned in N_TRIALS.items():
        mine = [m for m in trials if m["sprint"] == sprint]
        assert sorted(int(m["number"]) for m in mine) == list(range(planned))  # each trial once
        assert [int(m["n"]) for m in mine] == list(range(1, planned + 1))  # n/N counts up line by line
        assert all(int(m["of"]) == planned for m in mine)
    status = [line for line in lines if " trials (" in line and "ETA" in line]
    assert status and any(ETA.search(line) for line in status), "no status line with an ETA"
    assert "fidelity low (train_fraction=0.2 epochs=2)" in out.stdout
    assert "sprint explore closed: 8/8 trials (8 complete, 0 pruned, 0 failed), best " in out.stdout
    assert "{'" not in out.stdout  # no dict reprs


@pytest.mark.xdist_group("headless_output")
def test_json_output_one_parsable_event_per_line(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", slow_branin("json"))
    out = hpo_tui(
        "run", str(campaign), "--headless", "--log-format", "json", "--status-every", "0.2", "--workers", "0",
        cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    events = [json.loads(line) for line in out.stdout.splitlines()]  # every line parses
    assert all({"time", "event", "message"} <= set(e) and e["event"] in EVENTS for e in events)
    kinds = [e["event"] for e in events]
    assert kinds.index("campaign_start") < kinds.index("sprint_start") and kinds[-1] == "summary"
    for kind in ("sprint_start", "trial_done", "progress", "sprint_done", "gate", "decision", "campaign_done"):
        assert kind in kinds, kind
    done = [e for e in events if e["event"] == "trial_done"]
    assert len(done) == sum(N_TRIALS.values())  # every trial once (in-process worker included)
    assert {(e["sprint"], e["trial"]) for e in done} == {(s, n) for s, k in N_TRIALS.items() for n in range(k)}
    first = done[0]
    assert first["done"] == 1 and first["planned"] == 8 and first["state"] in ("COMPLETE", "PRUNED")
    starts = [e for e in events if e["event"] == "sprint_start"]
    assert starts[0]["fidelity"] == {"train_fraction": 0.2, "epochs": 2} and starts[0]["n_trials"] == 8
    decisions = [e for e in events if e["event"] == "decision"]
    assert [d["gate"] for d in decisions] == [0, 1] and all(d["who"]["user"] and d["source"] for d in decisions)
    summary = events[-1]
    assert summary["status"] == "finished" and summary["best"]["value"] is not None
    # times are ISO 8601 with seconds and an offset
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", e["time"]) for e in events)


def _sprint(**budget) -> SprintRecord:
    return bare_sprint_record(**budget)


def test_eta_comes_from_the_sprints_budget():
    now = time.time()
    trials = [
        optuna.trial.create_trial(state=TrialState.COMPLETE, value=float(v), user_attrs={"cost": 0.1})
        for v in (3, 1, 2)
    ]
    trials = [t for t in trials]
    for number, trial in enumerate(trials):
        trial.number = number
    record = _sprint(n_trials=12, started_ts=now - 30.0)
    by_count = sprint_progress(record, trials, maximize=False, now=now)
    assert (by_count.done, by_count.best_value, by_count.best_trial) == (3, 1.0, 1)
    assert by_count.eta_s == pytest.approx(90.0)  # 9 trials to go at 10 s each
    # The first budget to run out ends the sprint: a timeout sooner than the trial count wins.
    assert sprint_progress(record.replace(timeout_s=40.0), trials, maximize=False, now=now).eta_s == pytest.approx(10.0)
    by_cost = sprint_progress(_sprint(budget_cost=0.6, started_ts=now - 30.0), trials, maximize=True, now=now)
    assert by_cost.eta_s == pytest.approx(30.0) and by_cost.best_value == 3.0
    assert sprint_progress(_sprint(n_trials=5), [], maximize=False, now=now).eta_s is None
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05" and format_duration(None) == "?"
    assert describe_fidelity({"train_fraction": 0.17, "epochs": 1}) == "train_fraction=0.17 epochs=1"


def test_emit_keeps_plain_log_callables_working():
    plain: list[str] = []
    emit(plain.append, "trial_done", "a line", trial=3)
    assert plain == ["a line"]  # the console's engine thread keeps receiving plain lines
    written: list[str] = []
    log = EventLog("json", write=written.append, clock=lambda: 0.0)
    emit(log, "trial_done", "a line", trial=3, value=float("nan"))
    log("plain")
    first, second = map(json.loads, written)
    assert first["event"] == "trial_done" and first["trial"] == 3 and first["value"] is None
    assert second["event"] == "message" and second["message"] == "plain"
    text: list[str] = []
    EventLog("text", write=text.append)("two\n    lines")
    assert STAMP.match(text[0]) and text[0].endswith("two\n    lines")
