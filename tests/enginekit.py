"""Helpers for engine tests: small real campaigns on real storages."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna

from engine.objective import TrialContext
from engine.spec import CampaignSpec, parse_campaign
from engine.store.records import SprintRecord

ROOT = Path(__file__).resolve().parents[1]


def branin_campaign(name: str = "t", **overrides: Any) -> dict[str, Any]:
    """Three sprints on Branin: random low fidelity -> gate -> tpe -> gate -> tpe + hyperband."""
    data: dict[str, Any] = {
        "name": name,
        "workers": 1,
        "objective": {"path": "engine.workloads.functions:branin", "settings": {"noise_seed": 0}},
        "metric": {"name": "regret", "direction": "minimize"},
        "space": {
            "x1": {"type": "float", "low": -5.0, "high": 10.0},
            "x2": {"type": "float", "low": 0.0, "high": 15.0},
        },
        "fidelity": {
            "cost_knobs": ["train_fraction", "epochs"],
            "levels": {
                "low": {"train_fraction": 0.2, "epochs": 2},
                "high": {"train_fraction": 1.0, "epochs": 9},
            },
        },
        "gate": {"top_k": 4, "margin": 0.2},
        "sprints": [
            {"name": "explore", "sampler": "random", "fidelity": "low", "n_trials": 8},
            {"name": "refine", "sampler": "tpe", "fidelity": "low", "n_trials": 6, "seed_top": 2},
            {"name": "full", "sampler": "tpe", "pruner": "hyperband", "fidelity": "high", "n_trials": 8, "seed_top": 2},
        ],
    }
    return deep_update(data, overrides)


def bare_sprint_record(study: str = "c/00-s", **fields: Any) -> SprintRecord:
    """A random-sampler sprint record with an empty space, for running trials and progress by hand."""
    base: dict[str, Any] = dict(
        index=0,
        name="s",
        study=study,
        sampler="random",
        pruner="none",
        space={},
        tuned=(),
        fixed={},
        level="low",
        fidelity={},
    )
    return SprintRecord(**{**base, **fields})


def deep_update(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def spec_of(data: dict) -> CampaignSpec:
    return parse_campaign(data)


def write_toml(path: Path, data: dict) -> Path:
    import tomli_w

    path.write_bytes(tomli_w.dumps(data).encode())
    return path


def hpo_tui(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `hpo-tui` console script (no TTY: headless)."""
    exe = Path(sys.executable).with_name("hpo-tui")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "tests") + os.pathsep + str(ROOT), **(env or {})}
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=full_env,
    )


class RecordingContext(TrialContext):
    """A trial context without a study: records reports and attributes, can prune at a given step."""

    def __init__(self, *args, prune_at: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.reports: list[tuple[int, float]] = []
        self.attrs: dict[str, Any] = {}
        self.prune_at = prune_at

    def report(self, value, step):
        self.reports.append((step, value))
        if self.prune_at is not None and step >= self.prune_at:
            raise optuna.TrialPruned(f"pruned at {step}")

    def set_attr(self, key, value):
        self.attrs[key] = value
