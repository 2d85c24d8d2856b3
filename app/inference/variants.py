"""The three SD3.5 variants: how to recognise them from a checkpoint, and their default settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from app.inference.errors import UnsupportedModelError

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


def _family_of_foreign(keys: Mapping[str, object]) -> str | None:
    """Name the architecture of a checkpoint that is not SD3.5, from its key names."""
    names = list(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in names)

    if has("double_blocks.") or has("model.diffusion_model.double_blocks.") or has("transformer_blocks.0.attn.to_q"):
        if has("single_blocks.") or has("model.diffusion_model.single_blocks.") or has("single_transformer_blocks"):
            return "a FLUX model"
    if has("conditioner.embedders.1.") or has("model.diffusion_model.label_emb."):
        return "a Stable Diffusion XL model"
    if has("model.diffusion_model.input_blocks.") or has("cond_stage_model."):
        return "a Stable Diffusion 1.x/2.x model"
    if has("transformer_blocks.") and has("pos_embed.proj."):
        return "a diffusers-format SD3 transformer (load the single-file checkpoint instead)"
    return None


def check_family(shapes: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Refuse anything that is not an SD3.5 MMDiT, naming what the file is."""
    if f"{MMDIT_PREFIX}x_embedder.proj.weight" in shapes and f"{MMDIT_PREFIX}joint_blocks.0.x_block.attn.qkv.weight" in shapes:
        if f"{MMDIT_PREFIX}joint_blocks.0.x_block.attn.ln_q.weight" not in shapes:
            raise UnsupportedModelError(
                f"{source} is the original SD3 Medium (2024), which SD3.5 Studio does not support; "
                "use SD3.5 Large, Large Turbo or Medium"
            )
        return
    foreign = _family_of_foreign(shapes)
    if foreign:
        raise UnsupportedModelError(f"{source} is {foreign}, not Stable Diffusion 3.5")
    raise UnsupportedModelError(f"{source} is not a Stable Diffusion 3.5 checkpoint (no MMDiT weights found)")


def detect_variant(
    path: Path, metadata: Mapping[str, str], depth: int, dual_attention: bool
) -> str:
    """Medium from its MMDiT-X blocks; Large vs Large Turbo from the file/folder name or metadata (DECISIONS 13)."""
    if dual_attention:
        return "medium"
    names = [path.name, path.parent.name, *(v for k, v in metadata.items() if k.startswith("modelspec."))]
    if any(re.search("turbo", n, re.IGNORECASE) for n in names):
        return "large-turbo"
    return "large"
