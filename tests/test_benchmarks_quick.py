"""The efficiency benchmark harness cannot rot: quick mode on one problem with two seeds, plus the
scoring arithmetic on hand-made runs."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import efficiency as E


def test_quick_mode_one_problem_two_seeds(tmp_path, capsys):
    out = tmp_path / "quick.json"
    rc = E.main(
        ["--suite", "quick", "--problems", "branin", "--seeds", "2", "--budget", "10", "--quiet", "--json", str(out)]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "## branin" in text and "## summary" in text
    data = json.loads(out.read_text())
    assert data["seeds"] == [0, 1] and data["budget"] == 10
    table = data["tables"]["branin"]
    for method in E.FLAT_METHODS:
        assert method in table, method
        row = table[method]
        assert row["seeds"] == [0, 1]
        assert 0 <= row["final_q1"] <= row["final_median"] <= row["final_q3"]
        assert row["auc_median"] >= row["final_median"] - 1e-12  # best-so-far only improves
    assert table["tpe-hyperband"]["budget_to_target"] <= 1.0
    if "phased" in table:  # the engine's coordinator is available
        assert table["phased"]["final_median"] >= 0
    else:
        assert any("phased" in note for note in data["notes"])
    for curve in data["curves"]["branin"]:
        costs = [c for c, _ in curve["curve"]]
        assert costs == sorted(costs) and costs[-1] <= 10 + 1e-9
        # after the first full-fidelity result the incumbent's true regret only falls (up to the
        # small bias the unconverged learning curve leaves at the top level)
        regrets = [r for _, r in curve["curve"]][1:]
        assert all(b <= a + 0.1 for a, b in zip(regrets, regrets[1:], strict=False))


def test_flat_methods_are_deterministic_and_spend_the_budget(tmp_path):
    problem = E.make_problem("currin")
    for method in ("random", "tpe-hyperband"):
        a = E.RUNNERS[method](problem, 3, 6.0, tmp_path)
        b = E.RUNNERS[method](problem, 3, 6.0, tmp_path)
        assert [(e.cost, e.loss, e.params) for e in a] == [(e.cost, e.loss, e.params) for e in b]
        spent = sum(e.cost for e in a)
        assert 6.0 - 1e-9 <= spent < 7.0
    pruned = [e for e in E.RUNNERS["tpe-hyperband"](problem, 0, 6.0, tmp_path) if e.loss is None]
    assert pruned and all(0 < e.cost < 1 for e in pruned)  # pruned trials cost the epochs they ran


def test_phased_plan_fits_the_budget():
    problem = E.make_problem("hartmann6")
    sprints = E.phased_sprints(problem, 30.0)
    assert [s["sampler"] for s in sprints] == ["gp", "gp", "mf-gp"]
    assert [s["fidelity"] for s in sprints] == ["low", "mid", "high"]
    assert sprints[1]["seed_top"] > 0 and sprints[2]["seed_top"] > 0
    spent = sum(s["n_trials"] * problem.level_cost(s["fidelity"]) for s in sprints[:-1])
    assert spent + sprints[-1]["budget_cost"] == pytest.approx(30.0)
    problem.spec(sprints, seed=0)  # a valid campaign


def test_scoring_arithmetic():
    problem = E.BenchProblem(
        name="toy", base={"fidelity": {"levels": {"hi": {}}}}, truth=lambda p: p["r"], initial_regret=10.0
    )
    events = [
        E.Event(0.5, None, {"r": 0.0}),  # a cheap, low-fidelity result never becomes the incumbent
        E.Event(1.0, 5.0, {"r": 4.0}),
        E.Event(1.0, 6.0, {"r": 1.0}),  # worse observed: not the incumbent
        E.Event(1.0, 2.0, {"r": 2.0}),
        E.Event(1.0, 1.0, {"r": 0.5}),  # lands past the budget: not counted
    ]
    run = E.Run("toy", "m", 0, events, 0.0)
    E.score_runs(problem, [run], budget=4.0)
    assert run.curve == [(0.0, 10.0), (1.5, 4.0), (3.5, 2.0)]
    assert run.final == 2.0
    assert run.auc == pytest.approx((1.5 * 10 + 2.0 * 4 + 0.5 * 2) / 4)
    assert E.cost_to_reach(run, 4.0) == 1.5 and math.isinf(E.cost_to_reach(run, 1.0))


def test_metric_problems_use_the_best_known_value():
    problem = E.BenchProblem(name="toy", base={"fidelity": {"levels": {"hi": {}}}})
    a = E.Run("toy", "a", 0, [E.Event(1.0, 0.30, {}), E.Event(1.0, 0.10, {})], 0.0)
    b = E.Run("toy", "b", 0, [E.Event(1.0, 0.20, {})], 0.0)
    E.score_runs(problem, [a, b], budget=2.0)
    assert a.final == pytest.approx(0.0) and b.final == pytest.approx(0.1)
    assert a.curve[0][1] == pytest.approx(0.2)  # before any result: the worst observed value


def test_overhead_harness_runs(tmp_path, capsys):
    from benchmarks import overhead as O

    out = tmp_path / "overhead.json"
    rc = O.main(
        [
            "--trials",
            "5",
            "--sleep",
            "0.01",
            "--trivial-trials",
            "5",
            "--repeats",
            "1",
            "--no-asks",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "bare" in text and "engine" in text and "where the time goes" in text
    rows = json.loads(out.read_text())["rows"]
    assert {(r["label"], r["runner"]) for r in rows} == {
        ("sleep 0.01 s", "bare"),
        ("sleep 0.01 s", "engine"),
        ("trivial", "bare"),
        ("trivial", "engine"),
    }
    for r in rows:
        assert r["trials"] == 5 and r["per_trial"] > 0 and r["writes_per_trial"] >= 3
    engine = next(r for r in rows if r["runner"] == "engine" and r["label"] == "trivial")
    assert engine["ledgers_per_trial"] > 0  # the engine reads its ledger between trials; a bare loop does not
