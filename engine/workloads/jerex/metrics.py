"""Entity F1 (strict span and type) and relation micro-F1 over (pair, relation type) decisions.

Relations are scored on the gold entity mentions (relation classification given mentions), so the
probability arrays line up with gold labels one to one and thresholds can be learned on them later.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def f1_score(tp: float, fp: float, fn: float) -> float:
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def decode_bio(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """Word spans (start, end exclusive, type); an I- tag that does not continue a span starts one."""
    spans: set[tuple[int, int, str]] = set()
    start: int | None = None
    kind: str | None = None  # set together with start
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, tag_type = tag.partition("-")
        continues = prefix == "I" and tag_type == kind
        if start is not None and kind is not None and not continues:
            spans.add((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I") and not continues:
            start, kind = i, tag_type
    return spans


def entity_f1(predicted: Iterable[set], gold: Iterable[set]) -> float:
    tp = fp = fn = 0
    for p, g in zip(predicted, gold, strict=False):
        tp += len(p & g)
        fp += len(p - g)
        fn += len(g - p)
    return f1_score(tp, fp, fn)


def relation_micro_f1(probs: np.ndarray, labels: np.ndarray, threshold: float | np.ndarray = 0.5) -> float:
    predicted = np.asarray(probs) >= threshold
    gold = np.asarray(labels).astype(bool)
    return f1_score(np.sum(predicted & gold), np.sum(predicted & ~gold), np.sum(~predicted & gold))
