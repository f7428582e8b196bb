"""A long-lived worker: runs trials of the campaign's current sprint until the campaign ends.

The same loop serves the coordinator's local worker processes and `hpo-tui worker` on other
hosts: everything it needs (spec, sprint record, trials) comes from the storage.
Run as `python -m engine.worker --storage URL --campaign NAME --index I [--parent-pid P]`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from engine.ledger import CampaignNotFound, Ledger
from engine.objective import load_objective
from engine.spec import CampaignSpec
from engine.sprint import budget_left, open_study
from engine.storage import (
    StorageUnavailable,
    artifact_store,
    open_storage,
    redact,
    run_dir,
    tune_heartbeat,
    with_retries,
)

STORAGE_ENV = "HPO_TUI_STORAGE_URL"  # how a pool hands the URL over: not on the command line, which `ps` shows
from engine.trials import run_trial, worker_id

POLL_S = 0.2
ENDED = ("finished", "stopped", "failed")


class Stop(BaseException):
    """Raised by the SIGTERM handler; a BaseException so no trial records it as its own failure."""


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
    ):
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
            from engine.stages import default_stage_runner_factory as stage_runner_factory
        self.stage_runner = stage_runner_factory(self)
        self.trials_run = 0

    def _study(self, record: dict) -> optuna.Study:
        study = self._studies.get(record["study"])
        if study is None:
            # A restarted worker (same index) or a resumed campaign must not replay its predecessor's
            # sampler seed: that would propose the same parameters again. Fresh sprints keep the index's seed.
            done = self._trials_started(record["study"])
            key = str(self.index) if done == 0 else f"{self.index}:{done}"
            study = open_study(self.spec, self.storage, record, worker_index=zlib.crc32(key.encode()) % 10_000)
            self._studies = {record["study"]: study}  # only the current sprint's study is needed
        return study

    def _trials_started(self, study_name: str) -> int:
        try:
            study_id = self.storage.get_study_id_from_name(study_name)
        except KeyError:
            return 0
        return sum(1 for t in self.storage.get_all_trials(study_id, deepcopy=False) if t.state != TrialState.WAITING)

    def step(self) -> str:
        """Run at most one trial. Returns 'ran', 'idle' or 'ended'."""
        state = self.ledger.state()
        if state["status"] in ENDED:
            return "ended"
        if state.get("paused"):
            return "idle"
        record = self.ledger.sprint(state["sprint"])
        if record is None or record["status"] != "running":
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
        )
        self.trials_run += 1
        reason = trial.user_attrs.get("fail_reason")
        value = f"{trial.value:.6g}" if trial.value is not None else "-"
        self.log(
            f"[worker {self.index}] {record['name']} trial {trial.number}: {trial.state.name} {value}"
            + (f" ({reason})" if reason else "")
        )
        return "ran"

    def parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def run(self) -> int:
        self.log(f"[worker {self.index}] joined campaign {self.ledger.campaign} as {self.id}")
        while True:
            if self.parent_gone():
                self.log(f"[worker {self.index}] coordinator is gone; leaving")
                return 0
            outcome = with_retries(self.step, what="worker step", log=self.log)
            if outcome == "ended":
                return 0
            if outcome == "idle":
                time.sleep(POLL_S)


def _on_sigterm(signum, frame):
    raise Stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.worker")
    parser.add_argument("--storage", default=os.environ.get(STORAGE_ENV), help=f"storage URL (default: ${STORAGE_ENV})")
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--index", default="0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parent-pid", type=int)
    parser.add_argument("--runs-root", type=Path)
    parser.add_argument("--retries", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.storage:
        parser.error(f"--storage or ${STORAGE_ENV} is required")
    limit_threads(int(os.environ.get("HPO_TUI_THREADS", "1")))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        log = lambda m: print(m, flush=True)  # noqa: E731
        storage = open_storage(args.storage, retries=args.retries)
        worker = with_retries(
            lambda: Worker(
                storage,
                args.campaign,
                args.index,
                device=args.device,
                runs_root=args.runs_root,
                parent_pid=args.parent_pid,
                log=log,
            ),
            what="join the campaign",
            log=log,
        )
        return worker.run()
    except (Stop, KeyboardInterrupt):
        return 0
    except CampaignNotFound as err:
        print(f"worker: {err} at {redact(args.storage)}", file=sys.stderr)
        return 2
    except StorageUnavailable as err:
        print(f"worker: storage unavailable, stopping: {err}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
