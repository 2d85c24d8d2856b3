"""A job's ControlNets: loaded once and kept (`ControlNetCache`), placed as the memory plan says, their control
images encoded, and the `ControlStack` the guided denoiser runs.

Placement follows the MMDiT's plan (memory/plan.py counts the ControlNets): on the accelerator in the resident,
lean and offload plans; Linear weights in fp8 wherever the MMDiT's are; in the block-streaming plans its
transformer blocks are streamed to the accelerator one at a time like the MMDiT's joint blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from app.inference.api.control import ControlSpec
from app.inference.api.errors import InvalidRequestError
from app.inference.checkpoints.controlnet_loading import ControlNetFile, inspect_controlnet, load_controlnet
from app.inference.control.apply import ControlStack, ControlUnit
from app.inference.control.encoding import encode_control_image
from app.inference.memory.offload import BlockStreamer, move_module
from app.inference.memory.plan import MemoryPlan
from app.inference.networks.controlnet import ControlNet, check_fits_base
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import MMDiTConfig
from app.inference.networks.vae import VAE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ControlNetSizes:
    """Parameter counts of a job's ControlNets, for the memory plan (summed over the files)."""

    params: int = 0
    fp8_params: int = 0
    block_params: int = 0  # the largest block, what streaming holds on the accelerator
    file_fp8: bool = False  # any of the files stores its blocks in fp8


def inspect_specs(specs: tuple[ControlSpec, ...], head_dim: int) -> list[ControlNetFile]:
    """Each spec's file identified from its header; a missing or foreign file raises with one sentence."""
    files = []
    for spec in specs:
        if not Path(spec.file).is_file():
            raise InvalidRequestError(f"{spec.file}: ControlNet file not found")
        files.append(inspect_controlnet(Path(spec.file), head_dim))
    return files


def plan_sizes(specs: tuple[ControlSpec, ...], base: MMDiTConfig) -> dict[str, int | bool]:
    """What `Engine.controlnet_sizes` takes: the job's ControlNets as ComponentSizes fields (empty without).
    Checks, before anything loads, that each file is a ControlNet the base model can take."""
    files = inspect_specs(specs, base.head_dim)
    for file in files:
        check_fits_base(file.config, base, str(file.path))
    if not files:
        return {}
    s = controlnet_sizes(files)
    return {
        "controlnet_params": s.params, "controlnet_fp8_params": s.fp8_params,
        "controlnet_block_params": s.block_params, "controlnet_file_fp8": s.file_fp8,
    }  # fmt: skip


def controlnet_sizes(files: list[ControlNetFile]) -> ControlNetSizes:
    unique = {f.path.resolve(): f for f in files}.values()  # the same file twice is loaded once
    return ControlNetSizes(
        sum(f.params for f in unique),
        sum(f.fp8_params for f in unique),
        max((f.block_params for f in unique), default=0),
        any(f.file_fp8 for f in unique),
    )


class ControlNetCache:
    """Loaded ControlNets, kept between jobs while the file, the base width, dtype and placement are the same."""

    def __init__(self) -> None:
        self._models: dict[tuple, tuple[ControlNet, BlockStreamer | None]] = {}

    def get(self, path: Path, mmdit: MMDiT, plan: MemoryPlan | None, device: torch.device) -> ControlNet:
        stat = path.stat()
        fp8 = (plan is not None and plan.mmdit_fp8) or inspect_controlnet(
            path
        ).file_fp8  # an fp8 file stays fp8
        stream = plan is not None and plan.stream_blocks
        key = (path.resolve(), stat.st_mtime_ns, stat.st_size, mmdit.cfg, mmdit.dtype, fp8, stream, device)
        if key not in self._models:
            self._models[key] = _load_placed(path, mmdit, fp8, stream, device)
        return self._models[key][0]

    def keep_only(self, paths: set[Path]) -> None:
        for key in [k for k in self._models if k[0] not in paths]:
            _, streamer = self._models.pop(key)
            if streamer is not None:
                streamer.detach()

    def clear(self) -> None:
        self.keep_only(set())


def _load_placed(path: Path, mmdit: MMDiT, fp8: bool, stream: bool, device: torch.device) -> tuple:
    model = load_controlnet(
        path, base=mmdit.cfg, dtype=mmdit.dtype, device="cpu" if stream else device, fp8=fp8
    )
    if not stream:
        return model, None
    # Everything but the blocks on the accelerator; each block (with its output Linear) streamed when it runs.
    for name, child in model.named_children():
        if name not in ("transformer_blocks", "controlnet_blocks"):
            move_module(child, device)
    return model, BlockStreamer([*model.transformer_blocks, *model.controlnet_blocks], device)


def build_control_stack(
    specs: tuple[ControlSpec, ...],
    cache: ControlNetCache,
    mmdit: MMDiT,
    vae: VAE,
    plan: MemoryPlan | None,
    device: torch.device,
    size: tuple[int, int],
    shift: float,
) -> ControlStack | None:
    """Load (or reuse) each ControlNet, encode its control image at `size` = (width, height), and return the
    job's stack (None without ControlNets)."""
    if not specs:
        cache.clear()
        return None
    paths = {Path(s.file).resolve() for s in specs}
    cache.keep_only(paths)
    units = []
    with torch.inference_mode():
        for spec in specs:
            model = cache.get(Path(spec.file), mmdit, plan, device)
            check_fits_base(model.cfg, mmdit.cfg, str(spec.file))
            kind = spec.control_type or model.cfg.control_type
            if kind is None:
                raise InvalidRequestError(
                    f"{spec.file} does not say whether it is a blur, canny or depth ControlNet: choose the type"
                )
            latent = encode_control_image(vae, spec.image, size, spec.preprocess, kind)  # (1, 16, h, w)
            hint = model.embed_hint(latent.to(device))  # (1, N, D)
            units.append(
                ControlUnit.of(model, hint, spec.strength, spec.start, spec.end, shift, mmdit.cfg.depth)
            )
            log.info(
                "ControlNet %s (%s), strength %g, %g-%g", spec.file, kind, spec.strength, spec.start, spec.end
            )
    return ControlStack(units)
