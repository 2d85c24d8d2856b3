"""The engine: loads a model set once and runs generation jobs, image by image.

Phases of a job: resolve the request -> encode the prompts (once per job) -> per image: CPU-seeded noise ->
sample -> VAE decode -> 8-bit pixels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from app.inference.device import pick_device, pick_dtypes
from app.inference.errors import GenerationCancelled, InvalidRequestError
from app.inference.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.loading import load_mmdit
from app.inference.mmdit import MMDiT
from app.inference.model_set import ModelSet
from app.inference.request import GenerationRequest
from app.inference.samplers import SAMPLERS, ancestral_noise_sampler, make_noise
from app.inference.schedules import img2img_sigmas, make_sigmas
from app.inference.text_encoders import TextConditioning, TextEncoders
from app.inference.vae import VAE, image_to_tensor, load_vae, process_in, process_out, tensor_to_uint8

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepProgress:
    image_index: int  # 0-based within the job
    seed: int
    step: int  # 1-based
    steps: int
    sigma: float
    elapsed: float  # seconds since the image's sampling started


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    index: int
    seed: int
    pixels: np.ndarray  # (H, W, 3) uint8
    latent: torch.Tensor  # (1, 16, H/8, W/8) float32: what the VAE decoded (after process_out)
    request: GenerationRequest  # resolved


class Engine:
    """Owns the loaded networks; reloads only when the model set, T5 choice, device or dtype changes."""

    def __init__(self, device: str = "auto", dtype: str = "auto") -> None:
        self.device = pick_device(device)
        self.dtype_name = dtype
        self.model_set: ModelSet | None = None
        self.mmdit: MMDiT | None = None
        self.vae: VAE | None = None
        self.text: TextEncoders | None = None
        self._loaded_key: tuple | None = None

    def load(self, model_set: ModelSet, *, use_t5: bool = True, on_stage: Callable[[str], None] | None = None) -> None:
        key = (model_set, use_t5)
        if key == self._loaded_key:
            return
        model_set.require_text_encoders(use_t5)
        params = model_set.mmdit_bytes // 2 + 84_000_000 + 820_000_000
        t5_params = 4_800_000_000 if use_t5 else 0
        dtype, t5_dtype = pick_dtypes(self.dtype_name, self.device, params, t5_params)
        log.info("loading %s on %s (%s, T5 %s)", model_set.checkpoint, self.device, dtype, t5_dtype if use_t5 else "off")
        self.mmdit = self.vae = self.text = None  # release the previous set before loading the next
        stage = on_stage or (lambda name: None)
        stage("text encoders")
        t5 = model_set.t5 if use_t5 else None
        self.text = TextEncoders.load(
            clip_l=model_set.clip_l.path,
            clip_g=model_set.clip_g.path,
            t5=t5.path if t5 is not None else None,
            clip_l_prefix=model_set.clip_l.prefix,
            clip_g_prefix=model_set.clip_g.prefix,
            t5_prefix=t5.prefix if t5 is not None else "",
            tokenizer_dir=model_set.tokenizer_dir,
            context_width=model_set.mmdit_config.context_in_channels,
            device=self.device,
            dtype=dtype,
            t5_dtype=t5_dtype,
        )
        stage("diffusion model")
        self.mmdit = load_mmdit(model_set.mmdit.path, prefix=model_set.mmdit.prefix, dtype=dtype, device=self.device)
        stage("VAE")
        self.vae = load_vae(model_set.vae.path, model_set.vae.prefix, dtype=dtype, device=self.device)
        self.model_set = model_set
        self._loaded_key = key

    def encode(self, text: str, mode: str) -> TextConditioning:
        with torch.inference_mode():
            return self.text.encode(text, mode=mode)

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_step: Callable[[StepProgress], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[GeneratedImage]:
        """Yield the job's images one by one (seed S, S+1, ...); each equals a single run with its seed."""
        assert self.model_set is not None and self.mmdit is not None, "call load() first"
        req = request.resolved(self.model_set.variant, self.model_set.mmdit_config)
        if req.use_t5 != self._loaded_key[1]:
            raise InvalidRequestError("the request's T5 setting differs from the loaded model set; load() again")
        guidance = GuidanceConfig(
            cfg=req.cfg,
            steps=req.steps,
            shift=req.shift,
            slg_layers=req.slg_layers,
            slg_scale=req.slg_scale,
            slg_start=req.slg_start,
            slg_end=req.slg_end,
            negative_until=req.negative_until,
        )
        cond = self.encode(req.prompt, req.text_mode)
        uncond = self.encode(req.negative, req.text_mode) if guidance.uses_uncond else None
        denoiser = GuidedDenoiser(self.mmdit, cond, uncond, guidance)

        sigmas = make_sigmas(req.scheduler, req.steps, req.shift)
        init_latent = None
        if req.init_image is not None:
            init_latent = self._encode_init_image(req.init_image, req.width, req.height)
            sigmas = img2img_sigmas(sigmas, req.denoise)
        shape = (1, self.mmdit.cfg.in_channels, req.height // 8, req.width // 8)

        for k in range(req.count):
            seed = req.seed + k
            yield self._generate_one(k, seed, req, denoiser, sigmas, shape, init_latent, on_step, cancel)

    def _encode_init_image(self, path: Path, width: int, height: int) -> torch.Tensor:
        try:
            with Image.open(path) as im:
                image = image_to_tensor(im, (width, height))
        except (OSError, UnidentifiedImageError) as exc:
            raise InvalidRequestError(f"{path}: cannot read the init image ({exc})") from None
        with torch.inference_mode():
            return process_in(self.vae.encode(image)).cpu()  # model space, float32

    def _generate_one(self, k, seed, req, denoiser, sigmas, shape, init_latent, on_step, cancel) -> GeneratedImage:
        started = time.perf_counter()
        noise = make_noise(seed, shape, self.device)
        sigma0 = sigmas[0]
        if init_latent is None:
            x = noise  # sigma_0 = 1: x = 1 * noise + 0 * latent
        else:
            x = sigma0 * noise + (1.0 - sigma0) * init_latent.to(self.device)
        n_steps = len(sigmas) - 1

        def step_callback(i: int, denoised: torch.Tensor) -> None:
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            if on_step is not None:
                on_step(StepProgress(k, seed, i + 1, n_steps, float(sigmas[i]), time.perf_counter() - started))

        extra = {}
        if req.sampler == "euler_ancestral":
            extra["noise"] = ancestral_noise_sampler(seed, shape, self.device)
        with torch.inference_mode():
            x = SAMPLERS[req.sampler](denoiser, x, sigmas.to(self.device), on_step=step_callback, **extra)
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled()
            latent = process_out(x).float()
            pixels = tensor_to_uint8(self.vae.decode(latent))[0]
        log.info("image %d (seed %d) in %.2f s", k, seed, time.perf_counter() - started)
        return GeneratedImage(k, seed, pixels, latent.cpu(), req)
