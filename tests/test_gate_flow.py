"""The gate flow: the policy's decision makes the next sprint; proposals are stored under gate numbers."""

import pytest
from enginekit import branin_campaign, spec_of

from engine.campaign import Coordinator
from engine.gates.policy import AutoPolicy, PlanPolicy, Policy
from engine.store.ledger import Ledger
from engine.store.records import Decision
from engine.store.storage import open_storage


class DecideThenStop(Policy):
    """Records the wrapped policy's decision, then stops the coordinator before the next sprint is made."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def decide(self, ledger, gate, proposal, original, current, levels, stop) -> Decision | None:
        self.policy.decide(ledger, gate, proposal, original, current, levels, stop)
        return None


def test_after_an_extend_each_proposal_carries_its_gate_and_the_sprint_it_follows(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text('[gates.0]\naction = "extend"\nextend = 2\n[gates.1]\nset = { x1 = "0:5" }\n')
    url = f"journal://{tmp_path / 'j.log'}"
    lines: list[str] = []
    Coordinator(
        spec_of(branin_campaign("extended")),
        url,
        workers=0,
        runs_root=tmp_path,
        policy=PlanPolicy(plan),
        log=lines.append,
    ).run()
    ledger = Ledger(open_storage(url), "extended")
    proposals = [ledger.proposal_record(gate) for gate in range(3)]
    assert [(p.gate, p.sprint) for p in proposals if p is not None] == [(0, 0), (1, 0), (2, 1)]
    decision = ledger.decision_record(1)
    first, second = ledger.sprint_record(0), ledger.sprint_record(1)
    assert decision is not None and first is not None and second is not None
    assert first.n_trials == spec_of(branin_campaign("extended")).sprints[0].n_trials + 2
    assert second.space == decision.space and second.space["x1"]["high"] == 5.0  # gate 1's decision, not gate 0's
    assert any(line.startswith("gate 2 after ") for line in lines)


@pytest.mark.parametrize("older_version", [False, True])
def test_a_coordinator_stopped_between_decision_and_next_sprint_resumes_with_that_decision(tmp_path, older_version):
    """The decision recorded, the next sprint not made yet: the next run makes it from that decision. A ledger
    left by an older version, which moved the gate counter before making the sprint, resumes the same way."""
    plan = tmp_path / "plan.toml"
    plan.write_text('[gates.0]\nset = { x1 = "0:5" }\n')
    url = f"journal://{tmp_path / 'j.log'}"
    spec = spec_of(branin_campaign("stopped"))
    quiet = lambda line: None  # noqa: E731
    Coordinator(spec, url, workers=0, runs_root=tmp_path, policy=DecideThenStop(PlanPolicy(plan)), log=quiet).run()
    ledger = Ledger(open_storage(url), "stopped")
    assert ledger.sprint_record(1) is None and ledger.campaign_state().pending_gate == 0
    if older_version:
        ledger.set_state(gate=1, pending_gate=None)
    Coordinator(spec, url, workers=0, runs_root=tmp_path, policy=AutoPolicy(), log=quiet).run()
    decision, sprint = ledger.decision_record(0), ledger.sprint_record(1)
    assert decision is not None and decision.source == "plan:plan.toml" and sprint is not None
    assert sprint.space == decision.space and sprint.space["x1"]["high"] == 5.0
    after_second = ledger.proposal_record(1)
    assert after_second is not None and (after_second.gate, after_second.sprint) == (1, 1)
    assert ledger.campaign_state().status == "finished"
