"""Encoder loading (tiny, local directory, package), sub-token features and the multitask model."""

import sys

import numpy as np
import pytest
import torch

from engine.workloads.jerex.corpus import Entity, Relation, Sentence, generate_corpus
from engine.workloads.jerex.encoder import (
    EncoderNotFoundError,
    build_tiny_encoder,
    build_tiny_tokenizer,
    load_pretrained_encoder,
    load_pretrained_tokenizer,
    resolve_encoder_dir,
)
from engine.workloads.jerex.features import bio_tags, collate, encode_sentence
from engine.workloads.jerex.model import JointModel

torch.set_num_threads(1)

ENTITY_TYPES = ("Loc", "Org", "Peop")
RELATION_TYPES = ("Live_In", "Work_For")
SENTENCE = Sentence(
    tokens=("Zoë", "García", "works", "for", "Crédit", "Agricole", "Bank", "in", "Kraków", "."),
    entities=(Entity(0, 2, "Peop"), Entity(4, 7, "Org"), Entity(8, 9, "Loc")),
    relations=(Relation(0, 1, "Work_For"), Relation(0, 2, "Live_In")),
)


@pytest.fixture(scope="module")
def tokenizer():
    corpus = generate_corpus(13, 200, 10, 10)
    return build_tiny_tokenizer([s.tokens for s in corpus.train] + [SENTENCE.tokens])


@pytest.fixture(scope="module")
def saved_encoder_dir(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder")
    build_tiny_encoder(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_features_tag_first_sub_tokens_and_label_entity_pairs(tokenizer):
    features = encode_sentence(SENTENCE, tokenizer, ENTITY_TYPES, RELATION_TYPES, max_length=64)
    tags = bio_tags(ENTITY_TYPES)
    assert [tags[i] for i in features.tag_ids] == [
        "B-Peop",
        "I-Peop",
        "O",
        "O",
        "B-Org",
        "I-Org",
        "I-Org",
        "O",
        "B-Loc",
        "O",
    ]
    ids = features.input_ids
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert features.word_starts[0] == 1 and features.word_starts == sorted(features.word_starts)
    # Each word's first piece, decoded, is a prefix of the word.
    for word, start in zip(SENTENCE.tokens, features.word_starts, strict=False):
        assert word.startswith(tokenizer.convert_ids_to_tokens(ids[start]))
    assert features.entity_spans[0][0] == features.word_starts[0]
    assert features.entity_spans[1] == (features.word_starts[4], features.word_starts[7])
    assert len(features.pairs) == 6  # ordered pairs of 3 entities
    labelled = {
        features.pairs[row]: RELATION_TYPES[col] for row, col in zip(*np.nonzero(features.pair_labels), strict=False)
    }
    assert labelled == {(0, 1): "Work_For", (0, 2): "Live_In"}


def test_truncation_drops_entities_past_max_length(tokenizer):
    full = encode_sentence(SENTENCE, tokenizer, ENTITY_TYPES, RELATION_TYPES, max_length=64)
    cut = full.word_starts[8]  # keeps the words before "Kraków" (and [CLS], [SEP])
    features = encode_sentence(SENTENCE, tokenizer, ENTITY_TYPES, RELATION_TYPES, max_length=cut + 1)
    assert len(features.word_starts) == 8
    assert [e[2] for e in features.gold_entities] == ["Peop", "Org"]
    assert features.pair_labels.sum() == 1 and features.pair_labels[features.pairs.index((0, 1)), 1] == 1


def test_model_outputs_and_both_loss_weightings(tokenizer):
    corpus = generate_corpus(13, 8, 2, 2)
    entity_types, relation_types = corpus.schema()
    features = [encode_sentence(s, tokenizer, entity_types, relation_types, 64) for s in corpus.train]
    batch = collate(features, tokenizer.pad_token_id, len(relation_types))
    for weighting in ("static", "uncertainty"):
        torch.manual_seed(0)
        model = JointModel(
            build_tiny_encoder(len(tokenizer)),
            len(bio_tags(entity_types)),
            len(relation_types),
            loss_weighting=weighting,
        )
        output = model(batch)
        assert output.tag_logits.shape == (8, batch.word_starts.shape[1], len(bio_tags(entity_types)))
        assert output.relation_logits.shape == (sum(len(f.pairs) for f in features), len(relation_types))
        losses = model.losses(output, batch)
        assert torch.isfinite(losses["total"]) and losses["relation"] > 0 and losses["entity"] > 0
        losses["total"].backward()
        if weighting == "uncertainty":
            assert model.log_vars.grad is not None and model.log_vars.grad.abs().sum() > 0
        else:
            assert model.log_vars is None
    with pytest.raises(ValueError, match="loss_weighting"):
        JointModel(build_tiny_encoder(len(tokenizer)), 3, 2, loss_weighting="magic")


def test_pretrained_encoder_loads_from_a_local_directory(saved_encoder_dir, tokenizer):
    path = resolve_encoder_dir(str(saved_encoder_dir))
    loaded, loaded_tokenizer = load_pretrained_encoder(path, dropout=0.25), load_pretrained_tokenizer(path)
    assert loaded.config.hidden_dropout_prob == 0.25
    torch.manual_seed(0)
    original = build_tiny_encoder(len(tokenizer))
    words = list(SENTENCE.tokens)
    assert (
        loaded_tokenizer(words, is_split_into_words=True)["input_ids"]
        == tokenizer(words, is_split_into_words=True)["input_ids"]
    )
    ids = torch.tensor([tokenizer(words, is_split_into_words=True)["input_ids"]])
    original.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(
            original(input_ids=ids).last_hidden_state, loaded(input_ids=ids).last_hidden_state, atol=1e-6
        )


def test_package_encoder_resolves_to_the_directory_it_ships(saved_encoder_dir, tmp_path, monkeypatch):
    package = tmp_path / "fake_encoder_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(f"def get_model_path():\n    return {str(saved_encoder_dir)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_encoder_pkg", raising=False)
    assert resolve_encoder_dir("package:fake_encoder_pkg") == saved_encoder_dir.resolve()


def test_missing_encoders_give_clear_errors_naming_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(EncoderNotFoundError, match=f"encoder directory {missing} does not exist"):
        resolve_encoder_dir(str(missing))
    with pytest.raises(EncoderNotFoundError, match="no config.json"):
        resolve_encoder_dir(str(tmp_path))
    with pytest.raises(EncoderNotFoundError, match="package 'no_such_package_xyz' is not installed"):
        resolve_encoder_dir("package:no_such_package_xyz")
    with pytest.raises(EncoderNotFoundError, match="sentence-transformers/all-MiniLM-L6-v2 does not exist"):
        resolve_encoder_dir("sentence-transformers/all-MiniLM-L6-v2")  # a hub id is never fetched
