"""The core install: attach, approve and status work without torch, transformers or a database driver,
and a command that needs an extra names the one to install (exit 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from enginekit import ROOT, branin_campaign, hpo_tui, write_toml

from engine.errors import EXIT_MISSING_EXTRA
from engine.store.ledger import Ledger
from engine.store.storage import open_storage

EXTRAS = "torch,transformers,accelerate,psycopg,psycopg2,greenlet"  # every module the optional extras bring


def without_extras(*args: str, cwd: Path, console_s: float | None = None, block: str = EXTRAS):
    """Run `hpo-tui ARGS` with the extras' modules not installed; returns (result, import attempts)."""
    attempts = cwd / f"attempts-{time.monotonic_ns()}.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests") + os.pathsep + str(ROOT),
        "HPO_TEST_BLOCK": block,
        "HPO_TEST_ATTEMPTS_OUT": str(attempts),
    }
    if console_s is not None:
        env["HPO_TEST_CONSOLE_S"] = str(console_s)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "without_extras.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    return result, json.loads(attempts.read_text()) if attempts.exists() else None


def small_campaign(name: str) -> dict:
    return branin_campaign(
        name,
        sprints=[
            {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 6},
            {"name": "refine", "sampler": "tpe", "fidelity": "low", "n_trials": 4, "seed_top": 2},
        ],
    )


def test_status_approve_and_attach_never_load_torch_transformers_or_a_driver(tmp_path):
    campaign = write_toml(tmp_path / "c.toml", small_campaign("laptop"))
    url = f"journal://{tmp_path / 'laptop.log'}"
    output = tmp_path / "coordinator.out"
    with open(output, "w") as out:
        coordinator = subprocess.Popen(
            [str(Path(sys.executable).with_name("hpo-tui")), "run", str(campaign), "--headless"]
            + ["--workers", "0", "--policy", "wait", "--storage", url],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        deadline = time.monotonic() + 240
        while True:  # the first sprint ran and the gate waits for a person
            assert coordinator.poll() is None and time.monotonic() < deadline, output.read_text()
            try:
                if Ledger(open_storage(url, heartbeat=False), "laptop").pending_gate() == 0:
                    break
            except Exception:  # the coordinator has not created the campaign yet
                pass
            time.sleep(0.2)

        status, tried = without_extras("status", "laptop", "--storage", url, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert "campaign laptop:" in status.stdout and tried == []

        show, tried = without_extras("approve", "laptop", "--storage", url, "--show", cwd=tmp_path)
        assert show.returncode == 0 and "gate 0 after explore -> refine" in show.stdout, show.stderr
        assert tried == []

        console, tried = without_extras("attach", "laptop", "--storage", url, cwd=tmp_path, console_s=0.5)
        assert console.returncode == 0, console.stderr
        assert "console showed campaign laptop: waiting" in console.stdout and tried == []

        approve, tried = without_extras("approve", "laptop", "--storage", url, "--note", "from a laptop", cwd=tmp_path)
        assert approve.returncode == 0 and "gate 0: approve recorded for laptop" in approve.stdout, approve.stderr
        assert tried == []
        assert coordinator.wait(timeout=240) == 0, output.read_text()
        assert "campaign finished" in output.read_text()
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()


def test_a_command_that_needs_an_extra_names_it(tmp_path):
    gp = branin_campaign("needsgp", sprints=[{"name": "only", "sampler": "gp", "fidelity": "low", "n_trials": 2}])
    run, tried = without_extras("run", str(write_toml(tmp_path / "gp.toml", gp)), "--workers", "0", cwd=tmp_path)
    assert run.returncode == EXIT_MISSING_EXTRA, run.stdout + run.stderr
    assert "the 'gp' sampler needs torch, which is not installed: pip install 'hpo-tui[gp]'" in run.stderr
    assert "Traceback" not in run.stderr and not list((tmp_path / "runs").glob("*/journal.log"))

    jerex, _ = without_extras("validate", str(ROOT / "campaigns" / "jerex-tiny.toml"), cwd=tmp_path)
    assert jerex.returncode == EXIT_MISSING_EXTRA, jerex.stdout + jerex.stderr
    assert "the jerex workload needs torch and transformers" in jerex.stderr
    assert "pip install 'hpo-tui[jerex]'" in jerex.stderr and "Traceback" not in jerex.stderr

    trainer, _ = without_extras("validate", str(ROOT / "campaigns" / "trainer-tiny.toml"), cwd=tmp_path)
    assert trainer.returncode == EXIT_MISSING_EXTRA, trainer.stdout + trainer.stderr
    assert "the trainer_classifier workload needs torch, transformers and accelerate, which are not installed: " in (
        trainer.stderr
    )
    assert "pip install 'hpo-tui[hf]'" in trainer.stderr

    for command in ("status", "attach"):  # attach: before the console takes the screen
        pg, _ = without_extras(command, "x", "--storage", "postgresql://u:secret@127.0.0.1:1/x", cwd=tmp_path)
        assert pg.returncode == EXIT_MISSING_EXTRA, pg.stdout + pg.stderr
        assert "a postgresql:// storage needs psycopg, which is not installed: pip install 'hpo-tui[postgres]'" in (
            pg.stderr
        )
        assert "secret" not in pg.stderr


def test_postgres_scheme_alias_is_refused_with_the_fix(tmp_path):
    out = hpo_tui("status", "x", "--storage", "postgres://u:secret@127.0.0.1:1/x", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "write postgresql://" in out.stderr and "secret" not in out.stderr and "Traceback" not in out.stderr
