"""Tokenisation for the three encoders (SD35_MODEL.md §3.3-3.4, DECISIONS rows 3-4) on tiny tokenizers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.inference.api.errors import InvalidRequestError, MissingComponentError
from app.inference.text.tokenization import SD3Tokenizer, SpecialIds, pack_windows
from tests.factory.text_models import write_clip_tokenizers, write_t5_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tokenizers")
    write_clip_tokenizers(folder)
    write_t5_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def tok(model_dir: Path) -> SD3Tokenizer:
    return SD3Tokenizer.from_folder(model_dir)


@pytest.fixture(scope="module")
def vocab(model_dir: Path) -> dict[str, int]:
    return json.loads((model_dir / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))


def content(window: tuple[int, ...], special: SpecialIds) -> list[int]:
    """Ids between BOS and the first EOS."""
    start = 0 if special.bos is None else 1
    return list(window[start : window.index(special.eos)])


# ------------------------------------------------------------------ special ids and the "!" trap


def test_special_ids_come_from_the_tokenizer_files(tok: SD3Tokenizer, vocab: dict[str, int]) -> None:
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    assert (bos, eos) != (49406, 49407)  # the tiny vocabulary: nothing may be hard-coded
    assert tok.clip_l_ids == SpecialIds(bos=bos, eos=eos, pad=eos)  # CLIP-L pads with EOS
    assert tok.clip_g_ids == SpecialIds(bos=bos, eos=eos, pad=vocab["!"])  # CLIP-G pads with "!" = 0
    assert vocab["!"] == 0
    assert tok.t5_ids == SpecialIds(bos=None, eos=1, pad=0)


def test_empty_prompt(tok: SD3Tokenizer) -> None:
    t = tok.tokenize("")
    bos, eos = tok.clip_l_ids.bos, tok.clip_l_ids.eos
    assert t.clip_l == ((bos, eos, *[eos] * 75),)
    assert t.clip_g == ((bos, eos, *[0] * 75),)
    assert t.t5 == (1, *[0] * 76)
    assert t.clip_weights == ((1.0,) * 77,)
    assert tok.tokenize("   \n ") == t  # whitespace-only prompts have no words


def test_exclamation_mark_trap(tok: SD3Tokenizer, model_dir: Path) -> None:
    from transformers import CLIPTokenizer

    # The trap is real in these files: tokenizer_2/ turns a literal "!" into its pad token, id 0 ...
    raw_g = CLIPTokenizer.from_pretrained(str(model_dir / "tokenizer_2"), local_files_only=True)
    assert 0 in raw_g("wow!").input_ids
    # ... but both encoders get tokenizer/'s ids; only the padding differs.
    t = tok.tokenize("a cat, wow!")
    (l_ids,), (g_ids,) = t.clip_l, t.clip_g
    n = l_ids.index(tok.clip_l_ids.eos) + 1
    assert l_ids[:n] == g_ids[:n]
    assert 0 not in g_ids[:n]
    assert set(l_ids[n:]) == {tok.clip_l_ids.eos}
    assert set(g_ids[n:]) == {0}


def test_clip_words_are_lower_cased_and_split_on_spaces_and_newlines(tok: SD3Tokenizer) -> None:
    a, b = tok.tokenize("A  Photo\nof a CAT"), tok.tokenize("a photo of a cat")
    assert (a.clip_l, a.clip_g) == (b.clip_l, b.clip_g)
    assert a.t5 != b.t5  # T5 (SentencePiece) keeps the case
    assert tok.tokenize("a  photo\nof a cat").t5 == b.t5


# ------------------------------------------------------------------ window packing (pure)

SP = SpecialIds(bos=900, eos=901, pad=0)


def groups_of(*sizes: int, start: int = 1) -> list[list[tuple[int, float]]]:
    out, nxt = [], start
    for size in sizes:
        out.append([(nxt + i, 1.0) for i in range(size)])
        nxt += size
    return out


def ids(window: list[tuple[int, float]]) -> list[int]:
    return [i for i, _ in window]


def test_75_content_tokens_fill_one_window_and_the_76th_spills() -> None:
    (w,) = pack_windows(groups_of(*[1] * 75), SP, max_length=77, min_length=77)
    assert ids(w) == [900, *range(1, 76), 901]
    w0, w1 = pack_windows(groups_of(*[1] * 76), SP, max_length=77, min_length=77)
    assert ids(w0) == [900, *range(1, 76), 901]
    assert ids(w1) == [900, 76, 901, *[0] * 74]


def test_a_short_word_moves_whole_to_the_next_window() -> None:
    w0, w1 = pack_windows(groups_of(*[1] * 73, 3), SP, max_length=77, min_length=77)
    assert ids(w0) == [900, *range(1, 74), 901, 0, 0]  # closed early, padded to 77
    assert ids(w1) == [900, 74, 75, 76, 901, *[0] * 72]


def test_a_word_of_eight_tokens_or_more_is_split() -> None:
    w0, w1 = pack_windows(groups_of(*[1] * 73, 10), SP, max_length=77, min_length=77)
    assert ids(w0) == [900, *range(1, 76), 901]  # two of its tokens fill the first window
    assert ids(w1) == [900, *range(76, 84), 901, *[0] * 67]
    w0, w1 = pack_windows(groups_of(*[1] * 73, 8), SP, max_length=77, min_length=77)  # exactly 8: split
    assert ids(w0) == [900, *range(1, 76), 901]
    assert ids(w1)[:8] == [900, *range(76, 82), 901]
    # A 7-token word is still "short" and moves whole.
    w0, w1 = pack_windows(groups_of(*[1] * 73, 7), SP, max_length=77, min_length=77)
    assert ids(w0)[-3:] == [901, 0, 0]
    assert ids(w1)[:9] == [900, *range(74, 81), 901]


def test_t5_packing_has_no_bos_no_cap_and_a_minimum_of_77() -> None:
    t5 = SpecialIds(bos=None, eos=1, pad=0)
    (w,) = pack_windows(groups_of(3, start=10), t5, max_length=1 << 60, min_length=77)
    assert ids(w) == [10, 11, 12, 1, *[0] * 73]
    (w,) = pack_windows(groups_of(*[2] * 60, start=10), t5, max_length=1 << 60, min_length=77)
    assert ids(w) == [*range(10, 130), 1]  # 121 tokens, no padding, no window split


def test_weights_travel_with_their_tokens() -> None:
    groups = [[(5, 1.0)], [(6, 1.5), (7, 1.5)]]
    (w,) = pack_windows(groups, SP, max_length=77, min_length=77)
    assert w[:5] == [(900, 1.0), (5, 1.0), (6, 1.5), (7, 1.5), (901, 1.0)]
    assert {wt for _, wt in w[5:]} == {1.0}


# ------------------------------------------------------------------ real tokenizers, both modes


def test_long_prompt_spills_into_a_second_window(tok: SD3Tokenizer) -> None:
    prompt = " ".join(["cat"] * 80)
    t = tok.tokenize(prompt)
    assert len(t.clip_l) == len(t.clip_g) == 2
    assert all(len(w) == 77 for w in (*t.clip_l, *t.clip_g))
    assert len(content(t.clip_l[0], tok.clip_l_ids)) == 75
    assert len(content(t.clip_l[1], tok.clip_l_ids)) == 5
    assert len(t.t5) == 81  # 80 words + EOS, longer than 77 and not cut


def test_short_word_moves_and_long_word_splits_with_the_real_tokenizer(tok: SD3Tokenizer) -> None:
    (wow,) = tok._groups(tok._clip, "wow", has_start=True)
    (zzz,) = tok._groups(tok._clip, "zzzzzzzzzz", has_start=True)
    assert len(wow) == 3
    assert len(zzz) == 10

    t = tok.tokenize(" ".join(["cat"] * 73) + " wow")
    assert len(content(t.clip_l[0], tok.clip_l_ids)) == 73
    assert content(t.clip_l[1], tok.clip_l_ids) == [i for i, _ in wow]

    t = tok.tokenize(" ".join(["cat"] * 73) + " zzzzzzzzzz")
    assert content(t.clip_l[0], tok.clip_l_ids)[73:] == [i for i, _ in zzz[:2]]
    assert content(t.clip_l[1], tok.clip_l_ids) == [i for i, _ in zzz[2:]]


def test_full_mode_keeps_weights_reference_mode_drops_them(tok: SD3Tokenizer) -> None:
    full = tok.tokenize("a (cat:1.5) on a ((hat))")
    (w,) = full.clip_weights
    cat = tok.tokenize("cat").clip_l[0][1]
    hat = tok.tokenize("hat").clip_l[0][1]
    pos_cat, pos_hat = full.clip_l[0].index(cat), full.clip_l[0].index(hat)
    assert w[pos_cat] == 1.5
    assert w[pos_hat] == pytest.approx(1.21)
    assert sum(x != 1.0 for x in w) == 2
    assert full.clip_weighted
    assert full.t5_weighted
    assert sum(x != 1.0 for x in full.t5_weights) >= 2

    ref = tok.tokenize("a (cat:1.5) on a ((hat))", "reference")
    plain = tok.tokenize("a cat on a hat", "reference")
    assert ref == plain  # syntax removed, weights ignored
    assert not ref.clip_weighted
    assert not ref.t5_weighted
    assert ref.clip_l == full.clip_l
    assert ref.t5 == full.t5


def test_modes_agree_on_a_short_weight_free_prompt(tok: SD3Tokenizer) -> None:
    prompt = "an astronaut riding a horse on the moon, cinematic lighting"
    assert tok.tokenize(prompt, "full") == tok.tokenize(prompt, "reference")


def test_modes_differ_on_a_long_prompt(tok: SD3Tokenizer) -> None:
    prompt = " ".join(["a beautiful painting of a red dragon over the sea"] * 10)
    full, ref = tok.tokenize(prompt, "full"), tok.tokenize(prompt, "reference")
    assert len(full.clip_l) == 2
    assert len(ref.clip_l) == 1
    assert ref.clip_l[0] == full.clip_l[0]
    assert ref.clip_g[0] == full.clip_g[0]
    assert len(full.t5) > len(ref.t5)


def test_reference_t5_sees_the_first_226_characters(tok: SD3Tokenizer) -> None:
    prompt = " ".join(["golden", "castle", "forest"] * 30)  # 620 characters
    assert len(prompt) > 226
    ref = tok.tokenize(prompt, "reference")
    assert ref.t5 == tok.tokenize(prompt[:226], "full").t5  # cut in the middle of a word, like the reference
    assert ref.t5 != tok.tokenize(prompt[:220], "full").t5
    assert len(tok.tokenize(prompt, "full").t5) > len(ref.t5)


def test_t5_ids_are_case_preserving_and_end_with_eos(tok: SD3Tokenizer) -> None:
    t = tok.tokenize("a Photo of a cat")
    n = t.t5.index(1)
    assert n > 0
    assert set(t.t5[n + 1 :]) == {0}
    assert len(t.t5) == 77
    assert t.t5 != tok.tokenize("a photo of a cat").t5


def test_token_count(tok: SD3Tokenizer) -> None:
    prompt = " ".join(["cat"] * 80)
    assert tok.count("a photo of a cat").clip_windows == 1
    full = tok.count(prompt)
    assert (full.clip_windows, full.clip_windows_used, full.clip_tokens, full.t5_tokens) == (2, 2, 80, 81)
    assert not full.clip_truncated
    ref = tok.count(prompt, "reference")
    assert (ref.clip_windows, ref.clip_windows_used, ref.clip_truncated) == (2, 1, True)
    assert ref.t5_tokens == tok.tokenize(prompt, "reference").t5.index(1) + 1 < full.t5_tokens
    assert tok.count("").t5_tokens == 1


def test_unknown_mode(tok: SD3Tokenizer) -> None:
    with pytest.raises(InvalidRequestError, match="text mode"):
        tok.tokenize("cat", "fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["tokenizer", "tokenizer_2", "tokenizer_3"])
def test_missing_tokenizer_folder(model_dir: Path, tmp_path: Path, name: str) -> None:
    shutil.copytree(model_dir, tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / name)
    with pytest.raises(MissingComponentError, match=name):
        SD3Tokenizer.from_folder(tmp_path / "m")


def test_t5_tokenizer_not_needed_without_t5(model_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(model_dir, tmp_path / "m", ignore=shutil.ignore_patterns("tokenizer_3"))
    tok = SD3Tokenizer.from_folder(tmp_path / "m", t5=False)
    t = tok.tokenize("a cat")
    assert t.t5 == ()
    assert len(t.clip_l) == 1
    assert tok.count("a cat").t5_tokens == 0
