"""Checkpoint inheritance and pipeline stages for the jerex objective (engine.cache.checkpoints, engine.cache.stages).

The objective calls three hooks around its epoch loop:

    resume = TrainingResume(ctx, hp, fidelity, settings, train_features, steps_per_epoch, epochs_to_run)
    start = resume.restore(model, optimizer, scheduler, order_rng, history)      # epochs inherited
    if start:
        val = evaluate(...); resume.report_inherited(history, val.relation_f1)
    for epoch in range(start + 1, epochs_to_run + 1):
        ...train, evaluate, append to history...
        resume.epoch_done(epoch, model, optimizer, scheduler, order_rng, history)
        ctx.report(...)

**Lineage** (what must match to inherit): every hyperparameter except the schedule-shape ones
(pct_start, hold_pct, decay, final_lr_ratio), a digest of the featurized training data (corpus,
train_fraction, max_length, tokenizer), the seed and encoder settings. The schedule enters through the
**trajectory**: the LR factors of every optimizer step before the checkpoint's epoch (or "constant"
with the scheduler off). So a full-cycle trial (warmup_only = false) of the same configuration, the
same `epochs` and the same data resumes from the end-of-warm-up checkpoint of a warm-up-sprint trial
(warmup_only = true), and trials that differ only in what happens after the warm-up (hold, decay,
final ratio) share the pure warm-up prefix.

**Checkpoints saved**: at the last epoch boundary inside the pure linear warm-up (shared across
decay shapes), at ceil(pct_start x epochs) (the warm-up sprint's end), and at the trial's last epoch.

**Stages recorded** (trial attribute `stages`, for the console and the eeipu sampler): "warmup"
(epochs 1..W, W the first checkpoint epoch above) and "train" (the rest), each with its seconds,
whether it was inherited (hit), and the parameters it depends on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from engine.cache.checkpoints import Checkpoints, restore_training_state, training_state
from engine.workloads.jerex.training import Hyperparameters, lr_factor, warmup_epochs

SCHEDULE_PARAMS = ("pct_start", "hold_pct", "decay", "final_lr_ratio")
POST_WARMUP_PARAMS = ("hold_pct", "decay", "final_lr_ratio")  # shape the LR only after the warm-up steps
LINEAGE_SETTINGS = ("encoder", "data_dir", "corpus_seed", "n_train", "n_val", "n_test", "seed")


def features_digest(features: Sequence[Any]) -> str:
    """Everything training sees of the data: sub-token ids, tags, spans, pairs and labels."""
    h = hashlib.sha256()
    for f in features:
        h.update(repr((f.input_ids, f.word_starts, f.tag_ids, f.entity_spans, f.pairs)).encode())
        h.update(f.pair_labels.tobytes())
    return h.hexdigest()


class TrainingResume:
    def __init__(
        self,
        ctx,
        hp: Hyperparameters,
        fidelity,
        settings,
        train_features: Sequence[Any],
        steps_per_epoch: int,
        epochs_to_run: int,
        *,
        val_fingerprint: Any = None,
        data_digest: str | None = None,
    ):
        self.ctx = ctx
        self.hp = hp
        self.fidelity = fidelity
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * fidelity.epochs
        self.epochs_to_run = epochs_to_run
        self.val_fingerprint = val_fingerprint if val_fingerprint is not None else fidelity.val_fraction
        lineage = {
            "hp": {f.name: getattr(hp, f.name) for f in fields(hp) if f.name not in SCHEDULE_PARAMS},
            "data": data_digest or features_digest(train_features),  # given when the featurized data was cached
            "settings": {k: getattr(settings, k, None) for k in LINEAGE_SETTINGS},
            "max_length": fidelity.max_length,
            "train_fraction": fidelity.train_fraction,
        }
        self._factors: list[float] = []
        self.ckpt = Checkpoints(ctx, "jerex-train", lineage=lineage, trajectory=self._trajectory)
        warmup_steps = round(hp.pct_start * self.total_steps) if fidelity.scheduler else 0
        pure = warmup_steps // steps_per_epoch if fidelity.scheduler else 0
        end_of_warmup = warmup_epochs(hp.pct_start, fidelity.epochs)
        self.segment_end = min(pure if pure >= 1 else end_of_warmup, epochs_to_run)
        self.save_epochs = sorted({e for e in (pure, end_of_warmup, epochs_to_run) if 1 <= e <= epochs_to_run})
        tuned = set(ctx.params)
        hp_names = {f.name for f in fields(hp)}
        all_params = sorted(tuned & hp_names)
        shaped_later = set(POST_WARMUP_PARAMS) if pure >= 1 and self.segment_end <= pure else set()
        self.segment_params = {"warmup": sorted(set(all_params) - shaped_later), "train": all_params}
        self.start = 0
        self._done = 0
        self._same_eval = False
        self._keys: dict[int, str] = {}
        self._epoch_started = time.perf_counter()
        self._seconds = {"warmup": 0.0, "train": 0.0}

    def _trajectory(self, epoch: int) -> Any:
        """The LR factor of every optimizer step before the end of `epoch` (the same function the scheduler uses)."""
        if not self.fidelity.scheduler:
            return "constant"
        steps = epoch * self.steps_per_epoch
        if len(self._factors) < steps:
            hp = self.hp
            self._factors = [
                round(lr_factor(s, self.total_steps, hp.pct_start, hp.hold_pct, hp.decay, hp.final_lr_ratio), 12)
                for s in range(steps)
            ]
        return self._factors[:steps]

    # hooks ---------------------------------------------------------------------------------
    def restore(self, model, optimizer, scheduler, order_rng, history: list) -> int:
        """Load the furthest checkpoint of this lineage (if any); returns the epochs it covers."""
        started = time.perf_counter()
        found = self.ckpt.latest(upto=self.epochs_to_run)
        if found is not None:
            restore_training_state(found.state, model, optimizer, scheduler, order_rng)
            self._same_eval = found.state.get("val_fingerprint") == self.val_fingerprint
            if self._same_eval:
                history.extend({**row, "inherited": True} for row in found.state.get("history", []))
            self.start = self._done = found.epoch
            load_s = time.perf_counter() - started
            for segment in ("warmup", "train"):
                if self.start >= self._end(segment):
                    self._seconds[segment] = load_s
                    self._record(segment)
        self._epoch_started = time.perf_counter()
        return self.start

    def report_inherited(self, history: list, val_f1: float) -> None:
        """Re-report the inherited epochs (pruners compare per step); `val_f1` is the restored model's."""
        if not self.start:
            return
        if self._same_eval:
            for row in history:
                if row.get("inherited") and row["epoch"] < self.start:
                    self.ctx.report(row["relation_micro_f1"], step=row["epoch"])
        self.ctx.report(val_f1, step=self.start)

    def epoch_done(self, epoch: int, model, optimizer, scheduler, order_rng, history: list) -> None:
        """After an epoch's training and evaluation (before reporting it): checkpoint, record the stage."""
        segment = "warmup" if epoch <= self.segment_end else "train"
        self._seconds[segment] += time.perf_counter() - self._epoch_started
        self._done = epoch
        if epoch in self.save_epochs and self.ckpt.enabled:
            state = training_state(
                model,
                optimizer,
                scheduler,
                order_rng,
                history=[{k: v for k, v in row.items() if k != "inherited"} for row in history],
                val_fingerprint=self.val_fingerprint,
            )
            self.ckpt.save(epoch, state)
        self._record(segment)
        self._epoch_started = time.perf_counter()  # checkpoint writing is not training time

    # stage records -----------------------------------------------------------------------
    def _end(self, segment: str) -> int:
        return self.segment_end if segment == "warmup" else self.epochs_to_run

    def _key(self, epoch: int) -> str:
        if epoch not in self._keys:
            self._keys[epoch] = self.ckpt.key(epoch)
        return self._keys[epoch]

    def _record(self, segment: str) -> None:
        """The "warmup" (epochs 1..segment_end) and "train" (the rest) segments as stages of the trial."""
        end = self._end(segment)
        if segment == "train" and end <= self.segment_end:
            return
        reached = self._done >= end
        self.ckpt.record(
            segment,
            seconds=self._seconds[segment],
            hit=self.start >= end,
            key=self._key(end) if self.ckpt.enabled and reached else None,
            params=self.segment_params[segment],
        )
