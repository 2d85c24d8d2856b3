"""The SD3 VAE: a 16-channel LDM "AutoencoderKL" without quant convs (SD35_MODEL.md section 4).

Module attribute names equal the checkpoint keys (`encoder.down.0.block.0.norm1`,
`decoder.up.3.upsample.conv`, `mid.attn_1.q`, ...), so a file's tensors load with `strict=True, assign=True`
and no remapping. The architecture is a frozen `VAEConfig` inferred from the tensor shapes; the network is
built on `meta` and the weights assigned by checkpoints/vae_loading.py (no file is read here).

Also here: the latent format (`process_in` / `process_out`) and the pixel conventions of the reference
(`sd3_infer.py` `vae_encode` / `vae_decode`): images in [-1, 1], 8-bit output by truncation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from app.inference.api.errors import CheckpointMismatchError
from app.inference.networks.vae_tiling import TileConfig, decode_tiled, plan_tiling

SCALE_FACTOR = 1.5305
SHIFT_FACTOR = 0.0609
NORM_GROUPS = 32


# ----------------------------------------------------------------------------------------------------
# Configuration (inferred from the checkpoint)
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VAEConfig:
    ch: int = 128  # base channels: encoder.conv_in out / decoder.conv_out in
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)  # channels of level i = ch * ch_mult[i]
    num_res_blocks: int = 2  # resnets per encoder level; the decoder has one more per level
    z_channels: int = 16  # latent channels (the encoder emits 2 * z: mean and log-variance)
    in_channels: int = 3  # image channels into the encoder
    out_channels: int = 3  # image channels out of the decoder

    def __post_init__(self) -> None:
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise ValueError(f"ch_mult must be a non-empty tuple of positive ints, got {self.ch_mult}")
        if self.num_res_blocks < 1 or self.z_channels < 1 or self.in_channels < 1 or self.out_channels < 1:
            raise ValueError(f"invalid VAE config {self}")
        bad = [self.ch * m for m in self.ch_mult if (self.ch * m) % NORM_GROUPS]
        if bad:
            raise ValueError(
                f"GroupNorm({NORM_GROUPS}) needs channel counts divisible by {NORM_GROUPS}, got {bad}"
            )

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _count(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> int:
    """How many indices `n` some key matches `pattern` with (`{n}` marks the index); they must be 0..n-1."""
    regex = re.compile("^" + re.escape(pattern).replace(r"\{n\}", r"(\d+)") + r"\.")
    found = {int(m.group(1)) for k in shapes if (m := regex.match(k))}
    if found != set(range(len(found))):
        raise KeyError(f"indices of {pattern!r} are not contiguous: {sorted(found)}")
    return len(found)


def vae_config_from_shapes(shapes: Mapping[str, tuple[int, ...]], source: str = "VAE") -> VAEConfig:
    """Infer the architecture from tensor names and shapes (keys without the `first_stage_model.` prefix).

    Raises CheckpointMismatchError, naming `source`, when the tensors are not an LDM VAE."""
    try:
        ch, in_channels = shapes["encoder.conv_in.weight"][:2]
        levels = _count(shapes, "encoder.down.{n}")
        num_res_blocks = _count(shapes, "encoder.down.0.block.{n}")
        ch_mult = tuple(shapes[f"encoder.down.{i}.block.0.conv1.weight"][0] // ch for i in range(levels))
        z_channels = shapes["encoder.conv_out.weight"][0] // 2
        out_channels, dec_ch = shapes["decoder.conv_out.weight"][:2]
        dec_z = shapes["decoder.conv_in.weight"][1]
        dec_levels = _count(shapes, "decoder.up.{n}")
        dec_blocks = _count(shapes, "decoder.up.0.block.{n}")
    except (KeyError, ValueError, IndexError, ZeroDivisionError) as exc:
        raise CheckpointMismatchError(f"{source}: not an SD3 VAE (cannot read its layout: {exc})") from None
    mismatches = []
    if dec_ch != ch:
        mismatches.append(f"decoder base channels {dec_ch} != encoder {ch}")
    if dec_z != z_channels:
        mismatches.append(f"decoder latent channels {dec_z} != encoder {z_channels}")
    if dec_levels != levels:
        mismatches.append(f"decoder levels {dec_levels} != encoder {levels}")
    if dec_blocks != num_res_blocks + 1:
        mismatches.append(f"decoder resnets per level {dec_blocks} != {num_res_blocks + 1}")
    if mismatches:
        raise CheckpointMismatchError(f"{source}: inconsistent VAE tensors: " + "; ".join(mismatches))
    try:
        return VAEConfig(ch, ch_mult, num_res_blocks, z_channels, in_channels, out_channels)
    except ValueError as exc:
        raise CheckpointMismatchError(f"{source}: unsupported VAE layout: {exc}") from None


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------


def Normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.norm2 = Normalize(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, the head as wide as the channels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.norm(x)
        # (B, C, H, W) -> (B, 1, H*W, C); contiguous, or CPU SDPA falls back to the math kernel, which holds the
        # (H*W)^2 score matrix: ~10 GB in float32 for a 1440x1440 image instead of ~0.1 GB
        q, k, v = (
            t.reshape(b, 1, c, height * width).transpose(2, 3).contiguous()
            for t in (self.q(h), self.k(h), self.v(h))
        )
        h = F.scaled_dot_product_attention(q, k, v)  # (B, 1, H*W, C), scale 1/sqrt(C)
        h = h.transpose(2, 3).reshape(b, c, height, width)  # (B, C, H, W)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class DownLevel(nn.Module):
    """`encoder.down.{i}`: resnets `block.{j}`, then `downsample` except at the last level."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, downsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if j == 0 else out_channels, out_channels) for j in range(num_blocks)
        )
        self.downsample = Downsample(out_channels) if downsample else None


class UpLevel(nn.Module):
    """`decoder.up.{i}`: resnets `block.{j}`, then `upsample` except at level 0 (the highest resolution)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, upsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_channels if j == 0 else out_channels, out_channels) for j in range(num_blocks)
        )
        self.upsample = Upsample(out_channels) if upsample else None


# ----------------------------------------------------------------------------------------------------
# Encoder, decoder, VAE
# ----------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, stride=1, padding=1)
        self.down = nn.ModuleList(
            DownLevel(cfg.ch if i == 0 else widths[i - 1], w, cfg.num_res_blocks, downsample=i != last)
            for i, w in enumerate(widths)
        )
        self.mid = MidBlock(widths[-1])
        self.norm_out = Normalize(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 2 * cfg.z_channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, ch, H, W)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if level.downsample is not None:
                h = level.downsample(h)  # (B, C, H/2, W/2)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 2*z, H/8, W/8): mean, log-variance


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[-1], 3, stride=1, padding=1)
        self.mid = MidBlock(widths[-1])
        # `up` is stored in ascending order but run from the last (lowest resolution) level to `up.0`
        self.up = nn.ModuleList(
            UpLevel(widths[min(i + 1, len(widths) - 1)], w, cfg.num_res_blocks + 1, upsample=i != 0)
            for i, w in enumerate(widths)
        )
        self.norm_out = Normalize(cfg.ch)
        self.conv_out = nn.Conv2d(cfg.ch, cfg.out_channels, 3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))  # (B, C, h, w)
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if level.upsample is not None:
                h = level.upsample(h)  # (B, C, 2h, 2w)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, 8h, 8w)


class VAE(nn.Module):
    """The reference's `SDVAE`. `encode` returns the posterior mean (DECISIONS row 10); both directions take
    and return float32 tensors whatever the weights' dtype."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.conv_in.weight.device

    @property
    def channels_last(self) -> bool:
        return self.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)

    def set_channels_last(self, enabled: bool) -> VAE:
        """Store the conv weights, and hand `encode`/`decode` inputs on, in torch.channels_last (NHWC) instead
        of NCHW. Same network; convolutions pick other kernels, so pixels differ at the ~1e-4 level."""
        self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        return self

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype)
        return x.contiguous(
            memory_format=torch.channels_last if self.channels_last else torch.contiguous_format
        )

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image in [-1, 1] -> (B, z, H/8, W/8) VAE latent (the mean, before `process_in`)."""
        h = self.encoder(self._input(image))  # (B, 2*z, H/8, W/8)
        mean, _logvar = torch.chunk(h, 2, dim=1)
        return mean.float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor, tiling: TileConfig | None = None) -> torch.Tensor:
        """(B, z, h, w) VAE latent (after `process_out`) -> (B, 3, 8h, 8w) image, nominally in [-1, 1].

        With `tiling` the latent is decoded in overlapping tiles (vae_tiling.py): peak memory set by the tile,
        pixels close to (not equal to) the whole decode."""
        z = self._input(z)
        if tiling is None:
            return self.decoder(z).float()
        return decode_tiled(self.decoder, z, tiling, scale=self.config.downscale)

    def tiling_for(self, latent_shape: tuple[int, ...], free_bytes: int) -> TileConfig | None:
        """The tiling `decode` of a (B, z, h, w) latent needs to stay within `free_bytes` of activations (None:
        decode whole). See vae_tiling.plan_tiling."""
        b, _, h, w = latent_shape
        cfg = self.config
        return plan_tiling(
            (h, w),
            free_bytes,
            self.dtype,
            level1_width=cfg.ch * cfg.ch_mult[min(1, len(cfg.ch_mult) - 1)],
            scale=cfg.downscale,
            batch=b,
        )


# ----------------------------------------------------------------------------------------------------
# Latent format and pixel conventions
# ----------------------------------------------------------------------------------------------------


def process_in(z: torch.Tensor) -> torch.Tensor:
    """VAE latent -> MMDiT latent space."""
    return (z - SHIFT_FACTOR) * SCALE_FACTOR


def process_out(x: torch.Tensor) -> torch.Tensor:
    """MMDiT latent space -> VAE latent."""
    return x / SCALE_FACTOR + SHIFT_FACTOR


def image_to_tensor(image: Image.Image, size: tuple[int, int] | None = None) -> torch.Tensor:
    """PIL image -> (1, 3, H, W) float32 in [-1, 1]. With `size = (width, height)` the image is first resized
    with LANCZOS in its own mode (palette, RGBA, ...) and only then made RGB, as the reference does."""
    if size is not None:
        image = image.resize(size, Image.Resampling.LANCZOS)
    pixels = np.asarray(image.convert("RGB")).astype(np.float32) / 255.0  # (H, W, 3)
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(pixels, 2, 0)))[None]  # (1, 3, H, W)
    return 2.0 * x - 1.0


def tensor_to_uint8(image: torch.Tensor) -> np.ndarray:
    """Decoder output (B, 3, H, W) or (3, H, W) -> uint8 (B, H, W, 3) or (H, W, 3), truncating in float32."""
    x = torch.clamp((image.float() + 1.0) / 2.0, min=0.0, max=1.0)
    x = (255.0 * x).movedim(-3, -1)  # (..., H, W, 3)
    return x.cpu().numpy().astype(np.uint8)


def build_vae(cfg: VAEConfig) -> VAE:
    """A VAE with parameters on `meta` (no memory, no initialisation): checkpoints/vae_loading.py assigns the
    file's tensors."""
    with torch.device("meta"):
        return VAE(cfg)
