"""Safety: no process of ours listens on any socket by default (embedded journal or PostgreSQL), and
the storage URL's password never shows: not in output, logs, `status`, error messages, the ledger
that every tool reads, nor in the command lines of worker processes (which `ps` shows to every user)."""

import re
import subprocess
import time

import optuna
import psutil
import pytest
from fleet import HPO, Fleet, Truth, alive, campaign_data, child_env, wait_for, write_campaign

pytestmark = [pytest.mark.xdist_group("postgres"), pytest.mark.timeout(240)]


class Watch:
    """Samples our processes while they run: listening sockets and command lines."""

    def __init__(self, roots):
        self.roots = roots
        self.listening: list[str] = []
        self.cmdlines: dict[int, str] = {}

    def sample(self) -> None:
        for root in self.roots:
            try:
                procs = [psutil.Process(root.pid)] + psutil.Process(root.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for proc in procs:
                try:
                    self.cmdlines[proc.pid] = " ".join(proc.cmdline())
                    for conn in proc.net_connections(kind="all"):
                        if conn.status == psutil.CONN_LISTEN:
                            self.listening.append(f"{self.cmdlines[proc.pid]}: {conn}")
                except (psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue

    def until_done(self, *procs, timeout=150) -> None:
        deadline = time.time() + timeout
        while any(p.poll() is None for p in procs):
            self.sample()
            assert time.time() < deadline, "the campaign took too long"
            time.sleep(0.3)


def test_no_listening_socket_with_the_embedded_storage(tmp_path):
    path = write_campaign(tmp_path, campaign_data("quiet", n_trials=(6, 4), sleep=0.05, epochs=3))
    fleet = Fleet(tmp_path)
    try:
        run = fleet.start(["run", str(path), "--headless", "--workers", "2"], cwd=tmp_path, log="run.log")
        watch = Watch([run])
        watch.until_done(run)
    finally:
        fleet.kill_all()
    assert run.returncode == 0, fleet.log_of(run)[-2000:]
    assert len(watch.cmdlines) >= 3  # the coordinator and its two workers were sampled
    assert watch.listening == []


def test_password_never_shown_and_nothing_listens_on_postgres(tmp_path, postgres, pg_url):
    password = postgres.password
    assert password in pg_url
    # The URL (with its password) lives in the campaign file, so no command line carries it.
    data = campaign_data("secret", n_trials=(8, 6), sleep=0.1, epochs=3, storage=pg_url)
    path = write_campaign(tmp_path / "coord", data)
    fleet = Fleet(tmp_path)
    try:
        run = fleet.start(["run", str(path), "--headless", "--workers", "2"], cwd=tmp_path / "coord", log="run.log")
        truth = Truth(pg_url, "secret")
        wait_for(truth.exists, 60, "the campaign", check=alive(run, fleet))
        remote = fleet.start(["worker", str(path)], cwd=tmp_path / "host1", log="host1.log")
        watch = Watch([run, remote])
        watch.until_done(run, remote)
    finally:
        fleet.kill_all()
    assert run.returncode == 0 and remote.returncode == 0, fleet.log_of(run)[-2000:]

    assert watch.listening == []
    workers = [c for c in watch.cmdlines.values() if "engine.execution.worker" in c]
    assert len(workers) >= 2, watch.cmdlines  # the coordinator's two, and the remote one's if it was seen in time
    assert not [c for c in watch.cmdlines.values() if password in c]

    # Every way a user reads the campaign, including its failures.
    outputs = [fleet.log_of(run), fleet.log_of(remote)]
    for args in (
        ["status", str(path)],
        ["status", "secret", "--storage", pg_url, "--json"],
        ["approve", "secret", "--storage", pg_url],
        ["pause", "secret", "--storage", pg_url],
        ["resume", "secret", "--storage", pg_url],
        ["status", "nosuch", "--storage", pg_url],
        ["worker", "nosuch", "--storage", pg_url],
        ["status", "secret", "--storage", re.sub(r":\d+/", ":1/", pg_url)],  # nothing listens there
        ["status", "secret", "--storage", pg_url.replace(password, password + "-wrong")],
    ):
        proc = subprocess.run(
            [HPO, *args],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=tmp_path,
            env=child_env(HPO_TUI_STORAGE_PATIENCE_S="1"),
        )
        outputs.append(proc.stdout + proc.stderr)
    # The URL from the environment instead of the command line (as the console's headless hand-over does).
    by_env = subprocess.run(
        [HPO, "status", "secret"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=child_env(HPO_TUI_STORAGE_URL=pg_url),
    )
    assert by_env.returncode == 0 and "campaign secret: finished" in by_env.stdout, by_env.stderr
    assert "campaign secret: finished" in outputs[2]
    assert "hpo-tui status: no campaign 'nosuch' in this storage" in outputs[7]
    assert "password authentication failed" in outputs[-1] and "hpo:***@127.0.0.1" in outputs[-1]
    for text in outputs:
        assert "Traceback" not in text
        assert password not in text, text
    for log in tmp_path.rglob("*.log"):
        assert password not in log.read_text(errors="replace"), log

    # The ledger and the trials, which optuna-dashboard and the TUI show as they are.
    storage = truth.storage
    stored = []
    for study in storage.get_all_studies():
        stored.append(repr(study.user_attrs) + repr(study.system_attrs))
        for t in optuna.load_study(study_name=study.study_name, storage=storage).get_trials():
            stored.append(repr(t.user_attrs) + repr(t.system_attrs))
    assert stored and not [s for s in stored if password in s]
    assert truth.ledger.spec()["storage"] == pg_url.replace(password, "***")
