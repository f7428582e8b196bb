"""The multitask model: a shared encoder, a BIO entity head and a relation head over entity pairs.

Relations are scored on ordered pairs of the sentence's entity mentions with one independent sigmoid
per relation type (a pair may hold several relations, or none). A pair is represented by its two
max-pooled mention spans and the max-pooled context between them (as in SpERT/JEREX).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from engine.workloads.jerex.features import Batch

LOSS_WEIGHTINGS = ("static", "uncertainty")


@dataclass
class Output:
    tag_logits: torch.Tensor  # (B, W, n_tags) at first sub-tokens
    relation_logits: torch.Tensor  # (P, n_relation_types)


def _masked_max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the positions in `mask` (N, T) of `hidden` (N, T, d); zeros where the mask is empty."""
    filled = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
    return torch.where(mask.any(dim=1, keepdim=True), filled, torch.zeros_like(filled))


class JointModel(nn.Module):
    def __init__(
        self,
        encoder: PreTrainedModel,
        n_tags: int,
        n_relation_types: int,
        *,
        dropout: float = 0.1,
        loss_weighting: str = "static",
        relation_loss_weight: float = 1.0,
    ):
        super().__init__()
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.entity_head = nn.Linear(hidden, n_tags)
        self.relation_head = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_relation_types)
        )
        self.loss_weighting = loss_weighting
        self.relation_loss_weight = relation_loss_weight
        # Uncertainty weighting (Kendall et al. 2018): one learned log-variance per task.
        self.log_vars = nn.Parameter(torch.zeros(2)) if loss_weighting == "uncertainty" else None

    def head_modules(self) -> list[nn.Module]:
        return [self.entity_head, self.relation_head]

    def forward(self, batch: Batch) -> Output:
        hidden = self.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        hidden = self.dropout(hidden)
        word_states = torch.gather(hidden, 1, batch.word_starts.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
        tag_logits = self.entity_head(word_states)

        n_relation_types = self.relation_head[-1].out_features
        if batch.pair_heads.numel() == 0:
            return Output(tag_logits, hidden.new_zeros((0, n_relation_types)))
        positions = torch.arange(hidden.size(1), device=hidden.device)
        starts, ends = batch.entity_spans[:, 0:1], batch.entity_spans[:, 1:2]
        entity_states = _masked_max(hidden[batch.entity_batch], (positions >= starts) & (positions < ends))

        heads, tails = batch.pair_heads, batch.pair_tails
        between_start = torch.minimum(ends[heads], ends[tails])  # end of the earlier mention
        between_end = torch.maximum(starts[heads], starts[tails])  # start of the later mention
        context_mask = (positions >= between_start) & (positions < between_end)
        context = _masked_max(hidden[batch.entity_batch[heads]], context_mask)
        pair_states = torch.cat([entity_states[heads], entity_states[tails], context], dim=-1)
        return Output(tag_logits, self.relation_head(pair_states))

    def losses(self, output: Output, batch: Batch) -> dict[str, torch.Tensor]:
        entity_loss = F.cross_entropy(output.tag_logits.flatten(0, 1), batch.tag_ids.flatten(), ignore_index=-100)
        if output.relation_logits.numel():
            # Sum over relation types, mean over pairs: rare types keep their gradient.
            relation_loss = (
                F.binary_cross_entropy_with_logits(output.relation_logits, batch.pair_labels, reduction="none")
                .sum(dim=-1)
                .mean()
            )
        else:
            relation_loss = output.tag_logits.new_zeros(())
        if self.log_vars is None:
            total = entity_loss + self.relation_loss_weight * relation_loss
        else:
            task_losses = torch.stack([entity_loss, relation_loss])
            total = (torch.exp(-self.log_vars) * task_losses + self.log_vars).sum()
        return {"total": total, "entity": entity_loss.detach(), "relation": relation_loss.detach()}
