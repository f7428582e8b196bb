"""The campaign objective for the jerex workload: `engine.workloads.jerex.objective:objective`.

Returns the validation relation micro-F1 (at threshold 0.5) after the last epoch, reports it after
every epoch (step = epochs done, so pruners can stop the trial), and saves the validation and test
relation probabilities with gold labels as the artifacts "val_probs" and "test_probs".
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.objective import TrialContext
from engine.workloads.jerex import corpus as corpus_io
from engine.workloads.jerex import encoder as encoders
from engine.workloads.jerex.features import Features, bio_tags, encode_sentence, make_batches
from engine.workloads.jerex.model import JointModel
from engine.workloads.jerex.resume import TrainingResume, features_digest
from engine.workloads.jerex.training import (
    Hyperparameters,
    evaluate,
    multiphase_scheduler,
    parameter_groups,
    train_epoch,
    warmup_epochs,
)


@dataclass(frozen=True)
class Settings:
    """Fixed per campaign (the `[objective] settings` table)."""

    encoder: str = encoders.TINY  # "tiny", a local model directory, or "package:<name>"
    data_dir: str | None = None  # your own train/val/test.jsonl; otherwise a corpus is generated
    corpus_seed: int = 13
    n_train: int = 600
    n_val: int = 200
    n_test: int = 200
    seed: int = 0  # model init and batch order: the same for every trial, so trials differ by params only
    threads: int = 1  # torch intra-op threads on CPU
    eval_batch_size: int = 64
    save_artifacts: bool = True


@dataclass(frozen=True)
class Fidelity:
    """Set per sprint by its fidelity level."""

    train_fraction: float = 1.0  # prefix of the (shuffled) training split
    val_fraction: float = 1.0
    epochs: int = 3  # length of the LR schedule
    scheduler: bool = True  # False: constant LR per group
    max_length: int = 128  # sub-tokens per sentence
    warmup_only: bool = False  # stop after ceil(pct_start x epochs): the warm-up phase only


def _strict(cls, values: dict[str, Any], what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown jerex {what} {unknown}; known: {sorted(known)}")
    return cls(**values)


def _prefix(items: tuple, fraction: float) -> tuple:
    if not 0 < fraction <= 1:
        raise ValueError(f"fractions must be in (0, 1], got {fraction}")
    return items[: max(1, math.ceil(fraction * len(items) - 1e-9))]


def configure_torch(device: str, threads: int) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    if device == "cpu":
        torch.set_num_threads(threads)  # several workers share the cores: oversubscription is 3-40x slower
    return device


def prepare_data_dir(ctx: TrialContext, settings: Settings) -> Path:
    if settings.data_dir is not None:
        return Path(settings.data_dir).expanduser()
    sizes = {k: getattr(settings, k) for k in ("corpus_seed", "n_train", "n_val", "n_test")}
    sizes["generator"] = corpus_io.GENERATOR_FINGERPRINT  # a changed generator must miss a memoized corpus
    build = lambda: str(  # noqa: E731
        corpus_io.prepare_generated_corpus(
            Path(ctx.run_dir) / "jerex-corpus", settings.corpus_seed, settings.n_train, settings.n_val, settings.n_test
        )
    )
    data_dir = Path(ctx.stage("corpus", build, depends_on=sizes))
    if not all((data_dir / f"{name}.jsonl").is_file() for name in corpus_io.SPLITS):
        # The cached value is a path to files outside the cache; if they were deleted (a cleaned run
        # directory, a cache copied elsewhere), regenerate them: the generator is deterministic, so the
        # files come back byte for byte and the cached key stays valid.
        data_dir = Path(build())
    return data_dir


@dataclass(frozen=True)
class FeaturizedSplit:
    """A split's model inputs (the cached value of a `<split>_features` stage) and their digest (checkpoint lineage)."""

    features: tuple[Features, ...]
    digest: str


@functools.lru_cache(maxsize=8)
def _data_fingerprint(data_dir: str) -> str:
    """SHA-256 of the split files' bytes: user data edited in place misses the featurized-data stages.
    Cached per process by path: files are not expected to change while a worker runs."""
    h = hashlib.sha256()
    for name in corpus_io.SPLITS:
        h.update((Path(data_dir) / f"{name}.jsonl").read_bytes())
    return h.hexdigest()


def _tokenizer_fingerprint(tokenizer) -> dict[str, Any]:
    return {"class": type(tokenizer).__name__, "name": getattr(tokenizer, "name_or_path", ""), "size": len(tokenizer)}


@functools.lru_cache(maxsize=4)
def _load_corpus(data_dir: str) -> corpus_io.Corpus:
    return corpus_io.read_corpus(data_dir)


@functools.lru_cache(maxsize=4)
def _tiny_tokenizer(data_dir: str):
    return encoders.build_tiny_tokenizer(s.tokens for s in _load_corpus(data_dir).train)


def load_encoder_and_tokenizer(spec: str, data_dir: str, encoder_dropout: float | None):
    """Built fresh per trial (weights), tokenizers cached per worker process."""
    if spec == encoders.TINY:
        tokenizer = _tiny_tokenizer(data_dir)
        dropout = 0.1 if encoder_dropout is None else encoder_dropout
        return encoders.build_tiny_encoder(len(tokenizer), dropout=dropout), tokenizer
    model_dir = encoders.resolve_encoder_dir(spec)
    return encoders.load_pretrained_encoder(model_dir, encoder_dropout), encoders.load_pretrained_tokenizer(model_dir)


def objective(ctx: TrialContext) -> float:
    settings = _strict(Settings, ctx.settings, "settings")
    fidelity = _strict(Fidelity, ctx.fidelity, "fidelity knobs")
    hp = Hyperparameters.from_params(ctx.params)
    device = configure_torch(ctx.device, settings.threads)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()

    data_dir = str(prepare_data_dir(ctx, settings))
    corpus = _load_corpus(data_dir)
    entity_types, relation_types = corpus.schema()
    encoder, tokenizer = load_encoder_and_tokenizer(settings.encoder, data_dir, hp.encoder_dropout)

    def featurize(sentences):
        return [encode_sentence(s, tokenizer, entity_types, relation_types, fidelity.max_length) for s in sentences]

    def featurized(split: str, fraction: float) -> FeaturizedSplit:
        """Tokenised and featurised data of a split as a memoized stage: the same for every trial with the
        same data, fraction and max_length (a share of a short trial's time: ~0.6 s of 1200 + 300 sentences)."""

        def build() -> FeaturizedSplit:
            features = tuple(featurize(_prefix(corpus.split(split), fraction)))
            return FeaturizedSplit(features, features_digest(features))

        inputs = {"split": split, "fraction": fraction, "max_length": fidelity.max_length}
        inputs |= {"data": _data_fingerprint(data_dir), "tokenizer": _tokenizer_fingerprint(tokenizer)}
        return ctx.stage(f"{split}_features", build, depends_on=inputs)

    train_split = featurized("train", fidelity.train_fraction)
    train_features = list(train_split.features)

    def batches_of(features, batch_size, order=None):
        return make_batches(features, batch_size, tokenizer.pad_token_id, len(relation_types), order)

    val_batches = batches_of(list(featurized("val", fidelity.val_fraction).features), settings.eval_batch_size)

    model = JointModel(
        encoder,
        len(bio_tags(entity_types)),
        len(relation_types),
        dropout=hp.dropout,
        loss_weighting=hp.loss_weighting,
        relation_loss_weight=hp.relation_loss_weight,
    ).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, hp))
    steps_per_epoch = math.ceil(len(train_features) / hp.batch_size)
    scheduler = multiphase_scheduler(optimizer, hp, steps_per_epoch * fidelity.epochs, enabled=fidelity.scheduler)
    epochs_to_run = warmup_epochs(hp.pct_start, fidelity.epochs) if fidelity.warmup_only else fidelity.epochs

    order_rng = np.random.default_rng(settings.seed)
    history: list[dict[str, Any]] = []  # one JSON row per epoch, kept in the trial's attributes
    # Checkpoint inheritance + per-stage cost records (resume.py); inert when the campaign caches nothing.
    resume = TrainingResume(
        ctx, hp, fidelity, settings, train_features, steps_per_epoch, epochs_to_run, data_digest=train_split.digest
    )
    start = resume.restore(model, optimizer, scheduler, order_rng, history)
    if start:
        val = evaluate(model, val_batches, entity_types, device)
        resume.report_inherited(history, val.relation_f1)
    for epoch in range(start + 1, epochs_to_run + 1):
        order = order_rng.permutation(len(train_features))
        batches = batches_of(train_features, hp.batch_size, order)
        loss = train_epoch(model, batches, optimizer, scheduler, hp, device)
        val = evaluate(model, val_batches, entity_types, device)
        history.append(
            {
                "epoch": epoch,
                "loss": round(loss, 5),
                "relation_micro_f1": round(val.relation_f1, 5),
                "entity_f1": round(val.entity_f1, 5),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        resume.epoch_done(epoch, model, optimizer, scheduler, order_rng, history)
        ctx.set_attr("history", history)
        ctx.report(val.relation_f1, step=epoch)

    ctx.set_attr("entity_f1", val.entity_f1)
    ctx.set_attr("epochs_run", epochs_to_run)
    if settings.save_artifacts:
        test_batches = batches_of(list(featurized("test", 1.0).features), settings.eval_batch_size)
        test = evaluate(model, test_batches, entity_types, device)
        classes = np.array(relation_types)
        ctx.save_artifact("val_probs", probs=val.relation_probs, labels=val.relation_labels, classes=classes)
        ctx.save_artifact("test_probs", probs=test.relation_probs, labels=test.relation_labels, classes=classes)
    ctx.set_attr("train_seconds", round(time.perf_counter() - started, 2))
    return val.relation_f1
