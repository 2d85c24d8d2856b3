"""Where the tokenizers of a model set come from, and loading them from separate folders.

Sources, nearest first: the snapshot's `tokenizer/`, `tokenizer_2/`, `tokenizer_3/`; a ComfyUI install's own
copies (`comfy/sd1_tokenizer/`, `comfy/text_encoders/t5_tokenizer/`); the Hugging Face cache of
`openai/clip-vit-large-patch14` and `google/t5-v1_1-xxl`. A folder counts when it holds the files the
tokenizer needs: CLIP `vocab.json` + `merges.txt` or a `tokenizer.json`; T5 `spiece.model` or a `tokenizer.json`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.inference.api.errors import MissingComponentError, ModelFileError
from app.inference.text.tokenization import SD3Tokenizer, SpecialIds, load_hf_tokenizer, start_end_ids

log = logging.getLogger(__name__)

CLIP_REPO = "openai/clip-vit-large-patch14"
T5_REPO = "google/t5-v1_1-xxl"


@dataclass(frozen=True, slots=True)
class TokenizerFolders:
    clip: Path | None = None  # CLIP BPE (used for both CLIPs' text)
    clip_g: Path | None = None  # tokenizer_2/: only its pad id is used; None pads CLIP-G with the id of "!"
    t5: Path | None = None  # T5 SentencePiece

    def missing(self, t5: bool = True) -> list[str]:
        out = [] if self.clip is not None else ["tokenizer"]
        if t5 and self.t5 is None:
            out.append("t5_tokenizer")
        return out

    def or_else(self, other: TokenizerFolders) -> TokenizerFolders:
        """Fill what this one lacks from `other` (CLIP and its tokenizer_2 stay together)."""
        clip, clip_g = (self.clip, self.clip_g) if self.clip is not None else (other.clip, other.clip_g)
        return TokenizerFolders(clip, clip_g, self.t5 or other.t5)


def _exists(path: Path, *names: str) -> bool:
    try:
        return all((path / n).is_file() for n in names)
    except OSError:
        return False


def is_clip_tokenizer(folder: Path) -> bool:
    return _exists(folder, "vocab.json", "merges.txt") or _exists(folder, "tokenizer.json")


def is_t5_tokenizer(folder: Path) -> bool:
    return _exists(folder, "spiece.model") or _exists(folder, "tokenizer.json")


def snapshot_tokenizers(root: Path) -> TokenizerFolders:
    clip, clip_g, t5 = root / "tokenizer", root / "tokenizer_2", root / "tokenizer_3"
    return TokenizerFolders(
        clip if is_clip_tokenizer(clip) else None,
        clip_g if is_clip_tokenizer(clip_g) else None,
        t5 if is_t5_tokenizer(t5) else None,
    )


def comfyui_tokenizers(install: Path) -> TokenizerFolders:
    clip, t5 = install / "comfy" / "sd1_tokenizer", install / "comfy" / "text_encoders" / "t5_tokenizer"
    return TokenizerFolders(
        clip if is_clip_tokenizer(clip) else None, None, t5 if is_t5_tokenizer(t5) else None
    )


def hf_cache_snapshots(cache: Path, repo_id: str) -> list[Path]:
    """Snapshot folders of `repo_id` in a hub cache: the ones a ref (e.g. refs/main) points to, else all."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    try:
        refs = sorted(p for p in (repo / "refs").iterdir() if p.is_file()) if (repo / "refs").is_dir() else []
        pointed = [repo / "snapshots" / r.read_text(encoding="utf-8").strip() for r in refs]
        pointed = [p for p in pointed if p.is_dir()]
        if pointed:
            return pointed
        snaps = repo / "snapshots"
        return sorted(p for p in snaps.iterdir() if p.is_dir()) if snaps.is_dir() else []
    except OSError:
        return []


def hf_cache_tokenizers(cache: Path | None) -> TokenizerFolders:
    if cache is None:
        return TokenizerFolders()
    clip = next((s for s in hf_cache_snapshots(cache, CLIP_REPO) if is_clip_tokenizer(s)), None)
    t5 = next((s for s in hf_cache_snapshots(cache, T5_REPO) if is_t5_tokenizer(s)), None)
    return TokenizerFolders(clip, None, t5)


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------


def load_tokenizer(folders: TokenizerFolders, *, t5: bool, where: Path | None = None) -> SD3Tokenizer:
    """An SD3Tokenizer from the folders (the snapshot layout goes through `SD3Tokenizer.from_folder`)."""
    missing = folders.missing(t5)
    if missing:
        base = where or Path(".")
        expected = {"tokenizer": f"{base / 'tokenizer'}/", "t5_tokenizer": f"{base / 'tokenizer_3'}/"}
        repos = {"tokenizer": CLIP_REPO, "t5_tokenizer": T5_REPO}
        name = missing[0]
        raise MissingComponentError(
            f"{'T5' if name == 't5_tokenizer' else 'CLIP'} tokenizer not found: expected {expected[name]} "
            f"(as in the Stability AI repository) or {repos[name]} in the Hugging Face cache"
        )
    assert folders.clip is not None
    root = folders.clip.parent
    if (
        folders.clip.name == "tokenizer"
        and folders.clip_g == root / "tokenizer_2"
        and (not t5 or folders.t5 == root / "tokenizer_3")
    ):
        return SD3Tokenizer.from_folder(root, t5=t5)

    from transformers import CLIPTokenizer, T5TokenizerFast  # heavy import, deferred to first use

    clip = load_hf_tokenizer(CLIPTokenizer, folders.clip)
    bos, eos = start_end_ids(clip, folders.clip)
    if bos is None:
        raise ModelFileError(f"{folders.clip}: not a CLIP tokenizer (no start token)")
    if folders.clip_g is not None:
        g_pad = load_hf_tokenizer(CLIPTokenizer, folders.clip_g).pad_token_id
    else:  # SD3's tokenizer_2 pads with "!" (DECISIONS row 4)
        g_pad = clip.convert_tokens_to_ids("!")
    if g_pad is None:
        raise ModelFileError(f"{folders.clip_g or folders.clip}: no pad token for CLIP-G")
    t5_tok = t5_ids = None
    if t5 and folders.t5 is not None:
        t5_tok = load_hf_tokenizer(T5TokenizerFast, folders.t5)
        if t5_tok.pad_token_id is None:
            raise ModelFileError(f"{folders.t5}: the T5 tokenizer has no pad token")
        t5_bos, t5_eos = start_end_ids(t5_tok, folders.t5)
        t5_ids = SpecialIds(bos=t5_bos, eos=t5_eos, pad=int(t5_tok.pad_token_id))
    log.info("tokenizers: CLIP %s (CLIP-G pad %s), T5 %s", folders.clip, g_pad, folders.t5)
    return SD3Tokenizer(
        clip,
        t5_tok,
        clip_l=SpecialIds(bos=bos, eos=eos, pad=eos),
        clip_g=SpecialIds(bos=bos, eos=eos, pad=int(g_pad)),
        t5_ids=t5_ids,
    )
