"""A sequence classifier trained through Hugging Face `Trainer`: the `engine.execution.hf_trainer` example.

The data are the jerex workload's generated CoNLL04-like sentences (deterministic, in memory, no
download); a sentence's label is the type of its first relation, or `none` (6 classes). The
model is a tiny BERT built from a config (hidden size 32 by default, 2 layers) over the corpus'
own WordPiece vocabulary, so nothing is downloaded either.

Objective `engine.workloads.trainer_classifier:objective`, direction **maximize** (validation
accuracy, reported after every epoch).

* params: `learning_rate`, `weight_decay`, `per_device_train_batch_size`, `warmup_ratio`
  (TrainingArguments fields, passed on as they are), `dropout` (the model's dropout).
* fidelity knobs: `epochs`, `train_fraction`.
* settings: `seed` (model initialisation and data order), `corpus_seed`, `n_train`, `n_val`,
  `hidden_size`, `layers`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import transformers
from transformers import BertForSequenceClassification, DataCollatorWithPadding, Trainer

from engine.execution.hf_trainer import (
    HpoTrainerCallback,
    train_and_evaluate,
    train_subset,
    training_args_from_fidelity,
)
from engine.objective import TrialContext
from engine.workloads.jerex.corpus import RELATION_TYPES, generate_corpus
from engine.workloads.jerex.encoder import TINY_MAX_POSITIONS, build_tiny_tokenizer, tiny_bert_config

LABELS = ("none", *RELATION_TYPES)
DEFAULT_SETTINGS: dict[str, Any] = {
    "seed": 0,
    "corpus_seed": 0,
    "n_train": 600,
    "n_val": 200,
    "hidden_size": 32,
    "layers": 2,
}


def label_of(sentence) -> int:
    return LABELS.index(sentence.relations[0].type) if sentence.relations else 0


@functools.lru_cache(maxsize=2)
def load_data(corpus_seed: int, n_train: int, n_val: int):
    """(tokenizer, train rows, validation rows): rows are dicts Trainer's collator pads."""
    corpus = generate_corpus(corpus_seed, n_train, n_val, 1)
    tokenizer = build_tiny_tokenizer(s.tokens for s in corpus.train)

    def rows(sentences) -> list[dict[str, Any]]:
        encoded = tokenizer(
            [list(s.tokens) for s in sentences],
            is_split_into_words=True,
            truncation=True,
            max_length=TINY_MAX_POSITIONS,
        )
        return [
            {"input_ids": ids, "attention_mask": mask, "labels": label_of(s)}
            for ids, mask, s in zip(encoded["input_ids"], encoded["attention_mask"], sentences, strict=True)
        ]

    return tokenizer, rows(corpus.train), rows(corpus.val)


def accuracy(prediction) -> dict[str, float]:
    logits, labels = prediction
    return {"accuracy": float(np.mean(np.argmax(logits, axis=-1) == labels))}


def build_model(vocab_size: int, hidden_size: int, layers: int, dropout: float) -> BertForSequenceClassification:
    config = tiny_bert_config(vocab_size, hidden_size, layers, dropout)
    config.num_labels = len(LABELS)  # a property of every config; BertConfig's typed signature omits the keyword
    return BertForSequenceClassification(config)


def objective(ctx: TrialContext) -> float:
    settings = {**DEFAULT_SETTINGS, **ctx.settings}
    tokenizer, train, val = load_data(int(settings["corpus_seed"]), int(settings["n_train"]), int(settings["n_val"]))
    transformers.set_seed(int(settings["seed"]))
    model = build_model(
        len(tokenizer), int(settings["hidden_size"]), int(settings["layers"]), float(ctx.params.get("dropout", 0.1))
    )
    trainer = Trainer(
        model=model,
        args=training_args_from_fidelity(ctx, metric_for_best_model="accuracy"),
        train_dataset=train_subset(ctx, train),
        eval_dataset=val,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=[HpoTrainerCallback(ctx)],
    )
    return train_and_evaluate(trainer)
