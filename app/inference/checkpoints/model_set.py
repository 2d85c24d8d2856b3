"""One loadable SD3.5 model set: which file (and key prefix, layout, dtype) serves each component.

`locate_model_set(path)` accepts everything discovery recognises — a Hugging Face snapshot or cache folder, a
single-file or all-in-one checkpoint, a diffusers folder, a ComfyUI install or one of its checkpoints — plus
single-component overrides (`clip_l=`, `clip_g=`, `t5=`, `vae=`), each checked for being that component and
fitting the diffusion model. Only headers are read here; no tensor data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.inference.api.errors import (
    CheckpointMismatchError,
    MissingComponentError,
    ModelFileError,
    UnsupportedModelError,
)
from app.inference.api.variants import PRESETS, VARIANTS, check_family, foreign_family
from app.inference.checkpoints.discovery import scan
from app.inference.checkpoints.formats import LABELS, ComponentFile, identify_components, mmdit_shapes
from app.inference.checkpoints.resolution import SetReport
from app.inference.checkpoints.weights import read_header
from app.inference.memory.plan import ComponentSizes
from app.inference.networks.mmdit_config import MMDiTConfig, mmdit_config_from_shapes
from app.inference.text.tokenizer_sources import TokenizerFolders

log = logging.getLogger(__name__)

__all__ = ["T5_FILE_NAMES", "ComponentFile", "ModelSet", "locate_model_set"]

T5_FILE_NAMES = ("t5xxl_fp16.safetensors", "t5xxl.safetensors", "t5xxl_fp8_e4m3fn.safetensors")
_BLOCK = re.compile(r"^(?:joint_blocks|transformer_blocks)\.(\d+)\.")


@dataclass(frozen=True, slots=True)
class ModelSet:
    root: Path
    checkpoint: Path  # the file that identifies the set (its MMDiT); names the model in metadata
    variant: str
    mmdit_config: MMDiTConfig
    mmdit_bytes: int
    mmdit: ComponentFile
    vae: ComponentFile
    clip_l: ComponentFile | None
    clip_g: ComponentFile | None
    t5: ComponentFile | None
    tokenizer_dir: Path  # the snapshot folder (kept for callers that expect the Hugging Face layout)
    tokenizers: TokenizerFolders = field(default_factory=TokenizerFolders)
    errors: tuple[str, ...] = ()  # problems found with files that could have served a component
    block_params: int = 0  # parameters of the largest joint block (for block streaming)

    @property
    def name(self) -> str:
        if self.checkpoint.parent.name == "transformer":
            return self.root.name
        return self.checkpoint.name.removesuffix(".safetensors")

    def _why(self, part: str) -> str:
        """A problem found with a file that could have been this part (shown with the 'not found' message)."""
        related = [e for e in self.errors if part in e.lower()]
        return f"; also: {related[0]}" if related else ""

    def require_text_encoders(self, use_t5: bool) -> None:
        folder = self.root / "text_encoders"
        for label, component, file in (("CLIP-L", self.clip_l, "clip_l"), ("CLIP-G", self.clip_g, "clip_g")):
            if component is None:
                raise MissingComponentError(
                    f"{label} text encoder not found: expected {folder / file}.safetensors "
                    f"or --{file.replace('_', '-')} FILE{self._why(file)}"
                )
        if use_t5 and self.t5 is None:
            raise MissingComponentError(
                f"T5-XXL text encoder not found: expected {folder / T5_FILE_NAMES[0]} or --t5 FILE; "
                f"download it, or pass --no-t5 to run without T5 (lower prompt fidelity){self._why('t5')}"
            )

    def sizes(self, use_t5: bool = True) -> ComponentSizes:
        """Parameter counts for the memory plan (headers only)."""
        clip = sum(c.params for c in (self.clip_l, self.clip_g) if c is not None)
        t5 = self.t5 if use_t5 else None
        t5_params = 0 if t5 is None else t5.params - _duplicate_embedding(t5)
        return ComponentSizes(
            mmdit_params=self.mmdit.params,
            mmdit_fp8_params=self.mmdit.fp8_params,
            mmdit_block_params=self.block_params,
            vae_params=self.vae.params,
            clip_params=clip,
            t5_params=t5_params,
            t5_fp8_params=0 if t5 is None else t5.fp8_params,
            mmdit_adaln_params=self.mmdit_config.adaln_params,
            mmdit_adaln_fp8_params=self.mmdit_config.adaln_block_weight_params,
            mmdit_file_fp8=self.mmdit.is_fp8,
            t5_file_fp8=t5 is not None and t5.is_fp8,
        )


def _duplicate_embedding(t5: ComponentFile) -> int:
    """T5 files store the token table twice (`shared`, `encoder.embed_tokens`); it is loaded once."""
    header = read_header(t5.path)
    a, b = t5.prefix + "shared.weight", t5.prefix + "encoder.embed_tokens.weight"
    return header.tensors[b].numel if a in header.tensors and b in header.tensors else 0


def _largest_block(component: ComponentFile) -> int:
    header = read_header(component.path)
    per_block: dict[int, int] = {}
    for key, info in header.tensors.items():
        if key.startswith(component.prefix) and (m := _BLOCK.match(key[len(component.prefix) :])):
            per_block[int(m.group(1))] = per_block.get(int(m.group(1)), 0) + info.numel
    return max(per_block.values(), default=0)


def model_set_from_report(
    report: SetReport, variant: str | None = None, overrides: Mapping[str, ComponentFile] | None = None
) -> ModelSet:
    """A loadable ModelSet from a discovery report (the MMDiT and a VAE must be there); `overrides` replace
    parts (already checked by `component_override`)."""
    if report.variant is None or report.mmdit_config is None:
        raise UnsupportedModelError(report.errors[0] if report.errors else f"{report.anchor}: not usable")
    parts = dict(report.components)
    parts.update(overrides or {})
    if parts.get("vae") is None:
        raise MissingComponentError(
            f"{report.anchor}: the file holds no VAE (first_stage_model.*) and none was found beside it; "
            "pass one with --vae FILE, or use the single-file checkpoint from the model's Hugging Face repository"
        )
    mmdit = report.component("mmdit")
    assert mmdit is not None
    return ModelSet(
        root=report.root,
        checkpoint=report.anchor,
        variant=_check_variant(variant, report.variant, report.anchor),
        mmdit_config=report.mmdit_config,
        mmdit_bytes=mmdit.nbytes,
        mmdit=mmdit,
        vae=parts["vae"],
        clip_l=parts.get("clip_l"),
        clip_g=parts.get("clip_g"),
        t5=parts.get("t5"),
        tokenizer_dir=report.root,
        tokenizers=report.tokenizers,
        errors=report.errors,
        block_params=_largest_block(mmdit),
    )


def _check_variant(wanted: str | None, detected: str, path: Path) -> str:
    if wanted is None:
        return detected
    if wanted not in VARIANTS:
        raise ValueError(f"unknown variant {wanted!r}; choose from {', '.join(VARIANTS)}")
    if (wanted == "medium") != (detected == "medium"):
        raise ModelFileError(f"{path} is {PRESETS[detected].label}, not {wanted}")
    return wanted  # Large vs Large Turbo: the user's choice wins (same weights layout)


def _raise_for_file(path: Path) -> None:
    """Raise the precise error for a file that yields no set (corrupt, refused, foreign, lone component)."""
    header = read_header(path)
    hits = identify_components(header, hint=str(path))
    mmdit = next((h for h in hits if h.component == "mmdit"), None)
    if mmdit is None:
        family = foreign_family(header.tensors)
        if family:
            raise UnsupportedModelError(f"{path} is {family}, not Stable Diffusion 3.5")
        if hits:
            held = ", ".join(LABELS[h.component] for h in hits)
            raise MissingComponentError(
                f"{path} holds no SD3.5 diffusion model, only: {held}; pass it with --clip-l/--clip-g/--t5/--vae"
            )
        check_family({k: v.shape for k, v in header.tensors.items()}, str(path))
    shapes = mmdit_shapes(header, mmdit)
    check_family(shapes, str(path), prefix="")
    mmdit_config_from_shapes(shapes, str(path))


def locate_model_set(
    path: str | Path,
    variant: str | None = None,
    *,
    clip_l: str | Path | None = None,
    clip_g: str | Path | None = None,
    t5: str | Path | None = None,
    vae: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ModelSet:
    """Resolve a folder or file (any supported layout) into a validated ModelSet; overrides replace parts."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder")
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    result = scan([path], defaults=False, env=env)
    sets = [s for s in result.sets if path.is_dir() or s.anchor == path]
    usable = [s for s in sets if s.variant is not None]
    if not usable:
        _raise_no_set(path, sets, [o.path for o in result.other_files])
    if variant is not None and len(usable) > 1:
        exact = [s for s in usable if s.variant == variant]
        usable = exact or [s for s in usable if (s.variant == "medium") == (variant == "medium")] or usable
    if len(usable) > 1:
        names = ", ".join(f"{s.anchor} ({PRESETS[s.variant].label})" for s in usable[:4])
        raise ModelFileError(
            f"{path} holds several SD3.5 model sets: {names}; pass the file you want with --model"
        )
    report = usable[0]
    assert report.mmdit_config is not None
    files = {"clip_l": clip_l, "clip_g": clip_g, "t5": t5, "vae": vae}
    overrides = {
        part: component_override(part, Path(file).expanduser(), report.mmdit_config)
        for part, file in files.items()
        if file is not None
    }
    model_set = model_set_from_report(report, variant, overrides)
    _check_pair(model_set)
    return model_set


def _raise_no_set(path: Path, sets: list[SetReport], other_files: list[Path]) -> None:
    refused = [s for s in sets if s.errors]
    if refused:
        raise UnsupportedModelError(refused[0].errors[0])
    if path.is_file():
        _raise_for_file(path)
    near = sorted(other_files, key=lambda p: (p.parent != path, not p.name.lower().startswith("sd3"), str(p)))
    for candidate in near:
        if candidate.is_file():
            _raise_for_file(candidate)
    raise ModelFileError(f"{path}: no SD3.5 checkpoint found (expected e.g. sd3.5_large.safetensors)")


def component_override(part: str, path: Path, config: MMDiTConfig) -> ComponentFile:
    """The `part` held by a user-given file, checked: the right component, fitting the diffusion model."""
    header = read_header(path)
    hits = identify_components(header, hint=str(path))
    for hit in hits:
        if hit.component == part or (hit.component == "clip" and part in ("clip_l", "clip_g")):
            if part == "t5" and hit.width != config.context_in_channels:
                raise CheckpointMismatchError(
                    f"{path}: this T5 is {hit.width} wide; the diffusion model needs {config.context_in_channels}"
                )
            if part == "vae" and hit.width != config.in_channels:
                raise CheckpointMismatchError(
                    f"{path}: a VAE with {hit.width} latent channels; SD3.5 needs 16"
                )
            return ComponentFile.from_hit(path, hit)
    held = [LABELS[h.component] for h in hits if h.component != "mmdit"] or [
        "an SD3.5 diffusion model" if hits else "nothing SD3.5 Studio can use"
    ]
    raise CheckpointMismatchError(
        f"{path} holds {', '.join(held)}, not a {LABELS[part]}; it cannot be the {part}"
    )


def _check_pair(model_set: ModelSet) -> None:
    clip_l, clip_g = model_set.clip_l, model_set.clip_g
    if clip_l is None or clip_g is None or not (clip_l.width and clip_g.width):
        return
    if clip_l.width > clip_g.width:
        raise CheckpointMismatchError(
            f"{clip_l.path} ({clip_l.width} wide) is wider than {clip_g.path} ({clip_g.width} wide): "
            "CLIP-L and CLIP-G are swapped"
        )
    need = model_set.mmdit_config.adm_in_channels
    if clip_l.width + clip_g.width != need:
        raise CheckpointMismatchError(
            f"{clip_l.path} and {clip_g.path}: CLIP widths {clip_l.width} + {clip_g.width} do not give the "
            f"{need}-wide pooled vector the diffusion model needs"
        )
