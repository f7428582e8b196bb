"""benchmarks/plan_variants.py: each variant changes the phased plan as documented, and the script runs."""

import pytest

from benchmarks import efficiency, plan_variants


def test_each_variant_changes_only_what_it_names():
    problem = efficiency.make_problem("branin")
    base, gate = plan_variants.variant_plan("base", problem, 40.0)
    assert base == efficiency.phased_sprints(problem, 40.0) and gate is None
    assert base[-1]["sampler"] == "mf-gp"
    old, gate = plan_variants.variant_plan("gp-full+reopen-0", problem, 40.0)
    assert old[-1]["sampler"] == "gp" and gate == {"reopen_rank": 0.0}
    assert old[:-1] == base[:-1]
    plain, _ = plan_variants.variant_plan("no-handoff", problem, 40.0)
    assert plain[-1]["sampler_options"] == {"handoff_trials": None}
    later, _ = plan_variants.variant_plan("handoff-15", problem, 40.0)
    two, _ = plan_variants.variant_plan("no-refine", problem, 40.0)
    short, _ = plan_variants.variant_plan("refine-8", problem, 40.0)
    assert [s["name"] for s in two] == ["explore", "full"]
    assert short[1]["n_trials"] == 8 and short[1]["seed_top"] == 8
    refine_cost = 15 * problem.level_cost(base[1]["fidelity"])
    checked, _ = plan_variants.variant_plan("check-5", problem, 40.0)
    assert checked[1]["fidelity"] == base[-1]["fidelity"] and checked[1]["seed_top"] == 5
    assert checked[-1]["seed_top"] == 0
    assert checked[-1]["budget_cost"] == pytest.approx(base[-1]["budget_cost"] + refine_cost - 5)
    assert two[-1]["budget_cost"] == pytest.approx(base[-1]["budget_cost"] + refine_cost)
    assert short[-1]["budget_cost"] == pytest.approx(base[-1]["budget_cost"] + refine_cost * 7 / 15)
    assert later[-1]["sampler_options"] == {"handoff_trials": 15} and "sampler_options" not in base[-1]
    fewer, gate = plan_variants.variant_plan("seeds-2+margin-0.5", problem, 40.0)
    assert fewer[-1]["seed_top"] == 2 and base[-1]["seed_top"] == 5 and gate == {"margin": 0.5}
    with pytest.raises(ValueError, match="unknown variant"):
        plan_variants.variant_plan("gp-ful", problem, 40.0)
    with pytest.raises(ValueError, match="unknown variant"):
        plan_variants.variant_plan("seeds-x", problem, 40.0)
    with pytest.raises(ValueError, match="unknown variant"):
        plan_variants.variant_plan("handoff-", problem, 40.0)


def test_the_script_prints_a_median_per_problem_and_variant(capsys):
    assert (
        plan_variants.main(
            ["--problems", "branin", "--variants", "base,gp-full", "--seeds", "1", "--budget", "10"]
            + ["--targets", "branin=100"]  # above the uninformed guess: reached at the first trial
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[::2]] == [["branin", "base", "median"], ["branin", "gp-full", "median"]]
    assert lines[1].split()[:5] == ["budget", "to", "100:", "0.00", "x"], lines
    with pytest.raises(SystemExit):
        plan_variants.main(["--problems", "branin", "--variants", "nope"])
