"""Hugging Face `Trainer` in two lines: report each evaluation to the trial, stop on pruning.

    args = training_args_from_fidelity(ctx, learning_rate=ctx.params["lr"])
    trainer = Trainer(model, args, train_dataset=train_subset(ctx, train), eval_dataset=val,
                      callbacks=[HpoTrainerCallback(ctx)])
    return train_and_evaluate(trainer)  # raises optuna.TrialPruned if the pruner stopped it

`HpoTrainerCallback` reports the evaluation metric (`metric_for_best_model`, or the key given) as
step 0, 1, 2, ... through `ctx.report`. When the pruner says stop, `ctx.report` raises
`TrialPruned`; the callback catches it inside `on_evaluate` and sets
`control.should_training_stop`, so Trainer ends its loop its own way (no exception through it),
and `train_and_evaluate` raises the remembered `TrialPruned` after `trainer.train()` returns.

`training_args_from_fidelity` maps the fidelity knob `epochs` to `num_train_epochs` (one
evaluation per epoch), takes trial parameters named like `TrainingArguments` fields
(`learning_rate`, `weight_decay`, `per_device_train_batch_size`, ...), and keeps Trainer quiet
(no progress bars, no reporting integrations, nothing saved). `train_subset` takes the knob
`train_fraction` of a training set, the same rows for every trial.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import optuna
import transformers
from torch.utils.data import Subset
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from engine.objective import TrialContext

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

_ARG_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}


class HpoTrainerCallback(TrainerCallback):
    """Reports each evaluation's metric to the trial; stops training (Trainer's own way) when pruned."""

    def __init__(self, ctx: TrialContext, metric: str | None = None):
        self.ctx = ctx
        self.metric = metric  # default: the TrainingArguments' metric_for_best_model, else "loss"
        self.reported: list[tuple[int, float]] = []  # (step, value) in order
        self.pruned: optuna.TrialPruned | None = None

    def metric_key(self, args: TrainingArguments, metrics: dict[str, float]) -> str:
        name = self.metric or args.metric_for_best_model or "loss"
        for key in (name, f"eval_{name}"):
            if key in metrics:
                return key
        raise KeyError(f"the evaluation gave no metric {name!r} (it gave {', '.join(sorted(metrics))})")

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> TrainerControl:
        if self.pruned is not None or not metrics:
            return control
        value = float(metrics[self.metric_key(args, metrics)])
        step = len(self.reported)
        self.reported.append((step, value))
        try:
            self.ctx.report(value, step=step)
        except optuna.TrialPruned as pruned:
            self.pruned = pruned
            control.should_training_stop = True
        return control

    @property
    def last_value(self) -> float | None:
        return self.reported[-1][1] if self.reported else None

    def raise_if_pruned(self) -> None:
        if self.pruned is not None:
            raise self.pruned


def training_args_from_fidelity(ctx: TrialContext, **overrides: Any) -> TrainingArguments:
    """TrainingArguments for this trial: epochs from the fidelity, matching trial parameters, quiet."""
    epochs = ctx.fidelity.get("epochs", 1)
    values: dict[str, Any] = {
        "output_dir": str(ctx.run_dir / "trainer" / f"{ctx.sprint}-trial-{ctx.trial_number}"),
        "num_train_epochs": epochs,
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "log_level": "error",
        "seed": int(ctx.settings.get("seed", 0)),
        "use_cpu": ctx.device == "cpu",
        "dataloader_num_workers": 0,
    }
    values.update({name: value for name, value in ctx.params.items() if name in _ARG_FIELDS})
    values.update(overrides)
    unknown = sorted(set(overrides) - _ARG_FIELDS)
    if unknown:
        raise TypeError(f"TrainingArguments has no field {', '.join(unknown)}")
    return TrainingArguments(**values)


def train_subset(ctx: TrialContext, dataset: Any, *, seed: int | None = None) -> Any:
    """The fidelity's `train_fraction` of `dataset` (at least one row), the same rows in every trial.

    Works on a `datasets.Dataset` (`select`), a torch `Dataset` (a `Subset`) or a list.
    """
    fraction = float(ctx.fidelity.get("train_fraction", 1.0))
    size = len(dataset)
    if fraction >= 1.0:
        return dataset
    count = max(1, int(math.ceil(fraction * size)))
    order = list(range(size))
    random.Random(int(ctx.settings.get("seed", 0)) if seed is None else seed).shuffle(order)
    rows = sorted(order[:count])
    if hasattr(dataset, "select"):
        return dataset.select(rows)
    if isinstance(dataset, list):
        return [dataset[i] for i in rows]

    return Subset(dataset, rows)


def hpo_callback(trainer: Trainer) -> HpoTrainerCallback:
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, HpoTrainerCallback):
            return callback
    raise ValueError("the Trainer has no HpoTrainerCallback: pass callbacks=[HpoTrainerCallback(ctx)]")


def train_and_evaluate(trainer: Trainer) -> float:
    """`trainer.train()`, then raise TrialPruned if the pruner stopped it, else the last metric reported."""
    callback = hpo_callback(trainer)
    # Trainer prints its logs to stdout when progress bars are off: the engine's output is its own.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.train()
    callback.raise_if_pruned()
    if callback.last_value is None:  # evaluation was not per epoch: evaluate once at the end
        trainer.evaluate()
        callback.raise_if_pruned()
    if callback.last_value is None:
        raise RuntimeError("the Trainer never evaluated: give it an eval_dataset")
    return callback.last_value
