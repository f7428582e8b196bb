"""Pilot tests of the approval screen's evidence: the plot follows the selected parameter and the
operator's edits, is drawn by a worker thread (never the UI thread), and can be hidden.

`gate_one_console` is a gate after a second fidelity (the demo campaign's warm-up sprint, whose
first configurations re-ran explore-sprint ones): the snapshot images use it too.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import replace

import pytest
from console_demo import LEVELS, ORIGINAL_SPACE, demo_importances, demo_rows, demo_snapshot

from engine.store.records import ProposalFidelity
from engine.views.evidence import GateEvidence, GateInputs, gate_evidence, sprint_trials
from tui.app import HpoConsole
from tui.approval import ApprovalScreen
from tui.source import FixedSource

pytestmark = pytest.mark.xdist_group("tui")
RE_RUN = 6  # configurations of the explore sprint that the warm-up sprint re-ran


def low_fidelity_value(params: dict, noise: float) -> float:
    """Short runs prefer a larger learning rate than the warm-up sprint's (demo) objective."""
    return (
        0.95 - 0.3 * math.exp(-((math.log10(params["lr"]) + 2.6) ** 2)) + 0.15 * params["dropout"] ** 2 + 0.08 * noise
    )


def gate_one() -> tuple[object, GateEvidence]:
    """(snapshot, evidence) at gate 1, after the warm-up sprint."""
    base = demo_snapshot(120, pending_gate=True)
    proposal = base.proposal.replace(
        gate=1,
        sprint=1,
        after="warmup",
        next="full",
        fidelity=ProposalFidelity(level="full", values=dict(LEVELS["full"])),
    )
    snapshot = replace(
        base,
        sprint=replace(base.sprint, index=1, name="warmup", study="demo/01-warmup", level="warmup"),
        current_sprint=1,
        pending_gate=1,
        next_gate=1,
        proposal=proposal,
    )
    warm = [(r.number, dict(r.params), r.value) for r in snapshot.trials if r.state == "COMPLETE"]
    rng = random.Random(7)
    explore = [(n, params, low_fidelity_value(params, rng.random())) for n, params, _ in warm[:RE_RUN]]
    for row in demo_rows(200, running=0, seed=3):
        params = dict(row.params)
        explore.append((len(explore), params, low_fidelity_value(params, rng.random())))
    inputs = GateInputs(
        gate=1,
        finished=1,
        sprints=(
            sprint_trials(0, "subspace", "low", explore, ORIGINAL_SPACE),
            sprint_trials(1, "warmup", "warmup", warm, ORIGINAL_SPACE),
        ),
        level_order=tuple(LEVELS),
        original=ORIGINAL_SPACE,
        current=ORIGINAL_SPACE,
        proposed=proposal.space,
        direction="minimize",
        metric=snapshot.metric,
        top_k=10,
    )
    return snapshot, gate_evidence(inputs)


def gate_one_console() -> HpoConsole:
    snapshot, evidence = gate_one()
    return HpoConsole(FixedSource(snapshot, importances=demo_importances(), evidence=evidence), fps=10)


async def until(pilot, condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


async def open_approval(pilot) -> ApprovalScreen:
    app = pilot.app
    await until(pilot, lambda: app.snapshot is not None, "the first snapshot")
    await pilot.press("a")
    await until(pilot, lambda: isinstance(app.screen, ApprovalScreen), "the approval screen")
    screen = app.screen
    await until(pilot, lambda: screen.plot_threads, "the first plot")
    return screen


def plot_param(screen: ApprovalScreen) -> str:
    return screen.query_one("#evidence-plot").key[1]


def text(screen: ApprovalScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


def test_gate_one_evidence_has_a_measured_rank_agreement():
    _, evidence = gate_one()
    (agreement,) = evidence.agreements
    assert (agreement.lower, agreement.higher, agreement.method, agreement.pairs) == (
        "low",
        "warmup",
        "re-evaluated",
        RE_RUN,
    )
    assert agreement.rho is not None


async def test_moving_the_selection_redraws_the_plot_for_that_parameter_in_a_worker():
    app = gate_one_console()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_approval(pilot)
        plot = screen.query_one("#evidence-plot")
        assert plot_param(screen) == "lr" and "lr top-10" in text(screen, "#evidence-summary")
        assert "rank agreement: low→warmup ρ" in text(screen, "#evidence-summary")
        first = [strip.text for strip in plot._plot]
        assert any("0.0001" in line for line in first)  # the log axis is labelled in lr's units
        drawn = len(screen.plot_threads)
        await pilot.press("down")
        await until(pilot, lambda: len(screen.plot_threads) > drawn, "the weight_decay plot")
        assert plot_param(screen) == "weight_decay"
        assert "weight_decay top-10" in text(screen, "#evidence-summary")
        assert [strip.text for strip in plot._plot] != first
        # Every plot was drawn by a worker thread, never by the UI (main) thread.
        ui_thread = threading.current_thread().name
        assert ui_thread == threading.main_thread().name
        assert screen.plot_threads and ui_thread not in screen.plot_threads


async def test_an_edit_redraws_the_range_and_recounts_the_cut():
    app = gate_one_console()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_approval(pilot)
        before = screen.shown_evidence.cut_total
        drawn = len(screen.plot_threads)
        await pilot.press("enter", "ctrl+u", *"0.0009:0.001", "enter")
        await until(pilot, lambda: len(screen.plot_threads) > drawn, "the plot of the edited range")
        assert screen.draft.edited("lr")
        assert screen.shown_evidence.cut_total > before  # a narrow lr range cuts more of the best trials
        assert screen.shown_evidence.param("lr").proposed.low == pytest.approx(0.0009)
        assert "yours" in text(screen, "#evidence-legend")
        assert screen.evidence.param("lr").proposed.low == pytest.approx(1e-4)  # the proposal as read


async def test_the_plot_can_be_hidden_and_shown_again():
    app = gate_one_console()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_approval(pilot)
        plot = screen.query_one("#evidence-plot")
        await pilot.press("g")
        assert not plot.display and not screen.query_one("#evidence-legend").display
        drawn = len(screen.plot_threads)
        await pilot.press("down")  # hidden: nothing is drawn
        await pilot.pause(0.3)
        assert len(screen.plot_threads) == drawn
        await pilot.press("g")
        await until(pilot, lambda: len(screen.plot_threads) > drawn, "the plot again")
        assert plot.display and plot_param(screen) == "weight_decay"
        await pilot.press("space")  # the approval's own keys still work with the plot on screen
        assert screen.draft.edited("weight_decay")


async def test_leaving_before_the_evidence_arrives_is_harmless():
    app = gate_one_console()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.snapshot is not None, "the first snapshot")
        await pilot.press("a", "escape")  # the workers finish after the screen is gone
        await pilot.pause(0.5)
        assert not isinstance(app.screen, ApprovalScreen) and app.is_running
        screen = await open_approval(pilot)  # and it opens again, drawn afresh
        assert screen.plot_settled


async def test_demo_gate_zero_says_agreement_needs_a_second_fidelity():
    app = HpoConsole(FixedSource(demo_snapshot(120, pending_gate=True), importances=demo_importances()), fps=10)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_approval(pilot)
        assert "every trial so far ran at one fidelity (low)" in text(screen, "#evidence-summary")
        assert screen.evidence.tops[0].level == "low"


# -------------------------------------------------------------------------------- a real engine
@pytest.fixture
def engine_console(tmp_path, monkeypatch):
    from test_tui_actions import Console

    monkeypatch.chdir(tmp_path)
    made = []

    def make(**overrides):
        made.append(Console(tmp_path, **overrides))
        return made[-1]

    yield make
    for console in made:
        console.stop()


async def test_evidence_read_from_a_real_campaign_at_both_gates(engine_console):
    c = engine_console(
        sprints=[
            {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 8},
            {"name": "refine", "sampler": "tpe", "fidelity": "high", "n_trials": 6, "seed_top": 3},
            {"name": "full", "sampler": "tpe", "fidelity": "high", "n_trials": 4},
        ]
    )
    async with c.app.run_test(size=(100, 30)) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot, 0)
        screen = await open_approval(pilot)
        assert "every trial so far ran at one fidelity (low)" in text(screen, "#evidence-summary")
        assert [len(g.x) for g in screen.evidence.param("x1").groups] == [8]
        await pilot.press("y", "y")
        await c.until_decided(pilot, 0)
        await c.until_gate(pilot, 1)
        screen = await open_approval(pilot)
        # The refine sprint re-ran the explore sprint's 3 best configurations at high fidelity.
        assert "rank agreement: low→high ρ" in text(screen, "#evidence-summary")
        assert "(3 re-evaluated)" in text(screen, "#evidence-summary")
        assert [g.name for g in screen.evidence.param("x1").groups] == ["explore", "refine"]
        assert threading.main_thread().name not in screen.plot_threads
        await pilot.press("y", "y")
        await c.until_decided(pilot, 1)


def test_the_fast_ansi_decoder_makes_the_same_lines_as_rich(monkeypatch):
    from tui import evidence_plot as module
    from tui import plots

    _, evidence = gate_one()
    for name in ("lr", "dropout", "warmup"):
        fast = module.evidence_plot(evidence, name, 100, 20)
        monkeypatch.setattr(module, "build_plot", lambda draw, w, h, fast=False: plots.build_plot(draw, w, h))
        rich = module.evidence_plot(evidence, name, 100, 20)
        monkeypatch.undo()
        assert [[(s.text, s.style) for s in line] for line in fast] == [
            [(s.text, s.style) for s in line] for line in rich
        ]
        assert any("X" in line.text for line in fast)  # the top-k are drawn
