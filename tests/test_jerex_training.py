"""Parameter groups, BitFit, the multiphase schedule, and a real learning test."""

import math
from pathlib import Path

import pytest
import torch
from enginekit import RecordingContext

from engine.workloads.jerex.encoder import build_tiny_encoder
from engine.workloads.jerex.model import JointModel
from engine.workloads.jerex.objective import objective
from engine.workloads.jerex.training import (
    Hyperparameters,
    lr_factor,
    multiphase_scheduler,
    parameter_groups,
    warmup_epochs,
)

torch.set_num_threads(1)


def make_model(loss_weighting="static") -> JointModel:
    torch.manual_seed(0)
    return JointModel(build_tiny_encoder(100), n_tags=7, n_relation_types=5, loss_weighting=loss_weighting)


def groups_by_name(model, hp):
    groups = parameter_groups(model, hp)
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["name"]: g for g in groups}, {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}


def test_groups_split_encoder_and_heads_and_exempt_biases_and_norms():
    model = make_model("uncertainty")
    hp = Hyperparameters(encoder_lr=1e-4, head_lr=1e-2, encoder_weight_decay=0.05, head_weight_decay=0.2)
    groups, names = groups_by_name(model, hp)
    assert (groups["encoder"]["lr"], groups["encoder"]["weight_decay"]) == (1e-4, 0.05)
    assert (groups["encoder_no_decay"]["lr"], groups["encoder_no_decay"]["weight_decay"]) == (1e-4, 0.0)
    assert (groups["head"]["lr"], groups["head"]["weight_decay"]) == (1e-2, 0.2)
    assert (groups["head_no_decay"]["lr"], groups["head_no_decay"]["weight_decay"]) == (1e-2, 0.0)

    assert all(n.startswith("encoder.") for n in names["encoder"] | names["encoder_no_decay"])
    assert not any(n.startswith("encoder.") for n in names["head"] | names["head_no_decay"])
    assert "encoder.embeddings.word_embeddings.weight" in names["encoder"]
    assert "encoder.encoder.layer.0.attention.self.query.weight" in names["encoder"]
    assert "encoder.embeddings.LayerNorm.weight" in names["encoder_no_decay"]
    assert "encoder.encoder.layer.1.output.LayerNorm.bias" in names["encoder_no_decay"]
    assert names["head"] == {"entity_head.weight", "relation_head.0.weight", "relation_head.3.weight"}
    assert names["head_no_decay"] == {"entity_head.bias", "relation_head.0.bias", "relation_head.3.bias", "log_vars"}
    assert not any(n.endswith("bias") or "LayerNorm" in n for n in names["encoder"] | names["head"])
    # Every parameter is in exactly one group.
    listed = [n for group in names.values() for n in group]
    assert sorted(listed) == sorted(n for n, _ in model.named_parameters())


def test_bitfit_freezes_every_encoder_parameter_but_the_biases():
    model = make_model()
    groups, names = groups_by_name(model, Hyperparameters(bitfit=True))
    encoder_params = dict(model.encoder.named_parameters())
    biases = {f"encoder.{n}" for n in encoder_params if n.endswith("bias")}
    assert "encoder" not in groups
    assert names["encoder_no_decay"] == biases
    assert all(p.requires_grad == n.endswith("bias") for n, p in encoder_params.items())
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("encoder."))

    # One real update: encoder weights and norm scales stay put, encoder biases and heads move.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(parameter_groups(model, Hyperparameters(bitfit=True)))
    ids = torch.randint(5, 100, (2, 6))
    hidden = model.encoder(input_ids=ids).last_hidden_state
    (hidden.sum() + model.entity_head(hidden).sum()).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        moved = not torch.equal(before[name], param.detach())
        if name.startswith("encoder.") and not name.endswith("bias"):
            assert not moved, name
    assert not torch.equal(
        before["encoder.encoder.layer.0.attention.self.query.bias"],
        model.encoder.encoder.layer[0].attention.self.query.bias,
    )
    assert not torch.equal(before["entity_head.weight"], model.entity_head.weight)

    # Switching BitFit off again unfreezes the encoder.
    _, names = groups_by_name(model, Hyperparameters(bitfit=False))
    assert "encoder.embeddings.word_embeddings.weight" in names["encoder"]


def lrs_over(hp, total_steps, enabled=True, base=1.0):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = multiphase_scheduler(optimizer, hp, total_steps, enabled=enabled)
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_schedule_warms_up_holds_then_decays():
    lrs = lrs_over(Hyperparameters(pct_start=0.2, hold_pct=0.3, decay="linear", final_lr_ratio=0.1), 100)
    assert lrs[0] == pytest.approx(1 / 20)
    assert lrs[:20] == pytest.approx([(s + 1) / 20 for s in range(20)])  # linear warm-up to the peak
    assert lrs[20:50] == pytest.approx([1.0] * 30)  # hold
    decay = lrs[50:]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))  # strictly decaying
    assert decay[0] == pytest.approx(1.0) and decay[-1] == pytest.approx(0.1 + 0.9 / 50)
    assert decay[25] == pytest.approx(0.1 + 0.9 * 0.5)  # linear: half-way at mid-decay

    cosine = lrs_over(Hyperparameters(pct_start=0.1, decay="cosine"), 100)
    assert cosine[9] == pytest.approx(1.0) and cosine[10] == pytest.approx(1.0)
    assert cosine[55] == pytest.approx(0.5, abs=1e-9)  # cosine: half-way at mid-decay
    assert cosine[32] == pytest.approx(0.5 * (1 + math.cos(math.pi * 22 / 90)))
    assert cosine[32] > 1 - 22 / 90  # above the straight line in the first half
    assert lrs_over(Hyperparameters(pct_start=0.3, decay="none"), 10)[3:] == pytest.approx([1.0] * 7)
    assert lrs_over(Hyperparameters(pct_start=0.3), 10, enabled=False, base=0.5) == pytest.approx([0.5] * 10)


def test_schedule_scales_every_group_by_the_same_factor():
    model = make_model()
    hp = Hyperparameters(encoder_lr=1e-4, head_lr=1e-2, pct_start=0.5)
    optimizer = torch.optim.AdamW(parameter_groups(model, hp))
    scheduler = multiphase_scheduler(optimizer, hp, total_steps=10)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["encoder"] == pytest.approx(1e-4 * 3 / 5) and lrs["head"] == pytest.approx(1e-2 * 3 / 5)


def test_warmup_epochs_cover_the_warmup_phase():
    assert warmup_epochs(0.1, 8) == 1
    assert warmup_epochs(0.25, 8) == 2
    assert warmup_epochs(0.3, 8) == 3
    assert warmup_epochs(0.0, 8) == 1
    for pct in (0.05, 0.1, 0.2, 0.3, 0.45):
        steps_per_epoch, epochs = 7, 8
        warm = round(pct * steps_per_epoch * epochs)
        assert warmup_epochs(pct, epochs) * steps_per_epoch >= warm
        assert lr_factor(max(0, warm - 1), steps_per_epoch * epochs, pct, 0, "linear") == pytest.approx(1.0)


def test_hyperparameters_reject_typos_and_bad_values():
    with pytest.raises(ValueError, match="unknown jerex hyperparameters \\['encoder_lrr'\\]"):
        Hyperparameters.from_params({"encoder_lrr": 1e-3})
    with pytest.raises(ValueError, match="decay"):
        Hyperparameters.from_params({"decay": "step"})
    with pytest.raises(ValueError, match="pct_start"):
        Hyperparameters.from_params({"pct_start": 0.8, "hold_pct": 0.5})


def run_tiny(tmp_path: Path, params: dict, epochs: int = 4) -> tuple[float, dict]:
    ctx = RecordingContext(
        params=params,
        fidelity={
            "train_fraction": 1.0,
            "val_fraction": 1.0,
            "epochs": epochs,
            "scheduler": True,
            "max_length": 64,
            "warmup_only": False,
        },
        settings={"encoder": "tiny", "corpus_seed": 13, "n_train": 400, "n_val": 150, "n_test": 20},
        trial_number=0,
        sprint="test",
        run_dir=tmp_path,
    )
    value = objective(ctx)
    return value, ctx.attrs


RELATION_F1_FLOOR = 0.75  # all-positive guessing scores ~0.1; the ambiguous sentences cap it near 0.92
ENTITY_F1_FLOOR = 0.85


def test_tiny_model_learns_relations_within_a_few_epochs(tmp_path):
    value, attrs = run_tiny(tmp_path, {"encoder_lr": 3e-3, "head_lr": 1e-2, "batch_size": 16, "pct_start": 0.1})
    history = attrs["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["relation_micro_f1"] == pytest.approx(value, abs=1e-5)
    assert value >= RELATION_F1_FLOOR, history
    assert attrs["entity_f1"] >= ENTITY_F1_FLOOR, history
    assert history[-1]["relation_micro_f1"] > history[0]["relation_micro_f1"]
    assert history[-1]["loss"] < history[0]["loss"] / 3

    # The control: the same run with learning rates too small to move stays far below the floor.
    control, _ = run_tiny(tmp_path, {"encoder_lr": 1e-6, "head_lr": 1e-6, "batch_size": 16}, epochs=2)
    assert control < 0.3
    assert math.isfinite(control)
