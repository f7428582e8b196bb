"""Memoized pipeline stages: a content-addressed cache in the campaign's run directory.

An objective splits its work into named stages (prepare data, train, evaluate, ...):

    data = ctx.stage("data", lambda: build(n), depends_on={"n": n})
    model = ctx.stage("train", lambda: fit(data, lr), depends_on={"lr": lr}, upstream=("data",))

A stage's **key** is the SHA-256 of its name, the values it depends on (canonical JSON), the keys of
its upstream stages in this trial, and a salt (the campaign's `[cache] salt`, the objective's import
path and settings, and the stage function's bytecode). Identical inputs hit the cache; a change in any
upstream parameter changes the upstream key and so misses every stage downstream of it.

Entries live in `<run dir>/cache/entries/<k[:2]>/<key>.bin` (the pickled result) and `<key>.json`
(its SHA-256, size, producer and compute time). Writes go to a temporary file and `os.replace`, so
another worker process never sees half an entry; a per-key `flock` makes a second worker wait for the
first one computing the same key, then hit. Every read checks the payload's hash: a corrupted entry is
deleted and recomputed, never used. Past `max_bytes`, least-recently-used entries go first, but never
an entry pinned by the best configurations of the campaign's sprints (top `pin_top` of each) or by a
running trial.

Opt-out: `ctx.stage(..., cache=False)` or a function marked with `@nondeterministic` runs every time;
its key is salted with a random nonce, so nothing downstream of it hits either.

Each trial records its stages in the user attribute `stages`:
    {"train": {"order": 1, "seconds": 12.3, "hit": false, "cached": true, "key": "ab12...",
               "params": ["lr"], "saved_s": 0.0, "bytes": 1234, "gpu_s": 11.9}}
(`saved_s`, on a hit: the compute time the entry cost when it was made, less the load time.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import pickle
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from engine.cache.stage_cache import FORMAT, StageCache
from engine.store.optuna_internals import study_storage
from engine.store.schema import CHECKPOINT_KEYS_ATTR, INHERITED_ATTR, STAGES_ATTR

NONDETERMINISTIC_FLAG = "__hpo_nondeterministic__"


class StageKeyError(TypeError):
    """A depends_on value that cannot be turned into a stable key."""


class StageError(ValueError):
    """A stage used wrongly (unknown upstream stage, a name used twice with different inputs, ...)."""


def nondeterministic(fn: Callable) -> Callable:
    """Mark a stage function whose result must never be reused (random augmentation, timing, ...)."""
    setattr(fn, NONDETERMINISTIC_FLAG, True)
    return fn


# --------------------------------------------------------------------------------------- keys


def canonical(value: Any) -> Any:
    """A JSON-able form that is equal exactly when the inputs are (floats keep every bit)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"f": value.hex()} if math.isfinite(value) else {"f": repr(value)}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy scalar
        return canonical(value.item())
    if isinstance(value, Path):
        return {"path": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"sha256": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, dict):
        return {"d": [[canonical(k), canonical(v)] for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))]}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"set": sorted((canonical(v) for v in value), key=repr)}
    if hasattr(value, "tobytes") and hasattr(value, "dtype"):  # NumPy array
        return {
            "array": str(value.dtype),
            "shape": list(value.shape),
            "sha256": hashlib.sha256(value.tobytes()).hexdigest(),
        }
    raise StageKeyError(
        f"cannot key a stage on {type(value).__name__} {value!r:.60}: use numbers, strings, "
        "lists, dicts, paths, bytes or arrays (or a digest of the object)"
    )


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(canonical(value), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stage_key(name: str, depends_on: dict[str, Any], upstream_keys: Iterable[str] = (), salt: str = "") -> str:
    return digest(
        {"format": FORMAT, "stage": name, "depends_on": depends_on, "upstream": list(upstream_keys), "salt": salt}
    )


def code_salt(fn: Callable) -> str:
    """The stage function's own bytecode and constants: editing the stage body misses old entries."""
    target = getattr(fn, "func", fn)  # functools.partial
    code = getattr(target, "__code__", None)
    if code is None:
        code = getattr(getattr(target, "__call__", None), "__code__", None)
    if code is None:
        return getattr(target, "__qualname__", type(target).__qualname__)
    consts = [c for c in code.co_consts if isinstance(c, (str, int, float, bytes, type(None)))]
    return hashlib.sha256(code.co_code + repr((code.co_name, consts, sys.version_info[:2])).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------- runner


class _GpuTimer:
    """GPU time of a stage on CUDA (torch events), None elsewhere."""

    def __init__(self, device: str):
        torch = sys.modules.get("torch")
        self._on = bool(torch is not None and str(device).startswith("cuda") and torch.cuda.is_available())
        if torch is not None and self._on:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._start.record()

    def stop(self) -> float | None:
        if not self._on:
            return None
        self._end.record()
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1000.0


class StageRunner:
    """Runs a trial's stages through the cache (or, with `cache=None`, only times and records them)."""

    def __init__(
        self, cache: StageCache | None, *, salt: str = "", pin_top: int = 5, log: Callable[[str], None] | None = None
    ):
        self.cache = cache
        self.salt = salt
        self.pin_top = pin_top
        self.log = log or (lambda message: None)
        self._trial_id: int | None = None
        self._keys: dict[str, str] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._ctx = None

    # per-trial state ------------------------------------------------------------------------
    def _begin(self, ctx) -> None:
        if self._ctx is not ctx:
            self._ctx = ctx
            self._keys, self._records = {}, {}

    def keys(self, ctx) -> dict[str, str]:
        self._begin(ctx)
        return dict(self._keys)

    def records(self, ctx) -> dict[str, dict[str, Any]]:
        self._begin(ctx)
        return {k: dict(v) for k, v in self._records.items()}

    def trial_salt(self, ctx) -> str:
        return digest({"salt": self.salt, "settings": _jsonable(getattr(ctx, "settings", {}))})

    def upstream_keys(self, ctx, upstream: Iterable[str]) -> list[str]:
        self._begin(ctx)
        keys = []
        for name in upstream:
            if name not in self._keys:
                raise StageError(
                    f"stage {name!r} is upstream but has not run in this trial "
                    f"(ran so far: {', '.join(self._keys) or 'none'})"
                )
            keys.append(self._keys[name])
        return keys

    def params_of(self, ctx, depends_on: dict[str, Any], upstream: Iterable[str]) -> list[str]:
        """The trial parameters a stage depends on, directly or through its upstream stages."""
        params = {k for k in depends_on if k in ctx.params}
        for name in upstream:
            params.update(self._records.get(name, {}).get("params", []))
        return sorted(params)

    def record(self, ctx, name: str, **fields: Any) -> dict[str, Any]:
        """Add or update one stage's record and write the trial's `stages` attribute."""
        self._begin(ctx)
        entry = self._records.setdefault(name, {"order": len(self._records)})
        entry.update({k: v for k, v in fields.items() if v is not None})
        if "key" in fields and fields["key"]:
            self._keys[name] = fields["key"]
        ctx.set_attr(STAGES_ATTR, self._records)
        return entry

    # the stage itself ----------------------------------------------------------------------
    def run(
        self,
        ctx,
        name: str,
        fn: Callable[[], Any],
        *,
        depends_on: dict[str, Any],
        upstream: tuple = (),
        cache: bool = True,
    ):
        self._begin(ctx)
        if name in self._records:
            raise StageError(f"stage {name!r} already ran in this trial; give each stage its own name")
        upstream = (upstream,) if isinstance(upstream, str) else tuple(upstream)
        up_keys = self.upstream_keys(ctx, upstream)
        deterministic = cache and not getattr(fn, NONDETERMINISTIC_FLAG, False)
        params = self.params_of(ctx, depends_on, upstream)
        if deterministic:
            key = stage_key(name, depends_on, up_keys, self.trial_salt(ctx) + code_salt(fn))
        else:  # a fresh key each time: nothing downstream of a non-deterministic stage is reused
            key = stage_key(name, {"nonce": uuid.uuid4().hex}, up_keys, self.trial_salt(ctx))
        if not deterministic or self.cache is None:
            value, seconds, gpu_s = _timed(fn, ctx)
            self.record(
                ctx,
                name,
                seconds=round(seconds, 6),
                gpu_s=_round(gpu_s),
                hit=False,
                cached=False,
                key=key,
                params=params,
            )
            return value
        with self.cache.key_lock(key):
            started = time.perf_counter()
            status, value, meta = self.cache.get(key)
            if status == "hit" and meta is not None:  # a hit always carries its meta
                load_s = time.perf_counter() - started
                self.record(
                    ctx,
                    name,
                    seconds=round(load_s, 6),
                    hit=True,
                    cached=True,
                    key=key,
                    params=params,
                    saved_s=round(max(0.0, float(meta.get("compute_s", 0.0)) - load_s), 6),
                    bytes=meta.get("size"),
                    source=meta.get("producer"),
                )
                return value
            if status == "corrupt":
                self.log(f"stage {name}: cache entry {key[:12]} failed its integrity check; recomputing")
            value, seconds, gpu_s = _timed(fn, ctx)
            producer = {"sprint": getattr(ctx, "sprint", None), "trial": getattr(ctx, "trial_number", None)}
            try:
                size = self.cache.put(key, value, stage=name, compute_s=seconds, producer=producer)
            except (pickle.PicklingError, TypeError, AttributeError) as err:
                self.log(f"stage {name}: result cannot be cached ({type(err).__name__}: {err}); not cached")
                size, stored = None, False
            else:
                stored = True
        self.record(
            ctx,
            name,
            seconds=round(seconds, 6),
            gpu_s=_round(gpu_s),
            hit=False,
            cached=stored,
            key=key,
            params=params,
            bytes=size,
            corrupt=True if status == "corrupt" else None,
        )
        if stored:
            self.enforce_limit(ctx)
        return value

    # eviction ----------------------------------------------------------------------------
    def enforce_limit(self, ctx) -> list[str]:
        if self.cache is None or self.cache.max_bytes is None:
            return []
        evicted = self.cache.evict(lambda: self.pinned_keys(ctx))
        if evicted:
            self.log(f"stage cache: evicted {len(evicted)} entries to stay under {self.cache.max_bytes} bytes")
        return evicted

    def pinned_keys(self, ctx) -> set[str]:
        """This trial's keys, running trials' keys, and the keys of each sprint's best configurations."""
        keys = set(self._keys.values())
        trial = getattr(ctx, "trial", None)
        study = getattr(trial, "study", None)
        if study is None:
            return keys
        return keys | pinned_keys_of_campaign(study, self.pin_top)


def pinned_keys_of_campaign(study, top: int) -> set[str]:
    """Keys of the top-`top` completed trials of every sprint study of the campaign `study` belongs to."""
    storage = study_storage(study)
    campaign = study.study_name.split("/")[0]
    names = [study.study_name]
    with contextlib.suppress(Exception):
        names = [n for n in optuna.get_all_study_names(storage) if n.split("/")[0] == campaign] or names
    keys: set[str] = set()
    for name in names:
        try:
            other = study if name == study.study_name else optuna.load_study(study_name=name, storage=storage)
        except Exception:
            continue
        trials = other.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        maximize = other.direction == optuna.study.StudyDirection.MAXIMIZE
        done.sort(key=lambda t: t.value, reverse=maximize)
        for t in done[:top] + [t for t in trials if t.state == TrialState.RUNNING]:
            keys |= trial_keys(t.user_attrs)
    return keys


def trial_keys(user_attrs: dict[str, Any]) -> set[str]:
    keys = {r.get("key") for r in (user_attrs.get(STAGES_ATTR) or {}).values() if isinstance(r, dict)}
    inherited = user_attrs.get(INHERITED_ATTR)
    if isinstance(inherited, dict):
        keys.add(inherited.get("key"))
    keys |= set(user_attrs.get(CHECKPOINT_KEYS_ATTR) or [])
    return {k for k in keys if k}


def _timed(fn: Callable[[], Any], ctx) -> tuple[Any, float, float | None]:
    gpu = _GpuTimer(getattr(ctx, "device", "cpu"))
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    return value, seconds, gpu.stop()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _jsonable(value: Any) -> Any:
    try:
        return canonical(value)
    except StageKeyError:
        return repr(value)


# --------------------------------------------------------------------------------------- wiring


def cache_dir_for(run_dir: str | Path, configured: str | None = None) -> Path:
    """`[cache] dir` (relative paths are inside the campaign's run directory), else <run dir>/cache."""
    if not configured:
        return Path(run_dir) / "cache"
    path = Path(configured).expanduser()
    return path if path.is_absolute() else Path(run_dir) / path


def runner_for_spec(spec, run_dir: str | Path, log: Callable[[str], None] | None = None) -> StageRunner:
    """The stage runner a campaign asks for: caching when `[cache] enabled`, else timing records only."""
    settings = getattr(spec, "cache", None)
    salt = digest({"objective": spec.objective.path, "salt": getattr(settings, "salt", "")})
    if settings is None or not settings.enabled:
        return StageRunner(None, salt=salt, log=log)
    cache = StageCache(cache_dir_for(run_dir, settings.dir), max_bytes=settings.max_bytes)
    return StageRunner(cache, salt=salt, pin_top=settings.pin_top, log=log)


def default_stage_runner_factory(worker) -> StageRunner:
    """Worker hook: `stage_runner_factory(worker) -> runner`."""
    return runner_for_spec(worker.spec, worker.run_dir, log=worker.log)
