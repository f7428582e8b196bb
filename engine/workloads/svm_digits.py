"""A second real scikit-learn workload: an RBF support-vector machine on the digits data set, with the
search space of HPOBench's SVM benchmark (Eggensperger et al. 2021, "HPOBench: a collection of
reproducible multi-fidelity benchmark problems for HPO"): C and gamma, both log-scaled over
[2^-10, 2^10], fidelity = the share of the training data used (HPOBench's ``subsample``).

The data ship with scikit-learn (``load_digits``), nothing is downloaded. Pixels are scaled to
[0, 1]; the split is fixed (stratified, seeded by ``split_seed``): half train, half validation.

Objective ``engine.workloads.svm_digits:objective``: **minimise** the validation error rate.
params ``C``, ``gamma``; fidelity knob ``train_fraction`` (default 1, a stratified subset of the
training half); settings ``split_seed`` (default 0). One report (step 0). Deterministic.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC


@lru_cache(maxsize=4)
def _split(split_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    return tuple(train_test_split(x, y, test_size=0.5, stratify=y, random_state=split_seed))


def _subset(x: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if fraction >= 1.0:
        return x, y
    x_sub, _, y_sub, _ = train_test_split(x, y, train_size=fraction, stratify=y, random_state=seed)
    return x_sub, y_sub


def objective(ctx: Any) -> float:
    settings = dict(ctx.settings or {})
    split_seed = int(settings.get("split_seed", 0))
    x_train, x_val, y_train, y_val = _split(split_seed)
    fraction = float(ctx.fidelity.get("train_fraction", 1.0))
    x_fit, y_fit = _subset(x_train, y_train, fraction, split_seed)
    model = SVC(C=float(ctx.params["C"]), gamma=float(ctx.params["gamma"]), kernel="rbf")
    model.fit(x_fit, y_fit)
    error = float(np.mean(model.predict(x_val) != y_val))
    ctx.report(error, 0)
    ctx.set_attr("n_train", int(len(y_fit)))
    return error
