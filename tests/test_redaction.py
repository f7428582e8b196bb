"""A storage password never shows, whatever form its URL takes: `user:pw@`, `:pw@` (empty user),
`?password=` in the query (any case), a password with an unencoded '@' ':' or '/', a percent-encoded
one, `postgres://` and `postgresql+psycopg://`. Checked against every output a user sees: the start
line, retry lines, `status`, errors, worker command lines (`ps`), worker logs and the stored records."""

import json
from urllib.parse import quote

import psutil
import pytest
from enginekit import hpo_tui
from fleet import Fleet, alive, campaign_data, child_env, wait_for, write_campaign

from engine.store.storage import open_storage, redact

pytestmark = pytest.mark.xdist_group("redaction")

SECRET = "Zq7p@ss:w/rd"  # unencoded '@', ':' and '/': the hard case
ROLE = "redact_user"


def leaks(text: str) -> list[str]:
    pieces = (SECRET, quote(SECRET, safe=""), "Zq7p", "ss:w/rd", "ss%3Aw%2Frd")
    return [p for p in pieces if p in text]


UNIT_FORMS = [
    ("postgresql://u:Zq7pass@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://:Zq7pass@h/db", "postgresql://:***@h/db"),
    ("postgresql://u@h/db?password=Zq7pass", "postgresql://u@h/db?password=***"),
    (
        "postgresql://u@h/db?sslmode=off&PassWord=Zq7pass",
        "postgresql://u@h/db?PassWord=***&sslmode=off",
    ),  # sorted by SQLAlchemy
    ("postgresql://u@h/db?PASSWORD=Zq7pass&application_name=x", "postgresql://u@h/db?PASSWORD=***&application_name=x"),
    ("postgresql://u:Zq7p@ss:w/rd@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u:Zq7p%40ss%3Aw%2Frd@h/db", "postgresql://u:***@h/db"),
    ("postgres://u:Zq7pass@h/db", "postgres://u:***@h/db"),
    ("postgresql+psycopg://u:Zq7pass@h/db", "postgresql+psycopg://u:***@h/db"),
    (
        "postgresql+psycopg2://u:Zq7pass@h/db?application_name=a@b",
        "postgresql+psycopg2://u:***@h/db?application_name=a%40b",
    ),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("journal:///tmp/a@b/j.log", "journal:///tmp/a@b/j.log"),
]


@pytest.mark.parametrize("url,shown", UNIT_FORMS)
def test_every_url_form_is_redacted(url, shown):
    assert redact(url) == shown
    assert "Zq7p" not in redact(f"error: cannot reach {url} (timeout)")


@pytest.fixture
def role_db(postgres):
    """A database owned by a role whose password holds '@', ':' and '/'."""
    import secrets

    name = "r_" + secrets.token_hex(5)
    try:
        postgres.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{SECRET}'")
    except Exception:  # made by an earlier test of this session
        pass
    postgres.admin(f'CREATE DATABASE "{name}" OWNER {ROLE}')
    return f"127.0.0.1:{postgres.port}/{name}"


def everything_stored(url: str) -> str:
    """Every study's attributes and every trial's attributes, as text."""
    storage = open_storage(url, heartbeat=False, create=False)
    parts = []
    for study in storage.get_all_studies():
        parts.append(json.dumps([study.study_name, study.user_attrs, study.system_attrs], default=str))
        for trial in storage.get_all_trials(study._study_id, deepcopy=False):
            parts.append(json.dumps([trial.params, trial.user_attrs, trial.system_attrs], default=str))
    return "\n".join(parts)


def test_no_output_log_or_record_shows_the_password(tmp_path, role_db):
    encoded = f"postgresql://{ROLE}:{quote(SECRET, safe='')}@{role_db}"
    working = {
        "encoded": encoded,
        "psycopg-driver": encoded.replace("postgresql://", "postgresql+psycopg://", 1),
        "query": f"postgresql://{ROLE}@{role_db}?password={quote(SECRET, safe='')}",
    }
    seen: list[str] = []

    # One campaign whose file names the storage (so the ledger keeps a copy of it), with a worker process
    # waiting at a gate: its command line and log are looked at while it runs.
    data = campaign_data("redact", n_trials=(3, 2), sleep=0.01, epochs=2, policy="wait", storage=encoded)
    campaign = write_campaign(tmp_path, data)
    fleet = Fleet(tmp_path)
    try:
        coordinator = fleet.start(["run", str(campaign), "--headless"], cwd=tmp_path, log="run.log")
        wait_for(
            lambda: "waiting for a decision" in fleet.log_of(coordinator),
            120,
            "gate 0",
            check=alive(coordinator, fleet),
        )
        children = psutil.Process(coordinator.pid).children(recursive=True)
        assert children, "the campaign runs worker processes"
        seen += [" ".join(child.cmdline()) for child in children]
        status = hpo_tui("status", "redact", "--storage", encoded, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        seen += [status.stdout, status.stderr]
        approve = hpo_tui("approve", "redact", "--storage", working["query"], cwd=tmp_path)
        assert approve.returncode == 0, approve.stderr
        seen += [approve.stdout, approve.stderr]
        assert coordinator.wait(120) == 0, fleet.log_of(coordinator)
        seen.append(fleet.log_of(coordinator))
    finally:
        fleet.kill_all()
    logs = list((tmp_path / "runs" / "redact").rglob("*.log"))
    assert logs, "worker logs exist"
    seen += [log.read_text(errors="replace") for log in logs]
    stored = everything_stored(encoded)
    assert "redact" in stored
    seen.append(stored)

    # Every working form: `status`; and the start line of a run with the query form.
    for label, url in working.items():
        status = hpo_tui("status", "redact", "--storage", url, cwd=tmp_path)
        assert status.returncode == 0, (label, status.stderr)
        seen += [status.stdout, status.stderr]
    small = write_campaign(tmp_path / "query", campaign_data("redact-query", n_trials=(2,), sleep=0.0, epochs=1))
    run = hpo_tui("run", str(small), "--workers", "0", "--storage", working["query"], cwd=tmp_path)
    assert run.returncode == 0, (run.stdout, run.stderr)
    assert "redact_user@127.0.0.1" in run.stdout  # the start line names the storage, without its password
    seen += [run.stdout, run.stderr]

    # Forms that cannot connect: the error (and the retry lines of an outage) hide the password too.
    impatient = child_env(HPO_TUI_STORAGE_PATIENCE_S="2")
    for url in (
        f"postgresql://{ROLE}:{SECRET}@{role_db}",  # unencoded: '@' splits the host
        f"postgres://{ROLE}:{quote(SECRET, safe='')}@{role_db}",  # refused: SQLAlchemy reads postgresql://
        f"postgresql://:{quote(SECRET, safe='')}@{role_db}",  # empty user: the OS user, refused
        f"postgresql://{ROLE}@{role_db}?PassWord={quote(SECRET, safe='')}",  # libpq wants it lower-case
        f"postgresql://{ROLE}:{quote(SECRET, safe='')}@127.0.0.1:1/nothing",  # nothing listens: retried
    ):
        out = hpo_tui("status", "redact", "--storage", url, cwd=tmp_path, env=impatient)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        seen += [out.stdout, out.stderr]
    assert any("retry" in text for text in seen), "the outage printed retry lines"

    found = [(leaks(text), text[:300]) for text in seen if leaks(text)]
    assert not found, found


def test_the_stored_campaign_keeps_the_redacted_url(tmp_path, role_db):
    url = f"postgresql://{ROLE}:{quote(SECRET, safe='')}@{role_db}"
    campaign = write_campaign(tmp_path, campaign_data("stored", n_trials=(2,), sleep=0.0, epochs=1, storage=url))
    run = hpo_tui("run", str(campaign), "--workers", "0", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    from engine.store.ledger import Ledger

    stored = Ledger(open_storage(url, heartbeat=False), "stored").spec()["storage"]
    assert stored == f"postgresql://{ROLE}:***@{role_db}"
    assert not leaks(json.dumps(stored))
