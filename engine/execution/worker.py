"""A long-lived worker: runs trials of the campaign's current sprint until the campaign ends.

Size (~420 lines): the trial loop plus the process around it: signals, parent watch, the lease
generation and the rotating log.

The same loop serves the coordinator's local worker processes and `hpo-tui worker` on other
hosts: everything it needs (spec, sprint record, trials) comes from the storage.
Run as `python -m engine.execution.worker --storage URL --campaign NAME --index I [--parent-pid P]`.

A local worker belongs to its coordinator's lease generation (`--lease-generation`, engine.store.lease):
it leaves (exit code 4) once a newer generation exists, and takes a "campaign ended" state only
from its own coordinator. A worker without a generation (`hpo-tui worker`) follows whichever
coordinator runs the campaign. Its stdout and stderr (the objective's prints too) go through a
rotating log (`--log-file`): WORKER_LOG_MAX_BYTES per file, WORKER_LOG_BACKUPS older files kept.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from engine.errors import EXIT_LEASE_HELD, EXIT_STORAGE_UNREACHABLE, EXIT_USAGE, HpoError
from engine.execution.sprint import budget_left, open_study
from engine.execution.trials import note_user_interrupt, run_trial, worker_id
from engine.objective import load_objective
from engine.spec import CampaignSpec
from engine.store.lease import superseded
from engine.store.ledger import CampaignNotFound, Ledger
from engine.store.optuna_internals import storage_trial_id
from engine.store.records import SprintRecord
from engine.store.schema import ENGINE_ENDED, ENV_STORAGE_URL, ENV_THREADS, ENV_WORKER_LOG_BYTES, FAIL_REASON_ATTR
from engine.store.storage import (
    StorageUnavailable,
    artifact_store,
    open_storage,
    redact,
    run_dir,
    storage_patience_s,
    tune_heartbeat,
    with_retries,
)

STORAGE_ENV = ENV_STORAGE_URL  # how a pool hands the URL over: not on the command line, which `ps` shows

POLL_S = 0.2
LEASE_CHECK_S = 1.0  # how often a worker of a coordinator checks that its coordinator still holds the lease
ENDED = ENGINE_ENDED
WORKER_LOG_MAX_BYTES = 10 * 2**20  # a worker log rotates at this size (HPO_TUI_WORKER_LOG_BYTES overrides)
WORKER_LOG_BACKUPS = 2  # worker-N.log.1 and .2: at most 30 MiB per worker
EXIT_LEASE_LOST = EXIT_LEASE_HELD  # the worker's coordinator lost the campaign: the pool does not restart it


class Stop(BaseException):
    """Raised by the SIGTERM handler; a BaseException so no trial records it as its own failure."""


class _Termination:
    """SIGTERM raises Stop only while the objective runs, and not inside a storage call (its
    report()): elsewhere it is noted and the worker's loop leaves at its next turn. An exception
    thrown into Optuna's journal lock code releases the lock even when another process holds it."""

    requested = False
    interruptible = False


_termination = _Termination()


def limit_threads(threads: int = 1) -> None:
    """One intra-op thread per worker on CPU: on a busy box more threads are 3-40x slower."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


class Worker:
    def __init__(
        self,
        storage,
        campaign: str,
        index: int | str = 0,
        *,
        device: str = "cpu",
        log: Callable = print,
        runs_root: Path | None = None,
        parent_pid: int | None = None,
        stage_runner_factory=None,
        report_trials: bool = True,
        lease_generation: int | None = None,
        trial_file: Path | None = None,
    ):
        """`lease_generation`: the coordinator's lease this worker belongs to (None: follow any).
        `trial_file`: where the running trial's start is written for the pool's hard time limit."""
        self.storage = storage
        self.ledger = Ledger(storage, campaign)
        self.spec = CampaignSpec.model_validate(self.ledger.spec())
        tune_heartbeat(storage, self.spec.stale_after_s)
        self.objective = load_objective(self.spec.objective.path)
        self.index = index
        self.device = device
        self.log = log
        self.id = worker_id(index)
        self.run_dir = run_dir(campaign, runs_root)
        self.artifacts = artifact_store(campaign, runs_root)
        self.parent_pid = parent_pid
        self._studies: dict[str, optuna.Study] = {}
        self.full_fidelity = list(self.spec.fidelity.levels.values())[-1]
        if stage_runner_factory is None:  # the campaign's [cache] table: memoized stages, else timings only
            from engine.cache.stages import default_stage_runner_factory as stage_runner_factory
        self.stage_runner = stage_runner_factory(self)
        self.trials_run = 0
        self.report_trials = report_trials  # False: the in-process worker, whose coordinator reports each trial
        self.lease_generation = lease_generation
        self.trial_file = trial_file
        self._lease_checked = 0.0

    def _study(self, record: SprintRecord) -> optuna.Study:
        study = self._studies.get(record.study)
        if study is None:
            # A restarted worker (same index) or a resumed campaign must not replay its predecessor's
            # sampler seed: that would propose the same parameters again. Fresh sprints keep the index's seed.
            done = self._trials_started(record.study)
            key = str(self.index) if done == 0 else f"{self.index}:{done}"
            study = open_study(self.spec, self.storage, record, worker_index=zlib.crc32(key.encode()) % 10_000)
            self._studies = {record.study: study}  # only the current sprint's study is needed
        return study

    def _trials_started(self, study_name: str) -> int:
        try:
            study_id = self.storage.get_study_id_from_name(study_name)
        except KeyError:
            return 0
        return sum(1 for t in self.storage.get_all_trials(study_id, deepcopy=False) if t.state != TrialState.WAITING)

    def lease_lost(self) -> bool:
        """A newer coordinator lease than this worker's exists (checked at most every LEASE_CHECK_S)."""
        if self.lease_generation is None or time.monotonic() - self._lease_checked < LEASE_CHECK_S:
            return False
        self._lease_checked = time.monotonic()
        return superseded(self.storage, self.ledger.campaign, self.lease_generation)

    def _record_objective(self, trial: optuna.trial.Trial | None, started: float | None) -> None:
        """The running trial's start, for the pool's hard time limit (a local file: no storage write)."""
        _termination.interruptible = trial is not None
        if self.trial_file is None:
            return
        if trial is None:
            self.trial_file.unlink(missing_ok=True)
            return
        record = {
            "trial_id": storage_trial_id(trial),
            "number": trial.number,
            "started": started,
            "timeout_s": self.spec.objective.timeout_s,
        }
        tmp = self.trial_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self.trial_file)

    def step(self) -> str:
        """Run at most one trial. Returns 'ran', 'idle', 'ended' or 'lease_lost'."""
        if self.lease_lost():
            return "lease_lost"
        state = self.ledger.campaign_state()
        if state.status in ENDED:
            mine = self.lease_generation is None or state.lease in (None, self.lease_generation)
            return "ended" if mine else "idle"  # another coordinator's end is not this worker's
        if state.paused:
            return "idle"
        record = self.ledger.sprint_record(state.sprint)
        if record is None or not record.running:
            return "idle"
        study = self._study(record)
        if not budget_left(record, study.get_trials(deepcopy=False)):
            return "idle"
        trial = run_trial(
            study,
            objective=self.objective,
            sprint=record,
            settings=self.spec.objective.settings,
            full_fidelity=self.full_fidelity,
            cost_knobs=self.spec.fidelity.cost_knobs,
            run_dir=self.run_dir,
            artifact_store=self.artifacts,
            worker=self.id,
            device=self.device,
            timeout_s=self.spec.objective.timeout_s,
            stage_runner=self.stage_runner,
            log=self.log,
            on_objective=self._record_objective,
        )
        self.trials_run += 1
        if not self.report_trials:
            return "ran"
        reason = trial.user_attrs.get(FAIL_REASON_ATTR)
        value = f"{trial.value:.6g}" if trial.value is not None else "-"
        self.log(
            f"[worker {self.index}] {record.name} trial {trial.number}: {trial.state.name} {value}"
            + (f" ({reason})" if reason else "")
        )
        return "ran"

    def parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run(self) -> int:
        lease = f" (coordinator lease {self.lease_generation})" if self.lease_generation is not None else ""
        self.log(f"[worker {self.index}] joined campaign {self.ledger.campaign} as {self.id}{lease}")
        while True:
            if _termination.requested:
                return 0
            if self.parent_gone():
                self.log(f"[worker {self.index}] coordinator is gone; leaving")
                return 0
            outcome = with_retries(self.step, what="worker step", log=self.log)
            if outcome == "ended":
                return 0
            if outcome == "lease_lost":
                self.log(
                    f"[worker {self.index}] the campaign is now run by another coordinator "
                    f"(a lease newer than {self.lease_generation}); leaving"
                )
                return EXIT_LEASE_LOST
            if outcome == "idle":
                time.sleep(POLL_S)


def wait_for_campaign(storage, campaign: str, url: str, log: Callable[[str], None] = print) -> Ledger:
    """The campaign's ledger once its coordinator has created it (spec written): a worker may start first.

    Waits as long as for a storage outage (HPO_TUI_STORAGE_PATIENCE_S), saying so once; then
    CampaignNotFound naming the storage it looked in.
    """
    patience = storage_patience_s()
    deadline = time.monotonic() + patience
    said = False
    while True:
        try:
            ledger = with_retries(lambda: Ledger(storage, campaign), what="find the campaign", log=log)
            if with_retries(ledger.spec, what="read the campaign", log=log) is not None:
                return ledger
        except CampaignNotFound:
            pass
        if _termination.requested:
            raise Stop()
        if time.monotonic() >= deadline:
            raise CampaignNotFound(
                f"no campaign {campaign!r} in {redact(url)} (waited {patience:g} s for its coordinator to create it)"
            )
        if not said:
            said = True
            log(
                f"no campaign {campaign!r} in {redact(url)} yet; waiting up to {patience:g} s "
                "for its coordinator to create it"
            )
        time.sleep(POLL_S)


class RotatingOutput:
    """This process's stdout and stderr (file descriptors 1 and 2, so C code and child processes too)
    through a pipe into `path`, rotated at `max_bytes` with `backups` older files kept."""

    def __init__(self, path: Path, max_bytes: int = WORKER_LOG_MAX_BYTES, backups: int = WORKER_LOG_BACKUPS):
        self.path, self.max_bytes, self.backups = path, max(1024, max_bytes), backups
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._thread = threading.Thread(target=self._pump, name="worker-log", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        # Signals go to the main thread (SIGALRM must interrupt the objective's sleep there, not wake this one).
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            try:
                chunk = os.read(self._read_end, 65536)
            except OSError:
                return
            if not chunk:
                return
            if self._size + len(chunk) > self.max_bytes and self._size > 0:
                self._rotate()
            self._file.write(chunk)
            self._file.flush()
            self._size += len(chunk)

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            newer = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
            if newer.exists():
                newer.replace(older)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._size = 0

    def close(self) -> None:
        """Put the original descriptors back; the pump drains what is left and stops."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        self._thread.join(timeout=5)
        self._file.close()


def worker_log_max_bytes() -> int:
    try:
        return int(os.environ.get(ENV_WORKER_LOG_BYTES, WORKER_LOG_MAX_BYTES))
    except ValueError:
        return WORKER_LOG_MAX_BYTES


STORAGE_MODULES = ("optuna.storages", "sqlalchemy", "psycopg")


def _inside_storage(frame) -> bool:
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(STORAGE_MODULES):
            return True
        frame = frame.f_back
    return False


def _on_sigterm(signum, frame):
    _termination.requested = True
    if not _termination.interruptible:
        return
    if _inside_storage(frame):  # the objective's report(): ask again once the write is done
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return
    raise Stop()


def _on_sigint(signum, frame):
    note_user_interrupt()  # the user's Ctrl-C, not an objective's KeyboardInterrupt
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.execution.worker")
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV), help=f"storage URL (default: ${STORAGE_ENV})")
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--index", default="0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--runs-root", type=Path)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--lease-generation", type=int, help="the coordinator lease this worker belongs to")
    parser.add_argument("--trial-file", type=Path, help="where the running trial's start is written")
    parser.add_argument("--log-file", type=Path, help="write stdout and stderr here, rotated")
    args = parser.parse_args(argv)
    if not args.storage:
        parser.error(f"--storage or ${STORAGE_ENV} is required")
    output = RotatingOutput(args.log_file, worker_log_max_bytes()) if args.log_file else None
    try:
        return _serve(args)
    finally:
        if output is not None:
            output.close()


def _serve(args) -> int:
    limit_threads(int(os.environ.get(ENV_THREADS, "1")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        log = lambda m: print(m, flush=True)  # noqa: E731
        storage = open_storage(args.storage, retries=args.retries)
        wait_for_campaign(storage, args.campaign, args.storage, log)
        worker = with_retries(
            lambda: Worker(
                storage,
                args.campaign,
                args.index,
                device=args.device,
                runs_root=args.runs_root,
                parent_pid=args.parent_pid,
                log=log,
                lease_generation=args.lease_generation,
                trial_file=args.trial_file,
            ),
            what="join the campaign",
            log=log,
        )
        return worker.run()
    except (Stop, KeyboardInterrupt):
        return 0
    except CampaignNotFound as err:
        print(f"worker: {err}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except StorageUnavailable as err:
        print(f"worker: storage unavailable, stopping: {err}", file=sys.stderr, flush=True)
        return EXIT_STORAGE_UNREACHABLE
    except HpoError as err:
        print(f"worker: {redact(str(err))}", file=sys.stderr, flush=True)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
