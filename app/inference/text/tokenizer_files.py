"""Checking a tokenizer folder's files before transformers reads them, so that a damaged file is named in one
sentence (the tokenizers library says "Error while initializing BPE"; a broken `spiece.model` makes transformers
fall back to a tiktoken reader and ask for `pip install tiktoken`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from app.inference.api.errors import ModelFileError

log = logging.getLogger(__name__)

_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
_MAX_BYTES = 64 * 1024 * 1024  # the largest real tokenizer file (T5's tokenizer.json) is about 2.4 MB


def _damaged(path: Path, what: str) -> ModelFileError:
    return ModelFileError(f"{path}: {what}; the tokenizer file is damaged, download it again")


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise _damaged(path, f"larger than {_MAX_BYTES // 2**20} MB")
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the tokenizer file ({exc.strerror or exc})") from None


def _json(path: Path) -> Any:
    try:
        return json.loads(_read(path))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _damaged(path, "not valid JSON") from None


def _check_vocab(path: Path) -> None:
    vocab = _json(path)
    if not (
        isinstance(vocab, dict)
        and vocab
        and all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in vocab.items())
    ):
        raise _damaged(path, "not a vocabulary (a JSON map of tokens to ids)")


def _check_merges(path: Path) -> None:
    try:
        _read(path).decode("utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "not UTF-8 text") from None


def _check_sentencepiece(path: Path) -> None:
    from sentencepiece import SentencePieceProcessor  # a dependency of transformers' T5 tokenizer

    try:
        if not SentencePieceProcessor().LoadFromSerializedProto(_read(path)):
            raise RuntimeError
    except RuntimeError:
        raise _damaged(path, "not a SentencePiece model") from None


def check_tokenizer_files(folder: Path) -> None:
    """Raise ModelFileError naming the first damaged file among those a tokenizer folder may hold."""
    for name in _JSON_FILES:
        if (folder / name).is_file():
            _json(folder / name)
    if (folder / "vocab.json").is_file():
        _check_vocab(folder / "vocab.json")
    if (folder / "merges.txt").is_file():
        _check_merges(folder / "merges.txt")
    if (folder / "spiece.model").is_file():
        _check_sentencepiece(folder / "spiece.model")
