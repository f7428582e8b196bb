"""The CoNLL04-like generator and the JSON-lines format."""

import collections
import hashlib
import json

import pytest

from engine.workloads.jerex.corpus import (
    ENTITY_TYPES,
    RELATION_TYPES,
    SPLITS,
    CorpusFormatError,
    corpus_sha256,
    generate_corpus,
    prepare_generated_corpus,
    read_corpus,
    read_jsonl,
    write_corpus,
)

# Pinned: a change to the generator (or to Python's `random`) must be a deliberate, visible edit.
SEED13_60_20_20_SHA256 = "6fd18e09894a9de16b71ec43f0d1da128a5a84c74fc20abb561bdbdd33bce9ac"


def test_same_seed_gives_the_same_corpus_byte_for_byte(tmp_path):
    corpus = generate_corpus(13, 60, 20, 20)
    assert corpus_sha256(corpus) == SEED13_60_20_20_SHA256
    assert corpus_sha256(generate_corpus(13, 60, 20, 20)) == SEED13_60_20_20_SHA256
    assert corpus_sha256(generate_corpus(14, 60, 20, 20)) != SEED13_60_20_20_SHA256

    first, second = tmp_path / "a", tmp_path / "b"
    write_corpus(first, corpus)
    write_corpus(second, generate_corpus(13, 60, 20, 20))
    for name in SPLITS:
        assert (first / f"{name}.jsonl").read_bytes() == (second / f"{name}.jsonl").read_bytes()
    on_disk = hashlib.sha256()
    for name in SPLITS:
        on_disk.update(name.encode())
        on_disk.update((first / f"{name}.jsonl").read_bytes())
    assert on_disk.hexdigest() == SEED13_60_20_20_SHA256


def test_splits_have_the_requested_sizes_and_do_not_overlap():
    corpus = generate_corpus(5, 300, 100, 100)
    sizes = [len(corpus.split(name)) for name in SPLITS]
    assert sizes == [300, 100, 100]
    token_sets = [{s.tokens for s in corpus.split(name)} for name in SPLITS]
    assert [len(t) for t in token_sets] == sizes  # no duplicates inside a split either
    assert not token_sets[0] & token_sets[1]
    assert not token_sets[0] & token_sets[2]
    assert not token_sets[1] & token_sets[2]


def test_corpus_has_the_phenomena_of_conll04():
    corpus = generate_corpus(13, 1200, 300, 300)
    sentences = corpus.train + corpus.val + corpus.test
    counts = collections.Counter(r.type for s in sentences for r in s.relations)
    assert set(counts) == set(RELATION_TYPES)
    assert counts.most_common()[-1][0] == "Kill" and counts["Kill"] < counts["Work_For"] / 10  # imbalanced, one rare
    assert corpus.schema() == (ENTITY_TYPES, RELATION_TYPES)

    surfaces = {" ".join(s.tokens[e.start : e.end]) for s in sentences for e in s.entities}
    assert any(len(name.split()) >= 3 for name in surfaces)  # multi-word names
    assert any(not name.isascii() for name in surfaces)  # accented names
    assert sum(1 for s in sentences if len(s.relations) >= 2) > 50  # several relations in one sentence
    distractors = [s for s in sentences if len(s.entities) >= 2 and not s.relations]
    assert len(distractors) > 100  # entities that co-occur without a relation

    for s in sentences:
        for e in s.entities:
            assert 0 <= e.start < e.end <= len(s.tokens) and e.type in ENTITY_TYPES
        starts = [e.start for e in s.entities]
        assert starts == sorted(starts)
        for r in s.relations:
            assert r.head != r.tail and max(r.head, r.tail) < len(s.entities)


def test_round_trip_through_jsonl(tmp_path):
    corpus = generate_corpus(3, 30, 10, 10)
    write_corpus(tmp_path, corpus)
    assert read_corpus(tmp_path) == corpus
    record = json.loads((tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(record) == {"tokens", "entities", "relations"}
    assert "\\u" not in (tmp_path / "train.jsonl").read_text(encoding="utf-8")  # UTF-8, not escapes


def test_prepare_caches_by_seed_and_size(tmp_path):
    first = prepare_generated_corpus(tmp_path, 13, 30, 10, 10)
    stamp = (first / "train.jsonl").stat().st_mtime_ns
    assert prepare_generated_corpus(tmp_path, 13, 30, 10, 10) == first
    assert (first / "train.jsonl").stat().st_mtime_ns == stamp
    assert prepare_generated_corpus(tmp_path, 14, 30, 10, 10) != first
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"tokens": [], "entities": []}', "non-empty list"),
        ('{"tokens": ["a", "b"], "entities": [{"start": 1, "end": 3, "type": "Loc"}]}', "outside the 2 tokens"),
        (
            '{"tokens": ["a"], "entities": [{"start": 0, "end": 1, "type": "Loc"}], '
            '"relations": [{"head": 0, "tail": 1, "type": "Kill"}]}',
            "relation 0",
        ),
        ('{"entities": []}', "KeyError"),
        ("not json", "JSONDecodeError"),
    ],
)
def test_bad_lines_are_reported_with_file_and_line(tmp_path, line, reason):
    path = tmp_path / "train.jsonl"
    path.write_text('{"tokens": ["ok"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError) as err:
        read_jsonl(path)
    assert f"{path}:2:" in str(err.value) and reason in str(err.value)


def test_missing_data_directory_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        read_corpus(tmp_path / "nowhere")
