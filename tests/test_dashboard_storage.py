"""The Optuna ecosystem on the campaign's own storage: optuna-dashboard's app (called in-process, as
`optuna-dashboard URL` serves it) and plain `optuna.load_study`, with nothing of the engine imported."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from wsgiref.util import setup_testing_defaults

import optuna_dashboard
from enginekit import ROOT, branin_campaign, hpo_tui, write_toml

from engine.store.ledger import Ledger
from engine.store.schema import ATTR_VALUE_LIMIT, SPRINT_STUDY_ATTRS, campaign_study_name, decode_records
from engine.store.storage import open_storage
from engine.toml_compat import tomllib
from engine.workloads.functions import PROBLEMS

DASHBOARD_ATTR_LIMIT = 1024  # optuna_dashboard._serializer.MAX_ATTR_LENGTH: longer values are cut


def get_json(app, path: str) -> dict:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.append(code)))
    assert status and status[0].startswith("200"), (path, status, body[:300])
    return json.loads(body)


def borehole_campaign(name: str, explore: int = 8, refine: int = 4) -> dict:
    """Eight parameters with long names: the proposal and the decision outgrow one 1,024-character attribute."""
    data = branin_campaign(
        name,
        objective={"path": "engine.workloads.functions:borehole", "settings": {"noise_seed": 0}},
        policy="auto",
        sprints=[
            {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": explore},
            {"name": "refine", "sampler": "tpe", "fidelity": "high", "n_trials": refine, "seed_top": 2},
        ],
    )
    data["space"] = tomllib.loads(PROBLEMS["borehole"].space_toml())["space"]  # replaces Branin's x1, x2
    return data


def dashboard_view(app) -> dict[str, dict]:
    """Every study as the dashboard shows it: name -> its detail (attributes as shown, metric names, trials)."""
    studies = get_json(app, "/api/studies")["study_summaries"]
    return {s["study_name"]: get_json(app, f"/api/studies/{s['study_id']}") for s in studies}


def check_campaign_in_dashboard(app, storage, name: str, metric: str) -> None:
    ledger = Ledger(storage, name)
    sprints = ledger.sprint_records()
    view = dashboard_view(app)
    assert set(view) >= {campaign_study_name(name), *(r.study for r in sprints)}

    for record in sprints:  # each sprint study: its metric's name and short attributes
        detail = view[record.study]
        assert detail["objective_names"] == [metric]
        shown = {a["key"]: a["value"] for a in detail["user_attrs"]}
        assert set(SPRINT_STUDY_ATTRS) <= set(shown)
        assert shown["campaign"] == name and shown["sprint"] == record.name
        assert shown["sampler"] == record.sampler and shown["pruner"] == record.pruner
        assert json.loads(shown["fidelity"]) == record.fidelity
        assert len([t for t in detail["trials"] if t["state"] == "Complete"]) >= 1

    # The campaign study: every attribute shown whole (the dashboard shows a string as it is, any other
    # value as JSON, and cuts either past 1,024 characters), so the records reassembled from what it
    # shows are the ledger's own: decisions and proposals in full.
    stored = storage.get_study_user_attrs(storage.get_study_id_from_name(campaign_study_name(name)))
    shown = {a["key"]: a["value"] for a in view[campaign_study_name(name)]["user_attrs"]}
    assert set(shown) == set(stored)
    assert max(len(v) for v in shown.values()) <= min(ATTR_VALUE_LIMIT, DASHBOARD_ATTR_LIMIT)
    records = decode_records({k: v if isinstance(stored[k], str) else json.loads(v) for k, v in shown.items()})
    decision = ledger.decision_record(0)
    assert decision is not None and records["decision:0"] == decision.to_json()
    assert records["proposal:0"] == ledger.proposal_record(0).to_json()
    assert records["spec"]["name"] == name and len(records["spec"]["space"]) == 8


def test_optuna_dashboard_shows_a_finished_journal_campaign_in_full(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", borehole_campaign("dash"))
    journal = tmp_path / "dash.log"
    out = hpo_tui(
        "run", str(campaign), "--workers", "0", "--storage", f"journal://{journal}", cwd=tmp_path, timeout=300
    )
    assert out.returncode == 0 and "campaign finished" in out.stdout, out.stdout + out.stderr
    # `optuna-dashboard PATH` opens a journal file by its path, as the README says.
    app = optuna_dashboard.wsgi(str(journal))
    check_campaign_in_dashboard(app, open_storage(f"journal://{journal}", heartbeat=False), "dash", "regret")
    # Long records really were split: the largest decision or proposal would not fit one attribute.
    ledger = Ledger(open_storage(f"journal://{journal}", heartbeat=False), "dash")
    assert len(json.dumps(ledger.proposal_record(0).to_json())) > DASHBOARD_ATTR_LIMIT


def test_plain_optuna_and_the_dashboard_open_the_postgresql_url_the_engine_used(tmp_path, pg_url):
    campaign = write_toml(tmp_path / "c.toml", borehole_campaign("pgdash", explore=6, refine=2))
    out = hpo_tui("run", str(campaign), "--workers", "0", "--storage", pg_url, cwd=tmp_path, timeout=300)
    assert out.returncode == 0 and "campaign finished" in out.stdout, out.stdout + out.stderr

    # A user's notebook: plain Optuna, the same postgresql:// URL, no engine module imported.
    script = (
        "import sys, optuna\n"
        "names = sorted(s.study_name for s in optuna.get_all_study_summaries(sys.argv[1]))\n"
        "study = optuna.load_study(study_name='pgdash/01-refine', storage=sys.argv[1])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'engine']\n"
        "print(names, study.metric_names, len(study.trials), study.user_attrs['sampler'])\n"
    )
    plain = subprocess.run(
        [sys.executable, "-c", script, pg_url], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert plain.returncode == 0, plain.stderr
    assert "'pgdash/00-explore', 'pgdash/01-refine', 'pgdash/campaign'" in plain.stdout
    assert "['regret'] " in plain.stdout and plain.stdout.strip().endswith("tpe")

    # The optuna CLI on the same URL.
    cli = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "optuna"), "studies", "--storage", pg_url, "-f", "json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert cli.returncode == 0, cli.stderr
    assert {s["name"] for s in json.loads(cli.stdout)} >= {"pgdash/00-explore", "pgdash/01-refine"}

    # optuna-dashboard on the same URL.
    check_campaign_in_dashboard(
        optuna_dashboard.wsgi(pg_url), open_storage(pg_url, heartbeat=False), "pgdash", "regret"
    )


def test_readme_gives_the_dashboard_command_for_every_storage():
    readme = (ROOT / "README.md").read_text()
    for command in (
        "optuna-dashboard runs/quickstart/journal.log",
        "optuna-dashboard sqlite:///",
        "optuna-dashboard postgresql://",
    ):
        assert command in readme, command
