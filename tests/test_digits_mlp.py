"""The digits MLP workload: real training through partial_fit, per-epoch reports, fidelity knobs,
determinism and pruning."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from enginekit import RecordingContext

from engine.objective import TrialContext, load_objective
from engine.workloads import digits_mlp

GOOD = {"learning_rate_init": 3e-3, "alpha": 1e-4, "hidden_units": 64, "batch_size": 32}


def _ctx(tmp_path, params=GOOD, fidelity=None, settings=None, **kw):
    return RecordingContext(
        params=dict(params),
        fidelity=fidelity or {"train_fraction": 1.0, "epochs": 8},
        settings=settings or {},
        trial_number=0,
        sprint="t",
        run_dir=tmp_path,
        **kw,
    )


def test_split_is_fixed_and_disjoint():
    d = digits_mlp.load_split(0)
    assert len(d["y_train"]) + len(d["y_val"]) + len(d["y_test"]) == 1797
    assert set(np.unique(d["y_val"])) == set(range(10))
    assert (len(d["y_train"]), len(d["y_val"]), len(d["y_test"])) == (1077, 360, 360)
    again = digits_mlp.load_split(0)
    assert np.array_equal(again["y_val"], d["y_val"]) and not d["X_val"].flags.writeable
    assert d["X_train"].max() <= 1.0


def test_accuracy_floor_with_sane_params(tmp_path):
    ctx = _ctx(tmp_path)
    error = load_objective("engine.workloads.digits_mlp:objective")(ctx)
    assert [s for s, _ in ctx.reports] == list(range(8))
    assert error == ctx.reports[-1][1]
    assert error < 0.10  # validation accuracy above 90% after 8 epochs
    assert ctx.reports[0][1] > error  # learning
    assert ctx.attrs["val_accuracy"] == pytest.approx(1 - error)
    assert ctx.attrs["test_accuracy"] > 0.85
    assert ctx.attrs["n_train"] == len(digits_mlp.load_split(0)["y_train"])


def test_deterministic(tmp_path):
    a, b = _ctx(tmp_path), _ctx(tmp_path)
    assert digits_mlp.objective(a) == digits_mlp.objective(b)
    assert a.reports == b.reports
    c = _ctx(tmp_path, settings={"seed": 1})
    digits_mlp.objective(c)
    assert c.reports != a.reports


def test_fidelity_knobs_change_cost_and_result(tmp_path):
    low = _ctx(tmp_path, fidelity={"train_fraction": 0.2, "val_fraction": 0.5, "epochs": 3})
    low_error = digits_mlp.objective(low)
    assert len(low.reports) == 3
    assert low.attrs["n_train"] < 0.25 * len(digits_mlp.load_split(0)["y_train"])
    high = _ctx(tmp_path, fidelity={"train_fraction": 1.0, "epochs": 12})
    assert digits_mlp.objective(high) < low_error


def test_bad_params_are_worse(tmp_path):
    bad = _ctx(tmp_path, params={**GOOD, "learning_rate_init": 1e-4, "hidden_units": 16, "batch_size": 256})
    assert digits_mlp.objective(bad) > digits_mlp.objective(_ctx(tmp_path)) + 0.2


def test_log_loss_metric(tmp_path):
    ctx = _ctx(tmp_path, settings={"metric": "log_loss"})
    value = digits_mlp.objective(ctx)
    assert value == pytest.approx(ctx.attrs["val_log_loss"])
    assert 0 < value < 0.5
    with pytest.raises(ValueError):
        digits_mlp.objective(_ctx(tmp_path, settings={"metric": "f1"}))


def test_pruning_stops_training(tmp_path):
    ctx = _ctx(tmp_path, fidelity={"train_fraction": 1.0, "epochs": 20}, prune_at=1)
    with pytest.raises(optuna.TrialPruned):
        digits_mlp.objective(ctx)
    assert [s for s, _ in ctx.reports] == [0, 1]
    assert "val_accuracy" not in ctx.attrs


def test_real_trial_and_artifact(tmp_path):
    from optuna.artifacts import FileSystemArtifactStore

    from engine.objective import load_trial_arrays

    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir()
    study = optuna.create_study(direction="minimize")
    trial = study.ask()
    ctx = TrialContext(
        params=dict(GOOD),
        fidelity={"train_fraction": 0.5, "epochs": 3},
        settings={},
        trial_number=trial.number,
        sprint="t",
        run_dir=tmp_path,
        trial=trial,
        artifact_store=store,
    )
    value = digits_mlp.objective(ctx)
    study.tell(trial, value)
    frozen = study.trials[0]
    assert sorted(frozen.intermediate_values) == [0, 1, 2]
    arrays = load_trial_arrays(store, frozen.user_attrs["artifacts"]["val_probs"])
    assert arrays["probs"].shape == (len(arrays["labels"]), 10)
    assert np.mean(arrays["probs"].argmax(1) == arrays["labels"]) == pytest.approx(1 - value)
