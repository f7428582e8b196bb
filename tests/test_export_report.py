"""`hpo-tui export` and `hpo-tui report` on a finished campaign (real journal storage, real CLI)."""

import csv
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from enginekit import branin_campaign, spec_of

from engine.campaign import Coordinator
from engine.cli import run_cli
from engine.store.ledger import Ledger
from engine.store.storage import open_storage
from engine.thresholds import learn_thresholds
from engine.views.report import SECTIONS

N_TRIALS = 8 + 6 + 8  # branin_campaign's three sprints


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished three-sprint campaign, with thresholds learned on made-up probabilities."""
    root = tmp_path_factory.mktemp("share")
    url = f"journal://{root / 'journal.log'}"
    coordinator = Coordinator(spec_of(branin_campaign("share")), url, workers=0, log=lambda line: None, runs_root=root)
    assert coordinator.run()["status"] == "finished"
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 3)) < 0.3).astype(int)
    probs = np.clip(labels * 0.5 + rng.random((60, 3)) * 0.6, 0, 1)
    result = learn_thresholds(probs, labels, ["Kill", "Live_In", "Work_For"], folds=3)
    Ledger(open_storage(url, heartbeat=False), "share").put_thresholds(result.replace(study="share/02-full", trial=0))
    return root, url


def test_export_csv_and_json_have_every_trial(finished, capsys):
    root, url = finished
    target = root / "trials.csv"
    assert run_cli(["export", "share", "--storage", url, "--format", "csv", "-o", str(target)]) == 0
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == N_TRIALS
    assert [r["sprint"] for r in rows] == ["explore"] * 8 + ["refine"] * 6 + ["full"] * 8
    for column in ("param:x1", "param:x2", "fidelity:train_fraction", "fidelity:epochs", "cost", "worker", "started"):
        assert all(r[column] != "" for r in rows), column
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", r["completed"]) for r in rows)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert complete and all(float(r["value"]) >= 0 for r in complete)
    full = [r for r in rows if r["sprint"] == "full"]
    assert {r["fidelity:epochs"] for r in full} == {"9"}
    steps = [json.loads(r["intermediate"]) for r in full]
    assert all(steps) and max(len(s) for s in steps) == 9  # a complete trial reports all 9 epochs
    assert any(r["state"] == "PRUNED" for r in full)  # hyperband prunes some

    assert run_cli(["export", "share", "--storage", url, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["campaign"] == "share" and len(data["trials"]) == N_TRIALS
    first = data["trials"][0]
    assert first["fidelity"] == {"train_fraction": 0.2, "epochs": 2} and set(first["params"]) == {"x1", "x2"}
    assert [(t["sprint"], t["trial"]) for t in data["trials"]] == [(r["sprint"], int(r["trial"])) for r in rows]


def test_export_creates_no_storage(tmp_path, capsys):
    missing = tmp_path / "nothing.log"
    assert run_cli(["export", "nosuch", "--storage", f"journal://{missing}", "-o", str(tmp_path / "x.csv")]) == 2
    assert not missing.exists() and not (tmp_path / "x.csv").exists()
    assert "no campaign 'nosuch'" in capsys.readouterr().err


class Page(HTMLParser):
    """Text per section id, every tag seen, and every attribute value."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, list[str]] = {}
        self.svg_in: dict[str, int] = {}
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self._current: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        if tag == "section":
            self._current = dict(attrs)["id"]
            self.sections[self._current] = []
        elif tag == "svg" and self._current:
            self.svg_in[self._current] = self.svg_in.get(self._current, 0) + 1

    def handle_endtag(self, tag):
        if tag == "section":
            self._current = None

    def handle_data(self, data):
        if self._current and data.strip():
            self.sections[self._current].append(data.strip())


def test_report_is_one_offline_page_with_every_section(finished, capsys):
    root, url = finished
    target = root / "report.html"
    assert run_cli(["report", "share", "--storage", url, "-o", str(target)]) == 0
    html = target.read_text()
    page = Page()
    page.feed(html)
    assert list(page.sections) == list(SECTIONS)
    for name, texts in page.sections.items():
        assert texts, f"section {name} is empty"
    # Nothing on the network: no URL at all, no external resource of any kind.
    assert "http://" not in html and "https://" not in html
    assert not [a for a in page.attrs if a[0] in ("src", "href")]
    assert not {"script", "link", "img", "iframe"} & set(page.tags)
    space = " ".join(page.sections["space"])
    assert "original" in space and "1 explore" in space and "3 full" in space and "-5..10" in space
    assert page.svg_in["space"] == 2  # one range chart per parameter
    decisions = " ".join(page.sections["decisions"])
    assert "explore -> refine" in decisions and "refine -> full" in decisions and "policy:auto" in decisions
    assert "x1: -5..10 ->" in decisions  # the diff
    best = " ".join(page.sections["best"])
    assert "low (train_fraction=0.2 epochs=2)" in best and "high (train_fraction=1 epochs=9)" in best
    assert page.svg_in["best"] == 3  # a best-so-far chart per sprint
    assert page.svg_in.get("importance", 0) >= 1 and "x1" in " ".join(page.sections["importance"])
    thresholds = " ".join(page.sections["thresholds"])
    assert "share/02-full:0" in thresholds and "Work_For" in thresholds
