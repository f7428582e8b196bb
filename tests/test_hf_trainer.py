"""Hugging Face Trainer through engine.execution.hf_trainer: steps reported to the trial, pruning stops training.

A tiny BERT (hidden 32, 2 layers, built from a config) on 64 generated sentences: each Trainer run
takes about a second on CPU.
"""

import json
from pathlib import Path

import optuna
import pytest
from enginekit import ROOT, hpo_tui, write_toml
from optuna.trial import TrialState
from transformers import DataCollatorWithPadding, Trainer

from engine.execution.hf_trainer import (
    HpoTrainerCallback,
    train_and_evaluate,
    train_subset,
    training_args_from_fidelity,
)
from engine.execution.trials import run_trial
from engine.objective import TrialContext
from engine.store.records import SprintRecord
from engine.toml_compat import tomllib
from engine.workloads import trainer_classifier as workload

TINY = {"seed": 0, "corpus_seed": 0, "n_train": 64, "n_val": 32, "hidden_size": 32, "layers": 2}
SPACE = {"learning_rate": {"type": "float", "low": 5e-3, "high": 1e-2, "log": True}}
EPOCHS = 2


def context(trial, run_dir: Path, **fidelity) -> TrialContext:
    return TrialContext(
        params={**trial.params, "learning_rate": 5e-3} if trial is not None else {"learning_rate": 5e-3},
        fidelity={"epochs": EPOCHS, "train_fraction": 1.0, **fidelity},
        settings=dict(TINY),
        trial_number=trial.number if trial is not None else 0,
        sprint="s",
        run_dir=run_dir,
        trial=trial,
    )


def tiny_trainer(ctx: TrialContext) -> Trainer:
    tokenizer, train, val = workload.load_data(0, TINY["n_train"], TINY["n_val"])
    return Trainer(
        model=workload.build_model(len(tokenizer), 32, 2, 0.1),
        args=training_args_from_fidelity(ctx, metric_for_best_model="accuracy"),
        train_dataset=train_subset(ctx, train),
        eval_dataset=val,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=workload.accuracy,
        callbacks=[HpoTrainerCallback(ctx)],
    )


def test_pruning_stops_trainer_its_own_way_and_the_trial_ends_pruned(tmp_path):
    # A threshold no accuracy reaches: the pruner stops the trial at its first evaluation.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask()
    ctx = context(trial, tmp_path)
    trainer = tiny_trainer(ctx)
    with pytest.raises(optuna.TrialPruned, match="pruned at step 0"):
        train_and_evaluate(trainer)
    assert trainer.state.epoch == pytest.approx(1.0)  # Trainer stopped after 1 of 2 epochs, no exception inside it
    assert list(study.trials[0].intermediate_values) == [0]
    study.tell(trial, state=TrialState.PRUNED)
    assert study.trials[0].state == TrialState.PRUNED and study.trials[0].user_attrs["pruned_at"]["step"] == 0


def sprint(fidelity: dict) -> SprintRecord:
    return SprintRecord(
        index=0,
        name="s",
        study="s",
        sampler="random",
        pruner="none",
        space=SPACE,
        tuned=("learning_rate",),
        fixed={},
        level="full",
        fidelity=fidelity,
    )


def run_one(study: optuna.Study, run_dir: Path, fidelity: dict):
    return run_trial(
        study,
        objective=workload.objective,
        sprint=sprint(fidelity),
        settings=TINY,
        full_fidelity={"epochs": EPOCHS, "train_fraction": 1.0},
        cost_knobs=["epochs"],
        run_dir=run_dir,
        artifact_store=None,
        worker="test",
    )


def test_each_evaluation_is_a_step_and_the_trial_value_is_the_last(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(direction="maximize", storage=storage, pruner=optuna.pruners.NopPruner())
    done = run_one(study, tmp_path, {"epochs": EPOCHS, "train_fraction": 1.0})
    assert done.state == TrialState.COMPLETE, done.user_attrs.get("fail_reason")
    assert sorted(done.intermediate_values) == [0, 1]  # one step per epoch
    assert done.value == done.intermediate_values[1] and 0.0 <= done.value <= 1.0

    pruning = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    pruned = run_one(pruning, tmp_path, {"epochs": EPOCHS, "train_fraction": 1.0})
    assert pruned.state == TrialState.PRUNED and list(pruned.intermediate_values) == [0]
    assert pruned.user_attrs["cost"] == pytest.approx(1 / EPOCHS)  # a pruned trial costs the epochs it ran


def test_training_args_and_subset_follow_the_fidelity(tmp_path):
    ctx = context(None, tmp_path, epochs=4, train_fraction=0.25)
    ctx.params["weight_decay"] = 0.05
    ctx.params["dropout"] = 0.2  # not a TrainingArguments field: left to the model
    args = training_args_from_fidelity(ctx, per_device_train_batch_size=4)
    assert args.num_train_epochs == 4 and args.learning_rate == 5e-3 and args.weight_decay == 0.05
    assert args.per_device_train_batch_size == 4 and args.disable_tqdm and args.report_to == []
    with pytest.raises(TypeError, match="no field colour"):
        training_args_from_fidelity(ctx, colour="blue")
    rows = list(range(100))
    subset = train_subset(ctx, rows)
    assert len(subset) == 25 and subset == train_subset(ctx, rows) and subset != rows[:25]
    assert train_subset(context(None, tmp_path), rows) is rows  # train_fraction 1: the whole set


@pytest.mark.xdist_group("trainer_campaign")
def test_shipped_trainer_campaign_runs_headless_with_a_tiny_model(tmp_path):
    data = tomllib.loads((ROOT / "campaigns" / "trainer-tiny.toml").read_text())
    data["objective"]["settings"] = dict(TINY)
    data["sprints"][0]["n_trials"] = 2
    data["sprints"][1].update(n_trials=2, seed_top=1, pruner_options={"n_startup_trials": 1, "n_warmup_steps": 0})
    data["fidelity"]["levels"] = {
        "low": {"train_fraction": 0.5, "epochs": 1},
        "high": {"train_fraction": 1.0, "epochs": 2},
    }
    campaign = write_toml(tmp_path / "trainer.toml", data)
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as a worker process has; the box has 2 cores
    out = hpo_tui("run", str(campaign), "--headless", "--workers", "0", cwd=tmp_path, timeout=240, env=one_thread)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "campaign trainer-tiny: finished" in out.stdout
    assert "{'loss'" not in out.stdout and "eval_accuracy" not in out.stdout  # Trainer's own prints stay out
    exported = hpo_tui("export", "trainer-tiny", "--format", "json", cwd=tmp_path)
    trials = json.loads(exported.stdout)["trials"]
    assert len(trials) == 4
    for trial in trials:
        if trial["state"] == "COMPLETE":
            assert len(trial["intermediate"]) == trial["fidelity"]["epochs"]
            assert trial["value"] == trial["intermediate"][str(trial["fidelity"]["epochs"] - 1)]
