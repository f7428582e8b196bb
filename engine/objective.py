"""The objective contract: what a user's function receives and must return.

def objective(ctx: TrialContext) -> float:
    lr = ctx.params["lr"]; epochs = ctx.fidelity["epochs"]
    for epoch in range(epochs):
        ...
        ctx.report(val_metric, step=epoch)   # raises TrialPruned when the pruner says so
    ctx.save_artifact("val_probs", probs=probs, labels=labels)
    return val_metric
"""

from __future__ import annotations

import importlib
import io
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from engine.extras import require_for_objective
from engine.store.schema import ARTIFACTS_ATTR, PRUNED_AT_ATTR

TrialPruned = optuna.TrialPruned


class ObjectiveImportError(ImportError):
    pass


class BadObjectiveValue(ValueError):
    """The objective returned something that is not a finite number."""


def load_objective(path: str) -> Callable[[TrialContext], float]:
    module_name, _, func_name = path.partition(":")
    require_for_objective(module_name)  # a shipped workload whose extra is missing: name the extra
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ObjectiveImportError(f"cannot import module {module_name!r}: {type(err).__name__}: {err}") from err
    func = getattr(module, func_name, None)
    if func is None:
        raise ObjectiveImportError(f"module {module_name!r} has no attribute {func_name!r}")
    if not callable(func):
        raise ObjectiveImportError(f"{path!r} is not callable")
    return func


def check_value(value: Any) -> float:
    if value is None:
        raise BadObjectiveValue("objective returned nothing (None)")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise BadObjectiveValue(f"objective returned {type(value).__name__} {value!r:.60}, not a number")
    value = float(value)
    if not math.isfinite(value):
        raise BadObjectiveValue(f"objective returned {value}")
    return value


def _waiting_out_outages(action: Callable[[], Any], what: str) -> Any:
    """A storage write from inside the objective waits for a database outage, rather than fail the trial."""
    from engine.store.storage import with_retries

    return with_retries(action, what=what)


@dataclass
class TrialContext:
    """Everything one trial needs. `trial` is the live Optuna trial (None in dry runs)."""

    params: dict[str, Any]
    fidelity: dict[str, Any]
    settings: dict[str, Any]
    trial_number: int
    sprint: str
    run_dir: Path
    device: str = "cpu"
    trial: optuna.trial.Trial | None = None
    artifact_store: Any = None
    last_step: int | None = field(default=None, init=False)
    stage_runner: Any = None  # engine.cache.stages.StageRunner when the campaign memoizes stages

    def report(self, value: float, step: int) -> None:
        """Record an intermediate value; raises TrialPruned when the pruner stops the trial."""
        value = float(value)
        self.last_step = step
        if self.trial is None:
            return
        if not math.isfinite(value):
            raise BadObjectiveValue(f"intermediate value at step {step} is {value}")
        trial = self.trial
        _waiting_out_outages(lambda: trial.report(value, step), f"report trial {self.trial_number}")
        if _waiting_out_outages(trial.should_prune, f"pruning check of trial {self.trial_number}"):
            self.set_attr(PRUNED_AT_ATTR, {"step": step, "value": value})
            raise TrialPruned(f"pruned at step {step} (value {value:.6g})")

    def set_attr(self, key: str, value: Any) -> None:
        trial = self.trial
        if trial is not None:
            _waiting_out_outages(
                lambda: trial.set_user_attr(key, value), f"attribute {key} of trial {self.trial_number}"
            )

    def save_artifact(self, name: str, **arrays: np.ndarray) -> str | None:
        """Save named arrays (npz) as an Optuna artifact of this trial; returns its id."""
        buffer = io.BytesIO()
        # Any: numpy's stub types **kwds beside the keyword allow_pickle: bool, which a str-keyed dict could name
        named_arrays: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez_compressed(buffer, **named_arrays)
        return self.save_bytes(name, buffer.getvalue(), suffix=".npz")

    def save_bytes(self, name: str, data: bytes, suffix: str = ".bin") -> str | None:
        trial, store = self.trial, self.artifact_store
        if trial is None or store is None:
            return None
        from optuna.artifacts import upload_artifact

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{name}{suffix}"
            path.write_bytes(data)
            artifact_id = _waiting_out_outages(
                lambda: upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial),
                f"artifact {name} of trial {self.trial_number}",
            )
        index = dict(trial.user_attrs.get(ARTIFACTS_ATTR, {}))
        index[name] = artifact_id
        self.set_attr(ARTIFACTS_ATTR, index)
        return artifact_id

    def stage(
        self, name: str, fn: Callable[..., Any], *, depends_on: dict[str, Any], upstream: tuple = (), cache: bool = True
    ):
        """Run a named pipeline stage, memoized by its inputs when the campaign caches stages."""
        if self.stage_runner is None:
            return fn()
        return self.stage_runner.run(self, name, fn, depends_on=depends_on, upstream=upstream, cache=cache)


def load_trial_arrays(artifact_store: Any, artifact_id: str) -> dict[str, np.ndarray]:
    with artifact_store.open_reader(artifact_id) as reader:
        data = reader.read()
    with np.load(io.BytesIO(data)) as npz:
        return {k: npz[k] for k in npz.files}


def to_jsonable(value: Any) -> Any:
    """NumPy scalars (skopt returns them) and tuples into plain JSON types."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
