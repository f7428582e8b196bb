"""Gate decisions that would make an invalid space are refused with the reason (`hpo-tui approve`
exits 2), nothing is recorded, the gate keeps waiting, and a valid decision then goes through."""

import threading

import pytest
from fleet import wait_for

from engine.campaign import Coordinator
from engine.cli import EXIT_BAD_INPUT
from engine.gates.policy import WaitPolicy
from engine.spec import parse_campaign
from engine.store.ledger import Ledger
from engine.store.storage import open_storage
from tui.cli import main

REFUSED = [
    (["--set", "x1=8:2"], "x1: low (8) must be below high (2); to fix a value, freeze it"),
    (["--set", "x1=-10:5"], "x1: -10..5 leaves the campaign's bounds -5..10"),
    (["--set", "lr=0:0.01"], "lr: is log-scaled, so low must be positive (got 0)"),
    (["--set", "lr=-1:0.01"], "lr: is log-scaled, so low must be positive (got -1)"),
    (["--set", "x1=nan:5"], "x1: low nan is not a finite number"),
    (["--set", "x1=-inf:5"], "x1: low -inf is not a finite number"),
    (["--set", "x2=1e300:1e301"], "x2: low 1e+300 is beyond ±1e+15"),
    (["--set", "layers=1.5:4"], "layers: an int parameter needs whole-number bounds, got '1.5:4'"),
    (["--set", "act=relu,swish"], "act: 'swish' is not one of ['relu', 'gelu', 'tanh']"),
    (["--set", "act="], "act: keep at least one choice"),
    (["--set", "x1=abc"], "x1: write a range as LOW:HIGH (or =VALUE to freeze), got 'abc'"),
    (["--set", "x1"], "--set takes P=LOW:HIGH, P=a,b or P==VALUE; got 'x1'"),
    (["--set", "nosuch=1:2"], "nosuch: no such parameter (parameters: x1, x2, lr, layers, act)"),
    (["--freeze", "x1=99"], "x1: frozen value 99 is outside [-5, 10]"),
    (["--freeze", "layers=2.5"], "layers: '2.5' is not a whole number"),
    (["--freeze", "act=swish"], "act: 'swish' is not one of ['relu', 'gelu', 'tanh']"),
    (["--fidelity", "epochs=-1"], "fidelity: epochs must be a positive finite number, got -1"),
    (["--fidelity", "epochs=2.5"], "fidelity: epochs takes a whole number, got 2.5"),
    (["--fidelity", "train_fraction=2"], "fidelity: train_fraction is a fraction and cannot exceed 1, got 2"),
    (["--fidelity", "nosuch=1"], "fidelity: unknown knob 'nosuch' (knobs: train_fraction, epochs)"),
    (["--fidelity", "ultra"], "fidelity: 'ultra' is not a level (low) and not KNOB=VALUE"),
    (["--extend", "0"], "extend: give a positive number of extra trials"),
    (["--extend", "-3"], "extend: give a positive number of extra trials"),
]


@pytest.fixture
def waiting_gate(tmp_path):
    """A campaign whose coordinator (a thread here) waits at gate 0 for a decision."""
    spec = parse_campaign(
        {
            "name": "refuse",
            "policy": "wait",
            "objective": {"path": "engine.workloads.functions:branin"},
            "space": {
                "x1": {"type": "float", "low": -5.0, "high": 10.0},
                "x2": {"type": "float", "low": 0.0, "high": 15.0},
                "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
                "layers": {"type": "int", "low": 1, "high": 8},
                "act": {"type": "categorical", "choices": ["relu", "gelu", "tanh"]},
            },
            "fidelity": {"levels": {"low": {"train_fraction": 0.3, "epochs": 2}}},
            "sprints": [
                {"name": "a", "sampler": "random", "fidelity": "low", "n_trials": 6},
                {"name": "b", "sampler": "random", "fidelity": "low", "n_trials": 3},
            ],
        }
    )
    url = f"journal://{tmp_path / 'journal.log'}"
    log = []
    coordinator = Coordinator(
        spec, url, policy=WaitPolicy(poll_s=0.1, log=log.append), workers=0, runs_root=tmp_path, log=log.append
    )
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", coordinator.run()), daemon=True)
    thread.start()
    ledger = Ledger(open_storage(url), "refuse")
    wait_for(lambda: ledger.pending_gate() == 0, 60, "gate 0", check=lambda: thread.is_alive() or pytest.fail(str(log)))
    yield url, ledger, thread, result
    coordinator.request_stop()
    thread.join(30)


def test_invalid_decisions_are_refused_with_the_reason_and_the_gate_waits(waiting_gate, capsys):
    url, ledger, thread, result = waiting_gate
    for args, reason in REFUSED:
        code = main(["approve", "refuse", "--storage", url, *args])
        out, err = capsys.readouterr()
        assert (code, err, out) == (EXIT_BAD_INPUT, f"hpo-tui approve: {reason}\n", ""), args
    assert ledger.decision_record(0) is None and ledger.pending_gate() == 0 and thread.is_alive()

    assert main(["approve", "refuse", "--storage", url, "--set", "x1=0:5", "--freeze", "act=gelu"]) == 0
    thread.join(60)
    assert result["summary"]["status"] == "finished"
    decision = ledger.decision_record(0)
    assert decision.action == "edit" and decision.source == "cli"
    assert ledger.sprint_record(1).space["x1"]["low"] == 0.0 and ledger.sprint_record(1).space["act"] == {
        "type": "fixed",
        "value": "gelu",
    }
    # A second decision for the same gate is refused too: the first one stands.
    assert main(["approve", "refuse", "--storage", url, "--reject"]) == 1
    assert "no gate is waiting for a decision" in capsys.readouterr().err
