"""Pilot tests: every console action against a real engine on a temporary journal storage.

Each test asserts what the ledger recorded (the storage every other client reads), not just what
the screen shows.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from pathlib import Path

import pytest
from console_demo import demo_thresholds
from enginekit import branin_campaign, spec_of, write_toml

from engine.campaign import Coordinator
from engine.gates.policy import AutoPolicy, WaitPolicy
from engine.search.space import SpaceEditError, parse_bound_edit
from engine.store.ledger import Ledger
from engine.store.records import DecisionDraft
from engine.store.storage import open_storage
from engine.views.snapshot import SnapshotReader
from tui.app import HpoConsole
from tui.approval import ApprovalScreen
from tui.dashboard import DashboardScreen
from tui.detail import TrialDetailScreen
from tui.engine_thread import EngineThread, headless_command, spawn_headless
from tui.fidelity import FidelityScreen
from tui.help import HelpScreen
from tui.keys import load_keymap
from tui.quit import QuitScreen
from tui.source import StorageSource
from tui.thresholds_screen import ThresholdScreen

pytestmark = pytest.mark.xdist_group("tui")
SIZE = (120, 40)


def plain(widget) -> str:
    return str(widget.render())


async def wait_for(pilot, condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.05)


def spec_data(console: Console) -> dict:
    return console.data


class Console:
    """A real campaign run by a Coordinator in the console's engine thread, on a temp journal."""

    def __init__(self, tmp_path: Path, policy=None, start_paused: bool = False, **overrides):
        self.data = data = branin_campaign("tui", **overrides)
        self.spec = spec_of(data)
        self.url = f"journal://{tmp_path / 'journal.log'}"
        self.policy = policy or WaitPolicy(poll_s=0.05, log=lambda *_: None)
        self.start_paused = start_paused
        self.engine = EngineThread(self._coordinator, tmp_path / "console.log")
        self.learned: list[int] = []
        self.app = HpoConsole(
            StorageSource(self.url, self.spec.name), engine=self.engine, fps=10, threshold_learner=self._learn
        )
        self._ledger: Ledger | None = None

    def _coordinator(self, log) -> Coordinator:
        coordinator = Coordinator(self.spec, self.url, policy=self.policy, workers=0, log=log)
        if self.start_paused:  # paused before the first trial: no race with the console's keys
            coordinator.prepare()
            coordinator.ledger.set_state(paused=True)
        return coordinator

    def _learn(self, trial, **options):
        self.learned.append(trial.number)
        assert "val_probs" in trial.user_attrs["artifacts"] and options["metric"] == "micro_f1"
        return demo_thresholds(trial.number)

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(open_storage(self.url), self.spec.name)
        return self._ledger

    async def start(self, pilot) -> None:
        self.engine.start()
        await wait_for(
            pilot, lambda: self.app.snapshot is not None and self.app.snapshot.sprint is not None, "the first snapshot"
        )

    async def until_gate(self, pilot, gate: int = 0) -> None:
        await wait_for(
            pilot,
            lambda: self.app.snapshot is not None and self.app.snapshot.pending_gate == gate,
            f"gate {gate} in the console",
        )

    async def until_decided(self, pilot, gate: int = 0) -> dict:
        await wait_for(pilot, lambda: self.ledger.decision_record(gate) is not None, f"the decision of gate {gate}")
        return self.ledger.decision_record(gate)

    def stop(self) -> None:
        self.engine.stop(timeout=60)


# An explore sprint long enough (several seconds) for the console to act before its gate.
SLOW_EXPLORE = {
    "objective": {"settings": {"noise_seed": 0, "sleep_per_step": 0.02}},
    "sprints": [dict(branin_campaign()["sprints"][0], n_trials=120)] + branin_campaign()["sprints"][1:],
}


@pytest.fixture
def console(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs/<campaign>/ (artifacts, logs) under the test's directory
    made: list[Console] = []

    def make(**kwargs) -> Console:
        made.append(Console(tmp_path, **kwargs))
        return made[-1]

    yield make
    for c in made:
        c.stop()


async def test_approve_an_edited_range(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        assert "GATE 0" in plain(c.app.screen.query_one("#header"))
        await pilot.press("a")
        assert isinstance(c.app.screen, ApprovalScreen)
        await pilot.press("enter")  # edit x1, the first row
        await pilot.press("ctrl+u", *"-3:5", "enter")
        assert "-3:5*" in str(c.app.screen.query_one("#params").get_cell("x1", "proposed"))
        await pilot.press("y")
        assert "x1: " in plain(c.app.screen.query_one("#confirm-lines"))  # the diff, before anything is recorded
        assert c.ledger.decision_record(0) is None
        await pilot.press("y")
        decision = await c.until_decided(pilot)
        await wait_for(pilot, lambda: isinstance(c.app.screen, DashboardScreen), "the approval to close")
        await wait_for(pilot, lambda: c.app.snapshot.sprint.index == 1, "the next sprint in the console")
        await pilot.press("v")  # look back at the sprint the gate closed
        await wait_for(pilot, lambda: c.app.snapshot.sprint.index == 0, "the earlier sprint")
        assert "(viewing)" in plain(c.app.screen.query_one("#header"))
        assert len(c.app.screen.query_one("#trials").rows) == 8
        await pilot.press("v")
        await wait_for(pilot, lambda: c.app.snapshot.sprint.index == 1, "the current sprint again")
    assert decision.action == "edit" and decision.source == "tui"
    assert decision.who.user == getpass.getuser()
    assert decision.space["x1"]["low"] == -3.0 and decision.space["x1"]["high"] == 5.0
    assert any(line.startswith("x1: ") for line in decision.diff)
    await_sprint = time.monotonic() + 60
    while c.ledger.sprint_record(1) is None and time.monotonic() < await_sprint:
        time.sleep(0.05)
    nxt = c.ledger.sprint_record(1)
    assert nxt.space["x1"]["low"] == -3.0 and nxt.space["x1"]["high"] == 5.0


async def test_an_invalid_edit_is_refused_with_the_cli_reason(console):
    c = console()
    original = None
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        original = c.app.snapshot.original_space
        await pilot.press("a", "enter", "ctrl+u", *"5:-3")
        with pytest.raises(SpaceEditError) as refused:
            parse_bound_edit("x1", "5:-3", original["x1"])
        status = plain(c.app.screen.query_one("#approval-status"))
        assert str(refused.value) in status
        await pilot.press("enter")  # refused: the editor stays open with the reason
        assert c.app.screen.editing == "x1" and str(refused.value) in plain(c.app.screen.query_one("#approval-status"))
        await pilot.press("ctrl+u", *"-99:5")  # outside the campaign's bounds
        with pytest.raises(SpaceEditError) as outside:
            parse_bound_edit("x1", "-99:5", original["x1"])
        assert str(outside.value) in plain(c.app.screen.query_one("#approval-status"))
        await pilot.press("escape")  # abandon the edit, then leave without deciding
        assert c.app.screen.editing is None
        await pilot.press("escape")
        assert isinstance(c.app.screen, DashboardScreen)
        await pilot.pause(0.3)
    assert c.ledger.decision_record(0) is None and c.ledger.pending_gate() == 0


async def test_freeze_then_approve(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        best = c.app.snapshot.proposal.evidence.best_params["x2"]
        await pilot.press("a", "down", "space")  # freeze x2 at its best value
        assert "=" in str(c.app.screen.query_one("#params").get_cell("x2", "proposed"))
        await pilot.press("y", "y")
        decision = await c.until_decided(pilot)
    assert decision.action == "edit"
    assert decision.space["x2"] == {"type": "fixed", "value": best}


async def test_reject_keeps_the_current_space(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        await pilot.press("a", "r")
        assert "Reject" in plain(c.app.screen.query_one(".dialog-title"))
        await pilot.press("y")
        decision = await c.until_decided(pilot)
    assert decision.action == "reject" and decision.source == "tui"
    assert decision.space == c.ledger.sprint_record(0).space


async def test_extend_the_sprint(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        await pilot.press("a", "x", "ctrl+u", "0")
        assert "positive" in plain(c.app.screen.query_one("#prompt-reason"))
        await pilot.press("enter")  # refused
        await pilot.press("ctrl+u", "3", "enter")
        assert "+3 trials" in plain(c.app.screen.query_one("#confirm-lines"))
        await pilot.press("y")
        decision = await c.until_decided(pilot)
        await wait_for(pilot, lambda: c.ledger.sprint_record(0).n_trials == 11, "the sprint to grow by 3")
        await c.until_gate(pilot, 1)  # the extended sprint ends at a new gate
    assert decision.action == "extend" and decision.extend_trials == 3


async def test_raise_fidelity_at_a_pending_gate(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        await pilot.press("f")
        assert isinstance(c.app.screen, FidelityScreen)
        await pilot.press("down", "tab", *"epochs=5")
        assert "epochs=5" in plain(c.app.screen.query_one("#fidelity-result"))
        await pilot.press("ctrl+u", *"epochs=0")
        assert "positive" in plain(c.app.screen.query_one("#fidelity-result"))
        await pilot.press("ctrl+u", *"epochs=5", "enter")
        assert isinstance(c.app.screen, ApprovalScreen)  # the change is confirmed with the gate's decision
        assert "epochs=5" in plain(c.app.screen.query_one("#approval-fidelity"))
        await pilot.press("y", "y")
        decision = await c.until_decided(pilot)
    assert decision.fidelity == {"train_fraction": 1.0, "epochs": 5}
    assert "fidelity epochs: 2 -> 5" in decision.diff


async def test_pause_stage_fidelity_resume_and_approve(console):
    c = console(**SLOW_EXPLORE)
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: c.ledger.campaign_state().paused is True, "the pause in the ledger")
        await wait_for(pilot, lambda: c.app.snapshot.paused, "the console to show the pause")
        assert "PAUSED" in plain(c.app.screen.query_one("#header"))
        assert c.app.snapshot.pending_gate is None
        await pilot.press("f", "down", "enter")  # no gate yet: stage the "high" level for gate 0
        await wait_for(pilot, lambda: c.ledger.fidelity_request_record(0) is not None, "the staged fidelity")
        staged = c.ledger.fidelity_request_record(0)
        assert staged.edits == ("high",) and staged.values["epochs"] == 9 and staged.gate == 0 and staged.who.user
        await pilot.press("p")
        await wait_for(pilot, lambda: c.ledger.campaign_state().paused is False, "the resume in the ledger")
        await c.until_gate(pilot)
        await pilot.press("a")
        assert "changed: high" in plain(c.app.screen.query_one("#approval-fidelity"))
        await pilot.press("y", "y")
        decision = await c.until_decided(pilot)
    assert decision.fidelity["epochs"] == 9 and decision.source == "tui"


async def test_staged_fidelity_applies_to_an_auto_policy(console):
    c = console(policy=AutoPolicy(), start_paused=True)
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await wait_for(pilot, lambda: c.app.snapshot.paused, "the console to show the pause")
        assert c.app.snapshot.count("COMPLETE") == 0
        await pilot.press("f", "down", "tab", *"epochs=4", "enter")
        await wait_for(pilot, lambda: c.ledger.fidelity_request_record(0) is not None, "the staged fidelity")
        await pilot.press("p")
        decision = await c.until_decided(pilot)
    assert decision.source == "policy:auto" and decision.fidelity["epochs"] == 4


async def test_decided_elsewhere_while_open(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        await pilot.press("a")
        proposal = c.ledger.proposal_record(0)
        c.ledger.record_decision(
            0,
            DecisionDraft(action="approve", space=proposal.space, fidelity=proposal.fidelity.values),
            source="cli",
        )
        await wait_for(pilot, lambda: c.app.screen.closed_reason is not None, "the console to notice")
        assert "via cli" in plain(c.app.screen.query_one("#approval-status"))
        await pilot.press("y")  # refused: nothing more is recorded
        assert not isinstance(c.app.screen, type(None)) and c.ledger.decision_record(0).source == "cli"


async def test_detail_sort_filter_follow(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        table = c.app.screen.query_one("#trials")
        assert [r.number for r in table.view] == list(range(8))
        await pilot.press("s", "s")  # number -> state -> value
        values = [r.value for r in table.view]
        assert table.sort_column.key == "value" and values == sorted(values)
        await pilot.press("S")
        assert [r.value for r in table.view] == sorted(values, reverse=True)
        await pilot.press("slash")
        await pilot.press("down", "down", "enter")  # all, running, complete
        assert table.state_filter == "COMPLETE" and all(r.state == "COMPLETE" for r in table.view)
        await pilot.press("F")
        assert table.follow and table.selected.number == max(r.number for r in table.view)
        chosen = table.selected
        await pilot.press("enter")
        assert isinstance(c.app.screen, TrialDetailScreen) and c.app.screen.row.number == chosen.number
        await wait_for(pilot, lambda: c.app.screen.detail is not None, "the trial detail")
        assert len(c.app.screen.detail.intermediate) == 2  # two epochs at the low fidelity
        await wait_for(pilot, lambda: c.app.screen.query_one("#detail-curve").key is not None, "the curve plot")
        await pilot.press("escape")
        assert isinstance(c.app.screen, DashboardScreen)


async def test_thresholds_on_the_best_trial_are_accepted(console):
    c = console(objective={"path": "console_demo:probs_objective"})
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        await pilot.press("s", "s", "home", "t")  # sorted by value: the selected trial is the best
        assert isinstance(c.app.screen, ThresholdScreen)
        await wait_for(pilot, lambda: c.app.screen.result is not None, "threshold learning")
        trial = c.app.screen.trial
        assert c.learned == [trial] and trial == c.app.snapshot.best.number
        assert "per:employee_of" in str(c.app.screen.query_one("#thresholds-table").get_row_at(0))
        await pilot.press("a")
        await wait_for(pilot, lambda: c.ledger.thresholds(), "the stored thresholds")
    stored = c.ledger.thresholds()[f"tui/00-explore:{trial}"]
    assert stored.source == "tui" and stored.global_threshold == 0.42 and stored.who is not None and stored.who.user


async def test_thresholds_with_the_real_learner(console, monkeypatch):
    c = console(objective={"path": "console_demo:probs_objective"})
    from tui.app import default_threshold_learner

    c.app.threshold_learner = default_threshold_learner(c.spec.name)
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        await pilot.press("t")
        await wait_for(pilot, lambda: c.app.screen.result is not None or c.app.screen.error, "threshold learning")
        assert c.app.screen.error is None, c.app.screen.error
        assert [row["class"] for row in c.app.screen.result.table] == ["a", "b", "c"]


async def test_help_and_command_palette(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await pilot.press("question_mark")
        assert isinstance(c.app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"reverse")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(c.app.screen, DashboardScreen), "the palette to close")
        assert c.app.screen.query_one("#trials").sort_reverse


async def test_user_keymap_rebinds_an_action(console, tmp_path, monkeypatch):
    keys = tmp_path / "keys.toml"
    keys.write_text('approve = "A"\nnot_an_action = "z"\n')
    monkeypatch.setenv("HPO_TUI_KEYS", str(keys))
    keymap, problems = load_keymap()
    assert keymap == {"approve": "A"} and "not_an_action" in problems[0]
    c = console()
    c.app.user_keymap = keymap
    async with c.app.run_test(size=SIZE) as pilot:
        c.app.set_keymap(keymap)
        await c.start(pilot)
        await c.until_gate(pilot)
        await pilot.press("a")
        assert isinstance(c.app.screen, DashboardScreen)
        await pilot.press("A")
        assert isinstance(c.app.screen, ApprovalScreen)


async def test_quit_asks_then_stops_the_campaign(console):
    c = console()
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await pilot.press("q")
        assert isinstance(c.app.screen, QuitScreen)
        await pilot.press("n")
        assert isinstance(c.app.screen, DashboardScreen) and c.engine.alive
        await pilot.press("q", "s")
        await wait_for(pilot, lambda: not c.engine.alive, "the engine to stop")
        await wait_for(pilot, lambda: c.app.exit_message is not None, "the console to leave")
    assert c.ledger.campaign_state().status == "stopped"
    assert "stopped" in c.app.exit_message


async def test_quit_leaving_it_running_headless(console, tmp_path):
    c = console(policy=AutoPolicy(), **SLOW_EXPLORE)
    toml = write_toml(tmp_path / "tui.toml", spec_data(c))
    started: list[list[str]] = []

    def headless() -> str:
        command = headless_command(str(toml), c.url, "auto", 0, None)
        started.append(command.argv)
        assert c.url not in " ".join(command.argv)  # a storage password never reaches `ps`
        assert command.env == {"HPO_TUI_STORAGE_URL": c.url}
        return f"pid {spawn_headless(command, tmp_path / 'runs' / 'tui' / 'headless.log')}"

    c.app.headless = headless
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await pilot.press("q")
        assert isinstance(c.app.screen, QuitScreen)
        await pilot.press("h")
        await wait_for(pilot, lambda: c.app.exit_message is not None, "the hand-over")
    assert c.ledger.campaign_state().status == "stopped"  # the console's engine stopped before the hand-over
    assert started and started[0][:3] == [sys.executable, "-m", "tui.cli"] and "--headless" in started[0]
    deadline = time.monotonic() + 120
    while c.ledger.campaign_state().status != "finished" and time.monotonic() < deadline:
        time.sleep(0.2)
    log = (tmp_path / "runs" / "tui" / "headless.log").read_text()
    assert c.ledger.campaign_state().status == "finished", log
    assert "resuming" in log, log  # the detached engine picked the campaign up from the storage
    assert c.ledger.campaign_state().coordinator["pid"] != str(os.getpid())


async def test_a_hang_up_leaves_the_console_and_keeps_the_engine(console):
    """SIGHUP (tui/hangup.py calls hang_up from its handler): the console leaves, the engine goes on."""
    c = console(policy=AutoPolicy(), **SLOW_EXPLORE)
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await wait_for(pilot, lambda: c.app.snapshot.count("COMPLETE") >= 1, "a completed trial")
        c.app.hang_up()
        await wait_for(pilot, lambda: c.app.exit_message is not None, "the console to leave")
    assert c.app.hung_up and "continues headless" in c.app.exit_message
    assert c.engine.alive and not c.engine.stopping  # nothing asked the engine to stop
    assert c.ledger.campaign_state().status == "running"
    reader = SnapshotReader(open_storage(c.url), c.spec.name)
    left_at = reader.read().count("COMPLETE")
    deadline = time.monotonic() + 60
    while reader.read().count("COMPLETE") <= left_at and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reader.read().count("COMPLETE") > left_at, "no trial finished after the console left"
