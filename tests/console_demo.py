"""Deterministic campaign data for the console's tests, screenshots and benchmark.

Everything here is built from a seed, with fixed times and no host names or pids, so two runs on
any machine draw the same screen. `probs_objective` is a real campaign objective (Branin) that also
saves validation probabilities, so threshold learning can run on a real engine in tests.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import numpy as np

from engine.spec import ThresholdSpec
from engine.store.records import ParamRow, Proposal, ProposalEvidence, ProposalFidelity, ThresholdsResult
from engine.views.snapshot import (
    LOST_KINDS,
    BestTrial,
    CampaignSnapshot,
    SprintInfo,
    TrialDetail,
    TrialEvent,
    TrialRow,
    downsample_history,
    inherited_of,
    seconds_saved,
    stage_records,
)

EPOCH = 1_800_000_000.0  # a fixed start time: screenshots never show today's clock
DEMO_FAILURES = (  # (fail_kind, fail_reason), by trial number
    (
        "stale",
        "stale: no heartbeat for over 60 s from worker {worker} (killed, out of memory, or its host "
        "or network was lost)",
    ),
    ("oom", "out of memory: OutOfMemoryError: CUDA out of memory"),
    ("raised", "FloatingPointError: loss is NaN at step 0 (at jerex.py:412)"),
    ("worker_died", "worker process 4242 is gone (the engine was stopped or killed)"),
)
PARAMS = ("lr", "weight_decay", "dropout", "warmup")
ORIGINAL_SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.3, "log": False},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": False},
    "warmup": {"type": "int", "low": 0, "high": 10, "log": False, "step": 1},
}
LEVELS = {
    "low": {"train_fraction": 0.17, "epochs": 1, "val_fraction": 0.33},
    "warmup": {"train_fraction": 0.5, "epochs": 3, "val_fraction": 0.5},
    "full": {"train_fraction": 1.0, "epochs": 10, "val_fraction": 1.0},
}
SPRINT_NAMES = ("subspace", "warmup", "full")


def _params(rng: random.Random) -> tuple[tuple[str, Any], ...]:
    return (
        ("lr", 10 ** rng.uniform(-5, -2)),
        ("weight_decay", rng.uniform(0.0, 0.3)),
        ("dropout", rng.uniform(0.0, 0.5)),
        ("warmup", rng.randint(0, 10)),
    )


def _value(params: tuple[tuple[str, Any], ...], noise: float) -> float:
    p = dict(params)
    return 0.9 - 0.25 * math.exp(-((math.log10(p["lr"]) + 3.5) ** 2)) + 0.2 * p["dropout"] ** 2 + 0.05 * noise


def demo_rows(n_trials: int, running: int = 2, seed: int = 0, epochs: int = 10) -> tuple[TrialRow, ...]:
    """`n_trials` trials: mostly complete, some pruned and failed, the last `running` still running."""
    rng = random.Random(seed)
    rows = []
    for number in range(n_trials):
        params = _params(rng)
        started = EPOCH + number * 7.0
        roll = rng.random()
        if number >= n_trials - running:
            rows.append(
                TrialRow(
                    number,
                    "RUNNING",
                    None,
                    12.0 + number % 5,
                    number % epochs,
                    params,
                    worker=f"gpu{number % 8}",
                    started=started,
                )
            )
            continue
        value = _value(params, rng.random())
        if roll < 0.2:
            step = rng.randint(0, epochs // 2)
            rows.append(
                TrialRow(
                    number,
                    "PRUNED",
                    value + 0.1,
                    3.0 + step,
                    step,
                    params,
                    reason=f"pruned at step {step} (rung {step // 2})",
                    worker=f"gpu{number % 8}",
                    cost=0.1 * (step + 1),
                    started=started,
                    completed=started + 3.0 + step,
                )
            )
        elif roll < 0.25:
            kind, reason = DEMO_FAILURES[number % len(DEMO_FAILURES)]
            rows.append(
                TrialRow(
                    number,
                    "FAIL",
                    None,
                    1.5,
                    0,
                    params,
                    reason=reason.format(worker=f"gpu{number % 8}"),
                    worker=f"gpu{number % 8}",
                    retried=kind in LOST_KINDS,
                    cost=0.05,
                    started=started,
                    completed=started + 1.5,
                    fail_kind=kind,
                )
            )
        else:
            rows.append(
                TrialRow(
                    number,
                    "COMPLETE",
                    value,
                    30.0 + (number % 11),
                    epochs - 1,
                    params,
                    worker=f"gpu{number % 8}",
                    cost=1.0,
                    seeded=number < 2,
                    artifacts=("val_probs",) if number % 3 == 0 else (),
                    started=started,
                    completed=started + 30.0 + (number % 11),
                )
            )
    # A failure the engine retries (its worker disappeared) runs again as a later trial with the same
    # params (the failed trial takes the params of its re-run: the completed trials stay as they were).
    for index, failed in enumerate(rows):
        if not failed.retried:
            continue
        copy = next(
            (
                i
                for i, r in enumerate(rows)
                if r.number > failed.number and r.state == "COMPLETE" and r.retry_of is None and not r.seeded
            ),
            None,
        )
        if copy is not None:
            rows[index] = replace(failed, params=rows[copy].params)
            rows[copy] = replace(rows[copy], retry_of=failed.number)
    return tuple(with_stages(row) for row in rows)


def demo_stage_attrs(row: TrialRow) -> dict[str, Any]:
    """User attributes `stages` and `inherited` shaped like engine.cache.stages / engine.cache.checkpoints record them:
    the data stage mostly comes from the cache, a few trials inherit an earlier trial's warm-up checkpoint."""
    n = row.number
    inherited = n % 16 == 6
    data_hit = row.seeded or inherited or n % 5 != 0
    stages: dict[str, Any] = {
        "data": {
            "order": 0,
            "seconds": 0.21 if data_hit else 4.3,
            "hit": data_hit,
            "cached": True,
            "key": f"{n % 5:02d}d4a7c1",
            "params": [],
            **({"saved_s": 4.09} if data_hit else {}),
        },
    }
    if row.state == "COMPLETE":
        train_hit = n % 13 == 4
        stages["warmup"] = {
            "order": 1,
            "seconds": 0.38 if inherited else 6.0 + n % 4,
            "hit": inherited,
            "cached": True,
            "key": f"{n:04d}77e0",
            "params": ["lr", "weight_decay", "warmup"],
            **({"inherited": True} if inherited else {}),
        }
        stages["train"] = {
            "order": 2,
            "seconds": 0.9 if train_hit else 18.0 + n % 7,
            "hit": train_hit,
            "cached": True,
            "key": f"{n:04d}91b2",
            "params": list(PARAMS),
            **({"saved_s": 21.4} if train_hit else {}),
        }
        stages["eval"] = {
            "order": 3,
            "seconds": 1.6,
            "hit": False,
            "cached": False,
            "key": f"{n:04d}0e5f",
            "params": list(PARAMS),
        }
    attrs: dict[str, Any] = {"stages": stages}
    if inherited and row.state == "COMPLETE":
        attrs["inherited"] = {
            "name": "train",
            "epoch": 1,
            "key": f"{n:04d}77e0",
            "from_sprint": "subspace",
            "from_trial": n - 4,
            "saved_s": 6.7,
        }
    return attrs


def with_stages(row: TrialRow) -> TrialRow:
    attrs = demo_stage_attrs(row)
    stages, inherited = stage_records(attrs), inherited_of(attrs)
    return replace(
        row,
        stage_runs=len(stages),
        stage_hits=sum(1 for stage in stages if stage.hit),
        saved_s=seconds_saved(stages, inherited),
        inherited=inherited is not None,
    )


def demo_proposal(rows: tuple[TrialRow, ...], gate: int = 0) -> Proposal:
    done = sorted((r for r in rows if r.state == "COMPLETE"), key=lambda r: r.value)
    top = done[:10]
    best = top[0] if top else None

    def row(name: str, proposed: dict, note: str = "", edge: str | None = None, importance: float = 0.1) -> ParamRow:
        values = [r.param(name) for r in top]
        return ParamRow(
            kind=ORIGINAL_SPACE[name]["type"],
            original=ORIGINAL_SPACE[name],
            current=ORIGINAL_SPACE[name],
            proposed=proposed,
            importance=importance,
            edge=edge,
            freeze=proposed["type"] == "fixed",
            note=note,
            top_min=min(values),
            top_max=max(values),
            best=best.param(name) if best else None,
        )

    params = {
        "lr": row("lr", {"type": "float", "low": 1e-4, "high": 2e-3, "log": True}, importance=0.62),
        "weight_decay": row(
            "weight_decay",
            {"type": "float", "low": 0.0, "high": 0.3, "log": False},
            "best values sit at the campaign's low bound: the optimum may lie beyond it",
            "low",
            0.21,
        ),
        "dropout": row("dropout", {"type": "float", "low": 0.02, "high": 0.31, "log": False}, importance=0.15),
        "warmup": row(
            "warmup",
            {"type": "fixed", "value": best.param("warmup") if best else 3},
            "importance 0.020 < 0.05: frozen at the best value",
            importance=0.02,
        ),
    }
    return Proposal(
        gate=gate,
        sprint=0,
        after=SPRINT_NAMES[0],
        next=SPRINT_NAMES[1],
        created="2027-01-15T08:00:00+00:00",
        params=params,
        space={name: r.proposed for name, r in params.items()},
        fidelity=ProposalFidelity(level="warmup", values=dict(LEVELS["warmup"])),
        sampler="gp",
        pruner="none",
        n_trials=60,
        evidence=ProposalEvidence(
            completed=len(done),
            top_k=len(top),
            best_value=best.value if best else None,
            best_params=dict(best.params) if best else {},
            best_trial=best.number if best else None,
        ),
    )


def demo_snapshot(
    n_trials: int = 120, *, running: int = 2, pending_gate: bool = False, seed: int = 0, campaign: str = "demo"
) -> CampaignSnapshot:
    rows = demo_rows(n_trials, running=running, seed=seed)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    done = [r for r in rows if r.state == "COMPLETE"]
    best = min(done, key=lambda r: r.value) if done else None
    events = tuple(
        sorted(
            (
                TrialEvent(
                    r.number,
                    "pruned" if r.state == "PRUNED" else "failed",
                    r.last_step,
                    r.value if r.state == "PRUNED" else None,
                    f"rung {r.last_step // 2}"
                    if r.state == "PRUNED"
                    else (r.reason or "") + ("; queued again" if r.retried else ""),
                    r.completed,
                    r.fail_kind,
                )
                for r in rows
                if r.state in ("PRUNED", "FAIL")
            ),
            key=lambda e: -e.time,
        )[:200]
    )
    sprint = SprintInfo(
        index=0,
        name=SPRINT_NAMES[0],
        study=f"{campaign}/00-{SPRINT_NAMES[0]}",
        sampler="skopt-gp",
        pruner="none",
        level="low",
        fidelity=tuple(LEVELS["low"].items()),
        tuned=PARAMS,
        status="closed" if pending_gate else "running",
        n_trials=max(n_trials, 120),
        timeout_s=None,
        budget_cost=None,
        started_ts=EPOCH,
    )
    proposal = demo_proposal(rows) if pending_gate else None
    return CampaignSnapshot(
        campaign=campaign,
        status="waiting" if pending_gate else "running",
        paused=False,
        sprints_planned=3,
        sprint_names=SPRINT_NAMES,
        metric="1-micro_f1",
        direction="minimize",
        sprint=sprint,
        current_sprint=0,
        trials=rows,
        param_names=PARAMS,
        counts=tuple(sorted(counts.items())),
        counted=sum(1 for r in rows if r.retry_of is None),
        cost_used=round(sum(r.cost or 0.0 for r in rows), 3),
        seconds_spent=sum(r.duration_s or 0.0 for r in rows),
        seconds_saved=sum(r.saved_s for r in rows),
        staged=any(r.stage_runs for r in rows),
        best=BestTrial(best.number, best.value) if best else None,
        events=events,
        history=downsample_history([(r.number, r.value) for r in done], False),
        pending_gate=0 if pending_gate else None,
        next_gate=0,
        proposal=proposal,
        original_space=ORIGINAL_SPACE,
        levels=LEVELS,
        thresholds_settings=ThresholdSpec(artifact="val_probs"),
        read_at=EPOCH + n_trials * 7.0,
    )


def demo_importances() -> dict[str, float]:
    return {"lr": 0.62, "weight_decay": 0.21, "dropout": 0.15, "warmup": 0.02}


def demo_detail(snapshot: CampaignSnapshot, number: int) -> TrialDetail:
    row = snapshot.trial(number)
    steps = (row.last_step or 0) + 1
    curve = tuple((s, round((row.value or 0.8) + 0.4 * math.exp(-(s + 1) / 3.0), 6)) for s in range(steps))
    key = f"{snapshot.sprint.study}:{number}"
    attrs = demo_stage_attrs(row)
    return TrialDetail(
        study=snapshot.sprint.study,
        number=number,
        state=row.state,
        value=row.value,
        params=row.params,
        fixed=(("max_len", 128), ("scheduler", "off")),
        intermediate=curve,
        user_attrs=(("cost", row.cost), ("duration_s", row.duration_s), ("val_micro_f1", 0.7123)),
        artifacts=tuple((name, f"{number:08d}-aaaa-bbbb") for name in row.artifacts),
        reason=row.reason,
        started=row.started,
        completed=row.completed,
        thresholds=snapshot.thresholds.get(key),
        fail_kind=row.fail_kind,
        stages=stage_records(attrs),
        inherited=inherited_of(attrs),
    )


def demo_thresholds(trial: int = 0) -> ThresholdsResult:
    """A result as engine.thresholds.learn_thresholds gives one (fixed numbers)."""
    classes = ["per:employee_of", "org:founded_by", "per:city_of_birth", "org:member_of", "no_relation"]
    table = []
    for c, name in enumerate(classes):
        base = 0.55 + 0.07 * c
        table.append(
            {
                "class": name,
                "threshold": round(0.3 + 0.08 * c, 4),
                "val_positives": 40 - 6 * c,
                "test_positives": 20 - 3 * c,
                "val_cv": {
                    "at_0.5": round(base, 4),
                    "global": round(base + 0.03, 4),
                    "per_class": round(base + 0.05, 4),
                },
                "test": {
                    "at_0.5": round(base - 0.02, 4),
                    "global": round(base + 0.01, 4),
                    "per_class": round(base + 0.04, 4),
                },
            }
        )
    overall = {
        "micro_f1": {"at_0.5": 0.661, "global": 0.694, "per_class": 0.712},
        "macro_f1": {"at_0.5": 0.642, "global": 0.671, "per_class": 0.698},
    }
    return ThresholdsResult(
        metric="micro_f1",
        optimizer="grid",
        folds=5,
        shrinkage=10.0,
        seed=0,
        classes=tuple(classes),
        thresholds={r["class"]: r["threshold"] for r in table},
        global_threshold=0.42,
        table=tuple(table),
        overall={
            "val_cv": overall,
            "test": {k: {s: round(v - 0.01, 3) for s, v in d.items()} for k, d in overall.items()},
        },
        recommended="per_class",
        n_val=200,
        n_test=100,
        trial=trial,
    )


def probs_objective(ctx) -> float:
    """Branin, plus saved validation probabilities (deterministic in the params) for threshold learning."""
    from engine.workloads.functions import branin

    value = branin(ctx)
    seed = abs(hash(tuple(round(float(v), 6) for v in ctx.params.values()))) % (2**32)
    rng = np.random.default_rng(seed)
    labels = rng.random((60, 3)) < 0.3
    probs = np.clip(labels * 0.35 + rng.random((60, 3)) * 0.65, 0, 1)
    ctx.save_artifact("val_probs", probs=probs, labels=labels.astype(int), classes=np.array(["a", "b", "c"]))
    return value


def demo_app(n_trials: int = 120, pending_gate: bool = True, fps: float = 4.0):
    """The console on demo data (no engine, nothing written): `python tests/console_demo.py [N]`."""
    from tui.app import HpoConsole
    from tui.source import FixedSource

    snapshot = demo_snapshot(n_trials, pending_gate=pending_gate)
    details = {row.number: demo_detail(snapshot, row.number) for row in snapshot.trials[:2000]}
    source = FixedSource(snapshot, details=details, importances=demo_importances())
    return HpoConsole(source, fps=fps, threshold_learner=lambda trial, **_: demo_thresholds(trial))


if __name__ == "__main__":
    import sys

    demo_app(int(sys.argv[1]) if len(sys.argv) > 1 else 120).run()
