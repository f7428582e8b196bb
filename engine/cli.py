"""The headless command line. `tui.cli` adds the console commands on top and is the entry point."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from engine.spec import CampaignFileError, CampaignSpec, ThresholdSpec, check_objective_imports, load_campaign

EXIT_BAD_INPUT = 2


def log_line(message: str) -> None:
    """Print a progress line; a vanished terminal (SSH drop) must not kill the engine."""
    try:
        print(message, flush=True)
    except (OSError, ValueError):
        pass


def add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        default=os.environ.get("HPO_TUI_STORAGE_URL") or None,
        help="any Optuna storage URL (sqlite:///f.db, postgresql://...) or journal://PATH; "
        "default: $HPO_TUI_STORAGE_URL (keeps a password off the command line), "
        "else the campaign file's storage, else runs/<campaign>/journal.log",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo-tui",
        description="Human-guided, multi-fidelity hyperparameter optimization in sprints.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run (or resume) a campaign: the console on a TTY, else headless")
    run.add_argument("campaign", help="campaign file (TOML)")
    run.add_argument("--headless", action="store_true", help="no console, progress lines on stdout")
    run.add_argument("--policy", help="who decides gates: auto, wait, or plan:FILE (default: the file's policy)")
    add_storage(run)
    run.add_argument("--workers", type=int, help="worker processes (0: trials in this process)")
    run.add_argument("--gpus", help="comma-separated GPU ids: one worker per GPU, pinned with CUDA_VISIBLE_DEVICES")
    run.add_argument("--fps", type=float, default=4.0, help="console refresh rate (lower it on slow links)")

    validate = sub.add_parser("validate", help="check a campaign file; every problem with its key and reason")
    validate.add_argument("campaign")

    status = sub.add_parser("status", help="sprints, trial counts, best, pending gate and decision history")
    status.add_argument("campaign", help="campaign file or campaign name")
    add_storage(status)
    status.add_argument("--json", action="store_true")

    approve = sub.add_parser("approve", help="decide the pending gate of a running campaign (from any shell)")
    approve.add_argument("campaign", help="campaign file or campaign name")
    add_storage(approve)
    approve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="P=LOW:HIGH",
        help="edit a range (P=LOW:HIGH), categorical choices (P=a,b) or freeze (P==VALUE)",
    )
    approve.add_argument(
        "--freeze",
        action="append",
        default=[],
        metavar="P[=VALUE]",
        help="freeze a parameter at VALUE, or at the best value",
    )
    approve.add_argument("--unfreeze", action="append", default=[], metavar="P")
    approve.add_argument(
        "--fidelity",
        action="append",
        default=[],
        metavar="KNOB=VALUE|LEVEL",
        help="edit the next sprint's fidelity: a knob, or a whole level by name",
    )
    group = approve.add_mutually_exclusive_group()
    group.add_argument("--reject", action="store_true", help="keep the current ranges")
    group.add_argument(
        "--extend", type=int, metavar="N", help="run N more trials in the finished sprint, then gate again"
    )
    approve.add_argument("--note", default="")
    approve.add_argument("--show", action="store_true", help="print the pending proposal and decide nothing")

    worker = sub.add_parser("worker", help="join a campaign's sprints from this host (needs a shared storage)")
    worker.add_argument("campaign", help="campaign file or campaign name")
    add_storage(worker)
    worker.add_argument("--workers", type=int, default=1, help="worker processes on this host (CPU)")
    worker.add_argument("--gpus", help="one worker per GPU id")

    pause = sub.add_parser("pause", help="stop starting new trials (running ones finish)")
    pause.add_argument("campaign")
    add_storage(pause)
    resume = sub.add_parser("resume", help="start trials again after pause")
    resume.add_argument("campaign")
    add_storage(resume)

    thresholds = sub.add_parser(
        "thresholds", help="learn per-class decision thresholds on a trial's saved probabilities"
    )
    thresholds.add_argument("campaign", help="campaign file or campaign name")
    add_storage(thresholds)
    thresholds.add_argument(
        "--trial", type=int, help="trial number in the latest sprint (default: its best with probabilities)"
    )
    thresholds.add_argument("--sprint", help="sprint name (default: the latest with saved probabilities)")

    cache = sub.add_parser("cache", help="memoized stages: hits, misses, size and time saved")
    cache.add_argument("campaign", help="campaign file or campaign name")
    add_storage(cache)
    cache.add_argument("--json", action="store_true")
    cache.add_argument("--clear", action="store_true", help="delete every cached entry first")
    return parser


def resolve_campaign(target: str, storage_url: str | None) -> tuple[str, str, CampaignSpec | None]:
    """A campaign file or a bare name -> (name, storage URL, spec if a file was given)."""
    from engine.storage import default_storage_url

    path = Path(target)
    if path.suffix == ".toml" or path.exists():
        spec = load_campaign(path)
        return spec.name, storage_url or spec.storage or default_storage_url(spec.name), spec
    return target, storage_url or default_storage_url(target), None


def _gpus(text: str | None) -> list[str] | None:
    if not text:
        return None
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not all(g.isdigit() for g in gpus):
        raise SystemExit(f"--gpus takes comma-separated GPU numbers, got {text!r}")
    return gpus


def cmd_validate(args) -> int:
    spec = load_campaign(args.campaign)
    check_objective_imports(spec, args.campaign)
    total = sum(s.n_trials or 0 for s in spec.sprints)
    log_line(
        f"{args.campaign}: OK — campaign {spec.name!r}, {len(spec.space)} parameters, "
        f"{len(spec.sprints)} sprints ({total} trials planned), fidelity levels {', '.join(spec.fidelity.levels)}"
    )
    return 0


def make_coordinator(args, log: Callable[[str], None] = log_line):
    from engine.campaign import Coordinator
    from engine.policy import make_policy

    spec = load_campaign(args.campaign)
    check_objective_imports(spec, args.campaign)
    policy = make_policy(args.policy or spec.policy, log=log)
    return Coordinator(spec, args.storage, policy=policy, workers=args.workers, gpus=_gpus(args.gpus), log=log)


def install_stop_signals(request_stop: Callable[[], None], log: Callable[[str], None]) -> None:
    """Ctrl-C / SIGTERM stop the campaign in order (a second one stops at once); SIGHUP is ignored,
    since a dropped SSH session must not end the campaign."""
    interrupts = 0

    def _stop(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        log(f"received {signal.Signals(signum).name}: stopping after the running trials are handed back")
        request_stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def cmd_run_headless(args) -> int:
    from engine.status import format_status

    coordinator = make_coordinator(args)
    install_stop_signals(coordinator.request_stop, log_line)
    summary = coordinator.run()
    log_line(format_status(summary))
    return 0 if summary["status"] in ("finished", "stopped") else 1


def _open(args):
    from engine.ledger import Ledger
    from engine.storage import open_storage

    name, url, _ = resolve_campaign(args.campaign, args.storage)
    storage = open_storage(url, heartbeat=False)
    return name, url, storage, Ledger(storage, name)


def cmd_status(args) -> int:
    from engine.status import campaign_status, format_status

    name, _, storage, _ = _open(args)
    status = campaign_status(storage, name)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(format_status(status))
    return 0


def cmd_approve(args) -> int:
    from engine.decisions import build_decision
    from engine.proposal import summary_lines

    name, _, _, ledger = _open(args)
    gate = ledger.pending_gate()
    if gate is None:
        state = ledger.state()
        print(
            f"{name}: no gate is waiting for a decision (campaign {state['status']}, sprint {state['sprint'] + 1})",
            file=sys.stderr,
        )
        return 1
    proposal = ledger.proposal(gate)
    if args.show:
        print(f"gate {gate} after {proposal['after']} -> {proposal['next']}")
        print("\n".join(summary_lines(proposal)) or "(no range changes proposed)")
        return 0
    edits = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise _usage(f"--set takes P=LOW:HIGH, P=a,b or P==VALUE; got {item!r}")
        edits[key.strip()] = value
    freeze = {}
    original = ledger.get("original_space")
    for item in args.freeze:
        key, sep, value = item.partition("=")
        freeze[key.strip()] = _parse_value(value, original.get(key.strip()), key.strip()) if sep else None
    action = "reject" if args.reject else "extend" if args.extend is not None else "approve"
    record = ledger.sprint(proposal["sprint"])
    levels = (ledger.spec() or {}).get("fidelity", {}).get("levels", {})
    decision = build_decision(
        proposal,
        original,
        record["space"],
        action=action,
        edits=edits,
        freeze=freeze,
        unfreeze=args.unfreeze,
        fidelity_edits=args.fidelity,
        levels=levels,
        extend_trials=args.extend,
        note=args.note,
    )
    recorded = ledger.record_decision(gate, decision, source="cli")
    print(f"gate {gate}: {recorded['action']} recorded for {name} by {recorded['who']['user']}")
    for line in recorded["diff"]:
        print(f"    {line}")
    return 0


def _parse_value(text: str, original: dict | None, name: str | None = None):
    from engine.space import _parse_scalar

    if original is None:
        return text
    return _parse_scalar(text, original, name)


def _usage(message: str) -> Exception:
    from engine.space import SpaceEditError

    return SpaceEditError(message)


def cmd_pause(args, paused: bool) -> int:
    name, _, _, ledger = _open(args)
    ledger.set_state(paused=paused)
    print(f"{name}: {'paused — running trials finish, no new ones start' if paused else 'resumed'}")
    return 0


def cmd_worker(args) -> int:
    """Run worker processes on this host until the campaign ends."""
    import socket
    import time

    from engine.ledger import Ledger
    from engine.pool import WorkerPool
    from engine.storage import open_storage, redact, run_dir, with_retries

    name, url, _ = resolve_campaign(args.campaign, args.storage)
    ledger = Ledger(open_storage(url, heartbeat=False), name)
    spec = CampaignSpec.model_validate(with_retries(ledger.spec, what="read the campaign", log=log_line))
    # The tag makes these workers' sampler seeds differ from other hosts' (and other `worker` commands').
    pool = WorkerPool(
        url,
        name,
        count=args.workers,
        gpus=_gpus(args.gpus),
        log_dir=run_dir(name) / "logs",
        retries=spec.trial_retries,
        log=log_line,
        tag=f"{socket.gethostname()}.{os.getpid()}.",
    )
    log_line(f"joining campaign {name} at {redact(url)}")
    pool.start()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        while not stop:
            alive = pool.pids()
            if not alive and all(w.process.returncode == 0 for w in pool.workers):
                log_line(f"campaign {name} ended; workers left")
                return 0
            state = with_retries(ledger.state, what="watch the campaign", log=log_line)
            if state["status"] not in ("finished", "stopped", "failed"):
                pool.supervise(None, campaign_ended=False)  # the coordinator fails their trials
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        pool.stop()  # also when the storage stayed down: no worker is left behind
    return 0


def cmd_thresholds(args) -> int:
    import optuna

    from engine.campaign import Coordinator  # noqa: F401 - keeps optuna's log level in one place
    from engine.storage import artifact_store
    from engine.thresholds import format_report, thresholds_for_trial

    name, _, storage, ledger = _open(args)
    spec = CampaignSpec.model_validate(ledger.spec())
    settings = spec.thresholds or ThresholdSpec()
    records = [r for r in ledger.sprints() if args.sprint in (None, r["name"])]
    if not records:
        print(f"{name}: no sprint {args.sprint!r}", file=sys.stderr)
        return 1
    chosen = None
    for record in reversed(records):
        study = optuna.load_study(study_name=record["study"], storage=storage)
        trials = [
            t
            for t in study.get_trials(deepcopy=False)
            if settings.artifact in t.user_attrs.get("artifacts", {}) and (args.trial is None or t.number == args.trial)
        ]
        if trials:
            trials.sort(
                key=lambda t: t.value if t.value is not None else float("inf"),
                reverse=spec.metric.direction == "maximize",
            )
            chosen = record["study"], trials[0]
            break
    if chosen is None:
        which = f"trial {args.trial}" if args.trial is not None else "no trial"
        print(f"{name}: {which} saved a {settings.artifact!r} artifact", file=sys.stderr)
        return 1
    study_name, trial = chosen
    result = thresholds_for_trial(
        artifact_store(name),
        trial,
        metric=settings.metric,
        folds=settings.folds,
        optimizer=settings.optimizer,
        seed=spec.seed,
    )
    from engine.ledger import now_iso

    result.update(study=study_name, trial=trial.number, source="cli", when=now_iso())
    ledger.put_thresholds(study_name, trial.number, result)
    print(f"thresholds for {study_name} trial {trial.number} (stored in the campaign):")
    print(format_report(result))
    return 0


def cmd_cache(args) -> int:
    import optuna

    from engine.stages import StageCache, cache_dir_for, format_stats, stage_stats
    from engine.storage import run_dir

    name, _, storage, ledger = _open(args)
    settings = (ledger.spec() or {}).get("cache") or {}
    directory = cache_dir_for(run_dir(name), settings.get("dir"))
    cache = StageCache(directory, max_bytes=settings.get("max_bytes")) if directory.is_dir() else None
    if args.clear and cache is not None:
        log_line(f"{name}: cleared {cache.clear()} cached entries from {directory}")
    trials = {}
    for record in ledger.sprints():
        study = optuna.load_study(study_name=record["study"], storage=storage)
        trials[record["name"]] = study.get_trials(deepcopy=False)
    stats = stage_stats(trials, cache)
    print(json.dumps(stats, indent=2) if args.json else format_stats(name, stats))
    return 0


def dispatch(args) -> int:
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "run":
        return cmd_run_headless(args)
    if args.command == "status":
        return cmd_status(args)
    if args.command == "approve":
        return cmd_approve(args)
    if args.command == "worker":
        return cmd_worker(args)
    if args.command in ("pause", "resume"):
        return cmd_pause(args, args.command == "pause")
    if args.command == "thresholds":
        return cmd_thresholds(args)
    if args.command == "cache":
        return cmd_cache(args)
    raise SystemExit(f"hpo-tui: {args.command} needs the console (tui)")


def run_cli(
    argv: list[str] | None, dispatch_fn: Callable = dispatch, parser: argparse.ArgumentParser | None = None
) -> int:
    """Parse, dispatch, and turn the user's mistakes into one clear message and exit code 2."""
    from engine.campaign import CampaignMismatch
    from engine.decisions import SpaceEditError
    from engine.ledger import CampaignNotFound, DecisionConflict
    from engine.storage import StorageUnavailable

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = (parser or build_parser()).parse_args(argv)
    try:
        return dispatch_fn(args)
    except CampaignFileError as err:
        print(f"invalid campaign: {len(err.problems)} problem(s)\n{err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SpaceEditError, DecisionConflict, CampaignNotFound, CampaignMismatch, StorageUnavailable) as err:
        print(f"hpo-tui {args.command}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
