"""engine.views.evidence: rank agreement between fidelities, top-k spans and what a proposal would cut,
on constructed trials with known answers; then on a real campaign's storage and `approve --show`."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from enginekit import branin_campaign, write_toml

from engine.cli import run_cli
from engine.store.ledger import Ledger
from engine.store.storage import open_storage
from engine.views.evidence import (
    NEAREST,
    RE_EVALUATED,
    GateInputs,
    Range,
    format_evidence,
    gate_evidence,
    read_gate_evidence,
    recut,
    sprint_trials,
)

ORIGINAL = {
    "x": {"type": "float", "low": 0.0, "high": 1.0, "log": False},
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "act": {"type": "categorical", "choices": ["relu", "tanh"]},
    "seed": {"type": "fixed", "value": 0},
}
LEVELS = ("low", "high")


def inputs(sprints, proposed, current=None, top_k=3, direction="minimize", gate=1) -> GateInputs:
    return GateInputs(
        gate=gate,
        finished=max(s.index for s in sprints),
        sprints=tuple(sprints),
        level_order=LEVELS,
        original=ORIGINAL,
        current=current or ORIGINAL,
        proposed=proposed,
        direction=direction,
        metric="loss",
        top_k=top_k,
    )


def config(x: float, lr: float = 1e-3, act: str = "relu") -> dict:
    return {"x": x, "lr": lr, "act": act}


def test_re_evaluated_configurations_give_the_rank_agreement_and_the_method():
    xs = np.linspace(0.05, 0.95, 10)
    low = sprint_trials(0, "explore", "low", [(i, config(x), x) for i, x in enumerate(xs)], ORIGINAL)
    # The higher fidelity re-runs five of them and ranks them the other way round: rho = -1.
    high = sprint_trials(1, "refine", "high", [(i, config(x), 1.0 - x) for i, x in enumerate(xs[:5])], ORIGINAL)
    evidence = gate_evidence(inputs([low, high], ORIGINAL))
    (agreement,) = evidence.agreements
    assert (agreement.lower, agreement.higher, agreement.method, agreement.pairs) == ("low", "high", RE_EVALUATED, 5)
    assert agreement.rho == pytest.approx(-1.0)
    same = sprint_trials(1, "refine", "high", [(i, config(x), 2 * x) for i, x in enumerate(xs[:5])], ORIGINAL)
    assert gate_evidence(inputs([low, same], ORIGINAL)).agreements[0].rho == pytest.approx(1.0)


def test_nearest_neighbours_stand_in_when_nothing_was_re_evaluated():
    xs = np.linspace(0.05, 0.95, 10)
    low = sprint_trials(0, "explore", "low", [(i, config(x), x) for i, x in enumerate(xs)], ORIGINAL)
    # Close to (not equal to) the low configurations, ranked the same way: rho = +1 by neighbours.
    near = [(i, config(x + 0.01), x**2) for i, x in enumerate(xs[::2])]
    far = [(99, config(0.5, lr=1e-1, act="tanh"), -5.0)]  # nobody near it at low fidelity: not paired
    high = sprint_trials(1, "full", "high", near + far, ORIGINAL)
    (agreement,) = gate_evidence(inputs([low, high], ORIGINAL)).agreements
    assert agreement.method == NEAREST and agreement.pairs == 5
    assert agreement.rho == pytest.approx(1.0)
    assert "nearest-neighbour pairs" in agreement.describe()


def test_one_fidelity_so_far_says_why_no_agreement_is_shown():
    low = sprint_trials(0, "explore", "low", [(i, config(i / 10), i) for i in range(5)], ORIGINAL)
    evidence = gate_evidence(inputs([low], ORIGINAL, gate=0))
    assert evidence.agreements == () and "one fidelity" in evidence.agreement_note
    assert "rank agreement: not measurable yet" in "\n".join(format_evidence(evidence))


def test_cut_counts_per_fidelity_per_parameter_and_for_an_edit():
    # Low fidelity prefers large x, high fidelity small x: the known bias of short runs.
    low_rows = [
        (i, config(x, act="tanh" if i == 1 else "relu"), v)
        for i, (x, v) in enumerate([(0.9, 0.1), (0.8, 0.2), (0.7, 0.3), (0.1, 0.9), (0.2, 0.8)])
    ]
    high_rows = [(i, config(x), v) for i, (x, v) in enumerate([(0.1, 0.1), (0.2, 0.2), (0.75, 0.3), (0.9, 0.9)])]
    # A duplicate of the low incumbent must not count as a second best configuration.
    low = sprint_trials(0, "explore", "low", low_rows + [(5, config(0.9), 0.1)], ORIGINAL)
    high = sprint_trials(1, "full", "high", high_rows, ORIGINAL)
    proposed = {**ORIGINAL, "x": {"type": "float", "low": 0.6, "high": 1.0, "log": False}}
    evidence = gate_evidence(inputs([low, high], proposed, top_k=3))
    cuts = {c.level: (c.outside, c.k) for c in evidence.cuts}
    assert cuts == {"low": (0, 3), "high": (2, 3)}
    assert (evidence.cut_total, evidence.top_total) == (2, 6)
    x = evidence.param("x")
    assert x.cut == 2
    spans = {s.level: s for s in x.spans}
    assert (spans["low"].low, spans["low"].high) == (0.7, 0.9)
    assert (spans["high"].low, spans["high"].high, spans["high"].outside) == (0.1, 0.75, 2)
    act = {s.level: s.counts for s in evidence.param("act").spans}
    assert act["low"] == (("relu", 2), ("tanh", 1))
    # The top-k are marked on the points, per sprint.
    low_points = x.groups[0]
    assert low_points.top.tolist() == [True, True, True, False, False, False]
    assert not low_points.finished and x.groups[1].finished

    # The operator's edit: cut counts follow it. Dropping "tanh" now cuts one low-fidelity best.
    edited = recut(evidence, {"x": Range.of(ORIGINAL["x"]), "act": {"type": "categorical", "choices": ["relu"]}})
    assert {c.level: c.outside for c in edited.cuts} == {"low": 1, "high": 0}
    frozen = recut(evidence, {"x": {"type": "fixed", "value": 0.1}})
    assert {c.level: c.outside for c in frozen.cuts} == {"low": 3, "high": 2}

    text = "\n".join(format_evidence(evidence))
    assert "the proposal cuts 2 of 6 best trials (low 0/3, high 2/3)" in text
    assert "x (float): original 0:1, current 0:1, proposed 0.6:1" in text
    assert "top-3 span: low 0.7:0.9; high 0.1:0.75 (2 cut)" in text


def test_maximize_ranks_the_largest_values_best():
    rows = [(i, config(x), x) for i, x in enumerate([0.1, 0.5, 0.9])]
    low = sprint_trials(0, "explore", "low", rows, ORIGINAL)
    evidence = gate_evidence(inputs([low], ORIGINAL, top_k=1, direction="maximize", gate=0))
    assert evidence.tops[0].values.tolist() == [0.9]


def test_ten_thousand_trials_well_under_100_ms():
    rng = np.random.default_rng(0)

    def rows(n, noise):
        xs, lrs = rng.random(n), 10 ** rng.uniform(-5, -1, n)
        acts = rng.choice(["relu", "tanh"], n)
        values = (xs - 0.3) ** 2 + (np.log10(lrs) + 3) ** 2 / 10 + noise * rng.random(n)
        return [(i, {"x": xs[i], "lr": lrs[i], "act": str(acts[i])}, float(values[i])) for i in range(n)]

    low = sprint_trials(0, "explore", "low", rows(7000, 0.5), ORIGINAL)
    high = sprint_trials(1, "full", "high", rows(3000, 0.1), ORIGINAL)
    proposed = {**ORIGINAL, "x": {"type": "float", "low": 0.1, "high": 0.5, "log": False}}
    gate_evidence(inputs([low, high], proposed, top_k=10))  # warm up imports
    took = []
    for _ in range(5):
        start = time.perf_counter()
        evidence = gate_evidence(inputs([low, high], proposed, top_k=10))
        took.append(time.perf_counter() - start)
    assert evidence.agreements[0].method == NEAREST and evidence.agreements[0].rho > 0.3
    assert min(took) < 0.1, f"gate_evidence took {min(took) * 1000:.0f} ms at 10,000 trials"


# -------------------------------------------------------------------------------- a real campaign
def two_fidelity_campaign(name: str) -> dict:
    """explore at low fidelity -> refine at high (re-running the 3 best) -> full at high."""
    return branin_campaign(
        name,
        sprints=[
            {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 8},
            {"name": "refine", "sampler": "tpe", "fidelity": "high", "n_trials": 6, "seed_top": 3},
            {"name": "full", "sampler": "tpe", "fidelity": "high", "n_trials": 4},
        ],
    )


def test_read_from_a_real_campaign_and_shown_by_approve(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    campaign = write_toml(tmp_path / "c.toml", two_fidelity_campaign("ev"))
    exe = [sys.executable, "-m", "tui.cli", "run", str(campaign), "--headless", "--policy", "wait", "--workers", "1"]
    engine = subprocess.Popen(exe, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = tmp_path / "runs" / "ev" / "journal.log"
    url = f"journal://{journal}"

    def approve(*args: str) -> str:
        capsys.readouterr()
        assert run_cli(["approve", "ev", "--storage", url, *args]) == 0
        return capsys.readouterr().out

    def until_gate(storage, gate: int) -> None:
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline and engine.poll() is None, f"gate {gate} never opened"
            try:
                if Ledger(storage, "ev").pending_gate() == gate:
                    return
            except LookupError:  # the engine has not created the campaign yet
                pass
            time.sleep(0.1)

    try:
        deadline = time.monotonic() + 60
        while not journal.exists():
            assert time.monotonic() < deadline, "the engine never created its storage"
            time.sleep(0.1)
        storage = open_storage(url, heartbeat=False)
        until_gate(storage, 0)
        shown = approve("--show")
        assert "rank agreement: not measurable yet: every trial so far ran at one fidelity (low)" in shown
        approve()
        until_gate(storage, 1)
        shown = approve("--show")
        evidence = read_gate_evidence(storage, "ev", 1)
        (agreement,) = evidence.agreements
        # The refine sprint re-ran the 3 best low-fidelity configurations at high fidelity.
        assert (agreement.lower, agreement.higher, agreement.method, agreement.pairs) == (
            "low",
            "high",
            RE_EVALUATED,
            3,
        )
        assert [g.name for g in evidence.param("x1").groups] == ["explore", "refine"]
        assert [len(g.x) for g in evidence.param("x1").groups] == [8, 6]
        assert {c.level: c.k for c in evidence.cuts} == {"low": 4, "high": 4}
        for line in format_evidence(evidence):
            assert line in shown
        assert f"rank agreement low -> high: rho {agreement.rho:+.2f} over 3 re-evaluated" in shown
        approve()
        out, _ = engine.communicate(timeout=90)
        assert engine.returncode == 0, out
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
