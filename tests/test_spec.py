"""Campaign files: the shipped ones load; each bad file names the file, the key and the problem."""

from pathlib import Path

import pytest
from enginekit import ROOT, branin_campaign, write_toml

from engine.spec import CampaignFileError, check_objective_imports, load_campaign, parse_campaign


@pytest.mark.parametrize("path", sorted((ROOT / "campaigns").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_campaigns_validate(path):
    spec = load_campaign(path)
    check_objective_imports(spec, path)
    assert spec.sprints and spec.space


def problems_of(data, tmp_path: Path):
    path = write_toml(tmp_path / "bad.toml", data)
    with pytest.raises(CampaignFileError) as err:
        load_campaign(path)
    assert str(path) in str(err.value)
    return err.value.problems


@pytest.mark.parametrize(
    "change, key, reason",
    [
        ({"space": {"x1": {"type": "float", "low": 5.0, "high": 1.0}}}, "space.x1", "low (5) must be below high (1)"),
        (
            {"space": {"x1": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
            "space.x1",
            "a log range must be positive",
        ),
        ({"space": {"x1": {"type": "float", "low": 0.0, "high": 1e300}}}, "space.x1", "beyond"),
        ({"space": {"x1": {"type": "float", "low": 0.0, "high": "big"}}}, "space.x1.high", "valid number"),
        ({"space": {"x1": {"type": "quantum", "low": 0.0}}}, "space.x1", "type must be one of"),
        ({"space": {"x1": {"type": "categorical", "choices": []}}}, "space.x1", "choices must not be empty"),
        ({"space": {"x1": {"type": "int", "low": 1, "high": 9, "step": 0}}}, "space.x1", "step must be at least 1"),
        ({"sprints": [{"name": "a", "fidelity": "nowhere", "n_trials": 3}]}, "", "'nowhere' is not a level"),
        ({"sprints": [{"name": "a", "fidelity": "low"}]}, "sprints.0", "a sprint needs a budget"),
        (
            {"sprints": [{"name": "a", "fidelity": "low", "n_trials": 3, "sampler": "magic"}]},
            "sprints.0.sampler",
            "Input should be",
        ),
        ({"sprints": [{"name": "a", "fidelity": "low", "n_trials": 3, "params": ["zz"]}]}, "", "'zz' is not in space"),
        ({"workers": "many"}, "workers", "valid integer"),
        ({"surprise": 1}, "surprise", "unknown key"),
        ({"objective": {"path": "no colon here"}}, "objective.path", "must look like 'package.module:function'"),
        ({"fidelity": {"levels": {"low": {"epochs": 1}, "high": {"epochs": 3, "extra": 1}}}}, "fidelity", "sets"),
        ({"name": "bad name!"}, "name", "use letters, digits"),
    ],
)
def test_bad_campaign_reports_key_and_reason(tmp_path, change, key, reason):
    data = branin_campaign()
    data.update(change) if "space" not in change else data["space"].update(change["space"])
    problems = problems_of(data, tmp_path)
    assert any(k == key and reason in msg for k, msg in problems), problems


def test_toml_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "syntax.toml"
    bad.write_text("name = \n")
    with pytest.raises(CampaignFileError, match="TOML syntax"):
        load_campaign(bad)
    with pytest.raises(CampaignFileError, match="file not found"):
        load_campaign(tmp_path / "absent.toml")


def test_objective_that_does_not_import(tmp_path):
    spec = parse_campaign(branin_campaign(objective={"path": "no_such_module:fn"}))
    with pytest.raises(CampaignFileError) as err:
        check_objective_imports(spec, "c.toml")
    assert err.value.problems[0][0] == "objective.path"
    assert "cannot import module 'no_such_module'" in err.value.problems[0][1]


def test_several_problems_reported_together(tmp_path):
    data = branin_campaign(workers=0, surprise=True)
    problems = problems_of(data, tmp_path)
    keys = {k for k, _ in problems}
    assert {"workers", "surprise"} <= keys
