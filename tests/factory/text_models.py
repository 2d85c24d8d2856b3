"""Tiny text encoders and tokenizers in the Hugging Face snapshot layout of the SD3.5 repositories.

`write_text_models(folder)` writes
    tokenizer/    CLIP byte-level BPE (vocab.json, merges.txt, configs), pad "<|endoftext|>"
    tokenizer_2/  the same BPE, pad "!" (id 0, as in the real folder: the source of the "!" trap)
    tokenizer_3/  a SentencePiece unigram model trained here (spiece.model, configs): pad 0, eos 1, unk 2
    text_encoders/clip_l.safetensors, clip_g.safetensors, t5xxl_fp16.safetensors
The weight files carry exactly the key names of the real files (`keys/*.json`), minus the layers beyond the
tiny depth, with random weights at small shapes. Widths: CLIP-L 64, CLIP-G 128 (pooled 64 + 128 = 192) and T5
d_model 256 (context width 256); the tiny MMDiT factory relies on these two numbers.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

KEYS_DIR = Path(__file__).parent / "keys"

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

_WORD_TEXT = """
    a an the of on in with by and at from over under to photo photograph picture painting portrait
    drawing sketch render cat dog horse bird fish dragon astronaut woman man girl boy child robot
    knight wizard red blue green yellow black white golden silver purple orange riding sitting
    standing flying running smiling moon sun sky night day sunset forest city street mountain river
    sea ocean beach castle house garden flower tree table book hat car ship detailed beautiful
    cinematic lighting sharp focus high quality digital art oil watercolor style old young big small
    dark light shadow masterpiece
"""
WORDS = tuple(_WORD_TEXT.split())  # real words, so that ordinary prompts tokenise to whole words


@dataclass(frozen=True, slots=True)
class TinyTextSpec:
    clip_l_hidden: int = 64  # 1 head of 64, as the real files' hidden/64
    clip_g_hidden: int = 128  # 2 heads
    clip_layers: int = 3
    t5_d_model: int = 256
    t5_heads: int = 4
    t5_d_kv: int = 32  # inner width 128 != d_model, so a loader that confuses the two fails
    t5_d_ff: int = 512
    t5_layers: int = 2


TINY_TEXT = TinyTextSpec()


# ---------------------------------------------------------------------------------------------- tokenizers


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE, in the usual order ("!" first, so "!" gets id 0)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE on the word list (most frequent pair first, ties by name) until every word is one token."""
    seqs = [(*w[:-1], w[-1] + "</w>") for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for s in seqs:
            for pair in itertools.pairwise(s):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        merged = []
        for s in seqs:
            out: list[str] = []
            i = 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            merged.append(tuple(out))
        seqs = merged


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


def write_clip_tokenizers(folder: Path) -> int:
    """Write tokenizer/ and tokenizer_2/; returns the vocabulary size."""
    merges = _learn_merges(sorted(set(WORDS)))
    symbols = _byte_symbols()
    vocab = [*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in merges), BOS, EOS]
    ids = {tok: i for i, tok in enumerate(vocab)}
    for name, pad in (("tokenizer", EOS), ("tokenizer_2", "!")):
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        _write_json(d / "vocab.json", ids)
        (d / "merges.txt").write_text(
            "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
        )
        special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad}
        _write_json(d / "special_tokens_map.json", special)
        _write_json(
            d / "tokenizer_config.json",
            {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **special},
        )
    return len(vocab)


def _t5_corpus() -> list[str]:
    corpus = []
    n = len(WORDS)
    for i in range(300):
        words = [WORDS[(i * 7 + j * 13) % n] for j in range(3 + i % 9)]
        corpus.append(" ".join(words).capitalize() + (".", "!", ",", "?")[i % 4])
    # Every letter, digit and common sign, so that no ordinary prompt character is unknown.
    corpus.append(
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 ( ) : ; ' \" - _ / \\ # @ & * +"
    )
    return corpus


def write_t5_tokenizer(folder: Path) -> int:
    """Train and write tokenizer_3/; returns the vocabulary size (T5 ids: pad 0, eos 1, unk 2, no BOS)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_t5_corpus()),
        model_writer=buf,
        vocab_size=256,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,  # single-threaded training is deterministic
        hard_vocab_limit=False,
        minloglevel=2,
    )
    model = buf.getvalue()
    d = folder / "tokenizer_3"
    d.mkdir(parents=True, exist_ok=True)
    (d / "spiece.model").write_bytes(model)
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    _write_json(d / "special_tokens_map.json", special)
    _write_json(
        d / "tokenizer_config.json",
        {
            "tokenizer_class": "T5Tokenizer",
            "extra_ids": 0,
            "model_max_length": 512,
            "legacy": True,
            **special,
        },
    )
    proc = spm.SentencePieceProcessor(model_proto=model)
    return int(proc.get_piece_size())


# ---------------------------------------------------------------------------------------------- weights


def _manifest(name: str) -> dict[str, tuple[int, ...]]:
    data = json.loads((KEYS_DIR / f"{name}.json").read_text())
    return {k["key"]: tuple(k["shape"]) for k in data["keys"]}


def _layer_index(key: str) -> int | None:
    m = re.search(r"\.(?:layers|block)\.(\d+)\.", key)
    return None if m is None else int(m.group(1))


def tiny_clip_shapes(role: str, vocab: int, spec: TinyTextSpec = TINY_TEXT) -> dict[str, tuple[int, ...]]:
    """Real CLIP-L / CLIP-G key names -> tiny shapes (layers beyond the tiny depth dropped)."""
    real = _manifest(role)
    width, ffn = (768, 3072) if role == "clip_l" else (1280, 5120)
    hidden = spec.clip_l_hidden if role == "clip_l" else spec.clip_g_hidden
    dims = {width: hidden, ffn: 4 * hidden, 49408: vocab, 77: 77}
    return {
        k: tuple(dims[d] for d in shape)
        for k, shape in real.items()
        if (_layer_index(k) is None or _layer_index(k) < spec.clip_layers)
    }


def tiny_t5_shapes(vocab: int, spec: TinyTextSpec = TINY_TEXT) -> dict[str, tuple[int, ...]]:
    real = _manifest("t5xxl")
    inner = spec.t5_heads * spec.t5_d_kv
    dims = {4096: spec.t5_d_model, 10240: spec.t5_d_ff, 32128: vocab, 32: 32, 64: spec.t5_heads}
    out = {}
    for k, shape in real.items():
        if _layer_index(k) is not None and _layer_index(k) >= spec.t5_layers:
            continue
        if re.search(r"SelfAttention\.[qkv]\.weight$", k):
            out[k] = (inner, spec.t5_d_model)
        elif k.endswith("SelfAttention.o.weight"):
            out[k] = (spec.t5_d_model, inner)
        else:
            out[k] = tuple(dims[d] for d in shape)
    return out


def random_tensors(
    shapes: dict[str, tuple[int, ...]], seed: int, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Deterministic random weights of sensible scale, drawn in key order from one CPU generator."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = shapes[key]
        t = torch.randn(shape, generator=gen)
        if "norm" in key and key.endswith(".weight"):
            t = 1.0 + 0.1 * t  # LayerNorm / RMSNorm scales near one
        elif key.endswith(".bias"):
            t = 0.05 * t
        elif "embed" in key or key == "shared.weight" or "relative_attention_bias" in key:
            t = 0.5 * t
        else:
            t = t / math.sqrt(shape[-1])  # Linear [out, in]: unit-variance outputs
        out[key] = t.to(dtype).contiguous()
    return out


def write_text_models(folder: Path, *, seed: int = 0, dtype: torch.dtype = torch.float16) -> None:
    """Write tokenizer/, tokenizer_2/, tokenizer_3/ and text_encoders/{clip_l,clip_g,t5xxl_fp16}.safetensors
    into `folder` (deterministic for a given seed and dtype)."""
    folder = Path(folder)
    clip_vocab = write_clip_tokenizers(folder)
    t5_vocab = write_t5_tokenizer(folder)
    enc = folder / "text_encoders"
    enc.mkdir(parents=True, exist_ok=True)
    save_file(
        random_tensors(tiny_clip_shapes("clip_l", clip_vocab), seed, dtype), str(enc / "clip_l.safetensors")
    )
    save_file(
        random_tensors(tiny_clip_shapes("clip_g", clip_vocab), seed + 1, dtype),
        str(enc / "clip_g.safetensors"),
    )
    t5 = random_tensors(tiny_t5_shapes(t5_vocab), seed + 2, dtype)
    # The real file stores the same embedding table twice.
    t5["encoder.embed_tokens.weight"] = t5["shared.weight"].clone()
    save_file(t5, str(enc / "t5xxl_fp16.safetensors"))
