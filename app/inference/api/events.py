"""Typed events of a generation job: what the CLI prints and what the UI worker turns into Qt signals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.inference.api.request import GenerationRequest


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
    image_index: int
    seed: int
    pixels: np.ndarray  # (H, W, 3) uint8
    latent: torch.Tensor  # (1, 16, H/8, W/8) float32, VAE space (what the decoder received)
    request: GenerationRequest  # resolved: every parameter explicit
    infotext: str  # A1111-style parameters
    model_name: str = ""  # the checkpoint's file stem, e.g. "sd3.5_large"
    variant: str = ""  # "large" | "large-turbo" | "medium"
    fp8: bool = False  # the diffusion model ran from fp8-stored weights


@dataclass(frozen=True, slots=True)
class ImageCancelled:
    image_index: int
    seed: int


@dataclass(frozen=True, slots=True)
class JobFinished:
    images: int
    seconds: float


@dataclass(frozen=True, slots=True)
class JobCancelled:
    images_finished: int


@dataclass(frozen=True, slots=True)
class JobFailed:
    message: str  # one actionable sentence for the user
    kind: str  # "model" | "memory" | "request" | "internal"


Event = (
    ModelLoading
    | ModelLoaded
    | StepUpdate
    | ImageFinished
    | ImageCancelled
    | JobFinished
    | JobCancelled
    | JobFailed
)
