"""Running one trial: ask, build the context, call the objective, record the outcome and its reason."""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from engine.objective import BadObjectiveValue, TrialContext, check_value
from engine.search.space import Space, distributions
from engine.store.optuna_internals import (
    forget_cached_trials,
    pop_waiting_trial_id,
    storage_trial_id,
    study_id,
    study_storage,
)
from engine.store.records import SprintRecord
from engine.store.schema import (
    ASK_TOKEN_ATTR,
    COST_ATTR,
    DURATION_ATTR,
    FAIL_KIND_ATTR,
    FAIL_REASON_ATTR,
    RETRIED_ATTR,
    RETRY_HISTORY_ATTR,
    RETRY_OF_ATTR,
    SAMPLE_S_ATTR,
    WORKER_ATTR,
)

RETRY_ATTR = RETRY_OF_ATTR  # the older name


class TrialTimeout(Exception):
    pass


# Set by a SIGINT handler before it raises KeyboardInterrupt (engine.cli.install_stop_signals, the
# worker's): that one is the user's Ctrl-C and stops the process. A KeyboardInterrupt or SystemExit
# that the objective raises itself only fails its trial.
_user_interrupt = threading.Event()


def note_user_interrupt() -> None:
    _user_interrupt.set()


def user_interrupted() -> bool:
    return _user_interrupt.is_set()


def describe_exit(err: BaseException) -> str:
    """'objective raised SystemExit(3)', 'objective raised KeyboardInterrupt'."""
    shown = repr(err) if err.args else type(err).__name__
    return f"objective raised {shown}"[:500]


def timeout_reason(timeout_s: float, elapsed_s: float, how: str) -> str:
    """'exceeded timeout_s=3 (killed after 8 s)': the reason a trial past its time limit fails with."""
    return f"exceeded timeout_s={timeout_s:g} ({how} after {elapsed_s:.0f} s)"


def worker_id(index: int | str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{index}"


def suggest(trial: optuna.Trial, space: Space, tuned: list[str]) -> dict[str, Any]:
    return suggest_distributions(trial, distributions(space, tuned))


def suggest_distributions(
    trial: optuna.Trial, dists: dict[str, optuna.distributions.BaseDistribution]
) -> dict[str, Any]:
    """Plain Optuna suggest calls, one per distribution."""
    params: dict[str, Any] = {}
    for name, dist in dists.items():
        if isinstance(dist, optuna.distributions.FloatDistribution):
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
        elif isinstance(dist, optuna.distributions.IntDistribution):
            params[name] = trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        elif isinstance(dist, optuna.distributions.CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, dist.choices)
        else:
            raise TypeError(f"parameter {name}: cannot suggest from a {type(dist).__name__}")
    return params


def trial_cost(fidelity: dict[str, Any], full: dict[str, Any], cost_knobs: list[str], steps_run: int | None) -> float:
    """Fidelity-weighted cost: the product of cost knobs relative to the highest level.

    A pruned trial costs only the epochs it ran.
    """
    cost = 1.0
    for knob in cost_knobs:
        value = float(fidelity[knob])
        if knob == "epochs" and steps_run is not None:
            value = min(value, steps_run)
        cost *= value / float(full[knob])
    return cost


@contextmanager
def time_limit(seconds: float | None):
    """Raise TrialTimeout in the main thread after `seconds` (SIGALRM; no-op off the main thread)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expire(signum, frame):
        raise TrialTimeout(f"exceeded the trial time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe_failure(err: BaseException) -> str:
    name = type(err).__name__
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, MemoryError) or "out of memory" in text.lower() or name == "OutOfMemoryError":
        return f"out of memory: {name}: {text}"[:500]
    if isinstance(err, (BadObjectiveValue, TrialTimeout)):
        return text[:500]
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
    return f"{name}: {text}{where}"[:500]


# fail_kind user attribute: why a trial failed. The first four come from the objective itself,
# the last two from the engine when a worker disappeared (its trial may be retried: user attr `retried`).
FAIL_KINDS = ("raised", "bad_value", "timeout", "oom", "worker_died", "stale")


def failure_kind(err: BaseException) -> str:
    text = str(err).lower()
    if isinstance(err, MemoryError) or "out of memory" in text or type(err).__name__ == "OutOfMemoryError":
        return "oom"
    if isinstance(err, TrialTimeout):
        return "timeout"
    if isinstance(err, BadObjectiveValue):
        return "bad_value"
    return "raised"


class Heartbeat:
    """Records heartbeats for a running trial on RDB storages, so a dead worker is detected."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int):
        self._storage, self._trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread = None
        # study_storage(study) is Optuna's _CachedStorage around the RDBStorage: ask it, not its attributes.
        interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
        if interval and hasattr(storage, "record_heartbeat"):
            self._interval = interval
            storage.record_heartbeat(trial_id)
            self._thread = threading.Thread(target=self._beat, daemon=True, name="heartbeat")
            self._thread.start()

    def _beat(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())  # SIGALRM is the trial's main thread's
        while not self._stop.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:
                pass

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def ask_through_outage(study: optuna.Study, log: Callable[[str], None] = print) -> optuna.Trial:
    """`study.ask()` that a database outage cannot orphan a trial with.

    Optuna's ask() writes the new trial, then reads it back; a connection cut between the two leaves a
    RUNNING trial that nobody runs (the coordinator fails it after engine.execution.pool.ABANDONED_AFTER_S).
    Here a new trial is written in one transaction with a token of this call, so a retry
    after the outage first looks for the token and takes up the trial it finds. An enqueued trial (seed,
    retry, probe) is popped as Optuna pops it: a pop cut off mid-commit is still left to the coordinator.
    """
    from engine.store.storage import with_retries

    storage, token, tries = study_storage(study), uuid.uuid4().hex, 0

    def claim() -> int:
        nonlocal tries
        tries += 1
        if tries > 1:  # did the write the outage cut off reach the database?
            for trial in storage.get_all_trials(study_id(study), deepcopy=False, states=(TrialState.RUNNING,)):
                if trial.system_attrs.get(ASK_TOKEN_ATTR) == token:
                    log(f"trial {trial.number}: created just before the outage; this worker takes it up")
                    return storage_trial_id(trial)
        forget_cached_trials(study)
        waiting = pop_waiting_trial_id(study)
        if waiting is not None:
            return waiting
        # The worker's name is written after the heartbeat starts (run_trial): a RUNNING trial without
        # it is one the coordinator's abandoned-trial check may fail.
        template = optuna.trial.create_trial(state=TrialState.RUNNING, system_attrs={ASK_TOKEN_ATTR: token})
        return storage.create_new_trial(study_id(study), template_trial=template)

    trial_id = with_retries(claim, what="ask a trial", log=log)
    return with_retries(lambda: optuna.Trial(study, trial_id), what="read the new trial back", log=log)


def run_trial(
    study: optuna.Study,
    *,
    objective: Callable[[TrialContext], Any],
    sprint: SprintRecord,
    settings: dict[str, Any],
    full_fidelity: dict[str, Any],
    cost_knobs: list[str],
    run_dir,
    artifact_store,
    worker: str,
    device: str = "cpu",
    timeout_s: float | None = None,
    stage_runner=None,
    log: Callable[[str], None] = print,
    on_objective: Callable[[optuna.trial.Trial | None, float | None], None] | None = None,
) -> FrozenTrial:
    """Ask one trial of `study`, run the objective, tell the outcome. Never raises for a bad trial.

    Storage writes after ask() wait for a database outage (engine.store.storage.with_retries) rather than
    lose the trial's result; so does ask() (ask_through_outage). A KeyboardInterrupt
    or SystemExit from the objective fails the trial ("objective raised SystemExit(3)"); the user's
    own Ctrl-C (note_user_interrupt) still propagates. An objective that outlived `timeout_s`
    (it caught the TrialTimeout) fails as `timeout` whatever it returned. `on_objective(trial, t)`
    is called as the objective starts (t: time.time()) and with (None, None) when it ended: a
    worker pool kills a worker whose objective runs past timeout_s plus a grace (engine.execution.pool).
    """
    from engine.store.storage import with_retries

    trial = ask_through_outage(study, log)
    heartbeat = with_retries(
        lambda: Heartbeat(study_storage(study), storage_trial_id(trial)), what="start heartbeat", log=log
    )
    started = time.perf_counter()
    with_retries(lambda: trial.set_user_attr(WORKER_ATTR, worker), what=f"claim trial {trial.number}", log=log)
    ctx = None
    sampled = None  # the sampler's time (relative sampling runs at the first suggest) is not trial cost
    objective_started = None
    try:
        params = with_retries(
            lambda: suggest(trial, dict(sprint.space), list(sprint.tuned)),
            what=f"suggest trial {trial.number}",
            log=log,
        )
        sampled = time.perf_counter()
        ctx = TrialContext(
            params={**sprint.fixed, **params},
            fidelity=dict(sprint.fidelity),
            settings=dict(settings),
            trial_number=trial.number,
            sprint=sprint.name,
            run_dir=run_dir,
            device=device,
            trial=trial,
            artifact_store=artifact_store,
            stage_runner=stage_runner,
        )
        if on_objective is not None:
            on_objective(trial, time.time())
        objective_started = time.perf_counter()
        with time_limit(timeout_s):
            value = check_value(objective(ctx))
        state, reason = TrialState.COMPLETE, None
    except optuna.TrialPruned:
        value, state, reason = None, TrialState.PRUNED, None
    except (Exception, MemoryError) as err:
        value, state, reason = None, TrialState.FAIL, describe_failure(err)
        kind = failure_kind(err)
    except (KeyboardInterrupt, SystemExit) as err:
        if isinstance(err, KeyboardInterrupt) and user_interrupted():
            raise
        value, state, reason, kind = None, TrialState.FAIL, describe_exit(err), "raised"
        log(f"trial {trial.number}: {reason}; the trial failed, this process carries on")
    finally:
        heartbeat.stop()
        if on_objective is not None:
            on_objective(None, None)
    if objective_started is not None and timeout_s and state != TrialState.FAIL:
        elapsed = time.perf_counter() - objective_started
        if elapsed > timeout_s:  # the objective caught its TrialTimeout and went on
            value, state, kind = None, TrialState.FAIL, "timeout"
            reason = timeout_reason(timeout_s, elapsed, "returned")
    duration = time.perf_counter() - (sampled or started)
    sample_s = sampled - started if sampled is not None else None
    steps = ctx.last_step + 1 if ctx is not None and ctx.last_step is not None else None
    cost = trial_cost(dict(sprint.fidelity), full_fidelity, cost_knobs, steps if state == TrialState.PRUNED else None)

    def finish() -> FrozenTrial:
        trial.set_user_attr(DURATION_ATTR, round(duration, 4))
        if sample_s is not None:
            trial.set_user_attr(SAMPLE_S_ATTR, round(sample_s, 4))
        trial.set_user_attr(COST_ATTR, cost)
        if reason:
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            trial.set_user_attr(FAIL_KIND_ATTR, kind)
        if state == TrialState.COMPLETE:
            return study.tell(trial, value, skip_if_finished=True)
        return study.tell(trial, state=state, skip_if_finished=True)

    try:
        return with_retries(finish, what=f"record trial {trial.number}", log=log)
    except optuna.exceptions.UpdateFinishedTrialError:
        # The coordinator failed it as stale meanwhile (no heartbeat while this worker was cut off)
        # and queued a retry: the stored outcome stands, this late result is dropped.
        log(f"trial {trial.number} was already failed as stale by the coordinator; its late result is dropped")
        return study_storage(study).get_trial(storage_trial_id(trial))


def fail_and_retry(
    study: optuna.Study, trial: FrozenTrial, reason: str, max_retry: int, kind: str = "worker_died"
) -> bool:
    """Mark a RUNNING trial failed with `reason`; enqueue it again unless retried `max_retry` times.

    Returns True when a retry was enqueued.
    """
    storage = study_storage(study)
    trial_id = storage_trial_id(trial)
    history = list(trial.system_attrs.get(RETRY_HISTORY_ATTR, [])) + [trial.number]
    will_retry = len(history) <= max_retry
    try:
        storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
        storage.set_trial_user_attr(trial_id, FAIL_KIND_ATTR, kind)
        storage.set_trial_user_attr(trial_id, RETRIED_ATTR, will_retry)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):  # finished by someone else meanwhile
        return False
    if will_retry:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                system_attrs={
                    **{k: v for k, v in trial.system_attrs.items() if k != ASK_TOKEN_ATTR},
                    RETRY_ATTR: trial.number,
                    RETRY_HISTORY_ATTR: history,
                    "fixed_params": trial.params,
                },
            )
        )
    return will_retry


def counted_trials(trials: list[FrozenTrial]) -> int:
    """Trials that count against a sprint's budget: a failed trial that was re-run counts once."""
    retried = {t.system_attrs.get(RETRY_ATTR) for t in trials} - {None}
    return sum(1 for t in trials if t.number not in retried)


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
