"""Finding and loading the TAESD3 preview decoder (madebyollin's `taesd3_decoder.pth`, or diffusers'
AutoencoderTiny safetensors): files read here, the network itself in networks/taesd.py."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from app.inference.api.errors import CheckpointMismatchError, ModelFileError
from app.inference.checkpoints.weights import assign_weights, load_tensors
from app.inference.networks.taesd import build_decoder

log = logging.getLogger(__name__)

DECODER_FILE_PREFIX = "taesd3_decoder"


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_tensors(path)
    if path.suffix not in (".pth", ".pt"):
        raise ModelFileError(f"{path}: a TAESD3 decoder must be a .pth or .safetensors file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles arbitrary objects
    except Exception as exc:  # torch reports refused globals and corrupt archives with several types
        raise ModelFileError(f"{path}: not a plain tensor file ({exc.__class__.__name__}); refused") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()
    ):
        raise ModelFileError(f"{path}: holds something other than named tensors; refused")
    return state


def taesd_state_to_madebyollin(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept madebyollin's names (`1.weight`) or diffusers' AutoencoderTiny names (`decoder.layers.0.weight`)."""
    if any(k.startswith("decoder.layers.") for k in state):
        out = {}
        for key, value in state.items():
            if key.startswith("decoder.layers."):
                index, rest = key[len("decoder.layers.") :].split(".", 1)
                out[f"{int(index) + 1}.{rest}"] = value  # diffusers has no module for the leading Clamp
        return out
    return dict(state)


def load_taesd3_decoder(
    path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Sequential:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: file not found")
    state = taesd_state_to_madebyollin(_read_state(path))
    if "1.weight" not in state:
        raise CheckpointMismatchError(
            f"{path}: not a TAESD3 decoder (no '1.weight' / 'decoder.layers.0.weight')"
        )
    with torch.device("meta"):
        decoder = build_decoder(latent_channels=state["1.weight"].shape[1])
    assign_weights(decoder, state, source=str(path), what="TAESD3 decoder", dtype=dtype, device=device)
    log.debug("TAESD3 decoder from %s, %s on %s", path, dtype, device)
    return decoder.eval().requires_grad_(False)


def find_taesd3_decoder(model_root: Path | None = None) -> Path | None:
    """Look next to the model, in a ComfyUI `models/vae_approx` folder, then in the Hugging Face cache."""
    folders: list[Path] = []
    if model_root is not None:
        folders += [model_root, model_root / "vae_approx", model_root.parent / "vae_approx"]
    for folder in folders:
        if folder.is_dir():
            for candidate in sorted(folder.iterdir()):
                if candidate.name.startswith(DECODER_FILE_PREFIX) and candidate.suffix in (
                    ".pth",
                    ".safetensors",
                ):
                    return candidate
    hub = os.environ.get("HF_HUB_CACHE") or (
        Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    snapshots = Path(hub) / "models--madebyollin--taesd3" / "snapshots"
    if snapshots.is_dir():
        for snap in sorted(snapshots.iterdir(), reverse=True):
            candidate = snap / "diffusion_pytorch_model.safetensors"
            if candidate.is_file():
                return candidate
    return None
