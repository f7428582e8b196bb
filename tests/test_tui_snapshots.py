"""Snapshot images of the console's screens at 80×24 and 160×48, on injected deterministic data.

Update after an intended change with: pytest tests/test_tui_snapshots.py --snapshot-update
(then look at the report / the SVGs in tests/__snapshots__/test_tui_snapshots/).
"""

from __future__ import annotations

import time

import pytest
from console_demo import demo_detail, demo_importances, demo_snapshot, demo_thresholds
from test_tui_evidence import gate_one_console

from tui.app import HpoConsole
from tui.approval import ApprovalScreen
from tui.dashboard import DashboardScreen
from tui.detail import TrialDetailScreen
from tui.source import FixedSource
from tui.thresholds_screen import ThresholdScreen

pytestmark = pytest.mark.xdist_group("tui")
SIZES = [(80, 24), (160, 48)]


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")  # the events feed shows wall-clock times
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def console(pending_gate: bool = True) -> HpoConsole:
    snapshot = demo_snapshot(120, pending_gate=pending_gate)
    details = {row.number: demo_detail(snapshot, row.number) for row in snapshot.trials}
    source = FixedSource(snapshot, details=details, importances=demo_importances())
    return HpoConsole(source, fps=10, threshold_learner=lambda trial, **_: demo_thresholds(trial.number))


class FakeTrial:
    def __init__(self, number: int):
        self.number = number
        self.user_attrs = {"artifacts": {"val_probs": "x"}}


async def until(pilot, condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)
    await pilot.pause(0.1)


async def dashboard_settled(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: app.snapshot is not None, "the first snapshot")
    dashboard = app.screen
    assert isinstance(dashboard, DashboardScreen)
    await until(pilot, lambda: dashboard.query_one("#importance").importances, "importance")
    plot = dashboard.query_one("#history")
    await until(pilot, lambda: not plot.display or plot.key is not None, "the history plot")


async def evidence_drawn(pilot) -> None:
    """The approval screen shows the evidence plot last asked for (its worker drew it)."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ApprovalScreen), "the approval screen")
    await until(pilot, lambda: app.screen.plot_settled, "the evidence plot")


def with_trials(app: HpoConsole) -> HpoConsole:
    app.source.trials = {n: ("demo/00-subspace", FakeTrial(n)) for n in range(120)}
    return app


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard(snap_compare, size):
    assert snap_compare(console(), terminal_size=size, run_before=dashboard_settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard_running_sprint(snap_compare, size):
    assert snap_compare(console(pending_gate=False), terminal_size=size, run_before=dashboard_settled)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_approval(snap_compare, size):
    async def run_before(pilot):
        await dashboard_settled(pilot)
        await pilot.press("a")
        await evidence_drawn(pilot)
        await pilot.press("down", "down", "space")  # freeze dropout: the row shows the edit
        await pilot.pause(0.05)
        await evidence_drawn(pilot)  # ... and the plot draws its proposed value

    assert snap_compare(console(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_approval_refused_edit(snap_compare, size):
    async def run_before(pilot):
        await dashboard_settled(pilot)
        await pilot.press("a")
        await evidence_drawn(pilot)
        await pilot.press("enter", "ctrl+u", *"0.5:0.01")
        await pilot.pause(0.1)
        await evidence_drawn(pilot)  # redrawn for the room the editor leaves

    assert snap_compare(console(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_approval_evidence_two_fidelities(snap_compare, size):
    """Gate 1 after a second fidelity: rank agreement measured, the low fidelity's best cut."""

    async def run_before(pilot):
        await dashboard_settled(pilot)
        await pilot.press("a")
        await evidence_drawn(pilot)

    assert snap_compare(gate_one_console(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_trial_detail(snap_compare, size):
    async def run_before(pilot):
        await dashboard_settled(pilot)
        await pilot.press("enter")
        screen = pilot.app.screen
        assert isinstance(screen, TrialDetailScreen)
        await until(pilot, lambda: screen.detail is not None, "the detail")
        await until(pilot, lambda: screen.query_one("#detail-curve").key is not None, "the curve")

    assert snap_compare(console(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("number", [32, 6], ids=["stale-retried", "inherited-checkpoint"])
def test_trial_detail_stages_and_failures(snap_compare, size, number):
    """Trial 32 failed as stale (its worker stopped heartbeating) and was queued again; trial 6 started
    from an inherited checkpoint and took its data stage from the cache."""

    async def run_before(pilot):
        await dashboard_settled(pilot)
        pilot.app.open_detail(pilot.app.snapshot.trial(number))
        await until(pilot, lambda: isinstance(pilot.app.screen, TrialDetailScreen), "the detail screen")
        screen = pilot.app.screen
        await until(pilot, lambda: screen.detail is not None, "the detail")
        await until(pilot, lambda: screen.query_one("#detail-curve").key is not None, "the curve")

    assert snap_compare(console(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_thresholds(snap_compare, size):
    async def run_before(pilot):
        await dashboard_settled(pilot)
        await pilot.press("t")  # trial 0 saved val_probs
        screen = pilot.app.screen
        assert isinstance(screen, ThresholdScreen)
        await until(pilot, lambda: screen.result is not None, "threshold learning")

    assert snap_compare(with_trials(console()), terminal_size=size, run_before=run_before)
