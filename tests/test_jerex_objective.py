"""The jerex objective under a real Optuna study: pruning, artifacts, fidelity knobs, user data."""

import numpy as np
import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from engine.objective import TrialContext, load_trial_arrays
from engine.thresholds import thresholds_for_trial
from engine.workloads.jerex.corpus import RELATION_TYPES, generate_corpus, write_corpus
from engine.workloads.jerex.objective import objective

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

SETTINGS = {"encoder": "tiny", "corpus_seed": 13, "n_train": 120, "n_val": 60, "n_test": 40}
PARAMS = {"encoder_lr": 3e-3, "head_lr": 1e-2, "batch_size": 16, "pct_start": 0.25}


def fidelity(**overrides):
    knobs = {
        "train_fraction": 1.0,
        "val_fraction": 1.0,
        "epochs": 3,
        "scheduler": True,
        "max_length": 64,
        "warmup_only": False,
    }
    return {**knobs, **overrides}


def run_trial(study, tmp_path, *, params=PARAMS, settings=SETTINGS, **fidelity_overrides):
    trial = study.ask()
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir(exist_ok=True)
    ctx = TrialContext(
        params=params,
        fidelity=fidelity(**fidelity_overrides),
        settings=settings,
        trial_number=trial.number,
        sprint="test",
        run_dir=tmp_path,
        trial=trial,
        artifact_store=store,
    )
    try:
        value = objective(ctx)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, value)
    return study.trials[-1], store, ctx


def test_pruner_stops_the_trial_mid_training(tmp_path):
    # Prunes any value below 2.0 once step 2 is reached: the trial must stop after epoch 2 of 5.
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=2)
    )
    trial, _, ctx = run_trial(study, tmp_path, epochs=5)
    assert trial.state == TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [1, 2]
    assert ctx.last_step == 2
    assert [h["epoch"] for h in trial.user_attrs["history"]] == [1, 2]
    assert trial.user_attrs["pruned_at"]["step"] == 2
    assert "artifacts" not in trial.user_attrs  # a pruned trial never reaches the outputs


def test_artifacts_round_trip_and_feed_threshold_learning(tmp_path):
    study = optuna.create_study(direction="maximize")
    trial, store, _ = run_trial(study, tmp_path)
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2, 3]
    assert trial.value == pytest.approx(trial.intermediate_values[3])
    assert 0 <= trial.user_attrs["entity_f1"] <= 1 and trial.user_attrs["epochs_run"] == 3

    val = load_trial_arrays(store, trial.user_attrs["artifacts"]["val_probs"])
    test = load_trial_arrays(store, trial.user_attrs["artifacts"]["test_probs"])
    for arrays in (val, test):
        assert list(arrays["classes"]) == list(RELATION_TYPES)
        assert arrays["probs"].shape == arrays["labels"].shape and arrays["probs"].shape[1] == len(RELATION_TYPES)
        assert ((arrays["probs"] >= 0) & (arrays["probs"] <= 1)).all()
        assert set(np.unique(arrays["labels"])) <= {0, 1}
    corpus = generate_corpus(13, 120, 60, 40)
    assert val["labels"].sum() == sum(len(s.relations) for s in corpus.val)
    assert test["labels"].sum() == sum(len(s.relations) for s in corpus.test)
    predicted = val["probs"] >= 0.5
    tp = (predicted & (val["labels"] == 1)).sum()
    assert trial.value == pytest.approx(2 * tp / (predicted.sum() + val["labels"].sum()))

    result = thresholds_for_trial(store, study.trials[-1], metric="micro_f1", folds=3, optimizer="grid")
    assert result.trial == trial.number and list(result.classes) == list(RELATION_TYPES)
    assert result.overall["val_cv"]["micro_f1"]["at_0.5"] == pytest.approx(trial.value)
    assert result.n_test == len(test["probs"])


def test_warmup_only_trains_through_the_warmup_epochs(tmp_path):
    study = optuna.create_study(direction="maximize")
    trial, _, _ = run_trial(study, tmp_path, epochs=8, warmup_only=True)  # pct_start 0.25 of 8 epochs
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2] and trial.user_attrs["epochs_run"] == 2


def test_fractions_take_a_share_of_the_data(tmp_path):
    study = optuna.create_study(direction="maximize")
    trial, store, _ = run_trial(study, tmp_path, epochs=1, train_fraction=0.5, val_fraction=1 / 3, scheduler=False)
    val = load_trial_arrays(store, trial.user_attrs["artifacts"]["val_probs"])
    corpus = generate_corpus(13, 120, 60, 40)
    assert val["labels"].sum() == sum(len(s.relations) for s in corpus.val[:20])


def test_user_data_directory_and_dry_run(tmp_path):
    data_dir = write_corpus(tmp_path / "mydata", generate_corpus(99, 40, 12, 12))
    ctx = TrialContext(
        params=PARAMS,
        fidelity=fidelity(epochs=1),
        settings={"data_dir": str(data_dir)},
        trial_number=0,
        sprint="dry",
        run_dir=tmp_path / "run",
    )
    value = objective(ctx)  # no trial: reports and artifacts are no-ops
    assert 0.0 <= value <= 1.0 and ctx.last_step == 1
    assert ctx.save_artifact("x", a=np.zeros(1)) is None
    assert not (tmp_path / "run" / "jerex-corpus").exists()  # user data: nothing generated


@pytest.mark.parametrize(
    "part, value, message",
    [
        ("settings", {"encoder": "tiny", "n_trains": 5}, "unknown jerex settings \\['n_trains'\\]"),
        ("fidelity", fidelity(epoch=3), "unknown jerex fidelity knobs \\['epoch'\\]"),
        ("params", {"lr": 1e-3}, "unknown jerex hyperparameters \\['lr'\\]"),
    ],
)
def test_typos_in_the_campaign_fail_fast(tmp_path, part, value, message):
    kwargs = {"params": PARAMS, "fidelity": fidelity(), "settings": SETTINGS, part: value}
    ctx = TrialContext(**kwargs, trial_number=0, sprint="dry", run_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        objective(ctx)


def test_missing_encoder_directory_fails_the_trial_with_the_path(tmp_path):
    ctx = TrialContext(
        params=PARAMS,
        fidelity=fidelity(),
        settings={**SETTINGS, "encoder": str(tmp_path / "minilm")},
        trial_number=0,
        sprint="dry",
        run_dir=tmp_path,
    )
    with pytest.raises(FileNotFoundError, match=f"encoder directory {tmp_path / 'minilm'} does not exist"):
        objective(ctx)
