"""Checkpoint inheritance across trials and sprints (fidelity raise).

A training run's state after epoch e is determined by its *lineage* — the data, every training
parameter, the seed — and by the learning-rate factors applied in the steps before e (the
*trajectory*). Two trials that share both reach the same state at e, whatever they do afterwards: a
trial that trains longer than an earlier one (a full-cycle trial seeded from the warm-up sprint, the
same schedule) can start from the earlier trial's checkpoint instead of from scratch.

Checkpoints are stage-cache entries (engine.cache.stages) keyed by (name, lineage, epoch, trajectory up to
epoch, upstream stage keys, campaign salt), so they share the cache's integrity checks, size limit
and pins. Keying on the trajectory rather than on schedule parameters is what keeps this sound: with
a warm-up of W steps, any parameter that only shapes the schedule after W (hold, decay, final ratio)
does not enter the key of a checkpoint taken before W; one that does (the schedule's length, the
warm-up share) changes the trajectory and misses.

    ckpt = Checkpoints(ctx, "train", lineage={...}, trajectory=lambda epoch: lr_factors_before(epoch))
    found = ckpt.latest(upto=epochs)            # None, or Inherited(epoch, state, ...)
    ...
    ckpt.save(epoch, state)                     # at the epochs worth inheriting from

The trial records what it inherited in the user attribute `inherited`:
    {"epoch": 2, "key": "...", "from_sprint": "warmup", "from_trial": 17, "saved_s": 41.2}
and the keys it saved in `checkpoint_keys` (which pins them while the trial is among the best).
Without a stage cache (`[cache] enabled = false`, or no runner) nothing is saved or inherited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from engine.cache.stages import INHERITED_ATTR, StageCache, digest, stage_key
from engine.store.schema import CHECKPOINT_KEYS_ATTR


@dataclass
class Inherited:
    epoch: int
    state: Any
    key: str
    meta: dict[str, Any]
    load_s: float

    @property
    def compute_s(self) -> float:
        return float(self.meta.get("compute_s", 0.0))


class Checkpoints:
    def __init__(
        self,
        ctx,
        name: str,
        *,
        lineage: dict[str, Any],
        trajectory: Callable[[int], Any] | None = None,
        upstream: Iterable[str] = (),
    ):
        self.ctx = ctx
        self.name = name
        self.runner = getattr(ctx, "stage_runner", None)
        self.cache: StageCache | None = getattr(self.runner, "cache", None)
        self.lineage = lineage
        self.trajectory = trajectory
        self._upstream_keys = self.runner.upstream_keys(ctx, tuple(upstream)) if self.runner is not None else []
        self._salt = self.runner.trial_salt(ctx) if self.runner is not None else ""
        self._base_s = 0.0  # compute seconds already in the state we started from
        self._started = time.perf_counter()
        self.saved: list[str] = []
        self.inherited: Inherited | None = None

    @property
    def enabled(self) -> bool:
        return self.cache is not None

    def key(self, epoch: int) -> str:
        path = digest(self.trajectory(epoch)) if self.trajectory is not None else None
        return stage_key(
            f"checkpoint:{self.name}",
            {"lineage": self.lineage, "epoch": epoch, "trajectory": path},
            self._upstream_keys,
            self._salt,
        )

    def latest(self, upto: int, at_least: int = 1) -> Inherited | None:
        """The furthest checkpoint of this lineage at an epoch in [at_least, upto], loaded and verified."""
        if self.cache is None:  # not enabled
            return None
        for epoch in range(upto, at_least - 1, -1):
            key = self.key(epoch)
            if not self.cache.has(key):
                continue
            started = time.perf_counter()
            status, state, meta = self.cache.get(key)
            if status != "hit" or meta is None:  # a hit always carries its meta
                if status == "corrupt" and self.runner is not None:
                    self.runner.log(f"checkpoint {self.name}@{epoch} {key[:12]} failed its integrity check; ignored")
                continue
            found = Inherited(epoch, state, key, meta, time.perf_counter() - started)
            self.inherited = found
            self._base_s = found.compute_s
            self._started = time.perf_counter()
            producer = meta.get("producer", {})
            self.ctx.set_attr(
                INHERITED_ATTR,
                {
                    "name": self.name,
                    "epoch": epoch,
                    "key": key,
                    "from_sprint": producer.get("sprint"),
                    "from_trial": producer.get("trial"),
                    "saved_s": round(max(0.0, found.compute_s - found.load_s), 4),
                },
            )
            return found
        return None

    def save(self, epoch: int, state: Any) -> str | None:
        """Store the state reached after `epoch`; its compute time counts from the trial's start."""
        if self.cache is None:  # not enabled
            return None
        key = self.key(epoch)
        compute_s = self._base_s + (time.perf_counter() - self._started)
        with self.cache.key_lock(key):
            if not self.cache.has(key):
                producer = {
                    "sprint": getattr(self.ctx, "sprint", None),
                    "trial": getattr(self.ctx, "trial_number", None),
                    "epoch": epoch,
                }
                self.cache.put(key, state, stage=f"checkpoint:{self.name}", compute_s=compute_s, producer=producer)
        self.saved.append(key)
        self.ctx.set_attr(CHECKPOINT_KEYS_ATTR, list(self.saved))
        if self.runner is not None:
            self.runner.enforce_limit(self.ctx)
        return key

    def record(
        self, stage: str, *, seconds: float, hit: bool, key: str | None = None, params: Iterable[str] = ()
    ) -> None:
        """Record a training segment as a stage of the trial (cost, hit), for the console and eeipu."""
        if self.runner is None:
            return
        # The time an inherited checkpoint saved is counted once, in the trial's `inherited` attribute.
        self.runner.record(
            self.ctx,
            stage,
            seconds=round(seconds, 6),
            hit=hit,
            cached=bool(key) and self.enabled,
            key=key,
            params=sorted(params),
            inherited=True if hit else None,
        )


# --------------------------------------------------------------------------------------- torch state


def to_cpu(value: Any) -> Any:
    """Detach tensors to CPU (recursively) so a checkpoint loads on any worker."""
    import torch  # an optional extra: status/approve/attach must run without it (tests/test_packaging.py)

    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def training_state(model, optimizer, scheduler, numpy_rng=None, **extra: Any) -> dict[str, Any]:
    """Everything that decides how training continues: weights, optimizer moments, schedule position, RNGs."""
    import torch  # an optional extra: status/approve/attach must run without it (tests/test_packaging.py)

    state = {
        "model": to_cpu(model.state_dict()),
        "optimizer": to_cpu(optimizer.state_dict()),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": [s.cpu() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else None,
        "numpy_rng": numpy_rng.bit_generator.state if numpy_rng is not None else None,
    }
    state.update(extra)
    return state


def restore_training_state(state: dict[str, Any], model, optimizer, scheduler, numpy_rng=None) -> None:
    import torch  # an optional extra: status/approve/attach must run without it (tests/test_packaging.py)

    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if numpy_rng is not None and state.get("numpy_rng") is not None:
        numpy_rng.bit_generator.state = state["numpy_rng"]
