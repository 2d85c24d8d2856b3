"""The three SD3.5 variants: how to recognise them from a checkpoint, and their default settings."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.inference.api.errors import UnsupportedModelError

MMDIT_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


@dataclass(frozen=True, slots=True)
class VariantPreset:
    """Out-of-the-box settings: Stability's model-card values with the reference's sampler (DECISIONS row 11)."""

    name: str  # "large" | "large-turbo" | "medium"
    label: str
    steps: int
    cfg: float
    sampler: str
    scheduler: str = "normal"
    shift: float = 3.0
    slg_layers: tuple[int, ...] = ()
    slg_scale: float = 0.0
    slg_start: float = 0.01
    slg_end: float = 0.20
    width: int = 1024
    height: int = 1024


PRESETS: dict[str, VariantPreset] = {
    "large": VariantPreset("large", "SD3.5 Large", steps=28, cfg=3.5, sampler="dpmpp_2m"),
    "large-turbo": VariantPreset("large-turbo", "SD3.5 Large Turbo", steps=4, cfg=1.0, sampler="euler"),
    "medium": VariantPreset(
        "medium", "SD3.5 Medium", steps=40, cfg=4.5, sampler="dpmpp_2m", slg_layers=(7, 8, 9), slg_scale=2.5
    ),
}
VARIANTS = tuple(PRESETS)


# Key prefixes that give other architectures away (one pass over the names checks them all).
_FOREIGN_MARKERS = {
    "flux_double": ("double_blocks.", f"{MMDIT_PREFIX}double_blocks.", "transformer_blocks.0.attn.to_q"),
    "flux_single": ("single_blocks.", f"{MMDIT_PREFIX}single_blocks.", "single_transformer_blocks"),
    "sdxl": ("conditioner.embedders.1.", f"{MMDIT_PREFIX}label_emb.", "add_embedding.linear_1"),
    "sd1": (f"{MMDIT_PREFIX}input_blocks.", "cond_stage_model.", "down_blocks.0.attentions."),
    "lora": ("lora_unet_", "lora_te"),
}


def foreign_family(keys: Iterable[str]) -> str | None:
    """Name the architecture of a checkpoint that is not SD3.5, from its key names (None: not recognised)."""
    seen: set[str] = set()
    for key in keys:
        for family, prefixes in _FOREIGN_MARKERS.items():
            if key.startswith(prefixes):
                seen.add(family)
        if ".lora_A." in key or ".lora_down." in key:
            seen.add("lora")
    if {"flux_double", "flux_single"} <= seen:
        return "a FLUX model"
    if "sdxl" in seen:
        return "a Stable Diffusion XL model"
    if "sd1" in seen:
        return "a Stable Diffusion 1.x/2.x model"
    if "lora" in seen:
        return "a LoRA (an add-on, not a base model)"
    return None


def is_sd3_mmdit(shapes: Mapping[str, tuple[int, ...]], prefix: str = MMDIT_PREFIX) -> bool:
    """True for any SD3-family MMDiT (SD3.5 or the original SD3 Medium) in our layout under `prefix`."""
    return (
        f"{prefix}x_embedder.proj.weight" in shapes
        and f"{prefix}joint_blocks.0.x_block.attn.qkv.weight" in shapes
    )


def check_family(shapes: Mapping[str, tuple[int, ...]], source: str, prefix: str = MMDIT_PREFIX) -> None:
    """Refuse anything that is not an SD3.5 MMDiT (in our layout under `prefix`), naming what the file is."""
    if is_sd3_mmdit(shapes, prefix):
        if f"{prefix}joint_blocks.0.x_block.attn.ln_q.weight" not in shapes:
            raise UnsupportedModelError(
                f"{source} is the original SD3 Medium (2024), which SD3.5 Studio does not support; "
                "use SD3.5 Large, Large Turbo or Medium"
            )
        return
    foreign = foreign_family(shapes)
    if foreign:
        raise UnsupportedModelError(f"{source} is {foreign}, not Stable Diffusion 3.5")
    raise UnsupportedModelError(f"{source} is not a Stable Diffusion 3.5 checkpoint (no MMDiT weights found)")


def detect_variant(
    path: Path, metadata: Mapping[str, str], depth: int, dual_attention: bool, names: Iterable[str] = ()
) -> str:
    """Medium from its MMDiT-X blocks; Large vs Large Turbo from the file/folder name or metadata (DECISIONS 13).

    `names` adds other names that identify the download: a Hugging Face repo id, a diffusers folder's name."""
    if dual_attention:
        return "medium"
    names = [
        path.name,
        path.parent.name,
        *names,
        *(v for k, v in metadata.items() if k.startswith("modelspec.")),
    ]
    if any(re.search("turbo", n, re.IGNORECASE) for n in names):
        return "large-turbo"
    return "large"
