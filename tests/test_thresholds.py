"""Threshold meta-learning on synthetic probabilities whose best thresholds are known."""

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore

from engine.objective import TrialContext
from engine.store.ledger import Ledger
from engine.store.records import ThresholdsResult
from engine.store.schema import thresholds_id
from engine.store.storage import open_storage
from engine.thresholds import format_report, learn_thresholds, store_result, thresholds_for_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Each class separable by a gap at a different place: any threshold inside its gap gives F1 = 1.
GAPS = {"low": (0.20, 0.30), "mid": (0.45, 0.60), "high": (0.70, 0.85)}


def separable(n=600, positive_rate=0.3, seed=0, gaps=GAPS):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(gaps))) < positive_rate).astype(np.int8)
    probs = np.empty(labels.shape)
    for c, (below, above) in enumerate(gaps.values()):
        probs[:, c] = np.where(labels[:, c] == 1, rng.uniform(above, 1.0, n), rng.uniform(0.0, below, n))
    return probs, labels


def calibrated(n, seed):
    """labels ~ Bernoulli(p): the micro-F1-optimal threshold is F*/2, about 0.382 (not 0.5)."""
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 1))
    return probs, (rng.random((n, 1)) < probs).astype(np.int8)


def test_per_class_thresholds_land_in_each_class_gap():
    probs, labels = separable()
    result = learn_thresholds(probs, labels, list(GAPS), shrinkage=0.0)
    global_t = result.global_threshold
    for name, (below, above) in GAPS.items():
        threshold = result.thresholds[name]
        assert below < threshold <= above, (name, result.thresholds)
        if below < global_t <= above:
            assert threshold == global_t  # the prior is already optimal: no move without a gain
        else:
            assert threshold == pytest.approx((below + above) / 2, abs=0.01)  # the middle, not an edge
    overall = result.overall["val_cv"]["micro_f1"]
    assert overall["per_class"] == pytest.approx(1.0)
    assert overall["at_0.5"] < 0.9 and overall["global"] < overall["per_class"] - 0.02
    assert result.recommended == "per_class"
    assert [row["class"] for row in result.table] == list(GAPS)
    assert all(row["val_cv"]["per_class"] == pytest.approx(1.0) for row in result.table)


def test_global_threshold_finds_the_known_optimum_below_one_half():
    probs, labels = calibrated(20_000, seed=1)
    test_probs, test_labels = calibrated(20_000, seed=2)
    result = learn_thresholds(probs, labels, ["only"], test_probs=test_probs, test_labels=test_labels)
    assert result.global_threshold == pytest.approx(0.382, abs=0.05)
    val, test = result.overall["val_cv"]["micro_f1"], result.overall["test"]["micro_f1"]
    assert val["at_0.5"] == pytest.approx(0.75, abs=0.02)  # the analytic F1 at 0.5
    assert val["global"] > val["at_0.5"] + 0.005
    assert test["global"] > test["at_0.5"] + 0.005  # the gain holds on data never seen


def test_thresholds_stay_at_one_half_without_a_gain():
    gaps = {"a": (0.3, 0.7), "b": (0.4, 0.55)}  # 0.5 already separates both classes perfectly
    result = learn_thresholds(*separable(gaps=gaps, seed=14), list(gaps))
    assert result.global_threshold == 0.5
    assert result.thresholds == {"a": 0.5, "b": 0.5}
    assert result.recommended == "at_0.5" and result.recommended_thresholds == {"a": 0.5, "b": 0.5}


def test_tolerance_counts_near_ties_as_ties():
    probs, labels = separable()
    strict = learn_thresholds(probs, labels, list(GAPS))
    lenient = learn_thresholds(probs, labels, list(GAPS), tolerance=1.0)  # every threshold "ties"
    assert strict.thresholds != lenient.thresholds
    assert lenient.global_threshold == 0.5 and set(lenient.thresholds.values()) == {0.5}


def test_shrinkage_pulls_rare_classes_toward_the_global_threshold():
    rng = np.random.default_rng(3)
    probs, labels = separable(n=800, positive_rate=0.3, seed=3)
    rare = np.zeros((800, 1), np.int8)
    rare[:4] = 1  # four positives, their scores just above 0.9
    rare_probs = np.where(rare == 1, 0.92, rng.uniform(0, 0.5, (800, 1)))
    probs, labels = np.hstack([probs, rare_probs]), np.hstack([labels, rare])
    classes = list(GAPS) + ["rare"]

    unshrunk = learn_thresholds(probs, labels, classes, shrinkage=0.0)
    shrunk = learn_thresholds(probs, labels, classes, shrinkage=10.0)
    global_t = shrunk.global_threshold
    assert unshrunk.global_threshold == global_t
    own = unshrunk.thresholds["rare"]
    assert own > 0.5  # on its own, the rare class would sit in its wide gap (0.5, 0.92]
    expected = (4 * own + 10 * global_t) / (4 + 10)
    assert shrunk.thresholds["rare"] == pytest.approx(expected, abs=1e-3)
    # A class with hundreds of positives barely moves.
    assert abs(shrunk.thresholds["high"] - unshrunk.thresholds["high"]) < 0.01


def test_test_labels_are_never_used_for_learning():
    def mixed(n, seed):  # one calibrated class and three separable ones
        (p1, l1), (p2, l2) = calibrated(n, seed), separable(n, seed=seed + 1)
        return np.hstack([p1, p2]), np.hstack([l1, l2])

    probs, labels = mixed(3000, seed=4)
    test_probs, test_labels = mixed(1000, seed=6)
    classes = ["calibrated"] + list(GAPS)
    with_test = learn_thresholds(probs, labels, classes, test_probs=test_probs, test_labels=test_labels)
    shuffled = np.random.default_rng(0).permutation(test_labels)
    with_shuffled = learn_thresholds(probs, labels, classes, test_probs=test_probs, test_labels=shuffled)
    without = learn_thresholds(probs, labels, classes)
    for result in (with_shuffled, without):
        assert result.thresholds == with_test.thresholds
        assert result.global_threshold == with_test.global_threshold
        assert result.overall["val_cv"] == with_test.overall["val_cv"]
    assert with_shuffled.overall["test"] != with_test.overall["test"]  # the test labels were scored
    assert without.overall["test"] is None and without.table[0]["test"] is None


def test_cross_validation_is_honest_about_overfitting():
    # Pure noise: in-sample tuning always "improves" F1, held-out folds must not show a real gain.
    rng = np.random.default_rng(8)
    probs, labels = rng.random((400, 4)), (rng.random((400, 4)) < 0.1).astype(np.int8)
    result = learn_thresholds(probs, labels, list("abcd"), shrinkage=0.0)
    from engine.thresholds import score

    in_sample = score(probs, labels, np.array(list(result.thresholds.values())), "micro_f1")
    assert result.overall["val_cv"]["micro_f1"]["per_class"] < in_sample - 0.01


def test_macro_metric_tunes_each_class_on_its_own():
    probs, labels = separable(seed=9)
    result = learn_thresholds(probs, labels, list(GAPS), metric="macro_f1", shrinkage=0.0)
    assert result.metric == "macro_f1"
    for name, (below, above) in GAPS.items():
        assert below < result.thresholds[name] <= above
    assert result.overall["val_cv"]["macro_f1"]["per_class"] == pytest.approx(1.0)


def test_skopt_gp_optimizer_runs_and_returns_plain_json():
    gaps = {"a": (0.2, 0.8), "b": (0.3, 0.7)}
    probs, labels = separable(n=200, gaps=gaps, seed=10)
    result = learn_thresholds(probs, labels, list(gaps), optimizer="skopt-gp", folds=2, n_calls=11, seed=1)
    assert result.optimizer == "skopt-gp"
    assert json.loads(json.dumps(result.to_json())) == result.to_json()
    assert all(0.01 <= t <= 0.99 for t in result.thresholds.values())
    assert result.overall["val_cv"]["micro_f1"]["per_class"] >= 0.95


def test_result_is_plain_json_and_reports_render():
    probs, labels = separable()
    test_probs, test_labels = separable(seed=11)
    result = learn_thresholds(probs, labels, list(GAPS), test_probs=test_probs, test_labels=test_labels)
    assert json.loads(json.dumps(result.to_json())) == result.to_json()
    assert ThresholdsResult.from_json(result.to_json()) == result
    assert set(result.to_json()) >= {"classes", "thresholds", "global_threshold", "table", "overall"}
    row = result.table[0]
    assert set(row["val_cv"]) == set(row["test"]) == {"at_0.5", "global", "per_class"}
    text = format_report(result)
    for name in GAPS:
        assert name in text
    assert "overall micro_f1" in text and "recommended: per_class (cross-validated micro_f1 1.000 vs" in text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": "accuracy"}, "metric"),
        ({"optimizer": "bayes"}, "optimizer"),
        ({"folds": 1000}, "folds"),
        ({"test_probs": np.zeros((3, 2)), "test_labels": np.zeros((3, 2))}, "test: 2 columns but 3 classes"),
    ],
)
def test_bad_inputs_say_what_is_wrong(kwargs, message):
    probs, labels = separable(n=50)
    with pytest.raises(ValueError, match=message):
        learn_thresholds(probs, labels, list(GAPS), **kwargs)
    with pytest.raises(ValueError, match="same"):
        learn_thresholds(probs, labels[:10], list(GAPS))


def test_thresholds_for_trial_reads_the_trials_artifacts(tmp_path: Path):
    store = FileSystemArtifactStore(str(tmp_path))
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    ctx = TrialContext(
        params={},
        fidelity={},
        settings={},
        trial_number=trial.number,
        sprint="s",
        run_dir=tmp_path,
        trial=trial,
        artifact_store=store,
    )
    probs, labels = separable(seed=12)
    test_probs, test_labels = separable(seed=13)
    ctx.save_artifact("val_probs", probs=probs, labels=labels, classes=np.array(list(GAPS)))
    ctx.save_artifact("test_probs", probs=test_probs, labels=test_labels, classes=np.array(list(GAPS)))
    study.tell(trial, 1.0)

    frozen = study.trials[0]
    result = thresholds_for_trial(store, frozen, metric="micro_f1", folds=3, optimizer="grid")
    direct = learn_thresholds(probs, labels, list(GAPS), folds=3, test_probs=test_probs, test_labels=test_labels)
    assert result.trial == 0
    assert result.thresholds == direct.thresholds and result.overall == direct.overall

    bare = study.ask()
    study.tell(bare, 0.0)
    with pytest.raises(KeyError, match="trial 1 has no 'val_probs' artifact"):
        thresholds_for_trial(store, study.trials[1], metric="micro_f1", folds=3, optimizer="grid")


def test_a_stored_result_is_stamped_once_and_reads_back_typed(tmp_path: Path):
    """cli, tui and the coordinator store through engine.thresholds.store_result: trial, source, who and when."""
    ledger = Ledger(open_storage(f"journal://{tmp_path / 'journal.log'}", heartbeat=False), "t", create=True)
    result = learn_thresholds(*separable(n=60), list(GAPS), folds=3)
    stamped = store_result(ledger, result, study="t/00-full", trial=4, source="cli")
    assert (stamped.study, stamped.trial, stamped.source) == ("t/00-full", 4, "cli")
    assert stamped.who is not None and stamped.who.user and stamped.when
    assert ledger.thresholds() == {thresholds_id("t/00-full", 4): stamped}
    assert stamped.replace(study=None, trial=None, source=None, who=None, when=None) == result
    with pytest.raises(ValueError, match="with its study and trial"):
        ledger.put_thresholds(result)  # not stamped: no key to store it under
