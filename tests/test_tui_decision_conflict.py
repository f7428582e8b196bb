"""The console deciding a gate that a shell decided a moment before: refused, with who decided it."""

from __future__ import annotations

import pytest
from test_tui_actions import SIZE, console, wait_for  # noqa: F401  (the console fixture)

from engine.store.records import DecisionDraft

pytestmark = pytest.mark.xdist_group("tui")


async def test_the_console_says_who_decided_first(console, monkeypatch):  # noqa: F811
    c = console()
    notes: list[tuple[str, dict]] = []
    async with c.app.run_test(size=SIZE) as pilot:
        await c.start(pilot)
        await c.until_gate(pilot)
        proposal = c.ledger.proposal_record(0)
        assert proposal is not None
        first = c.ledger.record_decision(0, DecisionDraft(action="reject"), source="cli")
        monkeypatch.setattr(c.app, "notify", lambda message, **options: notes.append((message, options)))
        # The console's own decision, written after the shell's (its screen had not seen that one yet).
        c.app.record_decision(0, DecisionDraft(action="approve", space=proposal.space))
        await wait_for(pilot, lambda: notes, "the console's answer")
    message, options = notes[-1]
    assert message == f"gate 0 was already decided by {first.who.user} via cli at {first.when} (reject)"
    assert options["severity"] == "error"
    assert c.ledger.decision_records() == [first]
