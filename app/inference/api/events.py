"""Typed events of a generation job: what the CLI prints and what the UI worker turns into Qt signals.

Torch- and numpy-free at import: the UI imports these types before the window paints, long before the engine.
Arrays are numpy (named for type checkers only); the one tensor an event carries (`ImageFinished.latent`) is
typed loosely for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.inference.api.errors import FailureKind
from app.inference.api.request import GenerationRequest

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True, slots=True)
class ModelLoading:
    component: str  # "text encoders", "diffusion model", "VAE", "preview decoder"
    index: int  # 1-based
    total: int


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    variant: str
    model_name: str
    seconds: float
    plan: str = ""  # the memory plan the networks were loaded with, in words


@dataclass(frozen=True, slots=True)
class PromptEncoding:
    """Progress of the text encoders over a long prompt: one unit per 77-token CLIP window and tower, and
    one for T5 (a 5000-word prompt has about 160 windows; a short one 1)."""

    prompt: str  # "prompt" | "negative prompt": which text is being encoded
    done: int  # units encoded so far (1-based when reported)
    total: int


@dataclass(frozen=True, slots=True)
class StepUpdate:
    image_index: int  # 0-based within the job; with batched seeds one event per image and step
    seed: int
    step: int  # 1-based
    steps: int
    sigma: float
    elapsed: float  # seconds since this image's sampling began
    its: float  # steps per second so far
    eta: float | None  # seconds left for this image
    preview: np.ndarray | None  # (h, w, 3) uint8, long side <= 512; None when previews are off or dropped


@dataclass(frozen=True, slots=True)
class ImageFinished:
    """Pixels and the facts about how they were made; never text for a file format (app.metadata writes it)."""

    image_index: int
    seed: int
    pixels: np.ndarray  # (H, W, 3) uint8
    latent: Any  # torch.Tensor (1, 16, H/8, W/8) float32 on the CPU, VAE space (what the decoder received)
    request: GenerationRequest  # resolved: every parameter explicit
    model_name: str = ""  # the checkpoint's file stem, e.g. "sd3.5_large"
    variant: str = ""  # "large" | "large-turbo" | "medium"
    fp8: bool = False  # the diffusion model ran from fp8-stored weights
    noise_device: str = "cpu"  # where the start noise was drawn (ours always on the CPU, as ComfyUI)
    model_hash: str | None = None  # when the engine knows it (a remote engine may); else the gallery adds it
    # A remote engine: the ComfyFiles its graph named (so the PNG's `prompt` chunk is what ran), and its URL.
    comfy_files: Any = None
    engine: str = ""  # which server made the image; "" for this machine
    source_sha256: str | None = None  # SHA-256 of the init image file (img2img, inpaint, outpaint)
    mask_alpha: bool = False  # the mask was read from its transparency (1 - alpha), not its grey values
    mask_soft: bool = False  # the mask had values between 0 and 1: sampled with differential diffusion


@dataclass(frozen=True, slots=True)
class ImageFailed:
    """One image of the job could not be made (e.g. the model produced NaN); the others go on."""

    image_index: int
    seed: int
    message: str  # one actionable sentence for the user
    kind: FailureKind


@dataclass(frozen=True, slots=True)
class ImageCancelled:
    image_index: int
    seed: int


@dataclass(frozen=True, slots=True)
class JobFinished:
    images: int  # images finished (failed and cancelled ones are reported by their own events)
    seconds: float


@dataclass(frozen=True, slots=True)
class JobCancelled:
    images_finished: int


@dataclass(frozen=True, slots=True)
class JobFailed:
    message: str  # one actionable sentence for the user
    kind: FailureKind


Event = (
    ModelLoading
    | ModelLoaded
    | PromptEncoding
    | StepUpdate
    | ImageFinished
    | ImageFailed
    | ImageCancelled
    | JobFinished
    | JobCancelled
    | JobFailed
)
