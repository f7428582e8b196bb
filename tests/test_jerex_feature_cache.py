"""The jerex objective's tokenised and featurised data as memoized stages (per split, fraction, max_length)."""

from __future__ import annotations

import optuna
import pytest
import torch

from engine.cache.stages import StageCache, StageRunner
from engine.objective import TrialContext
from engine.workloads.jerex.corpus import prepare_generated_corpus
from engine.workloads.jerex.objective import objective

optuna.logging.set_verbosity(optuna.logging.WARNING)
torch.set_num_threads(1)

PARAMS = {"encoder_lr": 3e-3, "head_lr": 1e-2, "pct_start": 0.5, "batch_size": 16}
FIDELITY = {"epochs": 1, "max_length": 64, "train_fraction": 1.0, "val_fraction": 1.0}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    data_dir = prepare_generated_corpus(tmp_path_factory.mktemp("corpus"), 13, 80, 30, 8)
    return {"save_artifacts": False, "data_dir": str(data_dir)}


def run(root, runner, settings, params=None, fidelity=None):
    root.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        direction="maximize", storage=f"sqlite:///{root / 'study.db'}", study_name="s", load_if_exists=True
    )
    trial = study.ask()
    ctx = TrialContext(
        params={**PARAMS, **(params or {})},
        fidelity={**FIDELITY, **(fidelity or {})},
        settings=dict(settings),
        trial_number=trial.number,
        sprint="search",
        run_dir=root,
        trial=trial,
        stage_runner=runner,
    )
    return study.tell(trial, objective(ctx))


def test_featurized_data_is_a_cached_stage_shared_across_trials(tmp_path, settings):
    runner = StageRunner(StageCache(tmp_path / "cache"))
    first = run(tmp_path, runner, settings)
    other_lr = run(tmp_path, runner, settings, params={"encoder_lr": 1e-3})
    stages = first.user_attrs["stages"]
    assert not stages["train_features"]["hit"] and stages["train_features"]["cached"]
    assert not stages["val_features"]["hit"]
    hit = other_lr.user_attrs["stages"]
    assert hit["train_features"]["hit"] and hit["val_features"]["hit"]  # different lr, same data: reused
    assert hit["train_features"]["params"] == []  # no tuned parameter decides it
    # another max_length or fraction is other data: it misses
    shorter = run(tmp_path, runner, settings, fidelity={"max_length": 32})
    assert not shorter.user_attrs["stages"]["train_features"]["hit"]
    less = run(tmp_path, runner, settings, fidelity={"val_fraction": 0.5})
    assert less.user_attrs["stages"]["train_features"]["hit"] and not less.user_attrs["stages"]["val_features"]["hit"]


def test_cached_features_train_the_same_model_as_fresh_ones(tmp_path, settings):
    cached = StageRunner(StageCache(tmp_path / "cache"))
    run(tmp_path / "a", cached, settings)  # fills the cache
    from_cache = run(tmp_path / "a", cached, settings, params={"encoder_lr": 1e-3})
    assert from_cache.user_attrs["stages"]["train_features"]["hit"]
    fresh = run(tmp_path / "b", StageRunner(None), settings, params={"encoder_lr": 1e-3})
    assert not fresh.user_attrs["stages"]["train_features"]["hit"]
    assert from_cache.value == fresh.value
