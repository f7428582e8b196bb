"""Memoized stages (engine.cache.stages): content-addressed hits and misses, integrity, eviction with pins,
opt-out, several processes, and the records a trial keeps."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path

import optuna
import pytest

from engine.cache.stage_stats import stage_stats
from engine.cache.stages import (
    StageCache,
    StageError,
    StageKeyError,
    StageRunner,
    nondeterministic,
    pinned_keys_of_campaign,
    stage_key,
)
from engine.objective import TrialContext
from engine.units import parse_size

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Counter:
    def __init__(self):
        self.calls: dict[str, int] = {}

    def fn(self, name, value):
        def run():
            self.calls[name] = self.calls.get(name, 0) + 1
            return value

        return run


def _ctx(study, runner, params, run_dir, settings=None):
    trial = study.ask()
    return TrialContext(
        params=params,
        fidelity={},
        settings=settings or {},
        trial_number=trial.number,
        sprint="s",
        run_dir=run_dir,
        trial=trial,
        stage_runner=runner,
    ), trial


def _pipeline(ctx, counter):
    p = ctx.params
    data = ctx.stage("prep", counter.fn("prep", [p["a"]] * 3), depends_on={"a": p["a"]})
    model = ctx.stage("train", counter.fn("train", sum(data) * p["b"]), depends_on={"b": p["b"]}, upstream=("prep",))
    return ctx.stage("eval", counter.fn("eval", model + p["c"]), depends_on={"c": p["c"]}, upstream=("train",))


def test_identical_inputs_hit_and_upstream_changes_miss(tmp_path):
    runner = StageRunner(StageCache(tmp_path / "cache"))
    study = optuna.create_study()
    counter = Counter()

    ctx, trial = _ctx(study, runner, {"a": 1.0, "b": 2.0, "c": 3.0}, tmp_path)
    assert _pipeline(ctx, counter) == 9.0
    first = dict(runner.records(ctx))
    study.tell(trial, 0.0)
    assert counter.calls == {"prep": 1, "train": 1, "eval": 1}
    assert not any(r["hit"] for r in first.values()) and all(r["cached"] for r in first.values())

    ctx, trial = _ctx(study, runner, {"a": 1.0, "b": 2.0, "c": 3.0}, tmp_path)  # identical: every stage hits
    assert _pipeline(ctx, counter) == 9.0
    assert counter.calls == {"prep": 1, "train": 1, "eval": 1}
    records = study.tell(trial, 0.0).user_attrs["stages"]
    assert all(r["hit"] for r in records.values())
    assert {n: r["key"] for n, r in records.items()} == {n: r["key"] for n, r in first.items()}
    assert records["train"]["params"] == ["a", "b"] and records["eval"]["params"] == ["a", "b", "c"]

    ctx, trial = _ctx(study, runner, {"a": 1.0, "b": 2.0, "c": 4.0}, tmp_path)  # only the last stage changes
    _pipeline(ctx, counter)
    hits = {n: r["hit"] for n, r in runner.records(ctx).items()}
    assert hits == {"prep": True, "train": True, "eval": False}

    ctx, trial = _ctx(study, runner, {"a": 1.5, "b": 2.0, "c": 3.0}, tmp_path)  # an upstream change misses downstream
    _pipeline(ctx, counter)
    assert {n: r["hit"] for n, r in runner.records(ctx).items()} == {"prep": False, "train": False, "eval": False}
    assert counter.calls == {"prep": 2, "train": 2, "eval": 3}


def test_key_is_content_addressed_and_salted():
    base = stage_key("s", {"lr": 0.1, "n": 3}, ["u"], "salt")
    assert base == stage_key("s", {"n": 3, "lr": 0.1}, ["u"], "salt")  # key order does not matter
    assert base != stage_key("s", {"lr": math.nextafter(0.1, 1.0), "n": 3}, ["u"], "salt")  # every bit counts
    assert base != stage_key("s", {"lr": 0.1, "n": 3}, ["v"], "salt")
    assert base != stage_key("s", {"lr": 0.1, "n": 3}, ["u"], "other")
    assert base != stage_key("t", {"lr": 0.1, "n": 3}, ["u"], "salt")
    with pytest.raises(StageKeyError):
        stage_key("s", {"model": object()})


def test_settings_and_code_are_part_of_the_key(tmp_path):
    runner = StageRunner(StageCache(tmp_path / "cache"))
    study = optuna.create_study()
    ctx, _ = _ctx(study, runner, {"a": 1}, tmp_path, settings={"seed": 0})
    ctx.stage("s", lambda: 1, depends_on={"a": 1})
    ctx2, _ = _ctx(study, runner, {"a": 1}, tmp_path, settings={"seed": 1})
    assert ctx2.stage("s", lambda: 2, depends_on={"a": 1}) == 2  # other settings: a miss
    ctx3, _ = _ctx(study, runner, {"a": 1}, tmp_path, settings={"seed": 0})
    assert ctx3.stage("s", lambda: 1 + 2, depends_on={"a": 1}) == 3  # edited stage body: a miss
    ctx4, _ = _ctx(study, runner, {"a": 1}, tmp_path, settings={"seed": 0})
    assert ctx4.stage("s", lambda: 1, depends_on={"a": 1}) == 1
    assert runner.records(ctx4)["s"]["hit"]


def test_corrupted_entry_is_detected_and_recomputed(tmp_path):
    cache = StageCache(tmp_path / "cache")
    runner = StageRunner(cache)
    study = optuna.create_study()
    counter = Counter()
    ctx, _ = _ctx(study, runner, {"a": 1}, tmp_path)
    ctx.stage("s", counter.fn("s", {"weights": [1.0, 2.0]}), depends_on={"a": 1})
    key = runner.records(ctx)["s"]["key"]
    payload = cache.payload_path(key)
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, wrong hash
    payload.write_bytes(bytes(data))

    ctx, trial = _ctx(study, runner, {"a": 1}, tmp_path)
    assert ctx.stage("s", counter.fn("s", {"weights": [1.0, 2.0]}), depends_on={"a": 1}) == {"weights": [1.0, 2.0]}
    assert counter.calls["s"] == 2  # recomputed, not used
    record = study.tell(trial, 0.0).user_attrs["stages"]["s"]
    assert record["corrupt"] and not record["hit"] and record["cached"]
    assert cache.get(key)[0] == "hit"  # the recomputed entry replaced it

    cache.payload_path(key).write_bytes(b"short")  # truncated
    assert cache.get(key)[0] == "corrupt" and not cache.has(key)


def test_eviction_respects_limit_lru_and_pins(tmp_path):
    cache = StageCache(tmp_path / "cache", max_bytes=parse_size("3KB"))
    keys = []
    for i in range(6):
        key = stage_key("s", {"i": i})
        cache.put(key, b"x" * 900, stage="s", compute_s=1.0)
        os.utime(cache.meta_path(key), (1000 + i, 1000 + i))  # i = 0 is the least recently used
        keys.append(key)
    cache.touch(keys[1])  # used just now
    evicted = cache.evict(pinned={keys[0]})
    remaining = {e.key for e in cache.entries()}
    assert cache.total_bytes() <= 3000
    assert keys[0] in remaining  # pinned, although least recently used
    assert keys[1] in remaining  # recently used
    assert set(evicted) == {keys[2], keys[3], keys[4]}

    # pins alone over the limit: they stay, and nothing else is kept
    evicted = cache.evict(pinned=set(remaining))
    assert evicted == [] and {e.key for e in cache.entries()} == remaining


def test_runner_pins_the_best_configurations_of_each_sprint(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    cache = StageCache(tmp_path / "cache", max_bytes=4100)  # room for 4 entries of ~1 KB
    runner = StageRunner(cache, pin_top=2)
    studies = [optuna.create_study(study_name=f"camp/0{i}-s{i}", storage=storage) for i in range(2)]
    optuna.create_study(study_name="other/00-x", storage=storage)  # another campaign: ignored
    best_keys = {}
    for s_index, study in enumerate(studies):
        for i, value in enumerate([5.0, 1.0, 3.0, 0.5, 9.0]):
            ctx, trial = _ctx(study, runner, {"a": s_index * 10 + i}, tmp_path)
            ctx.stage("big", lambda: b"y" * 1000, depends_on={"a": s_index * 10 + i})
            study.tell(trial, value)
            best_keys.setdefault(s_index, {})[value] = runner.records(ctx)["big"]["key"]
    pinned = pinned_keys_of_campaign(studies[1], 2)
    expected = {best_keys[s][v] for s in (0, 1) for v in (0.5, 1.0)}
    assert expected <= pinned
    remaining = {e.key for e in cache.entries()}
    assert expected <= remaining  # eviction ran after every put and never dropped a pinned entry
    # the last trial's own entry was pinned while it ran; once it is over, only the best four stay
    cache.evict(lambda: pinned_keys_of_campaign(studies[1], 2))
    assert {e.key for e in cache.entries()} == expected and cache.total_bytes() <= 4100


def test_opt_out_and_nondeterministic_stages(tmp_path):
    runner = StageRunner(StageCache(tmp_path / "cache"))
    study = optuna.create_study()
    counter = Counter()

    @nondeterministic
    def augment():
        counter.calls["aug"] = counter.calls.get("aug", 0) + 1
        return 1

    keys = []
    for _ in range(2):
        ctx, _ = _ctx(study, runner, {"a": 1}, tmp_path)
        ctx.stage("opt_out", counter.fn("opt_out", 1), depends_on={"a": 1}, cache=False)
        ctx.stage("aug", augment, depends_on={"a": 1})
        ctx.stage("after", counter.fn("after", 2), depends_on={}, upstream=("aug",))
        records = runner.records(ctx)
        assert not records["opt_out"]["cached"] and not records["aug"]["cached"]
        keys.append(records["after"]["key"])
    assert counter.calls == {"opt_out": 2, "aug": 2, "after": 2}  # downstream of a non-deterministic stage: no reuse
    assert keys[0] != keys[1]


def test_stage_misuse_is_reported(tmp_path):
    runner = StageRunner(StageCache(tmp_path / "cache"))
    ctx, _ = _ctx(optuna.create_study(), runner, {}, tmp_path)
    with pytest.raises(StageError, match="has not run"):
        ctx.stage("b", lambda: 1, depends_on={}, upstream=("a",))
    ctx.stage("a", lambda: 1, depends_on={})
    with pytest.raises(StageError, match="already ran"):
        ctx.stage("a", lambda: 1, depends_on={})


def test_without_cache_stages_are_timed_only(tmp_path):
    runner = StageRunner(None)
    study = optuna.create_study()
    counter = Counter()
    for _ in range(2):
        ctx, trial = _ctx(study, runner, {"a": 1}, tmp_path)
        ctx.stage("s", counter.fn("s", 1), depends_on={"a": 1})
        study.tell(trial, 1.0)
    assert counter.calls["s"] == 2
    record = study.trials[-1].user_attrs["stages"]["s"]
    assert record["hit"] is False and record["cached"] is False and record["seconds"] >= 0
    stats = stage_stats({"s": study.trials})
    assert stats["total"]["uncached"] == 2 and stats["total"]["hits"] == 0


def _slow_stage(root: str, marker: str, out: str) -> None:
    runner = StageRunner(StageCache(root))
    ctx = TrialContext(
        params={"a": 1}, fidelity={}, settings={}, trial_number=0, sprint="s", run_dir=Path(root), stage_runner=runner
    )

    def compute():
        with open(marker, "a") as handle:
            handle.write("x")
        time.sleep(0.4)
        return 42

    value = ctx.stage("slow", compute, depends_on={"a": 1})
    Path(out).write_text(f"{value} {runner.records(ctx)['slow']['hit']}")


def test_two_processes_compute_a_key_once(tmp_path):
    root, marker = str(tmp_path / "cache"), str(tmp_path / "marker")
    StageCache(root)
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_slow_stage, args=(root, marker, str(tmp_path / f"out{i}"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert Path(marker).read_text() == "x"  # the second process waited for the first, then hit
    outs = sorted(Path(tmp_path / f"out{i}").read_text() for i in range(2))
    assert outs == ["42 False", "42 True"]
    assert not list(Path(root).rglob("*.tmp"))  # atomic writes leave no temporary file behind
