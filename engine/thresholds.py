"""Threshold meta-learning: one decision threshold per class, learned on validation probabilities.

A multi-label model gives a probability per (item, class); deciding at 0.5 is rarely best for F1. We
learn a global threshold and one per class that maximise micro-F1 (or macro-F1), then pull each
class's threshold toward the global one in proportion to how few positives it had
(t_c = (n_c * t_c_hat + k * t_global) / (n_c + k)), so rare classes do not overfit.

A threshold moves only for a gain: when the prior (0.5 for the global threshold, the global
threshold for a class) is among the best, it is kept; otherwise the middle of the nearest best
stretch is taken, not its edge, which sits on a single validation example.

Honest numbers: validation scores are cross-validated (learn on k-1 folds, decide on the held-out
fold, pool the held-out decisions). Test probabilities, when given, are only scored with thresholds
learned on the whole validation set; test labels are never read while learning. The strategy with
the best cross-validated score (0.5, global, per class; ties to the simpler) is `recommended`, so a
small or well-calibrated validation set falls back to 0.5 rather than to thresholds fit to noise.

Optimizers: "grid" (default) searches 0.01..0.99 in steps of 0.01, class by class (coordinate ascent
for micro-F1, whose classes interact through the pooled counts; exact per class for macro-F1).
"skopt-gp" runs skopt.gp_minimize over the same box. F1 is a step function of the thresholds, which
suits an exhaustive grid and not a smooth GP surrogate; the grid is also deterministic and takes
milliseconds, where the GP takes seconds per fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from engine.store.ledger import Ledger
from engine.store.records import Stamp, ThresholdsResult
from engine.store.schema import ARTIFACTS_ATTR, now_iso, who

METRICS = ("micro_f1", "macro_f1")
OPTIMIZERS = ("grid", "skopt-gp")
GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)
STRATEGIES = ("at_0.5", "global", "per_class")
DEFAULT_SHRINKAGE = 10.0  # positives at which a class's own threshold and the global one weigh the same
DEFAULT_TOLERANCE = 0.0  # F1 within this of the best counts as a tie (ties keep the prior threshold)
COORDINATE_ROUNDS = 3


# --------------------------------------------------------------------------- scoring


def _counts(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class TP, FP, FN when deciding `probs >= thresholds` (thresholds broadcast over items)."""
    predicted = probs >= thresholds
    tp = np.sum(predicted & labels, axis=0)
    fp = np.sum(predicted & ~labels, axis=0)
    fn = np.sum(~predicted & labels, axis=0)
    return tp, fp, fn


def _f1(tp, fp, fn) -> np.ndarray:
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def score(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | float, metric: str) -> float:
    tp, fp, fn = _counts(probs, labels, np.broadcast_to(np.asarray(thresholds, float), probs.shape[1:]))
    if metric == "micro_f1":
        return float(_f1(tp.sum(), fp.sum(), fn.sum()))
    return float(np.mean(_f1(tp, fp, fn))) if len(tp) else 0.0


# --------------------------------------------------------------------------- learning on one sample


def _pick(values: np.ndarray, prior: float, tolerance: float) -> float:
    """The grid threshold to keep, given the score at every grid point.

    Thresholds within `tolerance` of the best score all count as best. If the prior (0.5 for the
    global threshold, the global threshold for a class) is among them, keep it: move only for a
    gain. Otherwise take the middle of the best stretch nearest the prior, away from its edges,
    which sit on single validation examples.
    """
    best = values >= values.max() - tolerance - 1e-12
    prior_index = int(np.argmin(np.abs(GRID - prior)))
    if best[prior_index] and abs(GRID[prior_index] - prior) < 1e-9:
        return float(prior)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], best.astype(int), [0]])))
    runs = list(zip(edges[::2], edges[1::2] - 1, strict=False))  # inclusive index ranges of each best stretch
    start, end = min(runs, key=lambda run: max(run[0] - prior_index, prior_index - run[1], 0))
    return float(GRID[(start + end) // 2])


def _column_counts_on_grid(scores: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN of one class at every grid threshold."""
    predicted = scores[:, None] >= GRID[None, :]
    tp = np.sum(predicted & gold[:, None], axis=0)
    fp = np.sum(predicted & ~gold[:, None], axis=0)
    return tp, fp, gold.sum() - tp


def _grid_global(probs: np.ndarray, labels: np.ndarray, metric: str, tolerance: float) -> float:
    values = np.array([score(probs, labels, t, metric) for t in GRID])
    return _pick(values, 0.5, tolerance)


def _grid_per_class(probs: np.ndarray, labels: np.ndarray, metric: str, start: float, tolerance: float) -> np.ndarray:
    n_classes = probs.shape[1]
    grids = [_column_counts_on_grid(probs[:, c], labels[:, c]) for c in range(n_classes)]
    thresholds = np.full(n_classes, start)
    if metric == "macro_f1":  # separable: each class on its own
        return np.array([_pick(_f1(*grids[c]), start, tolerance) for c in range(n_classes)])
    for _ in range(COORDINATE_ROUNDS):
        changed = False
        tp, fp, fn = _counts(probs, labels, thresholds)
        for c in range(n_classes):
            rest = tp.sum() - tp[c], fp.sum() - fp[c], fn.sum() - fn[c]
            ctp, cfp, cfn = grids[c]
            best = _pick(_f1(rest[0] + ctp, rest[1] + cfp, rest[2] + cfn), start, tolerance)
            if best != thresholds[c]:
                thresholds[c], changed = best, True
                tp, fp, fn = _counts(probs, labels, thresholds)
        if not changed:
            break
    return thresholds


def _skopt(
    probs: np.ndarray, labels: np.ndarray, metric: str, n_dims: int, seed: int, n_calls: int, start: float | None = None
) -> np.ndarray:
    from skopt import gp_minimize

    def loss(point):
        thresholds = point[0] if n_dims == 1 else np.asarray(point)
        return -score(probs, labels, thresholds, metric)

    result = gp_minimize(
        loss,
        [(float(GRID[0]), float(GRID[-1]))] * n_dims,
        n_calls=n_calls,
        n_initial_points=min(10, n_calls),
        random_state=seed,
        acq_optimizer="sampling",
        n_points=1000,  # L-BFGS restarts cost ~4x more for no gain on a step function
        x0=None if start is None else [[float(start)] * n_dims],  # the global threshold is a known good start
    )
    return np.asarray([float(x) for x in result.x])


def fit_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    metric: str,
    optimizer: str,
    shrinkage: float,
    tolerance: float,
    seed: int,
    n_calls: int,
) -> tuple[float, np.ndarray]:
    """(global threshold, per-class thresholds shrunk toward it) learned on this sample only."""
    if optimizer == "grid":
        global_t = _grid_global(probs, labels, metric, tolerance)
        own = _grid_per_class(probs, labels, metric, global_t, tolerance)
    else:
        global_t = float(_skopt(probs, labels, metric, 1, seed, n_calls)[0])
        own = _skopt(probs, labels, metric, probs.shape[1], seed, max(n_calls, 5 * probs.shape[1]), start=global_t)
    positives = labels.sum(axis=0)
    shrunk = (positives * own + shrinkage * global_t) / (positives + shrinkage)
    return global_t, shrunk


# --------------------------------------------------------------------------- the report


def _decisions(probs: np.ndarray, global_t: float, per_class: np.ndarray) -> dict[str, np.ndarray]:
    return {"at_0.5": probs >= 0.5, "global": probs >= global_t, "per_class": probs >= per_class}


def _summarise(decisions: dict[str, np.ndarray], labels: np.ndarray) -> tuple[dict, dict]:
    """Per-class F1 and overall micro/macro F1 for each strategy's decisions."""
    per_class: dict[str, Any] = {}
    overall: dict[str, dict[str, float]] = {"micro_f1": {}, "macro_f1": {}}
    for strategy, predicted in decisions.items():
        tp = np.sum(predicted & labels, axis=0)
        fp = np.sum(predicted & ~labels, axis=0)
        fn = np.sum(~predicted & labels, axis=0)
        per_class[strategy] = _f1(tp, fp, fn)
        overall["micro_f1"][strategy] = float(_f1(tp.sum(), fp.sum(), fn.sum()))
        overall["macro_f1"][strategy] = float(np.mean(per_class[strategy])) if len(tp) else 0.0
    return per_class, overall


def _check(probs, labels, classes, what: str) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels)
    if probs.ndim != 2 or probs.shape != labels.shape:
        raise ValueError(
            f"{what}: probs {probs.shape} and labels {labels.shape} must be the same (items, classes) shape"
        )
    if probs.shape[1] != len(classes):
        raise ValueError(f"{what}: {probs.shape[1]} columns but {len(classes)} classes")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0/1")
    return probs, labels.astype(bool)


def learn_thresholds(
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    classes: Sequence[str],
    *,
    metric: str = "micro_f1",
    folds: int = 5,
    optimizer: str = "grid",
    seed: int = 0,
    test_probs: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    shrinkage: float = DEFAULT_SHRINKAGE,
    tolerance: float = DEFAULT_TOLERANCE,
    n_calls: int = 20,
) -> ThresholdsResult:
    """Learn per-class thresholds on validation data and report F1 at 0.5, global and per class.

    The result holds classes, thresholds {class: t}, global_threshold, table (one row per class),
    overall, and `recommended`: the strategy with the best cross-validated score.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    classes = [str(c) for c in classes]
    val_probs, val_labels = _check(val_probs, val_labels, classes, "validation")
    if len(val_probs) < folds:
        raise ValueError(f"{len(val_probs)} validation items cannot be split into {folds} folds")
    fit = partial(
        fit_thresholds,
        metric=metric,
        optimizer=optimizer,
        shrinkage=shrinkage,
        tolerance=tolerance,
        seed=seed,
        n_calls=n_calls,
    )

    # Cross-validation: every validation item is decided by thresholds that never saw it.
    held_out = {s: np.zeros_like(val_labels) for s in STRATEGIES}
    from sklearn.model_selection import KFold  # scikit-learn takes a second to load: not for `status`

    for learn_rows, decide_rows in KFold(folds, shuffle=True, random_state=seed).split(val_probs):
        global_t, per_class = fit(val_probs[learn_rows], val_labels[learn_rows])
        for strategy, predicted in _decisions(val_probs[decide_rows], global_t, per_class).items():
            held_out[strategy][decide_rows] = predicted
    val_per_class, val_overall = _summarise(held_out, val_labels)

    global_t, per_class = fit(val_probs, val_labels)
    test_per_class = test_overall = None
    if test_probs is not None and test_labels is not None:
        test_probs, test_labels = _check(test_probs, test_labels, classes, "test")
        test_per_class, test_overall = _summarise(_decisions(test_probs, global_t, per_class), test_labels)

    table = []
    for c, name in enumerate(classes):
        table.append(
            {
                "class": name,
                "threshold": round(float(per_class[c]), 4),
                "val_positives": int(val_labels[:, c].sum()),
                "test_positives": None
                if test_per_class is None or test_labels is None
                else int(test_labels[:, c].sum()),
                "val_cv": {s: float(val_per_class[s][c]) for s in STRATEGIES},
                "test": None if test_per_class is None else {s: float(test_per_class[s][c]) for s in STRATEGIES},
            }
        )
    # Chosen on cross-validated scores; ties go to the simpler strategy (0.5, then global).
    recommended = max(STRATEGIES, key=lambda s: (val_overall[metric][s], -STRATEGIES.index(s)))
    decide_at = {
        "at_0.5": np.full(len(classes), 0.5),
        "global": np.full(len(classes), global_t),
        "per_class": per_class,
    }
    return ThresholdsResult(
        metric=metric,
        optimizer=optimizer,
        folds=folds,
        shrinkage=shrinkage,
        tolerance=tolerance,
        seed=seed,
        classes=tuple(classes),
        thresholds={name: round(float(per_class[c]), 4) for c, name in enumerate(classes)},
        global_threshold=round(float(global_t), 4),
        table=tuple(table),
        overall={"val_cv": val_overall, "test": test_overall},
        recommended=recommended,
        recommended_thresholds={name: round(float(decide_at[recommended][c]), 4) for c, name in enumerate(classes)},
        n_val=int(len(val_probs)),
        n_test=None if test_overall is None or test_probs is None else int(len(test_probs)),
    )


def thresholds_for_trial(
    artifact_store: Any,
    trial,
    *,
    metric: str = "micro_f1",
    folds: int = 5,
    optimizer: str = "grid",
    seed: int = 0,
    artifact: str = "val_probs",
    test_artifact: str = "test_probs",
) -> ThresholdsResult:
    """Learn thresholds from a finished trial's saved probabilities (artifacts probs/labels/classes)."""
    from engine.objective import load_trial_arrays

    index = trial.user_attrs.get(ARTIFACTS_ATTR, {})
    if artifact not in index:
        raise KeyError(f"trial {trial.number} has no {artifact!r} artifact (it has: {sorted(index) or 'none'})")
    val = load_trial_arrays(artifact_store, index[artifact])
    test = load_trial_arrays(artifact_store, index[test_artifact]) if test_artifact in index else None
    classes = [str(c) for c in val["classes"]] if "classes" in val else [str(i) for i in range(val["probs"].shape[1])]
    return learn_thresholds(
        val["probs"],
        val["labels"],
        classes,
        metric=metric,
        folds=folds,
        optimizer=optimizer,
        seed=seed,
        test_probs=None if test is None else test["probs"],
        test_labels=None if test is None else test["labels"],
    ).replace(trial=trial.number)


def store_result(ledger: Ledger, result: ThresholdsResult, *, study: str, trial: int, source: str) -> ThresholdsResult:
    """Stamp a result with its trial and who stored it from where (cli, tui, policy), and store it."""
    stamped = result.replace(study=study, trial=trial, source=source, who=Stamp.from_json(who()), when=now_iso())
    ledger.put_thresholds(stamped)
    return stamped


def format_report(result: ThresholdsResult) -> str:
    """A plain-text table: per class and overall F1 at 0.5, global and per-class thresholds."""
    has_test = result.overall["test"] is not None
    header = f"{'class':<16}{'thr':>6}{'n_val':>7}   val_cv: @0.5  global  per-cls"
    header += "   test: @0.5  global  per-cls" if has_test else ""
    lines = [
        f"thresholds ({result.metric}, optimizer {result.optimizer}, {result.folds}-fold CV, "
        f"global {result.global_threshold:.2f})",
        header,
    ]

    def cells(values: dict | None) -> str:
        return "" if values is None else "".join(f"{values[s]:>8.3f}" for s in STRATEGIES)

    for row in result.table:
        lines.append(
            f"{row['class'][:15]:<16}{row['threshold']:>6.2f}{row['val_positives']:>7}        {cells(row['val_cv'])}"
            + (f"         {cells(row['test'])}" if has_test else "")
        )
    for metric in METRICS:
        test = result.overall["test"][metric] if has_test else None
        lines.append(
            f"{'overall ' + metric:<29}        {cells(result.overall['val_cv'][metric])}"
            + (f"         {cells(test)}" if has_test else "")
        )
    recommended = result.recommended
    scores = result.overall["val_cv"][result.metric]
    lines.append(
        f"recommended: {recommended} (cross-validated {result.metric} "
        f"{scores[recommended]:.3f} vs {scores['at_0.5']:.3f} at 0.5)"
    )
    return "\n".join(lines)
