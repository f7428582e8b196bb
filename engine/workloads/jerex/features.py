"""Sentences to model inputs: sub-tokens, BIO tags on first sub-tokens, entity spans and entity pairs.

Words cut off by `max_length` are dropped with the entities (and relations) that touch them, in
every split alike: the max-length fidelity knob trades recall for speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.workloads.jerex.corpus import Sentence

OUTSIDE = "O"


def bio_tags(entity_types: Sequence[str]) -> tuple[str, ...]:
    return (OUTSIDE,) + tuple(f"{prefix}-{t}" for t in entity_types for prefix in ("B", "I"))


@dataclass(frozen=True)
class Features:
    input_ids: list[int]
    word_starts: list[int]  # sub-token position of each kept word's first piece
    tag_ids: list[int]  # gold BIO tag per kept word
    entity_spans: list[tuple[int, int]]  # sub-token [start, end) of each kept entity
    gold_entities: list[tuple[int, int, str]]  # word spans and types of the kept entities
    pairs: list[tuple[int, int]]  # ordered (head, tail) entity indices, every pair of distinct entities
    pair_labels: np.ndarray  # (n_pairs, n_relation_types) 0/1


def encode_sentence(
    sentence: Sentence, tokenizer, entity_types: Sequence[str], relation_types: Sequence[str], max_length: int
) -> Features:
    encoding = tokenizer(list(sentence.tokens), is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = encoding.word_ids()
    first_piece: dict[int, int] = {}
    last_piece: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None:
            first_piece.setdefault(word, position)
            last_piece[word] = position
    n_words = len(first_piece)  # truncation keeps a prefix of the words

    tag_index = {tag: i for i, tag in enumerate(bio_tags(entity_types))}
    tags = [OUTSIDE] * n_words
    kept: list[int] = []  # indices into sentence.entities
    for i, entity in enumerate(sentence.entities):
        if entity.end > n_words:
            continue
        kept.append(i)
        tags[entity.start] = f"B-{entity.type}"
        for w in range(entity.start + 1, entity.end):
            tags[w] = f"I-{entity.type}"
    new_index = {old: new for new, old in enumerate(kept)}

    relation_index = {r: i for i, r in enumerate(relation_types)}
    pairs = [(h, t) for h in range(len(kept)) for t in range(len(kept)) if h != t]
    pair_row = {pair: row for row, pair in enumerate(pairs)}
    labels = np.zeros((len(pairs), len(relation_types)), dtype=np.float32)
    for relation in sentence.relations:
        if relation.head in new_index and relation.tail in new_index:
            labels[pair_row[(new_index[relation.head], new_index[relation.tail])], relation_index[relation.type]] = 1.0

    entities = [sentence.entities[i] for i in kept]
    return Features(
        input_ids=list(encoding["input_ids"]),
        word_starts=[first_piece[w] for w in range(n_words)],
        tag_ids=[tag_index[t] for t in tags],
        entity_spans=[(first_piece[e.start], last_piece[e.end - 1] + 1) for e in entities],
        gold_entities=[(e.start, e.end, e.type) for e in entities],
        pairs=pairs,
        pair_labels=labels,
    )


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    word_starts: torch.Tensor  # (B, W) sub-token positions, 0 where padded
    tag_ids: torch.Tensor  # (B, W) gold tags, -100 where padded
    entity_batch: torch.Tensor  # (E,) sentence of each entity
    entity_spans: torch.Tensor  # (E, 2) sub-token [start, end)
    pair_heads: torch.Tensor  # (P,) indices into the batch's entities
    pair_tails: torch.Tensor  # (P,)
    pair_labels: torch.Tensor  # (P, R)

    def to(self, device: str | torch.device) -> Batch:
        return Batch(**{k: v.to(device) for k, v in vars(self).items()})


def collate(features: Sequence[Features], pad_id: int, n_relation_types: int) -> Batch:
    size, max_tokens = len(features), max(len(f.input_ids) for f in features)
    max_words = max(1, max(len(f.word_starts) for f in features))
    input_ids = torch.full((size, max_tokens), pad_id, dtype=torch.long)
    attention = torch.zeros((size, max_tokens), dtype=torch.long)
    word_starts = torch.zeros((size, max_words), dtype=torch.long)
    tag_ids = torch.full((size, max_words), -100, dtype=torch.long)
    entity_batch: list[int] = []
    entity_spans: list[tuple[int, int]] = []
    heads: list[int] = []
    tails: list[int] = []
    labels: list[np.ndarray] = []
    for b, f in enumerate(features):
        input_ids[b, : len(f.input_ids)] = torch.tensor(f.input_ids)
        attention[b, : len(f.input_ids)] = 1
        word_starts[b, : len(f.word_starts)] = torch.tensor(f.word_starts, dtype=torch.long)
        tag_ids[b, : len(f.tag_ids)] = torch.tensor(f.tag_ids, dtype=torch.long)
        offset = len(entity_spans)
        entity_batch.extend([b] * len(f.entity_spans))
        entity_spans.extend(f.entity_spans)
        heads.extend(offset + h for h, _ in f.pairs)
        tails.extend(offset + t for _, t in f.pairs)
        labels.append(f.pair_labels)
    return Batch(
        input_ids=input_ids,
        attention_mask=attention,
        word_starts=word_starts,
        tag_ids=tag_ids,
        entity_batch=torch.tensor(entity_batch, dtype=torch.long),
        entity_spans=torch.tensor(entity_spans, dtype=torch.long).reshape(-1, 2),
        pair_heads=torch.tensor(heads, dtype=torch.long),
        pair_tails=torch.tensor(tails, dtype=torch.long),
        pair_labels=torch.from_numpy(np.concatenate(labels)).reshape(-1, n_relation_types),
    )


def make_batches(
    features: Sequence[Features],
    batch_size: int,
    pad_id: int,
    n_relation_types: int,
    order: Sequence[int] | None = None,
) -> list[Batch]:
    order = list(range(len(features))) if order is None else list(order)
    return [
        collate([features[i] for i in order[start : start + batch_size]], pad_id, n_relation_types)
        for start in range(0, len(order), batch_size)
    ]
