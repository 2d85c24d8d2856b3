"""Locating the files of one SD3.5 model set: the canonical Hugging Face snapshot layout.

  <snapshot>/sd3.5_{large,large_turbo,medium}.safetensors   MMDiT (model.diffusion_model.*) + VAE (first_stage_model.*)
  <snapshot>/text_encoders/clip_l.safetensors, clip_g.safetensors, t5xxl_fp16.safetensors
  <snapshot>/tokenizer/, tokenizer_2/, tokenizer_3/
Only headers are read here; no tensor data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from app.inference.errors import MissingComponentError, ModelFileError
from app.inference.mmdit_config import MMDiTConfig, mmdit_config_from_shapes
from app.inference.variants import MMDIT_PREFIX, VAE_PREFIX, VARIANTS, check_family, detect_variant
from app.inference.weights import SafetensorsHeader, read_header

log = logging.getLogger(__name__)

T5_FILE_NAMES = ("t5xxl_fp16.safetensors", "t5xxl.safetensors", "t5xxl_fp8_e4m3fn.safetensors")


@dataclass(frozen=True, slots=True)
class ComponentFile:
    """Where one component's tensors live: a file and the key prefix inside it ("" for standalone files)."""

    path: Path
    prefix: str = ""


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
    tokenizer_dir: Path

    @property
    def name(self) -> str:
        return self.checkpoint.stem

    def require_text_encoders(self, use_t5: bool) -> None:
        folder = self.root / "text_encoders"
        for label, component, file in (("CLIP-L", self.clip_l, "clip_l"), ("CLIP-G", self.clip_g, "clip_g")):
            if component is None:
                raise MissingComponentError(f"{label} text encoder not found: expected {folder / file}.safetensors")
        if use_t5 and self.t5 is None:
            raise MissingComponentError(
                f"T5-XXL text encoder not found: expected {folder / T5_FILE_NAMES[0]}; "
                "download it, or pass --no-t5 to run without T5 (lower prompt fidelity)"
            )


def _find_checkpoint(folder: Path) -> Path:
    candidates = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    preferred = [p for p in candidates if p.name.lower().startswith("sd3")]
    chosen = preferred or candidates
    if not chosen:
        raise ModelFileError(f"{folder}: no .safetensors checkpoint found (expected e.g. sd3.5_large.safetensors)")
    if len(chosen) > 1:
        log.warning("several checkpoints in %s; using %s", folder, chosen[0].name)
    return chosen[0]


def locate_model_set(path: str | Path, variant: str | None = None) -> ModelSet:
    """Resolve a snapshot folder (or the single checkpoint inside one) into a validated ModelSet."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder")
    checkpoint = path if path.is_file() else _find_checkpoint(path)
    root = checkpoint.parent
    header = read_header(checkpoint)
    check_family({k: v.shape for k, v in header.tensors.items()}, str(checkpoint))
    config = mmdit_config_from_shapes(_stripped_shapes(header, MMDIT_PREFIX), str(checkpoint))
    if not header.keys_with_prefix(VAE_PREFIX):
        raise MissingComponentError(
            f"{checkpoint}: the file holds no VAE (first_stage_model.*); use the single-file checkpoint "
            "from the model's Hugging Face repository, which includes it"
        )
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    detected = detect_variant(checkpoint, header.metadata, config.depth, config.is_mmditx)
    if variant is not None and (variant == "medium") != (detected == "medium"):
        raise ModelFileError(f"{checkpoint} is SD3.5 {detected.title()}, not {variant}")

    te = root / "text_encoders"
    t5 = next((te / n for n in T5_FILE_NAMES if (te / n).is_file()), None)

    def optional(path: Path | None) -> ComponentFile | None:
        return ComponentFile(path) if path is not None and path.is_file() else None

    return ModelSet(
        root=root,
        checkpoint=checkpoint,
        variant=variant or detected,
        mmdit_config=config,
        mmdit_bytes=header.num_bytes(MMDIT_PREFIX),
        mmdit=ComponentFile(checkpoint, MMDIT_PREFIX),
        vae=ComponentFile(checkpoint, VAE_PREFIX),
        clip_l=optional(te / "clip_l.safetensors"),
        clip_g=optional(te / "clip_g.safetensors"),
        t5=optional(t5),
        tokenizer_dir=root,
    )


def _stripped_shapes(header: SafetensorsHeader, prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix) :]: v.shape for k, v in header.tensors.items() if k.startswith(prefix)}
