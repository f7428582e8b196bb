"""How the model is trained: hyperparameters, optimizer parameter groups, the multiphase LR schedule,
one epoch of updates, and evaluation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.workloads.jerex.features import Batch, bio_tags
from engine.workloads.jerex.metrics import decode_bio, entity_f1, relation_micro_f1
from engine.workloads.jerex.model import LOSS_WEIGHTINGS, JointModel

DECAYS = ("cosine", "linear", "none")


@dataclass(frozen=True)
class Hyperparameters:
    encoder_lr: float = 5e-4
    head_lr: float = 2e-3
    encoder_weight_decay: float = 0.01
    head_weight_decay: float = 0.01
    batch_size: int = 16
    dropout: float = 0.1  # heads
    encoder_dropout: float | None = None  # None keeps the encoder config's own rates
    bitfit: bool = False  # train only the encoder's bias terms (the heads train fully)
    pct_start: float = 0.1  # share of the schedule spent in linear warm-up
    hold_pct: float = 0.0  # share held at the peak LR after warm-up
    decay: str = "linear"  # then decay to final_lr_ratio: cosine, linear, or none (hold to the end)
    final_lr_ratio: float = 0.0
    loss_weighting: str = "static"  # or "uncertainty"
    relation_loss_weight: float = 1.0  # static weighting: entity loss + w * relation loss
    grad_clip: float = 1.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Hyperparameters:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown jerex hyperparameters {unknown}; known: {sorted(known)}")
        hp = cls(**params)
        if hp.decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {hp.decay!r}")
        if hp.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {hp.loss_weighting!r}")
        if not 0 <= hp.pct_start < 1 or not hp.hold_pct >= 0 or hp.pct_start + hp.hold_pct > 1:
            raise ValueError(
                f"need 0 <= pct_start < 1 and pct_start + hold_pct <= 1, got {hp.pct_start}, {hp.hold_pct}"
            )
        return hp


# --------------------------------------------------------------------------- parameter groups


def _no_decay_ids(module: nn.Module) -> set[int]:
    """Biases and normalization weights: decaying them toward zero only hurts."""
    ids = set()
    for sub in module.modules():
        is_norm = isinstance(sub, (nn.LayerNorm, nn.GroupNorm)) or "Norm" in type(sub).__name__
        for name, param in sub.named_parameters(recurse=False):
            if is_norm or name == "bias" or name.endswith("_bias"):
                ids.add(id(param))
    return ids


def parameter_groups(model: JointModel, hp: Hyperparameters) -> list[dict[str, Any]]:
    """Encoder and heads get their own LR and weight decay; no decay on biases and norms.

    With BitFit every encoder parameter but the biases is frozen (requires_grad False) and left out.
    """
    no_decay = _no_decay_ids(model)
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    groups: dict[str, dict[str, Any]] = {
        "encoder": {"params": [], "lr": hp.encoder_lr, "weight_decay": hp.encoder_weight_decay},
        "encoder_no_decay": {"params": [], "lr": hp.encoder_lr, "weight_decay": 0.0},
        "head": {"params": [], "lr": hp.head_lr, "weight_decay": hp.head_weight_decay},
        "head_no_decay": {"params": [], "lr": hp.head_lr, "weight_decay": 0.0},
    }
    for name, param in model.named_parameters():
        in_encoder = id(param) in encoder_ids
        if in_encoder and hp.bitfit and not name.endswith("bias"):
            param.requires_grad_(False)
            continue
        param.requires_grad_(True)
        decays = id(param) not in no_decay and param is not model.log_vars
        key = ("encoder" if in_encoder else "head") + ("" if decays else "_no_decay")
        groups[key]["params"].append(param)
    return [{"name": name, **group} for name, group in groups.items() if group["params"]]


# --------------------------------------------------------------------------- LR schedule


def lr_factor(
    step: int, total_steps: int, pct_start: float, hold_pct: float, decay: str, final_ratio: float = 0.0
) -> float:
    """Multiplier of the base LR at optimizer step `step` (0-based): warm-up, hold, decay."""
    warmup = round(pct_start * total_steps)
    hold = round(hold_pct * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if decay == "none" or step < warmup + hold:
        return 1.0
    span = max(1, total_steps - warmup - hold)
    progress = min(1.0, (step - warmup - hold) / span)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if decay == "cosine" else 1 - progress
    return final_ratio + (1 - final_ratio) * shape


def multiphase_scheduler(optimizer: torch.optim.Optimizer, hp: Hyperparameters, total_steps: int, enabled: bool = True):
    """LambdaLR over every group; `enabled=False` keeps each group's base LR constant."""
    if not enabled:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, hp.pct_start, hp.hold_pct, hp.decay, hp.final_lr_ratio)
    )


def warmup_epochs(pct_start: float, epochs: int) -> int:
    """Epochs that cover the warm-up phase: ceil(pct_start x epochs), at least one."""
    return max(1, math.ceil(pct_start * epochs - 1e-9))


# --------------------------------------------------------------------------- updates and evaluation


def train_epoch(
    model: JointModel, batches: Sequence[Batch], optimizer, scheduler, hp: Hyperparameters, device: str
) -> float:
    model.train()
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    total = 0.0
    for batch in batches:
        batch = batch.to(device)
        loss = model.losses(model(batch), batch)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if hp.grad_clip:
            nn.utils.clip_grad_norm_(trainable, hp.grad_clip)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
    return total / max(1, len(batches))


@dataclass
class Evaluation:
    relation_probs: np.ndarray  # (n_pairs, n_relation_types)
    relation_labels: np.ndarray  # (n_pairs, n_relation_types) 0/1
    relation_f1: float  # micro-F1 at threshold 0.5
    entity_f1: float


@torch.no_grad()
def evaluate(model: JointModel, batches: Sequence[Batch], entity_types: Sequence[str], device: str) -> Evaluation:
    model.eval()
    tags = bio_tags(entity_types)
    probs, labels, predicted_spans, gold_spans = [], [], [], []
    for batch in batches:
        batch_on_device = batch.to(device)
        output = model(batch_on_device)
        probs.append(torch.sigmoid(output.relation_logits).float().cpu().numpy())
        labels.append(batch.pair_labels.numpy())
        predicted_tags = output.tag_logits.argmax(-1).cpu().numpy()
        gold_tags = batch.tag_ids.numpy()
        for row_pred, row_gold in zip(predicted_tags, gold_tags, strict=False):
            n_words = int((row_gold != -100).sum())
            predicted_spans.append(decode_bio([tags[i] for i in row_pred[:n_words]]))
            gold_spans.append(decode_bio([tags[i] for i in row_gold[:n_words]]))
    relation_probs = np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)
    relation_labels = np.concatenate(labels).astype(np.int8) if labels else np.zeros((0, 0), np.int8)
    return Evaluation(
        relation_probs=relation_probs,
        relation_labels=relation_labels,
        relation_f1=relation_micro_f1(relation_probs, relation_labels),
        entity_f1=entity_f1(predicted_spans, gold_spans),
    )
