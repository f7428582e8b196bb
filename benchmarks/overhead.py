"""Engine overhead per trial against a bare Optuna loop, and the skopt-gp adapter's ask time.

Size (~520 lines): four measurements (per-trial overhead, asks, worker processes, a profile) that share
one campaign space and one table printer; each is short, and they stay together as one script.

    python -m benchmarks.overhead                    # 0.1 s objective x 100, trivial x 100 and x 2,000; asks (~6 min)
    python -m benchmarks.overhead --full --workers   # adds 0.1 s x 2,000 trials, and a worker process (~25 min)
    python -m benchmarks.overhead --trials 100,2000 --sleep 0.1 --no-trivial --no-asks
    python -m benchmarks.overhead --profile engine   # cProfile of the in-process engine loop (trivial objective)

**Per-trial overhead.** The same campaign space (6 parameters: two log floats, a float, an int, a
stepped int, a categorical), the same sampler (the engine's "tpe": Optuna TPE, multivariate,
constant liar, seeded) and the same storage backend (a fresh journal file for each run, or
``--storage sqlite``) drive, one after another in the same process run:

* ``bare``: a plain Optuna ask / suggest / objective / tell loop;
* ``engine``: a one-sprint campaign through ``engine.campaign.Coordinator`` with the trials in
  process (``workers=0``): ledger reads, budget checks, the trial's user attributes (worker,
  duration, sampling time, cost), the heartbeat hook, progress events;
* ``engine+worker``: the same campaign with one ``python -m engine.execution.worker`` process, the
  production path, while the coordinator polls the storage every 0.25 s (with ``--workers``).

Two objectives, labelled: ``sleep 0.1 s`` (``time.sleep``, as an emulated training step) and
``trivial`` (returns at once; every millisecond is overhead). Each row gives

  per trial    wall time per trial over the trial loop: from the first trial's start to the last
               trial's end (trial timestamps in the storage), divided by the number of trials;
               start-up (creating the campaign, spawning a worker) is in ``fixed``
  objective    the objective's own mean time per trial, as measured around the call
  overhead     per trial minus objective: everything else, the sampler included
  sampler      of which the sampler's time (relative sampling at the first suggest)
  rest         overhead minus sampler: storage writes and reads, ledger, events, bookkeeping
  vs bare      engine per trial / bare per trial, and engine overhead / bare overhead
  % of 1 s     engine overhead as a share of a 1 s trial (the target: < 5 %)

Settings with under a minute of trials run ``--repeats`` times (default 3), the runners
alternating, and every number is the median over repeats; the 2,000 x 0.1 s rows run once. A
second table says where the time goes in the in-process runs: journal writes per trial (each an
fsync'ed append) and their time, journal reads (syncs with the file), and the ledger's reads.
The sampler's time includes the parameter writes of its suggest calls, for both runners.

**Ask time.** Studies of 50, 100 and 200 completed trials (random points of the same space with
a smooth objective) are asked for one more point by engine.search.skopt_sampler.SkoptGPSampler and by
Optuna's GPSampler (median of ``--ask-repeats`` asks; one BLAS / torch thread).

Timings depend on the machine and its load: run it on a quiet machine, and compare rows of the
same run only.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from engine.execution.trials import suggest_distributions

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "layers": {"type": "int", "low": 1, "high": 6},
    "width": {"type": "int", "low": 32, "high": 512, "step": 32},
    "activation": {"type": "categorical", "choices": ["relu", "gelu", "tanh"]},
}
TARGET_SHARE_OF_1S = 0.05
TARGET_RATIO = 1.2


def score(params: dict[str, Any]) -> float:
    """A smooth, cheap function of the parameters (the value does not matter, only that it varies)."""
    act = {"relu": 0.0, "gelu": 0.05, "tanh": 0.1}[params["activation"]]
    return (
        (math.log10(params["lr"]) + 3) ** 2
        + 0.1 * (math.log10(params["weight_decay"]) + 4) ** 2
        + (params["dropout"] - 0.2) ** 2
        + 0.05 * (params["layers"] - 3) ** 2
        + ((params["width"] - 256) / 256) ** 2
        + act
    )


def objective(ctx) -> float:
    """The benchmark's objective through the engine: sleep `settings.sleep` seconds (0: trivial)."""
    seconds = float(ctx.settings.get("sleep", 0.0))
    if seconds > 0:
        time.sleep(seconds)
    return score(ctx.params)


# ---------------------------------------------------------------------------------------------
# Where the time goes: every journal write (one fsync'ed append each) and every read (a sync with
# the file) is timed by wrapping JournalStorage at class level during in-process runs; the ledger's
# reads (engine.store.ledger.Ledger._attrs) are counted apart. Writes and reads made by the sampler are
# counted here too (their time is also inside "sampler").


class _Meter:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def wrap(self, owner, attr: str, label: str):
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.counts[label] = self.counts.get(label, 0) + 1
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, attr, timed)
        return original


class instrumented:
    """Time journal writes, journal reads and ledger reads while the block runs (in this process)."""

    def __enter__(self) -> _Meter:
        from optuna.storages import JournalStorage

        from engine.store.ledger import Ledger

        self.meter = _Meter()
        self.saved = [
            (JournalStorage, "_write_log", self.meter.wrap(JournalStorage, "_write_log", "write")),
            (JournalStorage, "_sync_with_backend", self.meter.wrap(JournalStorage, "_sync_with_backend", "read")),
            (Ledger, "_attrs", self.meter.wrap(Ledger, "_attrs", "ledger")),
        ]
        return self.meter

    def __exit__(self, *exc):
        for owner, attr, original in self.saved:
            setattr(owner, attr, original)
        return False


def _storage_url(kind: str, folder: Path, name: str) -> str:
    if kind == "journal":
        return f"journal://{(folder / f'{name}.log').resolve()}"
    if kind == "sqlite":
        return f"sqlite:///{(folder / f'{name}.db').resolve()}"
    return kind  # any SQLAlchemy URL


def _window(trials) -> float:
    done = [t for t in trials if t.datetime_start and t.datetime_complete]
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    return (end - start).total_seconds()


def run_bare(n: int, sleep_s: float, url: str, seed: int) -> dict[str, float]:
    from engine.search.samplers import make_sampler
    from engine.search.space import distributions
    from engine.store.storage import open_storage

    t_open = time.perf_counter()
    storage = open_storage(url, heartbeat=False)
    dists = distributions(SPACE, list(SPACE))
    study = optuna.create_study(
        study_name="bare", storage=storage, sampler=make_sampler("tpe", dists, seed=seed), direction="minimize"
    )
    fixed = time.perf_counter() - t_open
    sampler_s = objective_s = 0.0
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        a = time.perf_counter()
        params = suggest_distributions(trial, dists)  # plain Optuna suggest calls
        b = time.perf_counter()
        if sleep_s > 0:
            time.sleep(sleep_s)
        value = score(params)
        c = time.perf_counter()
        study.tell(trial, value)
        sampler_s += b - a
        objective_s += c - b
    loop = time.perf_counter() - t0
    trials = study.get_trials(deepcopy=False)
    return {
        "trials": len(trials),
        "window": _window(trials),
        "loop": loop,
        "fixed": fixed,
        "objective": objective_s / n,
        "sampler": sampler_s / n,
    }


def _campaign(n: int, sleep_s: float, seed: int):
    from engine.spec import parse_campaign

    return parse_campaign(
        {
            "name": "overhead",
            "seed": seed,
            "objective": {"path": "benchmarks.overhead:objective", "settings": {"sleep": sleep_s}},
            "space": SPACE,
            "fidelity": {"levels": {"only": {"epochs": 1}}},
            "sprints": [{"name": "bench", "sampler": "tpe", "fidelity": "only", "n_trials": n}],
        }
    )


def run_engine(n: int, sleep_s: float, url: str, seed: int, workers: int, runs_root: Path) -> dict[str, float]:
    from engine.campaign import Coordinator
    from engine.store.ledger import Ledger

    spec = _campaign(n, sleep_s, seed)
    t0 = time.perf_counter()
    coordinator = Coordinator(spec, url, workers=workers, log=lambda line: None, runs_root=runs_root)
    coordinator.run()
    total = time.perf_counter() - t0
    record = Ledger(coordinator.storage, spec.name).sprint_record(0)
    assert record is not None
    study = optuna.load_study(study_name=record.study, storage=coordinator.storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    window = _window(trials)
    objective_s = statistics.fmean(float(t.user_attrs["duration_s"]) for t in complete)
    sampler_s = statistics.fmean(float(t.user_attrs.get("sample_s", 0.0)) for t in complete)
    return {
        "trials": len(complete),
        "window": window,
        "loop": window,
        "fixed": max(0.0, total - window),
        "objective": objective_s,
        "sampler": sampler_s,
    }


def per_trial(row: dict[str, float]) -> dict[str, float]:
    n = row["trials"]
    pt = row["window"] / n
    overhead = pt - row["objective"]
    return {"per_trial": pt, "overhead": overhead, "sampler": row["sampler"], "rest": overhead - row["sampler"]}


def _measure(fn, url: str, in_process: bool) -> dict[str, float]:
    if not in_process:
        return fn(url)
    with instrumented() as meter:
        raw = fn(url)
    n = raw["trials"]
    for label in ("write", "read", "ledger"):
        raw[f"{label}s_per_trial"] = meter.counts.get(label, 0) / n
        raw[f"{label}_ms_per_trial"] = 1000 * meter.seconds.get(label, 0.0) / n
    return raw


def overhead_table(
    trial_counts: list[int],
    sleeps: list[float],
    storage: str,
    workers: bool,
    seed: int,
    log,
    repeats: int = 1,
    repeat_under_s: float = 60.0,
) -> list[dict]:
    """Rows per (objective, trials, runner). Runners alternate (bare, engine, ...) `repeats` times for
    settings whose objective time is under `repeat_under_s`; each number is the median over repeats."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpo-overhead-") as tmp:
        folder = Path(tmp)
        for sleep_s in sleeps:
            for n in trial_counts:
                runners = [
                    ("bare", True, lambda url: run_bare(n, sleep_s, url, seed)),
                    ("engine", True, lambda url: run_engine(n, sleep_s, url, seed, 0, folder / "runs")),
                ]
                if workers:
                    runners.append(
                        ("engine+worker", False, lambda url: run_engine(n, sleep_s, url, seed, 1, folder / "runs-w"))
                    )
                times = repeats if n * max(sleep_s, 0.03) < repeat_under_s else 1  # ~30 ms a trivial trial
                samples: dict[str, list[dict]] = {label: [] for label, _, _ in runners}
                for rep in range(times):
                    for label, in_process, fn in runners:
                        url = _storage_url(storage, folder, f"{label}-{n}-{sleep_s}-{rep}")
                        t = time.perf_counter()
                        raw = _measure(fn, url, in_process)
                        samples[label].append({**raw, **per_trial(raw)})
                        log(
                            f"[overhead] {label:<14} {n:>5} trials, objective "
                            f"{'trivial' if sleep_s == 0 else f'sleep {sleep_s:g} s'} ({rep + 1}/{times}): "
                            f"{time.perf_counter() - t:.1f}s"
                        )
                results = {
                    label: {key: statistics.median(x[key] for x in xs) for key in xs[0]}
                    for label, xs in samples.items()
                }
                for r in results.values():
                    r["repeats"] = times
                bare = results["bare"]
                for label, r in results.items():
                    rows.append(
                        {
                            **r,
                            "label": "trivial" if sleep_s == 0 else f"sleep {sleep_s:g} s",
                            "sleep": sleep_s,
                            "trials": n,
                            "runner": label,
                            "ratio_per_trial": r["per_trial"] / bare["per_trial"],
                            "ratio_overhead": r["overhead"] / bare["overhead"] if bare["overhead"] > 0 else math.nan,
                            "share_of_1s": r["overhead"] / 1.0,
                        }
                    )
    return rows


def _ms(x: float) -> str:
    return f"{1000 * x:.1f}"


def print_overhead(rows: list[dict], out=sys.stdout) -> None:
    print(
        "\n## engine overhead per trial (ms) vs a bare Optuna loop; same sampler (TPE), same storage backend", file=out
    )
    header = (
        f"{'objective':<13}{'trials':>7}  {'runner':<14}{'per trial':>10}{'objective':>10}{'overhead':>10}"
        f"{'sampler':>9}{'rest':>8}{'fixed s':>9}{'vs bare':>9}{'ovh vs bare':>12}{'% of 1 s':>10}"
    )
    print(header, file=out)
    for r in rows:
        print(
            f"{r['label']:<13}{r['trials']:>7}  {r['runner']:<14}{_ms(r['per_trial']):>10}{_ms(r['objective']):>10}"
            f"{_ms(r['overhead']):>10}{_ms(r['sampler']):>9}{_ms(r['rest']):>8}{r['fixed']:>9.2f}"
            f"{r['ratio_per_trial']:>8.2f}×{r['ratio_overhead']:>11.2f}×{100 * r['share_of_1s']:>9.1f}%",
            file=out,
        )


def print_breakdown(rows: list[dict], out=sys.stdout) -> None:
    rows = [r for r in rows if "writes_per_trial" in r]
    if not rows:
        return
    print(
        "\n## where the time goes, per trial (in-process runs): journal writes (each an fsync'ed append), journal reads"
        "\n## (syncs with the file), and of those the ledger's reads; the sampler's own writes and reads are included",
        file=out,
    )
    print(
        f"{'objective':<13}{'trials':>7}  {'runner':<9}{'writes':>8}{'write ms':>10}{'reads':>7}{'read ms':>9}"
        f"{'ledger':>8}{'ledger ms':>11}{'rest ms':>9}",
        file=out,
    )
    for r in rows:
        print(
            f"{r['label']:<13}{r['trials']:>7}  {r['runner']:<9}{r['writes_per_trial']:>8.1f}{r['write_ms_per_trial']:>10.2f}"
            f"{r['reads_per_trial']:>7.1f}{r['read_ms_per_trial']:>9.2f}{r['ledgers_per_trial']:>8.1f}"
            f"{r['ledger_ms_per_trial']:>11.2f}{_ms(r['rest']):>9}",
            file=out,
        )


def verdict_lines(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        if r["runner"] == "bare":
            continue
        share_ok = r["share_of_1s"] < TARGET_SHARE_OF_1S
        # "within 1.2x of a bare loop per trial": judged with the 0.1 s objective (a trivial objective
        # makes every trial pure overhead; its ratio is shown above for the record)
        ratio = r["ratio_per_trial"]
        lines.append(
            f"{r['runner']:<14} {r['label']:<12} x{r['trials']:<5}: overhead {_ms(r['overhead'])} ms = "
            f"{100 * r['share_of_1s']:.1f}% of a 1 s trial ({'ok' if share_ok else 'MISSES'} < 5%); "
            f"per trial {ratio:.2f}× bare"
            + ("" if r["sleep"] == 0 else f" ({'ok' if ratio <= TARGET_RATIO else 'MISSES'} ≤ 1.2×)")
        )
    return lines


# ---------------------------------------------------------------------------------------------


def ask_times(counts: list[int], repeats: int, seed: int, log) -> list[dict]:
    import random

    import torch

    from engine.execution.trials import suggest
    from engine.search.samplers import make_sampler
    from engine.search.space import distributions

    torch.set_num_threads(1)
    dists = distributions(SPACE, list(SPACE))
    rng = random.Random(seed)
    rows = []
    for n in counts:
        points = []
        for _ in range(n):
            sampler = optuna.samplers.RandomSampler(seed=rng.randrange(2**31))
            study = optuna.create_study(sampler=sampler)
            trial = study.ask()
            params = suggest(trial, SPACE, list(SPACE))
            points.append(params)
        row = {"trials": n}
        for name in ("skopt-gp", "gp"):
            times = []
            for r in range(repeats):
                study = optuna.create_study(sampler=make_sampler(name, dists, seed=seed + r))
                for params in points:
                    study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=score(params)))
                t = time.perf_counter()
                trial = study.ask()
                suggest(trial, SPACE, list(SPACE))
                times.append(time.perf_counter() - t)
            row[name] = statistics.median(times)
            log(f"[ask] {name:<8} at {n:>4} trials: {row[name]:.3f}s (median of {repeats})")
        rows.append(row)
    return rows


def print_asks(rows: list[dict], out=sys.stdout) -> None:
    print(
        "\n## time per ask (s): the skopt-gp adapter (engine.search.skopt_sampler) vs Optuna's GPSampler, 6-D mixed space",
        file=out,
    )
    print(f"{'trials':>7}{'skopt-gp':>11}{'gp':>9}{'skopt / gp':>12}", file=out)
    for r in rows:
        print(f"{r['trials']:>7}{r['skopt-gp']:>11.3f}{r['gp']:>9.3f}{r['skopt-gp'] / r['gp']:>11.1f}×", file=out)


def profile_engine(n: int, sleep_s: float, out=sys.stdout) -> None:
    import cProfile
    import pstats

    with tempfile.TemporaryDirectory(prefix="hpo-overhead-prof-") as tmp:
        url = _storage_url("journal", Path(tmp), "prof")
        profiler = cProfile.Profile()
        profiler.enable()
        run_engine(n, sleep_s, url, 0, 0, Path(tmp) / "runs")
        profiler.disable()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also the 0.1 s objective at 2,000 trials")
    parser.add_argument("--trials", help="trial counts for the sleeping objective (default 100; --full: 100,2000)")
    parser.add_argument("--trivial-trials", default="100,2000", help="trial counts for the trivial objective")
    parser.add_argument("--sleep", type=float, default=0.1, help="the sleeping objective's seconds")
    parser.add_argument("--no-trivial", action="store_true")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="alternate the runners this many times and take medians (settings with under 60 s of objective time)",
    )
    parser.add_argument("--workers", action="store_true", help="also run the campaign with one worker process")
    parser.add_argument("--storage", default="journal", help="journal (default), sqlite, or an SQLAlchemy URL")
    parser.add_argument("--no-asks", action="store_true", help="skip the ask-time table")
    parser.add_argument("--ask-trials", default="50,100,200")
    parser.add_argument("--ask-repeats", type=int, default=3)
    parser.add_argument("--profile", choices=["engine"], help="print a cProfile of the engine loop and exit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="The objective has been evaluated at point")
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    if args.profile:
        profile_engine(int((args.trials or "500").split(",")[0]), 0.0)
        return 0
    started = time.perf_counter()
    sleep_trials = [int(x) for x in (args.trials or ("100,2000" if args.full else "100")).split(",")]
    rows = overhead_table(sleep_trials, [args.sleep], args.storage, args.workers, args.seed, log, args.repeats)
    if not args.no_trivial:
        rows += overhead_table(
            [int(x) for x in args.trivial_trials.split(",")],
            [0.0],
            args.storage,
            args.workers,
            args.seed,
            log,
            args.repeats,
        )
    asks = (
        []
        if args.no_asks
        else ask_times([int(x) for x in args.ask_trials.split(",")], args.ask_repeats, args.seed, log)
    )
    elapsed = time.perf_counter() - started
    print(f"# engine overhead: storage {args.storage}, {elapsed:.0f}s")
    print_overhead(rows)
    print_breakdown(rows)
    print("\n## targets: engine overhead < 5% of a 1 s trial; per trial within 1.2× of a bare Optuna loop")
    for line in verdict_lines(rows):
        print(line)
    if asks:
        print_asks(asks)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"seconds": elapsed, "storage": args.storage, "rows": rows, "asks": asks}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
