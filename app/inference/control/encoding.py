"""Control image -> control latent, as Stability's reference does it (SD35_ADDONS.md §2, `sd3_infer`):

1. resize to the generation size with Lanczos (in the image's own mode, then RGB), x in [0, 1];
2. our preprocessing, if any (preprocess.py), on the resized image;
3. the encoder input per type: blur and depth `2x - 1`; canny `x * 255 * 0.5 + 0.5` (sic: 0.5 ... 128, fed to
   the encoder as it is);
4. VAE-encode, posterior mean (§2.1); 5. `(z - 0.0609) * 1.5305` (model space).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from app.inference.api.control import CONTROL_TYPES, ControlPreprocess
from app.inference.api.errors import InvalidRequestError
from app.inference.control.preprocess import apply_preprocess
from app.inference.networks.vae import VAE, process_in


def read_control_image(path, size: tuple[int, int]) -> torch.Tensor:
    """The file resized to `size` = (width, height) with Lanczos -> (1, 3, H, W) float32 in [0, 1]."""
    try:
        with Image.open(path) as im:
            im.load()
            resized = im.resize(size, Image.Resampling.LANCZOS)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InvalidRequestError(f"{path}: cannot read the control image ({exc})") from None
    pixels = np.asarray(resized.convert("RGB")).astype(np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(pixels, 2, 0)))[None]


def control_map(path, size: tuple[int, int], preprocess: ControlPreprocess) -> torch.Tensor:
    """Steps 1-2: what the ControlNet is shown, (1, 3, H, W) in [0, 1] (also the UI's preview of the map)."""
    return apply_preprocess(read_control_image(path, size), preprocess)


def control_map_pixels(path, size: tuple[int, int], preprocess: ControlPreprocess) -> np.ndarray:
    """The control map as the window shows it next to the control image: (H, W, 3) uint8."""
    m = control_map(path, size, preprocess)[0].clamp(0.0, 1.0)  # (3, H, W)
    return (m * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def encoder_input(control: torch.Tensor, control_type: str) -> torch.Tensor:
    """Step 3: the map in [0, 1] -> what the reference feeds the VAE encoder for this ControlNet type."""
    if control_type not in CONTROL_TYPES:
        raise InvalidRequestError(f"unknown ControlNet type {control_type!r}")
    if control_type == "canny":
        return control * 255.0 * 0.5 + 0.5
    return 2.0 * control - 1.0


@torch.inference_mode()
def encode_control_map(vae: VAE, control: torch.Tensor, control_type: str) -> torch.Tensor:
    """Steps 3-5: (1, 3, H, W) map in [0, 1] -> (1, 16, H/8, W/8) control latent in model space, float32, CPU."""
    return process_in(vae.encode(encoder_input(control, control_type))).cpu()


def encode_control_image(
    vae: VAE, path, size: tuple[int, int], preprocess: ControlPreprocess, control_type: str
) -> torch.Tensor:
    """Steps 1-5 for one control image file."""
    return encode_control_map(vae, control_map(path, size, preprocess), control_type)
