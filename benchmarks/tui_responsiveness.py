"""How the console holds up with 10,000 trials and 8 busy workers, headless.

Size (~620 lines): one script: it builds a campaign of N trials, drives the real console headless
with busy workers, and measures frames, keys, lag and memory.

    python -m benchmarks.tui_responsiveness [--trials 10000] [--workers 8] [--hz 20] [--seconds 20]

1. A journal storage is built (in a subprocess) holding one campaign whose current sprint already
   has N finished trials (complete, pruned, failed, with learning curves).
2. A feeder process runs W worker threads on the same storage; each runs trials that report an
   intermediate value at `--hz` and finish after 40 steps, so the table always has W running rows.
3. This process opens the real dashboard on that storage (StorageSource, the app's own thread
   workers, headless driver at 160×48) and measures:
   - time to first frame (from creating the app), and to the first frame showing all N trials;
   - UI frame cost: time per screen update (layout + render of the dirty widgets + encoding the
     terminal output), and time per applied snapshot (the handler, inside batch_update);
   - event-loop lag: how late a 10 ms timer on the UI thread fires (anything that blocks the UI,
     the GIL included);
   - key-to-screen latency: from a key press until the frame that shows its effect, for sort,
     reverse sort, filter, open detail and back;
   - peak RSS of this process (the console; the feeder and the builder are other processes).
4. Then a gate opens (a second, higher-fidelity sprint of N/5 trials is added, a tenth of them
   re-running explore configurations) and the approval screen is measured with its evidence
   pictures: key-to-screen for `a`, the time until the evidence (all N + N/5 points, rank
   agreement, cut counts) and the first plot are on screen, the plot worker's render time, and
   key-to-new-plot for moving the selection (`down`; the worker draws the neighbours of the
   selected parameter ahead, so this is usually one frame).
5. Last, the gate is approved from that screen (`y`, confirmed with `y`): the console's first write,
   timed until the decision is in a snapshot, with the peak RSS before and after it.
Targets: first frame < 1 s, p95 frame < 50 ms, key-to-screen < 100 ms, RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CAMPAIGN = "bench"
PARAMS = ("x1", "x2", "x3", "x4", "x5", "x6")


def bench_spec(trials: int) -> dict:
    """The campaign file as stored: a valid engine.spec.CampaignSpec (the evidence reads it); the feeder
    plays the workers, so the objective is never imported."""
    return {
        "name": CAMPAIGN,
        "objective": {"path": "benchmarks.tui_responsiveness:feed"},
        "metric": {"name": "regret", "direction": "minimize"},
        "space": {p: {"type": "float", "low": 0.0, "high": 1.0} for p in PARAMS},
        "sprints": [
            {"name": "explore", "fidelity": "low", "n_trials": trials * 2},
            {"name": "full", "fidelity": "high", "n_trials": max(1, trials // 5)},
        ],
        "fidelity": {"levels": {"low": {"epochs": 3}, "high": {"epochs": 40}}},
    }


# -------------------------------------------------------------------------------- the storage
def build_storage(url: str, trials: int, seed: int = 0) -> None:
    """A campaign whose first sprint holds `trials` finished trials (runs in a subprocess)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from engine.store.ledger import Ledger
    from engine.store.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    ledger = Ledger(storage, CAMPAIGN, create=True)
    space = {p: {"type": "float", "low": 0.0, "high": 1.0, "log": False} for p in PARAMS}
    ledger.put("spec", bench_spec(trials))
    ledger.put("original_space", space)
    ledger.put(
        "sprint:0",
        {
            "index": 0,
            "name": "explore",
            "study": f"{CAMPAIGN}/00-explore",
            "sampler": "tpe",
            "pruner": "hyperband",
            "space": space,
            "tuned": list(PARAMS),
            "fixed": {},
            "level": "low",
            "fidelity": {"epochs": 3},
            "n_trials": trials * 2,
            "status": "running",
            "started_ts": time.time(),
        },
    )
    ledger.set_state(status="running", sprint=0, gate=0, pending_gate=None, paused=False)
    study = optuna.create_study(study_name=f"{CAMPAIGN}/00-explore", storage=storage)
    rng = random.Random(seed)
    dists = {p: FloatDistribution(0.0, 1.0) for p in PARAMS}
    batch = []
    for number in range(trials):
        params = {p: rng.random() for p in PARAMS}
        value = sum((v - 0.3) ** 2 for v in params.values()) + 0.05 * rng.random()
        roll = rng.random()
        steps = 40 if roll > 0.3 else rng.randint(1, 12)
        curve = {s: value + 0.5 * 2.718 ** (-s / 6) for s in range(steps)}
        if roll > 0.3:
            state, attrs = TrialState.COMPLETE, {"duration_s": 2.0 + rng.random(), "cost": 1.0, "worker": "h:1:0"}
        elif roll > 0.03:
            state = TrialState.PRUNED
            attrs = {
                "duration_s": 0.5,
                "cost": steps / 40,
                "worker": "h:1:1",
                "pruned_at": {"step": steps - 1, "value": curve[steps - 1]},
            }
        else:
            state, attrs = TrialState.FAIL, {"duration_s": 0.1, "fail_reason": "out of memory: CUDA", "worker": "h:1:2"}
        batch.append(
            create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=params,
                distributions=dists,
                user_attrs=attrs,
                intermediate_values=curve,
            )
        )
    study.add_trials(batch)


def open_gate(url: str, trials: int, seed: int = 1) -> None:
    """A finished higher-fidelity sprint and its gate, waiting (the approval scenario)."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from engine.store.ledger import Ledger
    from engine.store.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    ledger = Ledger(storage, CAMPAIGN)
    ledger.put("spec", bench_spec(trials * 5))  # storages built before the spec was complete
    explore = optuna.load_study(study_name=f"{CAMPAIGN}/00-explore", storage=storage)
    done = [t for t in explore.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    space = {p: {"type": "float", "low": 0.0, "high": 1.0, "log": False} for p in PARAMS}
    ledger.put(
        "sprint:1",
        {
            "index": 1,
            "name": "full",
            "study": f"{CAMPAIGN}/01-full",
            "sampler": "gp",
            "pruner": "none",
            "space": space,
            "tuned": list(PARAMS),
            "fixed": {},
            "level": "high",
            "fidelity": {"epochs": 40},
            "n_trials": trials,
            "status": "closed",
            "started_ts": time.time(),
        },
    )
    study = optuna.create_study(study_name=f"{CAMPAIGN}/01-full", storage=storage)
    rng = random.Random(seed)
    dists = {p: FloatDistribution(0.0, 1.0) for p in PARAMS}
    batch = []
    for number in range(trials):
        if number < trials // 10 and number < len(done):
            params = dict(done[number].params)  # re-runs an explore configuration
        else:
            params = {p: rng.random() for p in PARAMS}
        value = sum((v - 0.2) ** 2 for v in params.values()) + 0.02 * rng.random()  # full runs prefer 0.2
        batch.append(create_trial(state=TrialState.COMPLETE, value=value, params=params, distributions=dists))
    study.add_trials(batch)
    best = min(batch, key=lambda t: t.value)
    rows = {
        p: {
            "kind": "float",
            "original": space[p],
            "current": space[p],
            "proposed": {"type": "float", "low": 0.1, "high": 0.45, "log": False},
            "importance": 0.2,
            "edge": None,
            "freeze": False,
            "note": "",
            "top_min": 0.1,
            "top_max": 0.4,
            "best": best.params[p],
        }
        for p in PARAMS
    }
    ledger.put(
        "proposal:1",
        {
            "gate": 1,
            "sprint": 1,
            "after": "full",
            "next": "final",
            "created": "2027-01-15T08:00:00+00:00",
            "params": rows,
            "space": {p: r["proposed"] for p, r in rows.items()},
            "fidelity": {"level": "high", "values": {"epochs": 40}},
            "sampler": "tpe",
            "pruner": "none",
            "n_trials": 100,
            "evidence": {
                "completed": trials,
                "top_k": 10,
                "best_value": best.value,
                "best_params": dict(best.params),
                "best_trial": best.number,
            },
        },
    )
    ledger.set_state(status="waiting", sprint=1, gate=1, pending_gate=1)


# -------------------------------------------------------------------------------- the feeder
def feed(url: str, workers: int, hz: float, stop_file: str) -> None:
    """Worker threads that each run trials reporting at `hz` (runs in a subprocess)."""
    import optuna

    from engine.store.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.load_study(
        study_name=f"{CAMPAIGN}/00-explore", storage=storage, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    dists = {p: optuna.distributions.FloatDistribution(0.0, 1.0) for p in PARAMS}

    def work(index: int) -> None:
        rng = random.Random(index)
        while not os.path.exists(stop_file):
            trial = study.ask(dists)
            trial.set_user_attr("worker", f"bench:{os.getpid()}:{index}")
            value = rng.random()
            for step in range(40):
                if os.path.exists(stop_file):
                    break
                trial.report(value + 1.0 / (step + 1), step)
                time.sleep(1.0 / hz)
            study.tell(trial, value)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    while not os.path.exists(stop_file):
        time.sleep(0.2)
    time.sleep(0.5)


# -------------------------------------------------------------------------------- measuring
class Probe:
    """Instruments the app: frame timings, snapshot-apply timings, table repaints, loop lag."""

    def __init__(self, app):
        from textual.screen import Screen

        from tui.trial_table import TrialTable

        self.app = app
        self.frames: list[tuple[float, float, str, bool, int]] = []  # start, end, screen, table painted, rows
        self.frame_cpu: list[float] = []  # UI-thread CPU seconds per frame (no waiting for a core or the GIL)
        self.frame_cpu_end: list[float] = []  # the UI thread's CPU clock at the end of each frame
        self.applies: list[float] = []
        self.lags: list[float] = []
        self.widget_ms: dict[str, float] = {}  # render time per widget, for --widgets
        self._painted = False
        probe = self

        original_update = Screen._on_timer_update

        def timed_update(screen):
            probe._painted = False
            had_work = bool(screen._dirty_widgets) or screen._layout_required or screen._repaint_required
            start, cpu_start = time.perf_counter(), time.thread_time()
            original_update(screen)
            end, cpu_end = time.perf_counter(), time.thread_time()
            if had_work:
                probe.frame_cpu.append(cpu_end - cpu_start)
                probe.frame_cpu_end.append(cpu_end)
                table = screen.query(TrialTable)
                rows = len(table.first().view) if table else -1
                probe.frames.append((start, end, type(screen).__name__, probe._painted, rows))

        original_render_line = TrialTable.render_line

        def counted_render_line(table, y):
            probe._painted = True
            return original_render_line(table, y)

        original_display = type(app)._display

        def encoding_display(self, screen, renderable):
            # Headless Textual skips writing; encode the update anyway, as a terminal would need.
            from textual._compositor import CompositorUpdate

            if isinstance(renderable, CompositorUpdate):
                renderable.render_segments(self.console)
            return original_display(self, screen, renderable)

        original_apply = type(app).apply_snapshot

        def timed_apply(self, snapshot, engine_line=None):
            start = time.perf_counter()
            original_apply(self, snapshot, engine_line)
            probe.applies.append(time.perf_counter() - start)

        from textual.widget import Widget

        original_render_lines = Widget.render_lines

        def timed_render_lines(widget, crop):
            start = time.perf_counter()
            lines = original_render_lines(widget, crop)
            key = f"{type(widget).__name__}#{widget.id or ''}"
            probe.widget_ms[key] = probe.widget_ms.get(key, 0.0) + (time.perf_counter() - start) * 1000
            return lines

        Widget.render_lines = timed_render_lines
        Screen._on_timer_update = timed_update
        TrialTable.render_line = counted_render_line
        type(app)._display = encoding_display
        type(app).apply_snapshot = timed_apply

    async def watch_lag(self, interval: float = 0.01) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(interval)
            self.lags.append(time.perf_counter() - start - interval)

    def frame_after(self, t0: float, cpu0: float, predicate) -> tuple[float, float] | None:
        """(wall seconds, UI-thread CPU seconds) from a key press to the first frame showing it."""
        for (start, end, screen, painted, rows), cpu_end in zip(self.frames, self.frame_cpu_end, strict=False):
            if start >= t0 and predicate(screen, painted, rows):
                return end - t0, cpu_end - cpu0
        return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def measure(url: str, trials: int, seconds: float, size: tuple[int, int], fps: float) -> dict:
    from tui.app import HpoConsole
    from tui.source import StorageSource

    created = time.perf_counter()
    app = HpoConsole(StorageSource(url, CAMPAIGN), fps=fps)
    probe = Probe(app)
    results: dict = {}
    async with app.run_test(size=size) as pilot:
        lag_task = asyncio.create_task(probe.watch_lag())
        deadline = time.perf_counter() + 60
        while not any(rows >= trials for *_, rows in probe.frames) and time.perf_counter() < deadline:
            await pilot.pause(0.02)
        first = probe.frames[0][1] - created if probe.frames else float("nan")
        full = next((end - created for _, end, _, _, rows in probe.frames if rows >= trials), float("nan"))
        results["first_frame_s"] = first
        results["first_full_table_s"] = full
        # Steady state: snapshots at --fps while the feeder's workers report.
        probe.frames.clear(), probe.applies.clear(), probe.lags.clear(), probe.widget_ms.clear()
        probe.frame_cpu.clear(), probe.frame_cpu_end.clear()
        await pilot.pause(seconds)
        results["widget_ms_per_s"] = {
            k: round(v / seconds, 2) for k, v in sorted(probe.widget_ms.items(), key=lambda kv: -kv[1])[:8]
        }
        frame_costs = [end - start for start, end, *_ in probe.frames]
        results["frames"] = len(frame_costs)
        results["frame_ms_median"] = statistics.median(frame_costs) * 1000 if frame_costs else float("nan")
        results["frame_ms_p95"] = pct(frame_costs, 95) * 1000
        results["frame_ms_max"] = max(frame_costs) * 1000 if frame_costs else float("nan")
        results["frame_cpu_ms_median"] = statistics.median(probe.frame_cpu) * 1000 if probe.frame_cpu else float("nan")
        results["frame_cpu_ms_p95"] = pct(probe.frame_cpu, 95) * 1000
        results["apply_ms_median"] = statistics.median(probe.applies) * 1000 if probe.applies else float("nan")
        results["apply_ms_p95"] = pct(probe.applies, 95) * 1000
        results["snapshots_per_s"] = len(probe.applies) / seconds
        results["loop_lag_ms_p95"] = pct(probe.lags, 95) * 1000
        results["loop_lag_ms_max"] = max(probe.lags) * 1000 if probe.lags else float("nan")
        results["running_rows"] = app.snapshot.running if app.snapshot else 0
        results["rows"] = len(app.snapshot.trials) if app.snapshot else 0

        # Key-to-screen, each key three times.
        latencies: dict[str, list[float]] = {}
        cpu_latencies: dict[str, list[float]] = {}

        async def timed(label: str, prelude: list[str], key: str, shown) -> None:
            for _ in range(3):
                await pilot.pause(0.3)
                if prelude:  # opening a dialog first is not timed
                    await pilot.press(*prelude)
                    await pilot.pause(0.2)
                t0, cpu0 = time.perf_counter(), time.thread_time()
                await pilot.press(key)
                await pilot.pause(0.25)
                wall, cpu = probe.frame_after(t0, cpu0, shown) or (float("inf"), float("inf"))
                latencies.setdefault(label, []).append(wall)
                cpu_latencies.setdefault(label, []).append(cpu)
                if label.startswith("open detail"):
                    await pilot.press("escape")
                elif label.startswith("filter"):
                    await pilot.press("slash", "home", "enter")  # back to all states

        painted = lambda screen, table_painted, rows: table_painted  # noqa: E731
        await timed("sort (s)", [], "s", painted)
        await timed("reverse sort (S)", [], "S", painted)
        await timed(
            "filter (/ pruned, enter)",
            ["slash", "down", "down", "down"],
            "enter",
            lambda screen, table_painted, rows: screen == "DashboardScreen" and table_painted,
        )
        await timed(
            "open detail (enter)", [], "enter", lambda screen, table_painted, rows: screen == "TrialDetailScreen"
        )
        results["key_ms"] = {k: statistics.median(v) * 1000 for k, v in latencies.items()}
        results["key_ms_worst"] = {k: max(v) * 1000 for k, v in latencies.items()}
        results["key_cpu_ms"] = {k: statistics.median(v) * 1000 for k, v in cpu_latencies.items()}
        results.update(await measure_approval(pilot, app, probe, url, trials))
        lag_task.cancel()
    results["peak_rss_mb"] = peak_rss_mb()
    return results


async def measure_approval(pilot, app, probe: Probe, url: str, trials: int) -> dict:
    """The approval screen with its evidence pictures, at a gate after N + N/5 trials."""
    import tui.approval
    from tui.approval import ApprovalScreen

    renders: list[float] = []
    drawn: list[float] = []
    original_plot = tui.approval.evidence_plot

    def timed_plot(*args, **kwargs):  # runs in the plot worker
        start = time.perf_counter()
        lines = original_plot(*args, **kwargs)
        renders.append(time.perf_counter() - start)
        return lines

    original_show = ApprovalScreen._show_plot

    def stamped_show(screen, lines, thread, key):  # a plot goes on screen (drawn, or drawn ahead)
        original_show(screen, lines, thread, key)
        drawn.append(time.perf_counter())

    tui.approval.evidence_plot = timed_plot
    ApprovalScreen._show_plot = stamped_show
    results: dict = {}
    try:
        # Another process writes the gate, as the engine would (its storage replay is not the console's RSS).
        gate = [sys.executable, "-m", "benchmarks.tui_responsiveness", "--role", "gate", "--url", url]
        await asyncio.to_thread(subprocess.run, gate + ["--trials", str(trials // 5)], check=True)
        deadline = time.perf_counter() + 60
        while (app.snapshot is None or app.snapshot.pending_gate != 1) and time.perf_counter() < deadline:
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        t0, cpu0 = time.perf_counter(), time.thread_time()
        await pilot.press("a")
        while not (isinstance(app.screen, ApprovalScreen) and app.screen.plot_settled):
            assert time.perf_counter() < deadline + 60, "the evidence plot never appeared"
            await pilot.pause(0.01)
        await pilot.pause(0.1)
        shown = probe.frame_after(t0, cpu0, lambda screen, painted, rows: screen == "ApprovalScreen")
        after_plot = [end for start, end, *_ in probe.frames if start >= drawn[0]]
        results["approval_key_ms"] = (shown or (float("nan"),))[0] * 1000
        results["approval_key_cpu_ms"] = (shown or (0, float("nan")))[1] * 1000
        results["approval_plot_s"] = (after_plot[0] if after_plot else drawn[0]) - t0
        evidence = app.screen.evidence
        results["approval_points"] = sum(len(g.x) for g in evidence.params[0].groups)
        results["approval_agreement"] = evidence.agreements[0].describe() if evidence.agreements else "-"
        moves = []
        for _ in range(3):
            await pilot.pause(0.3)
            before = len(drawn)
            t0 = time.perf_counter()
            await pilot.press("down")
            while len(drawn) == before or not app.screen.plot_settled:
                assert time.perf_counter() < t0 + 30, "the plot never followed the selection"
                await pilot.pause(0.005)
            await pilot.pause(0.1)
            frames = [end for start, end, *_ in probe.frames if start >= drawn[-1]]
            moves.append((frames[0] if frames else drawn[-1]) - t0)
        results["approval_move_ms"] = statistics.median(moves) * 1000
        results["approval_move_ms_worst"] = max(moves) * 1000
        results["approval_render_ms_median"] = statistics.median(renders) * 1000
        results["approval_render_ms_max"] = max(renders) * 1000
        results.update(await measure_decision_write(pilot, app))
    finally:
        tui.approval.evidence_plot = original_plot
        ApprovalScreen._show_plot = original_show
    return results


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure_decision_write(pilot, app) -> dict:
    """Approve the gate (y, then y to confirm): the console's first write. On a journal it is appended
    without Optuna's replay of every trial (engine.store.journal_writer); the peak RSS before and after."""
    rss_before = peak_rss_mb()
    await pilot.press("y")
    await pilot.pause(0.2)
    t0 = time.perf_counter()
    await pilot.press("y")
    deadline = t0 + 120
    while not (app.snapshot is not None and any(d.gate == 1 for d in app.snapshot.decisions)):
        assert time.perf_counter() < deadline, "the decision never reached the snapshot"
        await pilot.pause(0.02)
    return {"write_s": time.perf_counter() - t0, "rss_before_write_mb": rss_before, "rss_after_write_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--hz", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-state measuring time")
    parser.add_argument("--fps", type=float, default=4.0, help="the console's refresh rate (its --fps)")
    parser.add_argument("--size", default="160x48")
    parser.add_argument("--dir", help="keep the built storage here and reuse it next time")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=["build", "feed", "gate"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "build":
        build_storage(args.url, args.trials)
        return 0
    if args.role == "gate":
        open_gate(args.url, args.trials)
        return 0
    if args.role == "feed":
        feed(args.url, args.workers, args.hz, args.stop_file)
        return 0

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="tui-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    journal = work / f"journal-{args.trials}.log"
    base = work / f"journal-{args.trials}.base"
    me = [sys.executable, "-m", "benchmarks.tui_responsiveness"]
    if not base.exists():
        started = time.perf_counter()
        print(f"building a storage with {args.trials} trials in {work} …", file=sys.stderr, flush=True)
        subprocess.run(me + ["--role", "build", "--url", f"journal://{base}", "--trials", str(args.trials)], check=True)
        print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    journal.write_bytes(base.read_bytes())  # the feeder appends: start each run from the same state
    url = f"journal://{journal}"
    stop_file = work / "stop"
    stop_file.unlink(missing_ok=True)
    feeder = subprocess.Popen(
        me
        + [
            "--role",
            "feed",
            "--url",
            url,
            "--workers",
            str(args.workers),
            "--hz",
            str(args.hz),
            "--stop-file",
            str(stop_file),
        ]
    )
    try:
        time.sleep(2.0)  # the feeder's workers are running before the console opens
        width, height = (int(v) for v in args.size.split("x"))
        results = asyncio.run(measure(url, args.trials, args.seconds, (width, height), args.fps))
    finally:
        stop_file.touch()
        feeder.wait(timeout=30)
    results.update(
        trials=args.trials,
        workers=args.workers,
        hz=args.hz,
        fps=args.fps,
        size=args.size,
        load=" ".join(f"{v:.1f}" for v in os.getloadavg()),
        cpus=os.cpu_count(),
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results))
    return 0


def report(r: dict) -> str:
    def ok(value: float, target: float) -> str:
        return "ok" if value < target else "MISSED"

    lines = [
        f"console on {r['trials']} trials + {r['workers']} workers reporting at {r['hz']:g} Hz "
        f"(--fps {r['fps']:g}, {r['size']}, headless)",
        f"{'metric':<40}{'value':>12}  target",
        f"{'time to first frame':<40}{r['first_frame_s'] * 1000:>10.0f}ms  < 1000 ms {ok(r['first_frame_s'], 1.0)}",
        f"{'time to the full table':<40}{r['first_full_table_s'] * 1000:>10.0f}ms",
        f"{'UI frame cost median':<40}{r['frame_ms_median']:>10.1f}ms",
        f"{'UI frame cost p95':<40}{r['frame_ms_p95']:>10.1f}ms  < 50 ms {ok(r['frame_ms_p95'], 50)}",
        f"{'UI frame cost max':<40}{r['frame_ms_max']:>10.1f}ms",
        f"{'UI frame CPU (UI thread) median / p95':<40}{r['frame_cpu_ms_median']:>6.1f} / {r['frame_cpu_ms_p95']:.1f}ms",
        f"{'snapshot apply median / p95':<40}{r['apply_ms_median']:>6.1f} / {r['apply_ms_p95']:.1f}ms",
        f"{'snapshots applied per second':<40}{r['snapshots_per_s']:>12.1f}",
        f"{'event-loop lag p95 / max':<40}{r['loop_lag_ms_p95']:>6.1f} / {r['loop_lag_ms_max']:.1f}ms",
    ]
    for label, ms in r["key_ms"].items():
        lines.append(
            f"{'key-to-screen ' + label:<40}{ms:>10.0f}ms  < 100 ms {ok(ms, 100)}  "
            f"(worst of 3 {r['key_ms_worst'][label]:.0f} ms, UI-thread CPU {r['key_cpu_ms'][label]:.0f} ms)"
        )
    if "approval_plot_s" in r:
        lines += [
            f"approval screen at a gate: {r['approval_points']} points per parameter, "
            f"rank agreement {r['approval_agreement']}",
            f"{'key-to-screen open approval (a)':<40}{r['approval_key_ms']:>10.0f}ms  < 100 ms "
            f"{ok(r['approval_key_ms'], 100)}  (UI-thread CPU {r['approval_key_cpu_ms']:.0f} ms)",
            f"{'a -> evidence read + first plot shown':<40}{r['approval_plot_s'] * 1000:>10.0f}ms  < 1000 ms "
            f"{ok(r['approval_plot_s'], 1.0)}",
            f"{'plot render (worker) median / max':<40}{r['approval_render_ms_median']:>6.0f} / "
            f"{r['approval_render_ms_max']:.0f}ms",
            f"{'key-to-new-plot (down)':<40}{r['approval_move_ms']:>10.0f}ms  < 100 ms "
            f"{ok(r['approval_move_ms'], 100)}  (worst of 3 {r['approval_move_ms_worst']:.0f} ms)",
        ]
    if "write_s" in r:
        lines += [
            f"{'approve (y, y) -> decision in a snapshot':<40}{r['write_s'] * 1000:>10.0f}ms",
            f"{'peak RSS before / after that write':<40}{r['rss_before_write_mb']:>6.0f} / "
            f"{r['rss_after_write_mb']:.0f}MB",
        ]
    lines.append(f"{'peak RSS (console process)':<40}{r['peak_rss_mb']:>10.0f}MB  < 300 MB {ok(r['peak_rss_mb'], 300)}")
    lines.append(f"(table rows at the end: {r['rows']}, running: {r['running_rows']}, frames measured: {r['frames']})")
    lines.append(
        "render time per second of the busiest widgets (ms/s): "
        + ", ".join(f"{k} {v}" for k, v in r["widget_ms_per_s"].items())
    )
    lines.append(f"load average at the end of the run: {r['load']} on {r['cpus']} CPUs")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
