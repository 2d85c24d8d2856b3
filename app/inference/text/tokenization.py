"""Prompt -> token ids for CLIP-L, CLIP-G and T5-XXL (SD35_MODEL.md §3.3-3.4, DECISIONS rows 3 and 4).

Two modes:
- `full`: every 77-token CLIP window, one weight per token, T5 gets the whole text;
- `reference`: Stability's reference: the first CLIP window only, T5 gets `text[:226]`, weights dropped.

Both CLIP encoders are tokenised with the CLIP-L tokenizer (`tokenizer/`); only the pad id differs (L pads
with its EOS id, G with `tokenizer_2/`'s pad id, 0). `tokenizer_2/` declares `!` a special token, so
tokenising with it would turn every literal `!` into the pad id (the "`!` trap"). Special ids are read from
the tokenizers, never hard-coded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.inference.api.errors import InvalidRequestError, MissingComponentError, ModelFileError
from app.inference.text.prompt_weights import parse_prompt_weights
from app.inference.text.tokenizer_files import check_tokenizer_files

log = logging.getLogger(__name__)

TextMode = Literal["full", "reference"]
TEXT_MODES: tuple[str, ...] = ("full", "reference")

CLIP_WINDOW = 77  # CLIP's learned positions; every window is padded to this length
T5_MIN_LENGTH = 77  # T5 sequences shorter than this are padded; longer ones are kept whole
REFERENCE_T5_CHARS = 226  # the reference feeds T5 only the first 226 characters of the prompt
LARGE_WORD_TOKENS = 8  # words of at least this many tokens may be split across CLIP windows

_NO_LIMIT = 1 << 60

WeightedIds = list[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class SpecialIds:
    """The ids one encoder's sequences are built from; `bos` is None for T5 (no start token)."""

    bos: int | None
    eos: int
    pad: int

    def empty(self, length: int) -> tuple[int, ...]:
        """The empty prompt of `length` tokens: [BOS,] EOS, pad... (the `z_empty` of prompt weighting)."""
        ids = ([] if self.bos is None else [self.bos]) + [self.eos]
        return tuple(ids + [self.pad] * (length - len(ids)))


@dataclass(frozen=True, slots=True)
class PromptTokens:
    """Token ids of one prompt for the three encoders.

    `clip_l` and `clip_g` hold windows of exactly 77 ids (the same ids except for padding); `clip_weights`
    holds one weight per id of each window, shared by L and G. `t5` is one sequence of at least 77 ids (empty
    when T5 is not used). In `reference` mode every weight is 1.0.
    """

    clip_l: tuple[tuple[int, ...], ...]
    clip_g: tuple[tuple[int, ...], ...]
    clip_weights: tuple[tuple[float, ...], ...]
    t5: tuple[int, ...]
    t5_weights: tuple[float, ...]

    @property
    def clip_weighted(self) -> bool:
        return any(w != 1.0 for window in self.clip_weights for w in window)

    @property
    def t5_weighted(self) -> bool:
        return any(w != 1.0 for w in self.t5_weights)


@dataclass(frozen=True, slots=True)
class TokenCount:
    """What a UI token counter shows for one prompt."""

    clip_windows: int  # 77-token windows the prompt fills (the same for CLIP-L and CLIP-G)
    clip_windows_used: int  # windows the mode encodes (1 in `reference` mode)
    clip_tokens: int  # content tokens, without BOS/EOS/padding
    t5_tokens: int  # T5 tokens the mode encodes, EOS included, before padding to 77 (0 without T5)

    @property
    def clip_truncated(self) -> bool:
        return self.clip_windows_used < self.clip_windows


def pack_windows(
    groups: Sequence[WeightedIds], special: SpecialIds, *, max_length: int, min_length: int
) -> list[WeightedIds]:
    """Word-aware window packing of the reference (`SDTokenizer.tokenize_with_weights`).

    Each group is one word's tokens. A word that does not fit in the current window closes it (EOS, then
    padding up to `max_length`) and moves whole to the next window; a word of at least 8 tokens is split
    instead. The last window gets its EOS and is padded up to `min_length`. Special tokens carry weight 1.0.
    """
    start: WeightedIds = [] if special.bos is None else [(special.bos, 1.0)]
    window = list(start)
    windows = [window]
    for group in groups:
        rest = list(group)
        large = len(rest) >= LARGE_WORD_TOKENS
        while rest:
            if len(rest) + len(window) > max_length - 1:
                room = max_length - len(window) - 1
                if large:
                    window.extend(rest[:room])
                    rest = rest[room:]
                    window.append((special.eos, 1.0))
                else:
                    window.append((special.eos, 1.0))
                    window.extend([(special.pad, 1.0)] * room)
                window = list(start)
                windows.append(window)
            else:
                window.extend(rest)
                rest = []
    window.append((special.eos, 1.0))
    window.extend([(special.pad, 1.0)] * (min_length - len(window)))
    return windows


def start_end_ids(tokenizer: Any, folder: Path) -> tuple[int | None, int]:
    """Read the start/end ids the way the reference does: from the ids of the empty prompt."""
    ids = [int(i) for i in tokenizer("").input_ids]
    if len(ids) == 2:
        return ids[0], ids[1]
    if len(ids) == 1:
        return None, ids[0]
    raise ModelFileError(
        f"{folder}: unexpected tokenizer: the empty prompt gives {ids}, expected [BOS, EOS] or [EOS]"
    )


def _load(cls: Any, folder: Path) -> Any:
    if not folder.is_dir():
        raise MissingComponentError(
            f"Tokenizer folder not found: {folder}. The model folder needs tokenizer/, tokenizer_2/ and "
            "tokenizer_3/ as in the Stability AI Hugging Face repository."
        )
    return load_hf_tokenizer(cls, folder)


def load_hf_tokenizer(cls: Any, folder: Path) -> Any:
    """A transformers tokenizer class from a local folder, never the network."""
    check_tokenizer_files(folder)  # names a damaged file; the libraries' own messages mislead
    try:
        return cls.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise ModelFileError(f"{folder}: cannot load the tokenizer ({exc})") from None


class SD3Tokenizer:
    """Tokenises prompts for SD3.5's three text encoders. `t5` may be None when running without T5."""

    def __init__(
        self, clip: Any, t5: Any | None, *, clip_l: SpecialIds, clip_g: SpecialIds, t5_ids: SpecialIds | None
    ):
        self._clip = clip
        self._t5 = t5
        # HF fast tokenizers mutate their backend on each call; a UI token counter may call from its thread.
        self._lock = threading.Lock()
        self.clip_l_ids = clip_l
        self.clip_g_ids = clip_g
        self.t5_ids = t5_ids

    @classmethod
    def from_folder(cls, folder: str | Path, *, t5: bool = True) -> SD3Tokenizer:
        """Load `tokenizer/` (CLIP, used for both CLIPs), `tokenizer_2/` (for CLIP-G's pad id) and, when `t5`,
        `tokenizer_3/` (T5 SentencePiece) from a model folder in the Hugging Face layout."""
        from transformers import CLIPTokenizer, T5TokenizerFast  # heavy import, deferred to first use

        folder = Path(folder)
        clip = _load(CLIPTokenizer, folder / "tokenizer")
        clip_2 = _load(CLIPTokenizer, folder / "tokenizer_2")
        if len(clip_2) != len(clip):
            log.warning(
                "tokenizer_2/ has %d tokens but tokenizer/ has %d; using tokenizer/ ids",
                len(clip_2),
                len(clip),
            )
        bos, eos = start_end_ids(clip, folder / "tokenizer")
        if bos is None or clip_2.pad_token_id is None:
            raise ModelFileError(
                f"{folder}: tokenizer/ or tokenizer_2/ is not a CLIP tokenizer (no BOS or pad token)"
            )
        l_ids = SpecialIds(bos=bos, eos=eos, pad=eos)  # CLIP-L pads with its EOS id
        # CLIP-G pads with tokenizer_2's pad id ("!" = 0), still with tokenizer/'s ids for the text.
        g_ids = SpecialIds(bos=bos, eos=eos, pad=int(clip_2.pad_token_id))
        t5_tok = t5_ids = None
        if t5:
            t5_tok = _load(T5TokenizerFast, folder / "tokenizer_3")
            if t5_tok.pad_token_id is None:
                raise ModelFileError(f"{folder / 'tokenizer_3'}: the T5 tokenizer has no pad token")
            t5_bos, t5_eos = start_end_ids(t5_tok, folder / "tokenizer_3")
            t5_ids = SpecialIds(bos=t5_bos, eos=t5_eos, pad=int(t5_tok.pad_token_id))
        log.debug("tokenizers: CLIP-L %s, CLIP-G %s, T5 %s", l_ids, g_ids, t5_ids)
        return cls(clip, t5_tok, clip_l=l_ids, clip_g=g_ids, t5_ids=t5_ids)

    @property
    def has_t5(self) -> bool:
        return self._t5 is not None

    def _groups(self, tokenizer: Any, text: str, *, has_start: bool) -> list[WeightedIds]:
        """One group of (id, weight) per space-separated word, BOS/EOS added by the tokenizer stripped."""
        words: list[tuple[str, float]] = []
        for segment, weight in parse_prompt_weights(text):
            words.extend((w, weight) for w in segment.replace("\n", " ").split(" ") if w)
        if not words:
            return []
        with self._lock:
            encoded = tokenizer([w for w, _ in words]).input_ids  # one batched call: cheap per keystroke
        cut = slice(1, -1) if has_start else slice(0, -1)
        return [[(i, weight) for i in ids[cut]] for ids, (_, weight) in zip(encoded, words, strict=True)]

    def tokenize(self, text: str, mode: TextMode = "full") -> PromptTokens:
        check_mode(mode)
        clip_groups = self._groups(self._clip, text, has_start=True)
        l_windows = pack_windows(clip_groups, self.clip_l_ids, max_length=CLIP_WINDOW, min_length=CLIP_WINDOW)
        g_windows = pack_windows(clip_groups, self.clip_g_ids, max_length=CLIP_WINDOW, min_length=CLIP_WINDOW)
        t5: WeightedIds = []
        if self._t5 is not None and self.t5_ids is not None:
            t5_text = text[:REFERENCE_T5_CHARS] if mode == "reference" else text
            t5_groups = self._groups(self._t5, t5_text, has_start=self.t5_ids.bos is not None)
            (t5,) = pack_windows(t5_groups, self.t5_ids, max_length=_NO_LIMIT, min_length=T5_MIN_LENGTH)
        if mode == "reference":
            l_windows, g_windows = l_windows[:1], g_windows[:1]
        keep = mode == "full"  # the reference parses the weights but never uses them
        return PromptTokens(
            clip_l=tuple(tuple(i for i, _ in w) for w in l_windows),
            clip_g=tuple(tuple(i for i, _ in w) for w in g_windows),
            clip_weights=tuple(tuple(wt if keep else 1.0 for _, wt in w) for w in l_windows),
            t5=tuple(i for i, _ in t5),
            t5_weights=tuple(wt if keep else 1.0 for _, wt in t5),
        )

    def count(self, text: str, mode: TextMode = "full") -> TokenCount:
        """Token counts for a UI counter: no packing of CLIP-G, no tensors."""
        check_mode(mode)
        clip_groups = self._groups(self._clip, text, has_start=True)
        windows = pack_windows(clip_groups, self.clip_l_ids, max_length=CLIP_WINDOW, min_length=CLIP_WINDOW)
        t5_tokens = 0
        if self._t5 is not None and self.t5_ids is not None:
            t5_text = text[:REFERENCE_T5_CHARS] if mode == "reference" else text
            t5_groups = self._groups(self._t5, t5_text, has_start=self.t5_ids.bos is not None)
            t5_tokens = sum(len(g) for g in t5_groups) + (1 if self.t5_ids.bos is None else 2)
        return TokenCount(
            clip_windows=len(windows),
            clip_windows_used=1 if mode == "reference" else len(windows),
            clip_tokens=sum(len(g) for g in clip_groups),
            t5_tokens=t5_tokens,
        )


def check_mode(mode: str) -> None:
    if mode not in TEXT_MODES:
        raise InvalidRequestError(f"unknown text mode {mode!r}; use one of {', '.join(TEXT_MODES)}")
