"""Checkpoint inheritance on a fidelity raise, on the tiny jerex workload (CPU, one thread).

Stated tolerance: a full-cycle trial that resumes from a warm-up trial's end-of-warm-up checkpoint
reaches the same validation relation micro-F1 as training straight through to within 1e-6 (on CPU with
one thread the run is in fact bit-for-bit the same: weights, optimizer moments, LR schedule position,
dropout RNG and batch order are all restored). On GPU, kernels are not bitwise deterministic; there the
guarantee is the same training trajectory, not the same last digit.
"""

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

SETTINGS = {"save_artifacts": False}  # + data_dir: one corpus (and so one tiny tokenizer) for every run here
PARAMS = {"encoder_lr": 3e-3, "head_lr": 1e-2, "pct_start": 0.5, "batch_size": 16, "decay": "linear"}
WARMUP = {"epochs": 4, "warmup_only": True, "max_length": 64}  # ceil(0.5 x 4) = 2 epochs: the warm-up sprint
FULL = {"epochs": 4, "warmup_only": False, "max_length": 64}  # the full cycle, the same schedule
TOLERANCE = 1e-6


@pytest.fixture(scope="module", autouse=True)
def corpus(tmp_path_factory):
    # One corpus directory for every run here: one tiny tokenizer (built per process and per data
    # directory; deterministic, tests/test_jerex_determinism.py), one featurized training set.
    SETTINGS["data_dir"] = str(prepare_generated_corpus(tmp_path_factory.mktemp("corpus"), 13, 160, 60, 8))
    yield
    SETTINGS.pop("data_dir")


class Pipeline:
    """One campaign's run directory and stage cache; trials of one study."""

    def __init__(self, root, cached=True):
        self.root = root
        self.runner = StageRunner(StageCache(root / "cache") if cached else None)
        self.study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())

    def trial(self, params=None, fidelity=None, sprint="full"):
        trial = self.study.ask()
        ctx = TrialContext(
            params={**PARAMS, **(params or {})},
            fidelity=dict(fidelity or FULL),
            settings=dict(SETTINGS),
            trial_number=trial.number,
            sprint=sprint,
            run_dir=self.root,
            trial=trial,
            stage_runner=self.runner,
        )
        value = objective(ctx)
        return self.study.tell(trial, value)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, corpus):
    """Training straight through, 4 epochs, in a campaign of its own."""
    return Pipeline(tmp_path_factory.mktemp("straight")).trial()


def test_full_cycle_resumes_from_the_warmup_checkpoint(tmp_path, straight):
    pipeline = Pipeline(tmp_path)
    warm = pipeline.trial(fidelity=WARMUP, sprint="warmup")
    assert warm.user_attrs["epochs_run"] == 2 and "inherited" not in warm.user_attrs
    full = pipeline.trial()
    inherited = full.user_attrs["inherited"]
    assert inherited["epoch"] == 2 and inherited["from_trial"] == warm.number and inherited["from_sprint"] == "warmup"
    assert inherited["saved_s"] > 0
    assert straight.value > 0.3  # the model learned something: the comparison means something
    assert abs(full.value - straight.value) <= TOLERANCE
    # the resumed epochs train exactly as straight through; the inherited ones are re-reported for pruners
    ours = {row["epoch"]: row for row in full.user_attrs["history"]}
    theirs = {row["epoch"]: row for row in straight.user_attrs["history"]}
    assert [ours[e]["loss"] for e in (3, 4)] == [theirs[e]["loss"] for e in (3, 4)]
    assert ours[1].get("inherited") and ours[2].get("inherited")
    assert sorted(full.intermediate_values) == [1, 2, 3, 4]
    assert full.intermediate_values[2] == pytest.approx(warm.intermediate_values[2], abs=1e-5)
    stages = full.user_attrs["stages"]
    assert stages["warmup"]["hit"] and not stages["train"]["hit"]
    assert stages["warmup"]["params"] == ["batch_size", "encoder_lr", "head_lr", "pct_start"]  # not decay
    assert stages["train"]["params"] == ["batch_size", "decay", "encoder_lr", "head_lr", "pct_start"]


def test_what_may_and_may_not_be_inherited(tmp_path):
    pipeline = Pipeline(tmp_path)
    pipeline.trial(fidelity=WARMUP, sprint="warmup")
    # a different decay shapes only the steps after the warm-up: the pure warm-up prefix is shared
    other_decay = pipeline.trial(params={"decay": "cosine", "final_lr_ratio": 0.1})
    assert other_decay.user_attrs["inherited"]["epoch"] == 2
    # a full trial that already ran: an identical configuration inherits its last epoch and trains nothing
    again = pipeline.trial(params={"decay": "cosine", "final_lr_ratio": 0.1})
    assert again.user_attrs["inherited"]["epoch"] == 4 and again.value == other_decay.value
    assert again.user_attrs["stages"]["train"]["hit"]
    # any change that reaches the warm-up misses
    for params, fidelity in [
        ({"encoder_lr": 4e-3}, FULL),
        ({"batch_size": 8}, FULL),
        ({"pct_start": 0.25}, FULL),
        ({}, {**FULL, "train_fraction": 0.5}),
        ({}, {**FULL, "epochs": 6}),
    ]:
        trial = pipeline.trial(params=params, fidelity=fidelity)
        assert "inherited" not in trial.user_attrs, (params, fidelity)


def test_corrupted_checkpoint_is_never_used(tmp_path, straight):
    pipeline = Pipeline(tmp_path)
    warm = pipeline.trial(fidelity=WARMUP, sprint="warmup")
    for key in warm.user_attrs["checkpoint_keys"]:
        path = pipeline.runner.cache.payload_path(key)
        data = bytearray(path.read_bytes())
        data[-100] ^= 0x01
        path.write_bytes(bytes(data))
    full = pipeline.trial()
    assert "inherited" not in full.user_attrs  # trained from scratch instead
    assert abs(full.value - straight.value) <= TOLERANCE


def test_without_a_cache_nothing_is_inherited_but_stages_are_timed(tmp_path, straight):
    pipeline = Pipeline(tmp_path, cached=False)
    pipeline.trial(fidelity=WARMUP, sprint="warmup")
    full = pipeline.trial()
    assert "inherited" not in full.user_attrs and "checkpoint_keys" not in full.user_attrs
    assert abs(full.value - straight.value) <= TOLERANCE
    stages = full.user_attrs["stages"]
    assert not stages["warmup"]["cached"] and stages["warmup"]["seconds"] > 0 and stages["train"]["seconds"] > 0
