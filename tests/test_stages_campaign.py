"""A real campaign with `[cache]`, the eeipu sampler and a budget in seconds, then `hpo-tui cache`."""

from __future__ import annotations

import json

import optuna
import pytest

from engine.campaign import Coordinator
from engine.cli import run_cli
from engine.spec import CampaignFileError, parse_campaign
from engine.store.storage import open_storage
from engine.workloads.pipeline import SPACE, STAGES


def campaign(name: str, **cache) -> dict:
    return {
        "name": name,
        "objective": {"path": "engine.workloads.pipeline:objective", "settings": {"time_scale": 0.01}},
        "metric": {"name": "regret", "direction": "minimize"},
        "space": dict(SPACE),
        "fidelity": {"levels": {"only": {"epochs": 1}}},
        "sprints": [
            {
                "name": "search",
                "sampler": "eeipu",
                "fidelity": "only",
                "budget_seconds": 0.6,
                "sampler_options": {"n_startup_trials": 4, "n_candidates": 128, "stages": STAGES},
            }
        ],
        "cache": {"enabled": True, "max_bytes": "10MB", **cache},
    }


def test_spec_cache_table_and_budget_seconds():
    spec = parse_campaign(campaign("c", max_bytes="2 KiB", pin_top=3))
    assert spec.cache.max_bytes == 2048 and spec.cache.pin_top == 3
    assert spec.sprints[0].budget_seconds == 0.6 and spec.sprints[0].sampler == "eeipu"
    data = campaign("c")
    data["cache"]["max_bytes"] = "lots"
    with pytest.raises(CampaignFileError, match="cache.max_bytes"):
        parse_campaign(data)
    data = campaign("c")
    del data["sprints"][0]["budget_seconds"]
    with pytest.raises(CampaignFileError, match="budget_seconds"):
        parse_campaign(data)


def test_campaign_caches_stages_spends_its_seconds_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # `hpo-tui cache` finds the run directory under ./runs
    url = f"journal://{tmp_path / 'journal.log'}"
    summary = Coordinator(parse_campaign(campaign("memo")), url, workers=0, log=lambda m: None).run()
    assert summary["status"] == "finished"
    study = optuna.load_study(study_name=summary["sprints"][0]["study"], storage=open_storage(url, heartbeat=False))
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    durations = [t.user_attrs["duration_s"] for t in trials]
    assert sum(durations) >= 0.6 > sum(durations[:-1])  # stopped at the first trial that spent the budget
    stages = [t.user_attrs["stages"] for t in trials]
    assert all(set(s) == {"prep", "train", "eval"} for s in stages)
    assert any(s["prep"]["hit"] for s in stages)  # eeipu reused cached prefixes
    assert (tmp_path / "runs" / "memo" / "cache" / "entries").is_dir()
    assert "eeipu" in trials[-1].system_attrs

    assert run_cli(["cache", "memo", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stage cache of memo:") and "hits" in out and "prep" in out
    assert run_cli(["cache", "memo", "--storage", url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total"]["hits"] >= 1 and stats["total"]["saved_s"] > 0
    assert stats["cache"]["entries"] > 0 and stats["cache"]["bytes"] <= 10_000_000
    assert stats["sprints"]["search"]["trials"] == len(trials)
    assert run_cli(["cache", "memo", "--storage", url, "--clear", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["cache"]["entries"] == 0
