"""Loading the SD3 VAE from its files: a single-file checkpoint (`first_stage_model.*`), a standalone LDM-layout
VAE file, or a diffusers `vae/` folder (converted to our names as it loads, `conversion.py`).

The network is built on `meta` from the tensor shapes (`vae_config_from_shapes`) and the file's tensors are
assigned: nothing is initialised, nothing is read twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from app.inference.api.errors import CheckpointMismatchError, MissingComponentError
from app.inference.api.variants import VAE_PREFIX
from app.inference.checkpoints.conversion import convert_state, vae_recipes
from app.inference.checkpoints.formats import ComponentFile
from app.inference.checkpoints.fp8 import Fp8Reader
from app.inference.checkpoints.weights import assign_weights, load_tensors, read_header
from app.inference.networks.vae import VAE, build_vae, vae_config_from_shapes

log = logging.getLogger(__name__)


def channels_last_by_default(device: torch.device) -> bool:
    """NHWC where bench/vae.py measured it to pay: on CPU (decode time x0.91 at 256², x0.72 at 64², peak
    memory x0.86 at 1024²). Unmeasured on GPUs, so off there."""
    return device.type == "cpu"


def vae_from_state_dict(
    state: dict[str, torch.Tensor],
    *,
    source: str,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    channels_last: bool | None = None,
) -> VAE:
    """Build a VAE from unprefixed tensors (consumed: `state` is emptied into the module). `channels_last`
    None means the measured default for the device (`channels_last_by_default`)."""
    cfg = vae_config_from_shapes({k: tuple(v.shape) for k, v in state.items()}, source)
    vae = build_vae(cfg)
    assign_weights(vae, state, source=source, what="SD3 VAE", dtype=dtype, device=device)
    vae.eval().requires_grad_(False)
    if channels_last is None:
        channels_last = channels_last_by_default(vae.device)
    if channels_last:
        vae.set_channels_last(True)
    log.info("VAE from %s: %s, %s on %s%s", source, cfg, vae.dtype, vae.device,
             ", channels-last" if channels_last else "")  # fmt: skip
    return vae


def load_vae(
    path: str | Path,
    prefix: str = VAE_PREFIX,
    *,
    dtype: torch.dtype | None = torch.float32,
    device: torch.device | str = "cpu",
    channels_last: bool | None = None,
) -> VAE:
    """Load the VAE of a single-file checkpoint (tensors under `prefix`) or a standalone VAE file (no prefix).

    Raises ModelFileError (missing or corrupt file), MissingComponentError (no VAE tensors in the file) and
    CheckpointMismatchError (VAE tensors with the wrong names or shapes)."""
    header = read_header(path)
    source = str(header.path)
    if prefix and header.keys_with_prefix(prefix):
        used = prefix
    elif header.keys_with_prefix("encoder.") or header.keys_with_prefix("decoder."):
        used = ""
    else:
        raise MissingComponentError(
            f"{source}: the file holds no VAE (no '{prefix}' or 'encoder.'/'decoder.' tensors); "
            "choose a checkpoint that includes the VAE, or a separate SD3 VAE file"
        )
    if any(k.startswith(f"{used}encoder.down_blocks.") for k in header.tensors):
        raise CheckpointMismatchError(
            f"{source}: this VAE is in the diffusers layout; use the single-file (LDM layout) SD3 VAE, "
            "e.g. the one inside sd3.5_large.safetensors"
        )
    shapes = {k[len(used) :]: info.shape for k, info in header.tensors.items() if k.startswith(used)}
    vae_config_from_shapes(shapes, source)  # fail on the layout before reading any tensor data
    return vae_from_state_dict(
        load_tensors(path, used), source=source, dtype=dtype, device=device, channels_last=channels_last
    )


def load_vae_component(
    component: ComponentFile, *, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> VAE:
    """The VAE of a checkpoint or a standalone file, in the LDM layout or diffusers' (converted here)."""
    if component.layout != "diffusers":
        return load_vae(component.path, component.prefix, dtype=dtype, device=device)
    header = read_header(component.path)
    source = str(header.path)
    state = load_tensors(component.path, component.prefix, convert=Fp8Reader({}, dtype), header=header)
    state = convert_state(vae_recipes(state, source), state)
    return vae_from_state_dict(state, source=source, dtype=dtype, device=device)
