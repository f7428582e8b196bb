"""Bad input on the command line, typed as a hostile user would: every flag out of range, storage paths that
cannot work, a closed pipe, Ctrl-C. Each is one line on stderr with its documented exit code
(engine/errors.py), never a traceback, and a permanent storage error is not retried like an outage."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from enginekit import ROOT, branin_campaign, hpo_tui, write_toml
from fleet import wait_for

from engine.cli import run_cli
from engine.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_STORAGE_REFUSED, EXIT_USAGE

pytestmark = pytest.mark.xdist_group("bad-input-cli")

ONE_SHORT_SPRINT = [{"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 3}]


@pytest.fixture
def campaign(tmp_path) -> Path:
    return write_toml(tmp_path / "c.toml", branin_campaign("flags"))


def one_line_refusal(out: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert words in out.stderr, out.stderr


# (arguments after the campaign, the words the one line must hold); all exit 2, usage
FLAGS = [
    (["run", "{c}", "--policy", "bogus"], "unknown policy 'bogus': use auto, wait or plan:FILE"),
    (["run", "{c}", "--policy", "plan:"], "unknown policy 'plan:'"),
    (["run", "{c}", "--workers", "-1"], "argument --workers: must be at least 0, got -1"),
    (["run", "{c}", "--workers", "two"], "argument --workers: takes a whole number, got 'two'"),
    (["worker", "flags", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
    (["run", "{c}", "--fps", "nan"], "argument --fps: must be a finite number above 0, got 'nan'"),
    (["run", "{c}", "--fps", "inf"], "argument --fps: must be a finite number above 0, got 'inf'"),
    (["run", "{c}", "--fps", "0"], "argument --fps: must be a finite number above 0, got '0'"),
    (["run", "{c}", "--fps", "-2"], "argument --fps: must be a finite number above 0, got '-2'"),
    (["attach", "flags", "--fps", "nan"], "argument --fps: must be a finite number above 0"),
    (["run", "{c}", "--gpus", ","], "argument --gpus: takes comma-separated GPU numbers with no empty item"),
    (["run", "{c}", "--gpus", ""], "argument --gpus: takes comma-separated GPU numbers with no empty item"),
    (["run", "{c}", "--gpus", "0,,1"], "argument --gpus: takes comma-separated GPU numbers with no empty item"),
    (["run", "{c}", "--gpus", "cuda:0"], "argument --gpus: takes comma-separated GPU numbers, got 'cuda:0'"),
    (["run", "{c}", "--gpus", "1,1"], "argument --gpus: names a GPU twice"),
    (["worker", "flags", "--gpus", ","], "argument --gpus: takes comma-separated GPU numbers with no empty item"),
    (["thresholds", "flags", "--trial", "-1"], "argument --trial: must be at least 0, got -1"),
    (["status", "../../etc/evil"], "'../../etc/evil' is neither a campaign file nor a campaign name"),
    (["status", ".."], "'..' is neither a campaign file nor a campaign name"),
    (["approve", "a/b", "--reject"], "'a/b' is neither a campaign file nor a campaign name"),
    (["run", "{c}", "--policy", "plan:missing-plan.toml"], "missing-plan.toml: <file>: plan file not found"),
]


@pytest.mark.parametrize("argv,words", FLAGS, ids=[" ".join(a[2:] or a[:2]) for a, _ in FLAGS])
def test_a_bad_flag_is_one_line_and_exit_2(campaign, tmp_path, argv, words):
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = hpo_tui(*[a.format(c=campaign) for a in argv], cwd=tmp_path)
    if words.endswith("plan file not found"):  # a file problem: the heading, then file: key: reason
        assert out.returncode == EXIT_USAGE and "Traceback" not in out.stderr
        assert out.stderr.splitlines()[0] == "invalid plan: 1 problem(s)" and words in out.stderr
    else:
        one_line_refusal(out, EXIT_USAGE, words)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "a refused command wrote"


def test_journal_paths_that_cannot_work_are_refused_at_once(campaign, tmp_path):
    for url, words in (
        ("journal:///proc/x/f.log", "cannot create the journal's directory /proc/x"),
        (
            f"journal://{campaign}/f.log",
            f"cannot create journal {campaign}/f.log: {campaign} is a file, not a directory",
        ),
        (f"journal://{campaign}/sub/f.log", f"{campaign} is a file, not a directory"),
        ("sqlite:///proc/x/y.db", "unable to open database file"),
    ):
        started = time.monotonic()
        out = hpo_tui("run", str(campaign), "--workers", "0", "--storage", url, cwd=tmp_path)
        one_line_refusal(out, EXIT_STORAGE_REFUSED, words)
        assert time.monotonic() - started < 30, "a permanent error must not wait out the outage patience"


def _read_only(directory: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run hpo-tui with `directory` read-only: a read-only bind mount in a private mount namespace when
    root (root ignores permission bits), else chmod."""
    exe = str(Path(sys.executable).with_name("hpo-tui"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    if os.geteuid() == 0:
        script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", script, "sh", str(directory), exe, *argv]
        return subprocess.run(cmd, cwd=directory, capture_output=True, text=True, timeout=120, env=env)
    directory.chmod(0o555)
    try:
        return subprocess.run([exe, *argv], cwd=directory, capture_output=True, text=True, timeout=120, env=env)
    finally:
        directory.chmod(0o755)


def test_a_read_only_directory_is_refused_with_the_reason(tmp_path):
    place = tmp_path / "ro"
    place.mkdir()
    write_toml(place / "c.toml", branin_campaign("ro"))
    for extra, words in (
        ([], "Read-only file system" if os.geteuid() == 0 else "Permission denied"),
        (["--storage", f"sqlite:///{place / 'x.db'}"], "unable to open database file"),
    ):
        started = time.monotonic()
        out = _read_only(place, "run", "c.toml", "--workers", "0", *extra)
        one_line_refusal(out, EXIT_STORAGE_REFUSED, words)
        assert time.monotonic() - started < 30
    assert sorted(p.name for p in place.iterdir()) == ["c.toml"]


def test_an_existing_sqlite_file_in_a_read_only_directory_is_refused(tmp_path):
    place = tmp_path / "ro"
    place.mkdir()
    write_toml(place / "c.toml", branin_campaign("rodb", sprints=ONE_SHORT_SPRINT))
    url = f"sqlite:///{place / 'x.db'}"
    first = hpo_tui("run", "c.toml", "--workers", "0", "--storage", url, cwd=place)
    assert first.returncode == 0, first.stderr
    assert _read_only(place, "status", "rodb", "--storage", url).returncode == 0  # reading still works
    out = _read_only(place, "pause", "rodb", "--storage", url)
    one_line_refusal(out, EXIT_STORAGE_REFUSED, "readonly database")


def test_a_closed_pipe_ends_quietly(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", branin_campaign("flags", sprints=ONE_SHORT_SPRINT))
    assert hpo_tui("run", str(campaign), "--workers", "0", cwd=tmp_path).returncode == 0
    exe = str(Path(sys.executable).with_name("hpo-tui"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen(
        [exe, "status", "flags"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    proc.stdout.close()  # `| head -1` that has already gone: every write fails with EPIPE
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_BROKEN_PIPE and err == b"", err


def test_ctrl_c_at_the_cli_is_one_line_and_exit_130(capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    assert run_cli(["status", "anything"], interrupted) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err == "hpo-tui status: interrupted\n"


def test_wrong_password_on_postgresql_fails_at_once(tmp_path, campaign, postgres, pg_url):
    wrong = pg_url.replace(postgres.password, "not-the-password")
    started = time.monotonic()
    out = hpo_tui("run", str(campaign), "--workers", "0", "--storage", wrong, cwd=tmp_path)
    one_line_refusal(out, EXIT_STORAGE_REFUSED, "password authentication failed")
    assert time.monotonic() - started < 30, "authentication is not an outage: no two-minute retry"
    assert "not-the-password" not in out.stderr + out.stdout and postgres.password not in out.stderr
    unknown = pg_url.rsplit("/", 1)[0] + "/no_such_database"
    one_line_refusal(
        hpo_tui("status", "flags", "--storage", unknown, cwd=tmp_path), EXIT_STORAGE_REFUSED, "does not exist"
    )


def test_a_second_ctrl_c_stops_at_once_with_one_line(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", branin_campaign("ki", policy="wait", workers=1))
    exe = str(Path(sys.executable).with_name("hpo-tui"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1"}
    out_path = tmp_path / "out.txt"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [exe, "run", str(campaign), "--headless"], cwd=tmp_path, stdout=out, stderr=subprocess.PIPE, env=env
        )
    try:
        wait_for(
            lambda: "waiting for a decision" in out_path.read_text(), 120, "gate 0", check=lambda: proc.poll() is None
        )
        workers = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, err.decode()) == (EXIT_INTERRUPTED, "hpo-tui run: interrupted\n")
    wait_for(
        lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 30, "workers gone"
    )
