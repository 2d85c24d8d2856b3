"""Finding LoRA files: ComfyUI's `models/loras`, the user's LoRA folders, the Hugging Face hub cache.

Headers only (like model discovery): for each file its title, the architecture it was made for (metadata, else
keys and shapes), which SD3.5 variants it fits (and why not), its rank, which networks it adapts, trigger words
(`modelspec.trigger_phrase`, else the most frequent `ss_tag_frequency` tags) and a preview image next to it
(`name.preview.png`, `name.png`, …). Pickle files are listed as refused without being opened; a file that cannot
be read becomes an entry with its error. A scan never raises.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.inference.api.errors import InferenceError
from app.inference.api.lora import LoraSpec, split_prompt_loras
from app.inference.checkpoints.scanning import hf_hub_cache
from app.inference.checkpoints.weights import PICKLE_SUFFIXES
from app.inference.lora.formats import SUPPORTED_EXTENSION, Architecture, refusal, summarize_lora_file

log = logging.getLogger(__name__)

MAX_DEPTH = 4  # folder levels below a LoRA folder
MAX_FILES = 20_000
MAX_TRIGGER_TAGS = 5
PREVIEW_SUFFIXES = (
    ".preview.png",
    ".preview.jpg",
    ".preview.jpeg",
    ".preview.webp",
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
)
VARIANT_WIDTHS = {"large": (2432, "SD3.5 Large"), "medium": (1536, "SD3.5 Medium")}
COMFY_HOMES = ("ComfyUI", "Documents/ComfyUI", "comfyui")


@dataclass(frozen=True, slots=True)
class LoraEntry:
    path: Path
    size: int = 0
    title: str = ""
    architecture: Architecture | None = None
    kind: str = "LoRA"
    rank: int | None = None
    networks: tuple[str, ...] = ()  # "mmdit", "clip_l", "clip_g", "t5"
    trigger_words: tuple[str, ...] = ()
    preview: Path | None = None
    error: str | None = None  # unreadable or refused file
    fits: dict[str, str | None] = field(default_factory=dict)  # variant -> None (fits) or why not

    @property
    def name(self) -> str:
        lowered = self.path.name.lower()
        return (
            self.path.name[: -len(SUPPORTED_EXTENSION)]
            if lowered.endswith(SUPPORTED_EXTENSION)
            else self.path.stem
        )

    def usable_with(self, variant: str) -> str | None:
        """None when the LoRA can be used with `variant` ("large", "large-turbo", "medium"), else the reason."""
        if self.error:
            return self.error
        return self.fits.get("medium" if variant == "medium" else "large")

    def to_json(self) -> dict[str, Any]:
        arch = self.architecture
        return {
            "path": str(self.path), "name": self.name, "title": self.title, "size": self.size,
            "architecture": arch.family if arch else None, "architecture_label": arch.label if arch else None,
            "kind": self.kind, "rank": self.rank, "networks": list(self.networks),
            "trigger_words": list(self.trigger_words), "preview": str(self.preview) if self.preview else None,
            "compatible": {v: reason is None for v, reason in self.fits.items()},
            "reasons": {v: reason for v, reason in self.fits.items() if reason}, "error": self.error,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class LoraScan:
    entries: tuple[LoraEntry, ...]
    seconds: float


def default_lora_roots(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """ComfyUI's `models/loras` in the usual install places, and the Hugging Face hub cache."""
    home = home or Path.home()
    return [*(home / c / "models" / "loras" for c in COMFY_HOMES), hf_hub_cache(env, home)]


def trigger_words(metadata: Mapping[str, str]) -> tuple[str, ...]:
    phrase = metadata.get("modelspec.trigger_phrase", "").strip()
    if phrase:
        return tuple(w.strip() for w in phrase.split(",") if w.strip())
    try:
        frequency = json.loads(metadata.get("ss_tag_frequency", "") or "{}")
    except json.JSONDecodeError:
        return ()
    counts: Counter[str] = Counter()
    if isinstance(frequency, dict):
        for tags in frequency.values():
            if isinstance(tags, dict):
                counts.update({str(t).strip(): int(n) for t, n in tags.items() if isinstance(n, int)})
    return tuple(t for t, _ in counts.most_common(MAX_TRIGGER_TAGS) if t)


def preview_of(path: Path) -> Path | None:
    stem = path.name.removesuffix(SUPPORTED_EXTENSION)
    for suffix in PREVIEW_SUFFIXES:
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def read_entry(path: Path) -> LoraEntry | None:
    """The entry of one file; None for a safetensors file that holds no LoRA (a model checkpoint, ...)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return LoraEntry(path, error=f"{path.name}: cannot read ({exc.strerror or exc})")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return LoraEntry(
            path, size, error=f"{path.name}: pickle-based file, refused (could run code when opened)"
        )
    try:
        lf = summarize_lora_file(path)
    except InferenceError as exc:
        return LoraEntry(path, size, error=str(exc))
    if not lf.is_lora and lf.kind == "LoRA":
        return None
    meta = lf.metadata
    title = (
        meta.get("modelspec.title")
        or meta.get("ss_output_name")
        or path.name.removesuffix(SUPPORTED_EXTENSION)
    )
    fits: dict[str, str | None] = {}
    for variant, (hidden, label) in VARIANT_WIDTHS.items():
        reason = refusal(lf.architecture, hidden, label, path)
        if reason is None and lf.kind != "LoRA":
            reason = f"{path.name} is a {lf.kind} adapter; only plain LoRA files are supported"
        fits[variant] = reason
    return LoraEntry(
        path, size, title, lf.architecture, lf.kind, lf.rank, lf.networks, trigger_words(meta), preview_of(path),
        None, fits,
    )  # fmt: skip


def _files(root: Path, depth: int, budget: list[int]) -> Iterable[Path]:
    """LoRA-looking files under `root` (safetensors and refused pickles), without following directory links."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth > 0 and not entry.name.startswith("."):
                    yield from _files(Path(entry.path), depth - 1, budget)
            elif entry.is_file() and entry.name.lower().endswith((SUPPORTED_EXTENSION, *PICKLE_SUFFIXES)):
                yield Path(entry.path)
        except OSError:
            continue


def _hf_files(cache: Path, budget: list[int]) -> Iterable[Path]:
    """Safetensors files in the hub cache's snapshots (a LoRA repo holds a few small files)."""
    try:
        repos = [p for p in cache.iterdir() if p.name.startswith("models--")]
    except OSError:
        return
    for repo in sorted(repos):
        for path in _files(repo / "snapshots", 2, budget):
            if path.suffix.lower() == SUPPORTED_EXTENSION:
                yield path


def scan_loras(paths: Iterable[Path] = (), *, defaults: bool = True) -> LoraScan:
    """Every LoRA file in `paths` (folders or files) and, with `defaults`, in `default_lora_roots()`."""
    started = time.perf_counter()
    budget = [MAX_FILES]
    found: dict[Path, LoraEntry] = {}
    cache = hf_hub_cache()
    roots = [Path(p).expanduser() for p in paths] + (default_lora_roots() if defaults else [])
    for root in roots:
        if root.is_file():
            candidates: Iterable[Path] = [root]
        elif root == cache or (root.name == "hub" and any(root.glob("models--*"))):
            candidates = _hf_files(root, budget)
        else:
            candidates = _files(root, MAX_DEPTH, budget)
        for path in candidates:
            key = path.resolve()
            if key not in found and (entry := read_entry(path)) is not None:
                found[key] = entry
    entries = tuple(sorted(found.values(), key=lambda e: (e.name.lower(), str(e.path))))
    return LoraScan(entries, time.perf_counter() - started)


def find_lora(name: str, scan: LoraScan) -> LoraEntry | None:
    """The entry whose file name (without `.safetensors`) or title is `name` (A1111's `<lora:name>`)."""
    lowered = name.lower()
    for entry in scan.entries:
        if entry.name.lower() == lowered:
            return entry
    return next((e for e in scan.entries if e.title.lower() == lowered), None)


def loras_from_prompt(prompt: str, scan: LoraScan) -> tuple[str, tuple[LoraSpec, ...], tuple[str, ...]]:
    """A1111's `<lora:name:s[:te]>` tags of a prompt as LoRA specs, names looked up in a scan: (the prompt
    without its tags, the specs found, a sentence per name not found). A tag whose strength is not a number
    raises InvalidRequestError."""
    text, tags = split_prompt_loras(prompt)
    specs, missing = [], []
    for tag in tags:
        entry = find_lora(tag.name, scan)
        if entry is None or entry.error:
            missing.append(f"<lora:{tag.name}> names no LoRA file in the LoRA folders; it is left out")
            continue
        specs.append(LoraSpec(entry.path, tag.strength, tag.te_strength))
    return text, tuple(specs), tuple(missing)
