"""A real scikit-learn workload: an MLP on the digits data set, one epoch per ``partial_fit``.

The data ship with scikit-learn (``sklearn.datasets.load_digits``: 1,797 8x8 images, 10 classes),
so nothing is downloaded. The split is fixed (seeded, stratified): 60% train, 20% validation,
20% test; pixels are scaled to [0, 1].

Objective ``engine.workloads.digits_mlp:objective`` (the engine.objective contract):

* **direction: minimize.** It returns the validation *error rate* (1 - accuracy) by default, or
  the validation log-loss with ``settings = { metric = "log_loss" }``. Each epoch it reports the
  same metric through ``ctx.report`` (so pruners judge what the sprint optimises).
* params: ``learning_rate_init`` (float, log; e.g. 1e-4..1e-1), ``alpha`` (L2, float, log; e.g.
  1e-6..1e-1), ``hidden_units`` (int; e.g. 16..256), ``batch_size`` (int; e.g. 16..256), and
  optionally ``n_layers`` (int 1..3, default 1), ``beta_1`` (float, default 0.9). Missing ones take
  the defaults in ``DEFAULTS``.
* fidelity knobs: ``train_fraction`` (share of the training split used, stratified, default 1),
  ``val_fraction`` (share of the validation split scored, default 1), ``epochs`` (default 20).
* settings: ``seed`` (default 0: the network's initialisation and shuffling), ``split_seed``
  (default 0: the data split and subsets), ``metric`` ("error" or "log_loss"),
  ``save_probs`` (default true: saves the final validation probabilities as the artifact
  ``val_probs`` with ``probs`` and ``labels``, for threshold learning).

User attributes set: ``val_accuracy``, ``val_log_loss``, ``test_accuracy`` (held-out, for
reporting only; never optimised), ``n_train``.

Deterministic: the same params, fidelity and settings give the same result.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

DEFAULTS: dict[str, Any] = {
    "learning_rate_init": 1e-3,
    "alpha": 1e-4,
    "hidden_units": 64,
    "batch_size": 64,
    "n_layers": 1,
    "beta_1": 0.9,
}

SPACE = {
    "learning_rate_init": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "alpha": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "hidden_units": {"type": "int", "low": 16, "high": 256, "log": True},
    "batch_size": {"type": "int", "low": 16, "high": 256, "log": True},
}

CLASSES = np.arange(10)


@lru_cache(maxsize=4)
def load_split(split_seed: int = 0) -> dict[str, np.ndarray]:
    """The fixed train / validation / test split (read-only arrays)."""
    data = load_digits()
    X = (data.data / 16.0).astype(np.float64)
    y = data.target.astype(np.int64)
    X_tmp, X_test, y_tmp, y_test = train_test_split(X, y, test_size=0.2, random_state=split_seed, stratify=y)
    X_train, X_val, y_train, y_val = train_test_split(
        X_tmp, y_tmp, test_size=0.25, random_state=split_seed + 1, stratify=y_tmp
    )
    out = dict(X_train=X_train, y_train=y_train, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test)
    for a in out.values():
        a.setflags(write=False)
    return out


def _subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified subset holding `fraction` of each class (at least one each)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a data fraction must be in (0, 1], got {fraction}")
    if fraction >= 1:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = max(1, int(round(fraction * len(idx))))
        keep.append(rng.permutation(idx)[:n])
    return np.sort(np.concatenate(keep))


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0)
    return float(-np.mean(np.log(p)))


def objective(ctx: Any) -> float:
    settings = dict(ctx.settings or {})
    params = {**DEFAULTS, **dict(ctx.params)}
    fid = dict(ctx.fidelity or {})
    train_fraction = float(fid.get("train_fraction", 1.0))
    val_fraction = float(fid.get("val_fraction", 1.0))
    epochs = max(1, int(fid.get("epochs", 20)))
    seed = int(settings.get("seed", 0))
    split_seed = int(settings.get("split_seed", 0))
    metric = settings.get("metric", "error")
    if metric not in ("error", "log_loss"):
        raise ValueError(f"settings.metric must be 'error' or 'log_loss', got {metric!r}")

    data = load_split(split_seed)
    tr = _subset(data["y_train"], train_fraction, split_seed + 11)
    va = _subset(data["y_val"], val_fraction, split_seed + 13)
    X_train, y_train = data["X_train"][tr], data["y_train"][tr]
    X_val, y_val = data["X_val"][va], data["y_val"][va]

    hidden = int(params["hidden_units"])
    model = MLPClassifier(
        hidden_layer_sizes=(hidden,) * int(params["n_layers"]),
        learning_rate_init=float(params["learning_rate_init"]),
        alpha=float(params["alpha"]),
        batch_size=min(int(params["batch_size"]), len(y_train)),
        beta_1=float(params["beta_1"]),
        solver="adam",
        shuffle=True,
        random_state=seed,
    )
    ctx.set_attr("n_train", int(len(y_train)))
    value = math.nan
    probs = None
    for epoch in range(epochs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow at absurd learning rates
            model.partial_fit(X_train, y_train, classes=CLASSES)
        probs = model.predict_proba(X_val)
        if not np.all(np.isfinite(probs)):
            # diverged: report the worst sensible value rather than NaN, so the sprint learns from it
            acc, ll = 0.0, math.log(1e15)
        else:
            acc = float(np.mean(np.argmax(probs, axis=1) == y_val))
            ll = _log_loss(probs, y_val)
        value = (1.0 - acc) if metric == "error" else ll
        ctx.report(value, epoch)

    ctx.set_attr("val_accuracy", acc)
    ctx.set_attr("val_log_loss", ll)
    test_probs = model.predict_proba(data["X_test"])
    if np.all(np.isfinite(test_probs)):
        ctx.set_attr("test_accuracy", float(np.mean(np.argmax(test_probs, axis=1) == data["y_test"])))
    if settings.get("save_probs", True) and probs is not None and np.all(np.isfinite(probs)):
        ctx.save_artifact("val_probs", probs=probs.astype(np.float32), labels=y_val)
    return value
