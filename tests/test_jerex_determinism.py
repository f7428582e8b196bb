"""Issue 3: the same seed gives the same model in every worker process, and the memoized corpus
stage survives its files being deleted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import torch

from engine.cache.stages import StageCache, StageRunner
from engine.objective import TrialContext
from engine.workloads.jerex.encoder import tiny_vocabulary
from engine.workloads.jerex.objective import objective

optuna.logging.set_verbosity(optuna.logging.WARNING)
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: the tokenizer and the model's initial weights, each as a SHA-256.
PROBE = r"""
import hashlib, json, sys
import torch
torch.set_num_threads(1)
from engine.workloads.jerex.corpus import generate_corpus
from engine.workloads.jerex.encoder import build_tiny_encoder, build_tiny_tokenizer
corpus = generate_corpus(13, 300, 20, 20)
tokenizer = build_tiny_tokenizer(s.tokens for s in corpus.train)
vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
ids = [tokenizer(list(s.tokens), is_split_into_words=True)["input_ids"] for s in corpus.val]
torch.manual_seed(0)
model = build_tiny_encoder(len(tokenizer))
weights = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    weights.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
print(json.dumps({"vocab": hashlib.sha256(json.dumps(vocab).encode()).hexdigest(), "size": len(vocab),
                  "ids": hashlib.sha256(json.dumps(ids).encode()).hexdigest(), "weights": weights.hexdigest()}))
"""


def probe() -> dict:
    # PYTHONHASHSEED differs per process unless set; leave it random, as in real workers
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONHASHSEED"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_processes_build_the_same_vocabulary_and_initial_model():
    first, second = probe(), probe()
    assert first == second
    assert first["size"] > 100


def test_vocabulary_is_a_function_of_the_word_counts_not_of_their_order():
    sentences = [
        ["Zoë", "García", "works", "for", "Helios", "Labs", "."],
        ["Björn", "works", "in", "Hồ", "Chí", "Minh"],
    ]
    vocab = tiny_vocabulary(sentences)
    assert tiny_vocabulary(list(reversed(sentences))) == vocab
    assert list(vocab)[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"works", "García", "##s"} <= set(vocab)
    assert sorted(vocab.values()) == list(range(len(vocab)))


def test_corpus_stage_regenerates_deleted_files(tmp_path):
    settings = {"encoder": "tiny", "corpus_seed": 13, "n_train": 40, "n_val": 20, "n_test": 10, "save_artifacts": False}
    params = {"encoder_lr": 3e-3, "head_lr": 1e-2, "batch_size": 16, "pct_start": 0.5}
    fidelity = {"epochs": 1, "max_length": 32}
    runner = StageRunner(StageCache(tmp_path / "cache"))
    study = optuna.create_study(direction="maximize")

    def run():
        trial = study.ask()
        ctx = TrialContext(
            params=params,
            fidelity=fidelity,
            settings=settings,
            trial_number=trial.number,
            sprint="s",
            run_dir=tmp_path,
            trial=trial,
            stage_runner=runner,
        )
        return study.tell(trial, objective(ctx))

    first = run()
    shutil.rmtree(tmp_path / "jerex-corpus")  # the stage's cached value points here
    second = run()
    assert second.user_attrs["stages"]["corpus"]["hit"]  # the path came from the cache ...
    assert (tmp_path / "jerex-corpus").is_dir()  # ... and the files were regenerated, not failed on
    assert second.value == first.value
