"""The headless command line. `tui.cli` adds the console commands on top and is the entry point.

Size (~700 lines): one argparse parser plus a short `cmd_*` function per headless command; the file is their index.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from engine.cache.stage_cache import StageCache
from engine.cache.stage_stats import format_stats, stage_stats
from engine.cache.stages import cache_dir_for
from engine.campaign import CampaignMismatch, Coordinator
from engine.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CorruptStorage,
    HpoError,
    StorageMissing,
    StorageRefused,
    StorageUnreachable,
    UsageError,
)
from engine.execution.pool import WorkerPool
from engine.execution.trials import note_user_interrupt
from engine.execution.worker import wait_for_campaign
from engine.extras import require_for_campaign
from engine.gates.decisions import build_decision
from engine.gates.policy import make_policy
from engine.gates.proposal import summary_lines
from engine.search.space import SpaceEditError, parse_scalar
from engine.spec import (
    CampaignFileError,
    CampaignSpec,
    ThresholdSpec,
    check_campaign_name,
    check_objective_imports,
    load_campaign,
)
from engine.store.journal_repair import repair_journal
from engine.store.ledger import CampaignNotFound, Ledger
from engine.store.optuna_internals import storage_trial_id, study_id
from engine.store.schema import ARTIFACTS_ATTR, ENGINE_ENDED, ENV_STORAGE_URL, CampaignStatus
from engine.store.storage import (
    artifact_store,
    default_storage_url,
    first_line,
    open_storage,
    outage_cause,
    permanent_cause,
    redact,
    run_dir,
    storage_missing,
    with_retries,
)
from engine.thresholds import format_report, store_result, thresholds_for_trial
from engine.views.export import campaign_trials, to_csv, to_json
from engine.views.progress_log import EventLog, emit
from engine.views.report import collect_report, render_html
from engine.views.status import format_status, status_report

EXIT_BAD_INPUT = EXIT_USAGE


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
        default=os.environ.get(ENV_STORAGE_URL) or None,
        help="any Optuna storage URL (sqlite:///f.db, postgresql://...) or journal://PATH; "
        "default: $HPO_TUI_STORAGE_URL (keeps a password off the command line), "
        "else the campaign file's storage, else runs/<campaign>/journal.log",
    )


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not the usage block plus the error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def positive_finite(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number above 0, named by its unit in the error ("seconds", ...)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a number of {unit}, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text!r}")
        return value

    return parse


interval_seconds = positive_finite("seconds")  # --status-every
refresh_rate = positive_finite("frames per second")  # --fps


def gpu_list(text: str) -> str:
    """--gpus: a non-empty comma-separated list of GPU numbers, no empty items; normalized '0,1'."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"takes comma-separated GPU numbers with no empty item, got {text!r}")
    if not all(item.isdigit() for item in items):
        raise argparse.ArgumentTypeError(f"takes comma-separated GPU numbers, got {text!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"names a GPU twice: {text!r}")
    return ",".join(items)


def policy_arg(text: str) -> str:
    if text in ("auto", "wait") or (text.startswith("plan:") and text.removeprefix("plan:").strip()):
        return text
    raise argparse.ArgumentTypeError(f"unknown policy {text!r}: use auto, wait or plan:FILE")


def build_parser(
    extra_commands: Callable[[Any], None] | None = None,
) -> argparse.ArgumentParser:
    """The headless commands; `extra_commands(sub)` adds more (the console's, tui/cli.py) to the same list."""
    parser = OneLineParser(
        prog="hpo-tui",
        description="Human-guided, multi-fidelity hyperparameter optimization in sprints.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run (or resume) a campaign: the console on a TTY, else headless")
    run.add_argument("campaign", help="campaign file (TOML)")
    run.add_argument("--headless", action="store_true", help="no console, progress lines on stdout")
    run.add_argument(
        "--policy", type=policy_arg, help="who decides gates: auto, wait, or plan:FILE (default: the file's policy)"
    )
    add_storage(run)
    run.add_argument("--workers", type=whole_number(0), help="worker processes (0: trials in this process)")
    run.add_argument(
        "--gpus", type=gpu_list, help="comma-separated GPU ids: one worker per GPU, pinned with CUDA_VISIBLE_DEVICES"
    )
    run.add_argument("--fps", type=refresh_rate, default=4.0, help="console refresh rate (lower it on slow links)")
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="headless output: timestamped text lines, or one JSON object per event (for log shippers)",
    )
    run.add_argument(
        "--status-every",
        type=interval_seconds,
        default=30.0,
        metavar="SECONDS",
        help="headless: a status line (n/N, best, elapsed, ETA) this often while trials run (default 30)",
    )
    run.add_argument(
        "--takeover",
        action="store_true",
        help="take the campaign from a coordinator whose lease has expired (its host is gone or hung); "
        "refused while the lease is live",
    )

    validate = sub.add_parser("validate", help="check a campaign file; every problem with its key and reason")
    validate.add_argument("campaign", help="campaign file (TOML)")

    status = sub.add_parser("status", help="sprints, trial counts, best, pending gate and decision history")
    status.add_argument("campaign", help="campaign file or campaign name")
    add_storage(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")

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
    approve.add_argument(
        "--unfreeze",
        action="append",
        default=[],
        metavar="P",
        help="tune a frozen parameter again, over its range in the campaign file",
    )
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
        "--extend",
        type=int,  # zero or negative is refused by build_decision, with the same words as in the console
        metavar="N",
        help="run N more trials in the finished sprint, then gate again",
    )
    approve.add_argument("--note", default="", help="a note kept with the decision (why)")
    approve.add_argument("--show", action="store_true", help="print the pending proposal and decide nothing")

    worker = sub.add_parser("worker", help="join a campaign's sprints from this host (needs a shared storage)")
    worker.add_argument("campaign", help="campaign file or campaign name")
    add_storage(worker)
    worker.add_argument("--workers", type=whole_number(1), default=1, help="worker processes on this host (CPU)")
    worker.add_argument("--gpus", type=gpu_list, help="one worker per GPU id")

    pause = sub.add_parser("pause", help="stop starting new trials (running ones finish)")
    pause.add_argument("campaign", help="campaign file or campaign name")
    add_storage(pause)
    resume = sub.add_parser("resume", help="start trials again after pause")
    resume.add_argument("campaign", help="campaign file or campaign name")
    add_storage(resume)

    thresholds = sub.add_parser(
        "thresholds", help="learn per-class decision thresholds on a trial's saved probabilities"
    )
    thresholds.add_argument("campaign", help="campaign file or campaign name")
    add_storage(thresholds)
    thresholds.add_argument(
        "--trial", type=whole_number(0), help="trial number in the latest sprint (default: its best with probabilities)"
    )
    thresholds.add_argument("--sprint", help="sprint name (default: the latest with saved probabilities)")

    cache = sub.add_parser("cache", help="memoized stages: hits, misses, size and time saved")
    cache.add_argument("campaign", help="campaign file or campaign name")
    add_storage(cache)
    cache.add_argument("--json", action="store_true", help="print the statistics as JSON (for scripts)")
    cache.add_argument("--clear", action="store_true", help="delete every cached entry first")
    add_share_commands(sub)

    repair = sub.add_parser(
        "repair", help="cut a torn journal back to its last complete record (a backup is kept), so the campaign resumes"
    )
    repair.add_argument("campaign", help="campaign file or campaign name")
    add_storage(repair)
    if extra_commands is not None:
        extra_commands(sub)
    return parser


def resolve_campaign(target: str, storage_url: str | None) -> tuple[str, str, CampaignSpec | None]:
    """A campaign file or a bare name -> (name, storage URL, spec if a file was given).

    A bare name is checked before any path is built from it (no '/', '..'); nothing is created.
    """
    path = Path(target)
    if path.suffix == ".toml" or path.is_file():
        spec = load_campaign(path)
        return spec.name, storage_url or spec.storage or default_storage_url(spec.name), spec
    check_campaign_name(target)
    return target, storage_url or default_storage_url(target), None


def _gpus(text: str | None) -> list[str] | None:
    """The GPU ids of an already validated --gpus (see gpu_list)."""
    return text.split(",") if text else None


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
    spec = load_campaign(args.campaign)
    require_for_campaign(spec)
    check_objective_imports(spec, args.campaign)
    policy = make_policy(args.policy or spec.policy, log=log, spec=spec)
    return Coordinator(
        spec,
        args.storage,
        policy=policy,
        workers=args.workers,
        gpus=_gpus(args.gpus),
        log=log,
        takeover=getattr(args, "takeover", False),
    )


def install_stop_signals(request_stop: Callable[[], None], log: Callable[[str], None]) -> None:
    """Ctrl-C / SIGTERM stop the campaign in order (a second one stops at once); SIGHUP is ignored,
    since a dropped SSH session must not end the campaign."""
    interrupts = 0

    def _stop(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            note_user_interrupt()  # the user's Ctrl-C: not an objective's KeyboardInterrupt (engine.execution.trials)
            raise KeyboardInterrupt
        log(f"received {signal.Signals(signum).name}: stopping after the running trials are handed back")
        request_stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def cmd_run_headless(args) -> int:
    log = EventLog(getattr(args, "log_format", "text"))
    coordinator = make_coordinator(args, log=log)
    coordinator.status_every_s = getattr(args, "status_every", coordinator.status_every_s)
    install_stop_signals(coordinator.request_stop, log)
    coordinator.run()
    report = status_report(coordinator.storage, coordinator.spec.name)
    best = report.best.to_json() if report.best else None
    emit(log, "summary", format_status(report), status=report.state.status, best=best)
    return 0 if report.state.status in (CampaignStatus.FINISHED, CampaignStatus.STOPPED) else 1


def _open(args):
    """Open an existing campaign for a command that must not create storage (status, approve, ...)."""
    name, url, _ = resolve_campaign(args.campaign, args.storage)
    try:
        storage = open_storage(url, heartbeat=False, create=False)
    except StorageMissing:
        raise UsageError(f"no campaign {name!r} in {redact(url)} (that storage does not exist)") from None
    return name, url, storage, Ledger(storage, name)


def cmd_status(args) -> int:
    name, _, storage, _ = _open(args)
    report = status_report(storage, name)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(format_status(report))
    return 0


def cmd_approve(args) -> int:
    name, _, _, ledger = _open(args)
    gate = ledger.gate_to_decide()  # raises GateAlreadyDecided when the waiting gate was just decided
    if gate is None:
        state = ledger.campaign_state()
        print(
            f"{name}: no gate is waiting for a decision (campaign {state.status}, sprint {state.sprint + 1})",
            file=sys.stderr,
        )
        return 1
    proposal = ledger.proposal_record(gate)
    if proposal is None:  # the gate waits for its proposal only between two writes of the coordinator
        print(f"{name}: gate {gate} has no proposal yet", file=sys.stderr)
        return 1
    if args.show:
        from engine.views.evidence import gate_evidence_lines  # scipy: +0.8 s, only for --show

        print(f"gate {gate} after {proposal.after} -> {proposal.next}")
        print("\n".join(summary_lines(proposal)) or "(no range changes proposed)")
        print("\n".join(gate_evidence_lines(ledger.storage, name, gate)))
        return 0
    edits = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise _usage(f"--set takes P=LOW:HIGH, P=a,b or P==VALUE; got {item!r}")
        edits[key.strip()] = value
    freeze = {}
    original = ledger.original_space() or {}
    for item in args.freeze:
        key, sep, value = item.partition("=")
        freeze[key.strip()] = _parse_value(value, original.get(key.strip()), key.strip()) if sep else None
    action = "reject" if args.reject else "extend" if args.extend is not None else "approve"
    record = ledger.sprint_record(proposal.finished_sprint)
    if record is None:  # the coordinator writes the sprint's record before its gate's proposal
        raise UsageError(f"{name}: gate {gate}'s sprint {proposal.finished_sprint} has no record")
    levels = CampaignSpec.model_validate(ledger.spec()).fidelity.levels
    decision = build_decision(
        proposal,
        original,
        record.space,
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
    print(f"gate {gate}: {recorded.action} recorded for {name} by {recorded.who.user}")
    for line in recorded.diff:
        print(f"    {line}")
    return 0


def _parse_value(text: str, original: dict | None, name: str | None = None):
    if original is None:
        return text
    return parse_scalar(text, original, name)


def _usage(message: str) -> Exception:
    return SpaceEditError(message)


def cmd_pause(args, paused: bool) -> int:
    name, _, _, ledger = _open(args)
    ledger.set_state(paused=paused)
    print(f"{name}: {'paused — running trials finish, no new ones start' if paused else 'resumed'}")
    return 0


def cmd_worker(args) -> int:
    """Run worker processes on this host until the campaign ends."""
    name, url, _ = resolve_campaign(args.campaign, args.storage)
    storage = open_storage(url, heartbeat=False)
    ledger = wait_for_campaign(storage, name, url, log_line)  # a worker may start before its coordinator
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
        storage=storage,
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
            state = with_retries(ledger.campaign_state, what="watch the campaign", log=log_line)
            if state.status not in ENGINE_ENDED:
                pool.supervise(None, campaign_ended=False)  # the coordinator fails their trials
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        pool.stop()  # also when the storage stayed down: no worker is left behind
    return 0


def cmd_thresholds(args) -> int:
    name, _, storage, ledger = _open(args)
    spec = CampaignSpec.model_validate(ledger.spec())
    settings = spec.thresholds or ThresholdSpec()
    records = [r for r in ledger.sprint_records() if args.sprint in (None, r.name)]
    if not records:
        print(f"{name}: no sprint {args.sprint!r}", file=sys.stderr)
        return 1
    chosen = None
    for record in reversed(records):
        study = optuna.load_study(study_name=record.study, storage=storage)
        trials = [
            t
            for t in study.get_trials(deepcopy=False)
            if settings.artifact in t.user_attrs.get(ARTIFACTS_ATTR, {})
            and (args.trial is None or t.number == args.trial)
        ]
        if trials:
            trials.sort(
                key=lambda t: t.value if t.value is not None else float("inf"),
                reverse=spec.metric.direction == "maximize",
            )
            chosen = record.study, trials[0]
            break
    if chosen is None:
        which = f"trial {args.trial}" if args.trial is not None else "no trial"
        print(f"{name}: {which} saved a {settings.artifact!r} artifact", file=sys.stderr)
        return 1
    study_name, trial = chosen
    result = thresholds_for_trial(
        artifact_store(name, create=False),
        trial,
        metric=settings.metric,
        folds=settings.folds,
        optimizer=settings.optimizer,
        seed=spec.seed,
    )
    result = store_result(ledger, result, study=study_name, trial=trial.number, source="cli")
    print(f"thresholds for {study_name} trial {trial.number} (stored in the campaign):")
    print(format_report(result))
    return 0


def cmd_cache(args) -> int:
    name, _, storage, ledger = _open(args)
    settings = CampaignSpec.model_validate(ledger.spec()).cache
    directory = cache_dir_for(run_dir(name, create=False), settings.dir if settings else None)
    max_bytes = settings.max_bytes if settings else None
    cache = StageCache(directory, max_bytes=max_bytes) if directory.is_dir() else None
    if args.clear and cache is not None:
        log_line(f"{name}: cleared {cache.clear()} cached entries from {directory}")
    trials = {}
    for record in ledger.sprint_records():
        study = optuna.load_study(study_name=record.study, storage=storage)
        trials[record.name] = study.get_trials(deepcopy=False)
    stats = stage_stats(trials, cache)
    print(json.dumps(stats, indent=2) if args.json else format_stats(name, stats))
    return 0


def cmd_repair(args) -> int:
    """Back the journal up and cut it to its last complete record; say what was dropped."""
    name, url, _ = resolve_campaign(args.campaign, args.storage)
    if storage_missing(url):
        raise UsageError(f"no campaign {name!r} in {redact(url)} (that storage does not exist)")
    if not url.startswith("journal://"):
        raise UsageError(f"repair works on journal files; {redact(url)} is a database (use its own recovery tools)")
    report = repair_journal(Path(url.removeprefix("journal://")))
    path = report.path
    if report.backup is None:
        print(f"{name}: journal {path} is intact ({report.kept_records} records); nothing to repair")
        return 0
    print(f"{name}: journal {path} backed up to {report.backup}")
    print(
        f"kept {report.kept_records} complete records; dropped {report.dropped_lines} line(s), "
        f"{report.dropped_bytes} bytes, from the first damaged line on"
    )
    if report.operations:
        print("dropped: " + ", ".join(f"{count} {op}" for op, count in sorted(report.operations.items())))
    touched = _describe_trials(open_storage(url, heartbeat=False, create=False), report.trial_ids)
    if touched:
        print("they touched " + "; ".join(touched) + " (a trial left running is failed and queued again on resume)")
    print("resume with the same `hpo-tui run` command")
    return 0


def _describe_trials(storage, trial_ids: tuple[int, ...]) -> list[str]:
    """'study S trial #n' for the storage trial ids still present, 'trial id N (dropped)' for the others."""
    wanted, found = set(trial_ids), {}
    if not wanted:
        return []
    for study in storage.get_all_studies():
        for trial in storage.get_all_trials(study_id(study), deepcopy=False):
            if storage_trial_id(trial) in wanted:
                found[storage_trial_id(trial)] = (
                    f"{study.study_name} trial #{trial.number} ({trial.state.name.lower()})"
                )
    return [found.get(tid, f"trial id {tid} (created in the dropped part)") for tid in sorted(wanted)]


def add_share_commands(sub) -> None:
    """`export` and `report`: a campaign's trials and story out of the storage, read-only."""
    export = sub.add_parser(
        "export",
        help="write every trial of every sprint as CSV or JSON (read-only)",
        description="Every trial of every sprint: sprint, fidelity, state, params, value, intermediate values, "
        "cost, failure reason and kind, worker, start and end.",
    )
    export.add_argument("campaign", help="campaign file or campaign name")
    add_storage(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    report = sub.add_parser(
        "report",
        help="write one self-contained, offline HTML page about a campaign (read-only)",
        description="The space narrowing gate by gate, the decisions, best so far per sprint and fidelity, "
        "parameter importance and the thresholds table, as one HTML file with inline SVG charts.",
    )
    report.add_argument("campaign", help="campaign file or campaign name")
    add_storage(report)
    report.add_argument("-o", "--output", metavar="FILE", default="report.html", help="HTML file (default report.html)")


def _write_output(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write {output}: {err.strerror or err}") from None


def cmd_export(args) -> int:
    name, _, storage, _ = _open(args)
    rows = campaign_trials(storage, name)
    _write_output(to_csv(rows) if args.format == "csv" else to_json(rows, name) + "\n", args.output)
    if args.output is not None:
        print(f"{name}: {len(rows)} trials written to {args.output}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    name, _, storage, _ = _open(args)
    _write_output(render_html(collect_report(storage, name)), args.output)
    print(f"{name}: report written to {args.output}", file=sys.stderr)
    return 0


def dispatch(args) -> int:
    if args.command == "repair":
        return cmd_repair(args)
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
    if args.command == "export":
        return cmd_export(args)
    if args.command == "report":
        return cmd_report(args)
    raise UsageError(f"{args.command} needs the console (tui)")


def _say_error(command: str, message: str) -> None:
    try:
        print(f"hpo-tui {command}: {redact(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def run_cli(
    argv: list[str] | None, dispatch_fn: Callable = dispatch, parser: argparse.ArgumentParser | None = None
) -> int:
    """Parse, dispatch, and turn every error a user can meet into one line and its exit code
    (engine/errors.py): never a traceback, from any command."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = (parser or build_parser()).parse_args(argv)

    try:
        code = dispatch_fn(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except CampaignFileError as err:
        print(f"invalid {err.what}: {len(err.problems)} problem(s)\n{err}", file=sys.stderr)
        return EXIT_USAGE
    except HpoError as err:
        message = str(err)
        if isinstance(err, CorruptStorage):  # name the campaign as typed, and the storage if it was given
            message = message.replace(
                "`hpo-tui repair CAMPAIGN`",
                f"`hpo-tui repair {args.campaign}{' --storage URL' if getattr(args, 'storage', None) else ''}`",
            )
        _say_error(args.command, message)
        return err.exit_code
    except (SpaceEditError, CampaignNotFound, CampaignMismatch) as err:  # GateAlreadyDecided: an HpoError
        _say_error(args.command, str(err))
        return EXIT_USAGE
    except BrokenPipeError:  # `hpo-tui status X | head -1`: the reader left; stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _say_error(args.command, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # a storage error met outside with_retries: still one line; anything else is a bug
        for cause, kind in ((permanent_cause(err), StorageRefused), (outage_cause(err), StorageUnreachable)):
            if cause is not None:
                _say_error(args.command, f"storage: {first_line(cause)}")
                return kind.exit_code
        raise


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
