"""A plan file is a validated model like the campaign file: a typo such as `acton = "reject"` is an error
naming the file and the key, not a silent approval. A resumed campaign whose `seed` or `[gate]` changed is
refused like any other binding change, naming the key. A gate that would freeze every parameter is refused
with the reason."""

import threading

import pytest
from enginekit import branin_campaign, hpo_tui, spec_of, write_toml
from fleet import wait_for

from engine.campaign import Coordinator
from engine.errors import EXIT_USAGE
from engine.gates.policy import WaitPolicy, load_plan
from engine.spec import CampaignFileError
from engine.store.ledger import Ledger
from engine.store.storage import open_storage
from tui.cli import main

pytestmark = pytest.mark.xdist_group("plan-resume")

SMALL = {"sprints": [{"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 4}]}

# plan text -> the problem `file: key: reason` must name
BAD_PLANS = [
    ('[gates.1]\nacton = "reject"\n', "gates.1.acton: unknown key"),
    ('[default]\nactoin = "wait"\n', "default.actoin: unknown key"),
    ('[gate.0]\naction = "reject"\n', "gate: unknown key"),
    ('[gates.0]\naction = "aprove"\n', "gates.0.action: Input should be 'approve', 'reject' or 'extend'"),
    ('[default]\naction = "reject"\n', "default.action: Input should be 'approve' or 'wait'"),
    ('[gates.0]\nset = { x1 = "3..4" }\n', "gates.0.set.x1: x1: write a range as LOW:HIGH"),
    ('[gates.0]\nset = { x1 = "8:2" }\n', "gates.0.set.x1: x1: low (8) must be below high (2)"),
    ('[gates.0]\nset = { x9 = "1:2" }\n', "gates.0.set.x9: no such parameter (parameters: x1, x2)"),
    ("[gates.0]\nset = { x1 = 3 }\n", "gates.0.set.x1: Input should be a valid string"),
    ('[gates.0]\nfreeze = ["x7"]\n', "gates.0.freeze.x7: no such parameter"),
    ('[gates.0]\nfidelity = ["epochs=-1"]\n', "gates.0.fidelity.0: fidelity: epochs must be a positive finite number"),
    ('[gates.0]\naction = "extend"\n', "gates.0: action 'extend' needs extend = N"),
    ("[gates.0]\nextend = 3\n", "gates.0: extend = 3 is only used with action = 'extend'"),
    ('[gates.0]\naction = "extend"\nextend = 0\n', "gates.0.extend: Input should be greater than or equal to 1"),
    ('[gates.first]\naction = "reject"\n', "gates: gate 'first' is not a gate number"),
    ("[gates.0\n", "<file>: TOML syntax"),
]


@pytest.mark.parametrize(
    "text,problem", BAD_PLANS, ids=[p.split(":")[0] + f"-{i}" for i, (_, p) in enumerate(BAD_PLANS)]
)
def test_a_bad_plan_names_the_file_and_the_key(tmp_path, text, problem):
    plan = tmp_path / "plan.toml"
    plan.write_text(text)
    with pytest.raises(CampaignFileError) as raised:
        load_plan(plan, spec_of(branin_campaign("p")))
    assert f"{plan}: {problem}" in str(raised.value), str(raised.value)


def test_a_good_plan_loads(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[gates.0]\nset = { x1 = "0:5" }\nfreeze = { x2 = 3.0 }\nfidelity = ["epochs=3"]\n'
        '[gates.1]\naction = "extend"\nextend = 2\n[default]\naction = "wait"\n'
    )
    loaded = load_plan(plan, spec_of(branin_campaign("p")))
    assert loaded.gates["0"].frozen() == {"x2": 3.0} and loaded.gates["1"].extend == 2
    assert loaded.default.action == "wait"


def test_the_cli_refuses_a_plan_typo_before_anything_runs(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", branin_campaign("typo", **SMALL))
    plan = tmp_path / "plan.toml"
    plan.write_text('[gates.1]\nacton = "reject"\n')
    out = hpo_tui("run", str(campaign), "--workers", "0", "--policy", f"plan:{plan}", cwd=tmp_path)
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == ["invalid plan: 1 problem(s)", f"{plan}: gates.1.acton: unknown key"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "change,key",
    [({"seed": 7}, "seed"), ({"gate": {"top_k": 2}}, "gate")],
    ids=["seed", "gate"],
)
def test_resume_with_a_changed_seed_or_gate_is_refused(tmp_path, change, key):
    campaign = tmp_path / "c.toml"
    write_toml(campaign, branin_campaign("bind", **SMALL))
    assert hpo_tui("run", str(campaign), "--workers", "0", cwd=tmp_path).returncode == 0
    write_toml(campaign, branin_campaign("bind", **SMALL, **change))
    out = hpo_tui("run", str(campaign), "--workers", "0", cwd=tmp_path)
    assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr, out.stderr
    assert f"campaign 'bind' already exists in this storage with different {key};" in out.stderr
    stored = Ledger(open_storage(f"journal://{tmp_path / 'runs' / 'bind' / 'journal.log'}"), "bind").spec()
    assert stored["seed"] == 0 and stored["gate"]["top_k"] == 4  # the stored copy is untouched


def test_freezing_every_parameter_is_refused_at_the_gate(tmp_path, capsys):
    spec = spec_of(branin_campaign("frozen", policy="wait"))
    url = f"journal://{tmp_path / 'journal.log'}"
    log: list[str] = []
    coordinator = Coordinator(
        spec, url, policy=WaitPolicy(poll_s=0.1, log=log.append), workers=0, runs_root=tmp_path, log=log.append
    )
    thread = threading.Thread(target=coordinator.run, daemon=True)
    thread.start()
    try:
        ledger = Ledger(open_storage(url), "frozen")
        wait_for(
            lambda: ledger.pending_gate() == 0, 60, "gate 0", check=lambda: thread.is_alive() or pytest.fail(str(log))
        )
        for argv in (["--freeze", "x1", "--freeze", "x2"], ["--set", "x1==1", "--freeze", "x2=3"]):
            assert main(["approve", "frozen", "--storage", url, *argv]) == EXIT_USAGE
            err = capsys.readouterr().err
            assert err.startswith("hpo-tui approve: nothing left to tune: every parameter would be frozen (x1, x2)")
            assert len(err.splitlines()) == 1
        assert ledger.decision_record(0) is None and ledger.pending_gate() == 0
        assert main(["approve", "frozen", "--storage", url, "--freeze", "x2"]) == 0  # one left to tune: fine
    finally:
        coordinator.request_stop()
        thread.join(60)
