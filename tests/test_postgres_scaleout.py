"""benchmarks/scaleout.py cannot rot: a tiny run on both storages prints its table."""

import subprocess
import sys

import pytest
from fleet import ROOT, child_env

pytestmark = [pytest.mark.xdist_group("postgres"), pytest.mark.timeout(180)]


def test_scaleout_benchmark_runs_on_journal_and_postgres(pg_url):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.scaleout",
            "--workers",
            "1,2",
            "--trials-per-worker",
            "2",
            "--objective-s",
            "0.05",
            "--pg-url",
            pg_url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[1].split() == [
        "storage",
        "workers",
        "trials",
        "wall",
        "s",
        "trials/s",
        "ideal/s",
        "efficiency",
        "overhead",
        "ms",
        "in-trial",
        "ms",
    ]
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [
        ("journal", "1"),
        ("journal", "2"),
        ("postgresql", "1"),
        ("postgresql", "2"),
    ]
    # 2 trials per worker; workers that start their last trials together may run up to workers - 1 more
    for r in rows:
        workers, trials = int(r[1]), int(r[2])
        assert 2 * workers <= trials <= 2 * workers + workers - 1, r
    assert all(float(r[4]) > 0 for r in rows)
