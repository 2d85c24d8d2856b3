"""Turning the files a scan found into model sets: which file serves each component, what is missing, what
is wrong (SD35_MODEL.md §1.2 and §5; DECISIONS row 13).

A set is anchored by a file holding an SD3.5 MMDiT. Its VAE and text encoders come from, in this order:
the same file (single-file or all-in-one checkpoints); component files in the set's folder (beside it, in
`text_encoders/`, `vae/`, diffusers `text_encoder*/`); the ComfyUI install's `models/clip`,
`models/text_encoders` and `models/vae`. Files holding another MMDiT never lend their parts. Among several
candidates the nearest wins, then 16-bit over fp32 over fp8, then the path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.inference.api.errors import InferenceError
from app.inference.api.variants import PRESETS, check_family, detect_variant
from app.inference.checkpoints.formats import LABELS, ComponentFile, ComponentHit, mmdit_shapes
from app.inference.checkpoints.scanning import (
    COMFY_TEXT_DIRS,
    COMFY_VAE_DIRS,
    Anchor,
    Context,
    FileReport,
    Scanner,
)
from app.inference.networks.mmdit_config import MMDiTConfig, mmdit_config_from_shapes
from app.inference.text.tokenizer_sources import (
    TokenizerFolders,
    comfyui_tokenizers,
    hf_cache_tokenizers,
    snapshot_tokenizers,
)

log = logging.getLogger(__name__)

PARTS = ("vae", "clip_l", "clip_g", "t5")  # what a set needs besides its MMDiT
_SET_FOLDERS = ("text_encoders", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
_COMPONENT_HINTS = ("clip", "t5", "vae", "text_encoder", "umt5")
_DTYPE_RANK = {"fp16": 0, "bf16": 0, "fp32": 1}


@dataclass(frozen=True, slots=True)
class SetReport:
    """One model set as found on disk: usable when `complete` (or with --no-t5 when only T5 is missing)."""

    variant: str | None  # None: refused (e.g. the 2024 SD3 Medium) or unreadable
    anchor: Path  # the file holding the MMDiT
    root: Path  # the set's folder
    source: str  # "hf-cache" | "comfyui" | "folder"
    components: tuple[tuple[str, ComponentFile], ...] = ()
    tokenizers: TokenizerFolders = field(default_factory=TokenizerFolders)
    missing: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    mmdit_config: MMDiTConfig | None = None

    @property
    def name(self) -> str:
        if self.anchor.parent.name == "transformer":
            return self.root.name  # a diffusers folder is named after its folder
        return self.anchor.name.removesuffix(".safetensors")

    @property
    def complete(self) -> bool:
        return self.variant is not None and not self.missing

    def component(self, name: str) -> ComponentFile | None:
        return dict(self.components).get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "label": PRESETS[self.variant].label if self.variant else None,
            "name": self.name,
            "path": str(self.anchor),
            "root": str(self.root),
            "source": self.source,
            "complete": self.complete,
            "missing": list(self.missing),
            "components": {name: str(c.path) for name, c in self.components},
            "details": {
                name: {
                    "path": str(c.path),
                    "prefix": c.prefix,
                    "layout": c.layout,
                    "dtype": c.dtype,
                    "params": c.params,
                    "bytes": c.nbytes,
                }
                for name, c in self.components
            },
            "tokenizers": {
                "clip": None if self.tokenizers.clip is None else str(self.tokenizers.clip),
                "t5": None if self.tokenizers.t5 is None else str(self.tokenizers.t5),
            },
            "errors": list(self.errors),
        }


def _dtype_rank(hit: ComponentHit) -> int:
    if hit.scaled_fp8:
        return 3
    return 2 if hit.is_fp8 else _DTYPE_RANK.get(hit.dtype.split(" ")[0], 1)


def _looks_like_component(path: Path) -> bool:
    text = str(path).lower()
    return any(h in text for h in _COMPONENT_HINTS)


def candidate_files(scanner: Scanner, context: Context, anchor: Path) -> list[tuple[int, Path]]:
    """(level, file) of every file that may serve a part of the set anchored at `anchor`, nearest first."""
    out: list[tuple[int, Path]] = []
    for p in scanner.weight_files(context.root):
        if p != anchor:
            out.append((1, p))
    for sub in _SET_FOLDERS:
        out.extend((1, p) for p in scanner.weight_files(context.root / sub))
    if context.comfy is not None:
        for sub in (*COMFY_TEXT_DIRS, *COMFY_VAE_DIRS):
            out.extend((2, p) for p in scanner.weight_files(context.comfy / "models" / sub, recurse=1))
    return out


def _usable(hit: ComponentHit, part: str, config: MMDiTConfig, path: Path) -> str | None:
    """None when `hit` can serve `part` of a set with this MMDiT, else why not."""
    if part == "t5" and hit.width != config.context_in_channels:
        return (
            f"{path}: its T5 is {hit.width} wide but the diffusion model needs {config.context_in_channels}"
        )
    if part == "vae" and hit.width != config.in_channels:
        return f"{path}: a VAE with {hit.width} latent channels; SD3.5 needs {config.in_channels}"
    if part == "vae" and (path.name.lower() == "ae.safetensors" or "flux" in path.name.lower()):
        return f"{path}: a FLUX VAE by its name; not used for SD3.5"
    return None


def pick_parts(
    scanner: Scanner, context: Context, anchor: FileReport, config: MMDiTConfig
) -> tuple[dict[str, ComponentFile], list[str], set[Path]]:
    """(part -> file, errors, files whose errors were reported) for the anchor's set."""
    chosen: dict[str, ComponentFile] = {}
    for hit in anchor.hits:
        if hit.component in PARTS:
            chosen[hit.component] = ComponentFile.from_hit(anchor.path, hit)
    errors: list[str] = []
    reported: set[Path] = set()
    ranked: dict[str, list[tuple[tuple, Path, ComponentHit]]] = {p: [] for p in PARTS}
    for level, path in candidate_files(scanner, context, anchor.path):
        report = scanner.file(path)
        if report.error is not None:
            if level == 2 or path.parent != context.root or _looks_like_component(path):
                errors.append(report.error)
                reported.add(path)
            continue
        if report.hit("mmdit") is not None:
            continue  # another model's checkpoint never lends its parts
        for hit in report.hits:
            roles = ("clip_l", "clip_g") if hit.component == "clip" else (hit.component,)
            for role in roles:
                if role in ranked:
                    vae_name = 0 if role != "vae" or "sd3" in path.name.lower() else 1
                    rank = (level, hit.component != role, _dtype_rank(hit), vae_name, str(path))
                    ranked[role].append((rank, path, hit))
    used: set[tuple[Path, str]] = set()
    for part in PARTS:
        if part in chosen:
            continue
        refusals = []
        for _, path, hit in sorted(ranked[part], key=lambda r: r[0]):
            if (path, hit.prefix) in used:
                continue  # one CLIP of unknown role serves one slot
            why = _usable(hit, part, config, path)
            if why is None:
                chosen[part] = ComponentFile.from_hit(path, hit)
                used.add((path, hit.prefix))
                break
            refusals.append(why)
        else:
            errors.extend(refusals[:1])
    errors.extend(_check_clip_widths(chosen, config))
    return chosen, errors, reported


def _check_clip_widths(chosen: dict[str, ComponentFile], config: MMDiTConfig) -> list[str]:
    """CLIP-L's and CLIP-G's pooled vectors together must be as wide as the MMDiT's pooled input."""
    clip_l, clip_g = chosen.get("clip_l"), chosen.get("clip_g")
    if clip_l is None or clip_g is None or not (clip_l.width and clip_g.width):
        return []
    if clip_l.width + clip_g.width == config.adm_in_channels:
        return []
    return [
        f"{clip_l.path} (CLIP-L, {clip_l.width} wide) and {clip_g.path} (CLIP-G, {clip_g.width} wide) give a "
        f"{clip_l.width + clip_g.width}-wide pooled vector; the diffusion model needs {config.adm_in_channels}"
    ]


def resolve(scanner: Scanner, anchor: Anchor, hf_cache: Path | None) -> tuple[SetReport | None, set[Path]]:
    """The set anchored by `anchor` (None if the file holds no MMDiT) and the files whose errors it reports."""
    report, context = anchor.report, anchor.context
    hit = report.hit("mmdit")
    if report.error is not None or hit is None or report.header is None:
        return None, set()
    path = report.path
    try:
        shapes = mmdit_shapes(report.header, hit)
        check_family(shapes, str(path), prefix="")
        config = mmdit_config_from_shapes(shapes, str(path))
    except InferenceError as exc:
        return SetReport(None, path, context.root, context.source, errors=(str(exc),)), {path}
    names = (*context.names, context.root.name)
    variant = detect_variant(path, report.header.metadata, config.depth, config.is_mmditx, names=names)
    parts, errors, reported = pick_parts(scanner, context, report, config)
    tokenizers = snapshot_tokenizers(context.root)
    if context.comfy is not None:
        tokenizers = tokenizers.or_else(comfyui_tokenizers(context.comfy))
    tokenizers = tokenizers.or_else(hf_cache_tokenizers(hf_cache))
    components = (("mmdit", ComponentFile.from_hit(path, hit)), *((p, parts[p]) for p in PARTS if p in parts))
    preview = _preview_decoder(scanner, context)
    if preview is not None:
        components = (*components, ("preview", ComponentFile(preview)))
    missing = (*(p for p in PARTS if p not in parts), *tokenizers.missing(t5=True))
    set_report = SetReport(
        variant, path, context.root, context.source, components, tokenizers, missing, tuple(errors), config
    )
    return set_report, reported | {path}


def _preview_decoder(scanner: Scanner, context: Context) -> Path | None:
    """An optional TAESD3 preview decoder (ComfyUI keeps it in models/vae_approx); found by name, not opened."""
    folders = [context.root, context.root / "vae_approx"]
    if context.comfy is not None:
        folders.append(context.comfy / "models" / "vae_approx")
    for folder in folders:
        for p in scanner.listdir(folder):
            if p.name.startswith("taesd3_decoder") and p.suffix in (".safetensors", ".pth"):
                return p
    return None


def describe_missing(names: Iterable[str]) -> str:
    return ", ".join(LABELS.get(n, n) for n in names)
