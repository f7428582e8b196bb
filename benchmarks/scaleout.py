"""Scale-out: trials per second with 1, 2, 4 and 8 worker processes on the embedded journal file
and on PostgreSQL, with an objective that takes 0.5 s (a sleep: the numbers are the engine's and the
storage's, not the CPU's), and the engine's overhead per trial.

    python -m benchmarks.scaleout                           # journal + a throwaway PostgreSQL
    python -m benchmarks.scaleout --pg-url postgresql://u:pw@host/db --workers 1,2,4,8,16
    python -m benchmarks.scaleout --storages journal --objective-s 0.1 --json runs/bench/scaleout.json

Each run is a real campaign (one random-sampler sprint of `trials-per-worker` x workers trials)
driven by the real coordinator and its pool of `python -m engine.execution.worker` processes, on a fresh
storage. The throwaway PostgreSQL is tests/pgserver.py (initdb + pg_ctl on 127.0.0.1, removed
afterwards; fsync off, as a test database).

Columns:
  trials/s     trials finished per second between the first trial's start and the last one's end
               (worker start-up excluded; it is in `wall`)
  ideal/s      workers / objective seconds
  efficiency   trials/s / ideal/s
  overhead     engine time per trial per worker: workers x window / trials - objective seconds
               (ask, suggest, heartbeat, tell, the ledger and budget reads between trials)
  in-trial     of which inside the trial (start to finish minus the objective)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sleep_objective(ctx) -> float:
    """The benchmark's objective: sleep `settings.seconds`, return a value from the parameters."""
    time.sleep(float(ctx.settings.get("seconds", 0.5)))
    return (ctx.params["x1"] - 0.3) ** 2 + (ctx.params["x2"] - 0.7) ** 2


def campaign(name: str, n_trials: int, objective_s: float):
    from engine.spec import parse_campaign

    return parse_campaign(
        {
            "name": name,
            "objective": {"path": "benchmarks.scaleout:sleep_objective", "settings": {"seconds": objective_s}},
            "space": {
                "x1": {"type": "float", "low": 0.0, "high": 1.0},
                "x2": {"type": "float", "low": 0.0, "high": 1.0},
            },
            "fidelity": {"levels": {"only": {"epochs": 1}}},
            "sprints": [{"name": "bench", "sampler": "random", "fidelity": "only", "n_trials": n_trials}],
        }
    )


def run_one(storage: str, url: str, workers: int, per_worker: int, objective_s: float, runs_root: Path) -> dict:
    import optuna

    from engine.campaign import Coordinator
    from engine.store.storage import open_storage

    spec = campaign(f"scale-{storage}-{workers}-{uuid.uuid4().hex[:6]}", workers * per_worker, objective_s)
    started = time.perf_counter()
    summary = Coordinator(spec, url, workers=workers, runs_root=runs_root, log=lambda m: None).run()
    wall = time.perf_counter() - started
    if summary["status"] != "finished":
        raise RuntimeError(f"{storage} x{workers}: campaign {summary['status']}: {summary.get('error')}")
    trials = optuna.load_study(
        study_name=summary["sprints"][0]["study"], storage=open_storage(url, heartbeat=False)
    ).get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    window = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    in_trial = statistics.mean((t.datetime_complete - t.datetime_start).total_seconds() for t in done) - objective_s
    rate = len(done) / window
    return {
        "storage": storage,
        "workers": workers,
        "trials": len(done),
        "failed": len(trials) - len(done),
        "wall_s": wall,
        "window_s": window,
        "trials_per_s": rate,
        "ideal_per_s": workers / objective_s,
        "efficiency": rate / (workers / objective_s),
        "overhead_ms": (workers * window / len(done) - objective_s) * 1000,
        "in_trial_ms": in_trial * 1000,
    }


def format_table(rows: list[dict], objective_s: float) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"objective {objective_s:g} s (sleep); {os.cpu_count()} CPUs, load average {load}",
        f"{'storage':<11}{'workers':>8}{'trials':>7}{'wall s':>8}{'trials/s':>10}{'ideal/s':>9}"
        f"{'efficiency':>11}{'overhead ms':>12}{'in-trial ms':>12}",
    ]
    for r in rows:
        lines.append(
            f"{r['storage']:<11}{r['workers']:>8}{r['trials']:>7}{r['wall_s']:>8.1f}{r['trials_per_s']:>10.2f}"
            f"{r['ideal_per_s']:>9.1f}{r['efficiency']:>10.0%} {r['overhead_ms']:>11.0f}{r['in_trial_ms']:>12.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="comma-separated worker counts (default 1,2,4,8)")
    parser.add_argument("--storages", default="journal,postgresql")
    parser.add_argument("--trials-per-worker", type=int, default=8)
    parser.add_argument("--objective-s", type=float, default=0.5)
    parser.add_argument("--pg-url", help="an existing PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    unknown = set(storages) - {"journal", "postgresql"}
    if unknown:
        parser.error(f"unknown storages {sorted(unknown)} (journal, postgresql)")

    # Worker processes import the objective from this package; the pool starts them in the cwd.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.chdir(ROOT)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = None
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="hpo-scaleout-") as tmp:
        try:
            for storage in storages:
                for workers in counts:
                    if storage == "journal":
                        url = f"journal://{Path(tmp) / f'journal-{workers}.log'}"
                    elif args.pg_url:
                        url = args.pg_url
                    else:
                        if server is None:
                            sys.path.insert(0, str(ROOT / "tests"))
                            from pgserver import PostgresServer

                            server = PostgresServer()
                            server.start()
                        url = server.create_database(f"scale_{workers}")
                    rows.append(run_one(storage, url, workers, args.trials_per_worker, args.objective_s, Path(tmp)))
                    print(format_table(rows[-1:], args.objective_s).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            if server is not None:
                server.remove()
    print(format_table(rows, args.objective_s))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"objective_s": args.objective_s, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
