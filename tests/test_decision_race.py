"""Two `hpo-tui approve` processes deciding the same gate at the same instant: exactly one wins.

Each round, two real CLI processes (`--extend 2` and `--reject`) import everything first, then call
the CLI at the same wall-clock instant. The winner exits 0; the loser exits 6 with "gate N was
already decided by USER via cli at TIME"; the ledger holds one decision, the winner's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest
from fleet import wait_for

from engine.campaign import Coordinator
from engine.errors import EXIT_CONFLICT, GateAlreadyDecided
from engine.gates.policy import WaitPolicy
from engine.spec import parse_campaign
from engine.store.ledger import Ledger
from engine.store.records import DecisionDraft
from engine.store.schema import decision_claim_study_name, now_iso
from engine.store.storage import open_storage

ROOT = Path(__file__).resolve().parent.parent

# Imports first, say so, then run the CLI on the go line: the two processes race inside the decision itself.
ON_GO = (
    "import sys\n"
    "from tui.cli import main\n"
    "import engine.campaign, engine.gates.decisions, engine.store.ledger, engine.gates.proposal, engine.store.storage\n"  # loaded lazily
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def gate_waiting(tmp_path: Path, url: str) -> Ledger:
    """A campaign stopped while its gate 0 waits for a decision (as after `run --policy wait`, Ctrl-C)."""
    spec = parse_campaign(
        {
            "name": "race",
            "policy": "wait",
            "objective": {"path": "engine.workloads.functions:branin"},
            "space": {
                "x1": {"type": "float", "low": -5.0, "high": 10.0},
                "x2": {"type": "float", "low": 0.0, "high": 15.0},
            },
            "fidelity": {"levels": {"low": {"epochs": 1}}},
            "sprints": [
                {"name": "a", "sampler": "random", "fidelity": "low", "n_trials": 4},
                {"name": "b", "sampler": "random", "fidelity": "low", "n_trials": 2},
            ],
        }
    )
    log: list[str] = []
    coordinator = Coordinator(
        spec, url, policy=WaitPolicy(poll_s=0.05, log=log.append), workers=0, runs_root=tmp_path, log=log.append
    )
    thread = threading.Thread(target=coordinator.run, daemon=True)
    thread.start()
    ledger = Ledger(open_storage(url), "race")
    wait_for(lambda: ledger.pending_gate() == 0, 60, "gate 0", check=lambda: thread.is_alive() or pytest.fail(str(log)))
    coordinator.request_stop()
    thread.join(30)
    assert ledger.pending_gate() == 0
    return ledger


def racers(url: str, tmp_path: Path) -> list[tuple[list[str], subprocess.Popen]]:
    """Two approve processes, imported and waiting for the go line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argvs = [["approve", "race", "--storage", url, "--extend", "2"], ["approve", "race", "--storage", url, "--reject"]]
    return [
        (
            argv,
            subprocess.Popen(
                [sys.executable, "-c", ON_GO, *argv],
                cwd=tmp_path,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for argv in argvs
    ]


def race(pair: list[tuple[list[str], subprocess.Popen]]) -> list[subprocess.CompletedProcess]:
    for _, proc in pair:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    for _, proc in pair:  # go, both at once
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for argv, proc in pair:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return results


def check_round(ledger: Ledger, gate: int, results: list[subprocess.CompletedProcess]) -> str:
    codes = sorted(r.returncode for r in results)
    assert codes == [0, EXIT_CONFLICT], [(r.returncode, r.stdout, r.stderr) for r in results]
    winner = next(r for r in results if r.returncode == 0)
    loser = next(r for r in results if r.returncode == EXIT_CONFLICT)
    action = "extend" if "--extend" in winner.args else "reject"
    assert f"gate {gate}: {action} recorded" in winner.stdout
    decision = ledger.decision_record(gate)
    assert decision is not None and decision.action == action and decision.source == "cli"
    assert f"gate {gate} was already decided by {decision.who.user} via cli at {decision.when}" in loser.stderr
    assert "Traceback" not in loser.stderr
    assert [d.gate for d in ledger.decision_records()].count(gate) == 1
    return action


def next_round(ledger: Ledger, gate: int) -> None:
    """Gate `gate` waits with gate 0's proposal (the coordinator would write a new one after a decision)."""
    proposal = ledger.proposal_record(0)
    assert proposal is not None
    ledger.put_proposal(gate, proposal)
    ledger.set_state(gate=gate, pending_gate=gate)


def race_rounds(tmp_path: Path, url: str, rounds: int) -> Ledger:
    ledger = gate_waiting(tmp_path, url)
    pair = racers(url, tmp_path)
    for gate in range(rounds):
        if gate:
            next_round(ledger, gate)
        racing, pair = pair, racers(url, tmp_path) if gate + 1 < rounds else None  # the next pair imports meanwhile
        check_round(ledger, gate, race(racing))
        assert ledger.pending_gate() is None
    assert len(ledger.decision_records()) == rounds
    # Every gate's claim is a study of its own, named by the schema.
    names = {s.study_name for s in ledger.storage.get_all_studies()}
    assert {decision_claim_study_name("race", g) for g in range(rounds)} <= names
    return ledger


@pytest.mark.xdist_group("decision_race")
@pytest.mark.parametrize(("kind", "rounds"), [("journal", 8), ("sqlite", 2)])
def test_racing_approvals_have_one_winner(tmp_path, kind, rounds):
    url = f"journal://{tmp_path / 'journal.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'race.db'}"
    race_rounds(tmp_path, url, rounds)


@pytest.mark.xdist_group("postgres")
def test_racing_approvals_have_one_winner_on_postgresql(tmp_path, pg_url):
    race_rounds(tmp_path, pg_url, 2)


@pytest.mark.xdist_group("decision_race")
def test_a_policy_that_loses_the_race_takes_the_winners_decision(tmp_path):
    """The coordinator's own policy racing a human: the gate keeps the first decision, the policy uses it."""
    from engine.gates.policy import AutoPolicy

    url = f"journal://{tmp_path / 'journal.log'}"
    ledger = gate_waiting(tmp_path, url)
    human = ledger.record_decision(0, DecisionDraft(action="reject"), source="cli")
    ledger_of_policy = Ledger(open_storage(url), "race")
    proposal = ledger.proposal_record(0)
    with pytest.raises(Exception) as raised:
        ledger_of_policy.record_decision(0, DecisionDraft(action="approve"), source="policy:auto")
    assert raised.value.exit_code == EXIT_CONFLICT and raised.value.winner == human
    winner = ledger.decision_record(0)
    assert winner is not None and winner.action == "reject" and winner.source == "cli"
    assert ledger_of_policy.decide(0, DecisionDraft(action="approve"), source="policy:auto") == winner
    assert AutoPolicy().decide(ledger_of_policy, 0, proposal, {}, {}, {}, lambda: False) == winner
    assert ledger.decision_records() == [human]


def test_a_claim_left_by_a_crashed_writer_lapses(tmp_path, monkeypatch):
    """A writer killed between its claim and its record: the gate is refused while the claim is
    fresh (naming the claimant), and can be decided once the claim is stale."""
    import engine.store.ledger as ledger_module

    monkeypatch.setattr(ledger_module, "WINNER_WAIT_S", 0.2)
    storage = open_storage(f"journal://{tmp_path / 'journal.log'}")
    ledger = Ledger(storage, "crash", create=True)
    claim = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], decision_claim_study_name("crash", 0))
    stamp = {"action": "extend", "source": "cli", "user": "ghost", "when": "2026-01-01T00:00:00+00:00"}
    fresh = {**stamp, "when": now_iso()}
    storage.set_study_user_attr(claim, "claim", fresh)
    with pytest.raises(GateAlreadyDecided, match=r"gate 0 was already decided by ghost via cli at .* \(extend\)"):
        ledger.record_decision(0, DecisionDraft(action="reject"), source="tui")
    storage.set_study_user_attr(claim, "claim", stamp)  # the claim is now older than STALE_CLAIM_S
    recorded = ledger.record_decision(0, DecisionDraft(action="reject"), source="tui")
    assert ledger.decision_records() == [recorded] and recorded.source == "tui"
