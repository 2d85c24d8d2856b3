"""The generation session: the one way to run a job, used by the CLI and the UI worker alike.

`GenerationSession.run(model_path, request, cancel)` yields typed events (events.py): model loading, one step
event per image and step (with a preview), each finished image, then finished / cancelled / failed. Models stay
loaded between jobs; a failed or cancelled job leaves them ready for the next one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import (
    FailureKind,
    GenerationCancelled,
    InferenceError,
    InvalidRequestError,
    failure_kind,
)
from app.inference.api.events import (
    Event,
    ImageCancelled,
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    ModelLoading,
    StepUpdate,
)
from app.inference.api.request import GenerationRequest
from app.inference.api.session import SessionOptions
from app.inference.checkpoints.model_set import ModelSet, locate_model_set
from app.inference.checkpoints.taesd_loading import find_taesd3_decoder, load_taesd3_decoder
from app.inference.memory.oom import is_out_of_memory
from app.inference.memory.vae_decode import decode_fitting
from app.inference.networks.vae import image_to_tensor, process_in, process_out, tensor_to_uint8
from app.inference.pipeline.engine import Engine
from app.inference.sampling.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.sampling.preview import LinearPreview, PreviewBudget, PreviewDecoder, TaesdPreview
from app.inference.sampling.samplers import SAMPLERS, ancestral_noise_sampler, make_noise
from app.inference.sampling.schedules import img2img_sigmas, make_sigmas
from app.metadata.png_info import a1111_infotext

log = logging.getLogger(__name__)

LOAD_STAGES = ("text encoders", "diffusion model", "VAE")


@dataclass
class _Batch:
    """Images sampled together: indices into the job, their seeds, and which are still wanted."""

    indices: list[int]
    seeds: list[int]
    active: list[bool] = field(default_factory=list)


class GenerationSession:
    def __init__(
        self,
        device: str = "auto",
        dtype: str = "auto",
        preview: str = "auto",
        preview_every: int = 1,
        batch_size: int | None = None,
        memory_plan: str = "auto",
        precompute: bool = True,
    ) -> None:
        self.engine = Engine(device=device, dtype=dtype, memory_plan=memory_plan)
        self.precompute = precompute  # per-job constants and the modulation table (False: the plain forward)
        self.preview_mode = preview  # "auto" (TAESD3 if found, else linear) | "taesd" | "linear" | "off"
        self.preview_every = preview_every
        self.batch_size = batch_size  # None: batch seeds on accelerators, one at a time on the CPU
        self._model_sets: dict[tuple[Path, str | None], ModelSet] = {}
        self._preview: PreviewDecoder | None = None
        self._preview_key: tuple | None = None
        self.encode_calls = 0  # prompts encoded so far (a job encodes each prompt once)

    # ----------------------------------------------------------------------------------------------- public

    @classmethod
    def from_options(cls, options: SessionOptions) -> GenerationSession:
        """The `SessionFactory` of the local engine."""
        return cls(
            device=options.device, dtype=options.dtype, preview=options.preview,
            preview_every=options.preview_every, memory_plan=options.memory_plan,
        )  # fmt: skip

    def run(
        self,
        model: Path | ModelSet,
        request: GenerationRequest,
        cancel: CancelToken | None = None,
        variant: str | None = None,
    ) -> Iterator[Event]:
        """Run the job on a private thread and yield its events as they happen."""
        events: queue.Queue = queue.Queue()
        done = object()
        cancel = cancel or CancelToken()

        def work() -> None:
            try:
                self.execute(model, request, cancel, events.put, variant=variant)
            finally:
                events.put(done)

        thread = threading.Thread(target=work, name="sd35-job", daemon=True)
        thread.start()
        try:
            while (event := events.get()) is not done:
                yield event
        finally:  # the consumer stopped early: stop the job and wait for it
            cancel.cancel()
            thread.join()

    def execute(
        self,
        model: Path | ModelSet,
        request: GenerationRequest,
        cancel: CancelToken,
        emit: Callable[[Event], None],
        variant: str | None = None,
    ) -> None:
        """Run the job on the calling thread, reporting through `emit`. Never raises for a failed job."""
        started = time.perf_counter()
        finished = 0
        try:
            model_set = model if isinstance(model, ModelSet) else self._locate(Path(model), variant)
            req = request.resolved(model_set.variant, model_set.mmdit_config)
            self._load(model_set, req.use_t5, emit)

            def counting_emit(event: Event) -> None:
                nonlocal finished
                finished += isinstance(event, ImageFinished)
                emit(event)

            self._generate(model_set, req, cancel, counting_emit)
            emit(JobFinished(finished, time.perf_counter() - started))
        except GenerationCancelled:
            emit(JobCancelled(finished))
        except InferenceError as exc:
            emit(JobFailed(str(exc), failure_kind(exc)))
        except OSError as exc:  # e.g. a full disk while the consumer saves an image
            emit(JobFailed(f"could not read or write a file: {exc}", FailureKind.IO))
        except Exception as exc:  # the session must survive anything a job throws
            if is_out_of_memory(exc):
                log.warning("out of memory: %s", exc)
                emit(JobFailed(_memory_advice(), FailureKind.MEMORY))
            else:
                log.exception("job failed")
                emit(JobFailed(f"internal error: {exc.__class__.__name__}: {exc}", FailureKind.INTERNAL))

    # ----------------------------------------------------------------------------------------------- loading

    def _locate(self, path: Path, variant: str | None) -> ModelSet:
        key = (path.expanduser().resolve(), variant)
        if key not in self._model_sets:
            self._model_sets[key] = locate_model_set(path, variant)
        return self._model_sets[key]

    def _load(self, model_set: ModelSet, use_t5: bool, emit: Callable[[Event], None]) -> None:
        if self.engine.is_loaded(model_set, use_t5):
            return
        started = time.perf_counter()
        stage_index = 0

        def on_stage(name: str) -> None:
            nonlocal stage_index
            stage_index += 1
            emit(ModelLoading(name, stage_index, len(LOAD_STAGES)))

        self.engine.load(model_set, use_t5=use_t5, on_stage=on_stage)
        plan = self.engine.plan.describe() if self.engine.plan is not None else ""
        emit(ModelLoaded(model_set.variant, model_set.name, time.perf_counter() - started, plan))

    def _preview_decoder(self, model_set: ModelSet) -> PreviewDecoder | None:
        key = (self.preview_mode, model_set.root)
        if key == self._preview_key:
            return self._preview
        decoder: PreviewDecoder | None = None
        if self.preview_mode in ("auto", "taesd"):
            path = find_taesd3_decoder(model_set.root)
            if path is not None:
                try:
                    decoder = TaesdPreview(load_taesd3_decoder(path, device=self.engine.device))
                except InferenceError as exc:
                    log.warning("TAESD3 preview decoder unusable, using the linear preview: %s", exc)
            elif self.preview_mode == "taesd":
                log.warning("no TAESD3 decoder found; using the linear preview")
        if decoder is None and self.preview_mode != "off":
            decoder = LinearPreview()
        self._preview, self._preview_key = decoder, key
        return decoder

    # ----------------------------------------------------------------------------------------------- sampling

    def _encode(self, text: str, mode: str):
        self.encode_calls += 1
        return self.engine.encode(text, mode)

    def _generate(
        self, model_set: ModelSet, req: GenerationRequest, cancel: CancelToken, emit: Callable[[Event], None]
    ) -> None:
        engine = self.engine
        guidance = GuidanceConfig(
            cfg=req.cfg, steps=req.steps, shift=req.shift, slg_layers=req.slg_layers, slg_scale=req.slg_scale,
            slg_start=req.slg_start, slg_end=req.slg_end, negative_until=req.negative_until,
        )  # fmt: skip
        cond = self._encode(req.prompt, req.text_mode)  # once per job, whatever the number of images
        uncond = self._encode(req.negative, req.text_mode) if guidance.uses_uncond else None
        preview = self._preview_decoder(model_set)

        sigmas = make_sigmas(req.scheduler, req.steps, req.shift)
        init_latent = None
        if req.init_image is not None:
            init_latent = self._encode_init_image(req.init_image, req.width, req.height)
            sigmas = img2img_sigmas(sigmas, req.denoise)
        # Per-job constants (text tokens, every step's adaLN modulation) are computed where the MMDiT runs.
        engine.prepare_mmdit()
        denoiser = GuidedDenoiser(engine.mmdit, cond, uncond, guidance, sigmas, precompute=self.precompute)
        latent_shape = (1, engine.mmdit.cfg.in_channels, req.height // 8, req.width // 8)

        batch_size = self.batch_size or (1 if engine.device.type == "cpu" else 4)
        for first in range(0, req.count, batch_size):
            indices = list(range(first, min(first + batch_size, req.count)))
            batch = _Batch(indices, [req.seed + k for k in indices], [True] * len(indices))
            self._sample_batch(model_set, req, batch, denoiser, sigmas, latent_shape, init_latent, preview,
                               cancel, emit)  # fmt: skip

    def _encode_init_image(self, path: Path, width: int, height: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                image = image_to_tensor(im, (width, height))
        except (OSError, UnidentifiedImageError) as exc:
            raise InvalidRequestError(f"{path}: cannot read the init image ({exc})") from None
        with torch.inference_mode():
            return process_in(self.engine.vae.encode(image)).cpu()  # model space, float32

    def _sample_batch(
        self, model_set, req, batch, denoiser, sigmas, latent_shape, init_latent, preview, cancel, emit
    ) -> None:
        device = self.engine.device
        # (B, 16, h, w): each image's noise drawn on the CPU from its own seed, then moved
        noise = torch.cat([make_noise(seed, latent_shape) for seed in batch.seeds]).to(device)
        sigma0 = float(sigmas[0])
        x = noise if init_latent is None else sigma0 * noise + (1.0 - sigma0) * init_latent.to(device)
        n_steps = len(sigmas) - 1
        budget = PreviewBudget(every=self.preview_every)
        started = time.perf_counter()
        last = started

        def drop_cancelled_images() -> None:
            for j, (k, seed) in enumerate(zip(batch.indices, batch.seeds, strict=True)):
                if batch.active[j] and cancel.image_cancelled(k):
                    batch.active[j] = False
                    emit(ImageCancelled(k, seed))
            if not any(batch.active):
                raise _BatchDone()

        def active_denoiser(x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
            # A cancelled image leaves the batch before the next network call: only wanted images are computed.
            cancel.raise_if_cancelled()
            drop_cancelled_images()
            keep = [j for j, a in enumerate(batch.active) if a]
            if len(keep) == len(batch.active):
                return denoiser(x, sigma, i)
            out = x.clone()  # D = x holds a dropped image still; it is never decoded
            out[keep] = denoiser(x[keep], sigma, i)
            return out

        def on_step(i: int, denoised: torch.Tensor) -> None:
            nonlocal last
            cancel.raise_if_cancelled()
            now = time.perf_counter()
            budget.add_step_time(now - last)
            images = None
            if preview is not None and budget.should_decode(i):
                t0 = time.perf_counter()
                images = preview(denoised)
                budget.record(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
            rate = (i + 1) / elapsed if elapsed > 0 else 0.0
            eta = (n_steps - i - 1) / rate if rate > 0 else None
            for j, (k, seed) in enumerate(zip(batch.indices, batch.seeds, strict=True)):
                if batch.active[j]:
                    emit(StepUpdate(k, seed, i + 1, n_steps, float(sigmas[i]), elapsed, rate, eta,
                                    None if images is None else images[j]))  # fmt: skip
            last = time.perf_counter()

        extra = {}
        if req.sampler == "euler_ancestral":
            draws = [ancestral_noise_sampler(seed, latent_shape) for seed in batch.seeds]
            extra["noise"] = lambda: torch.cat([draw() for draw in draws]).to(device)
        try:
            with torch.inference_mode():
                x = SAMPLERS[req.sampler](active_denoiser, x, denoiser.sigmas, on_step=on_step, **extra)
        except _BatchDone:
            return
        cancel.raise_if_cancelled()
        try:
            drop_cancelled_images()
        except _BatchDone:
            return
        for j, (k, seed) in enumerate(zip(batch.indices, batch.seeds, strict=True)):
            if not batch.active[j]:
                continue
            with torch.inference_mode():
                latent = process_out(x[j : j + 1]).float()
                image, _tiling = decode_fitting(self.engine.vae, latent)
                pixels = tensor_to_uint8(image)[0]
            fp8 = self.engine.plan is not None and self.engine.plan.mmdit_fp8
            emit(ImageFinished(k, seed, pixels, latent.cpu(), req, build_infotext(req, seed, model_set.name),
                               model_set.name, model_set.variant, fp8))  # fmt: skip
            cancel.raise_if_cancelled()


class _BatchDone(Exception):
    pass


def _memory_advice() -> str:
    return (
        "out of memory. Lower the image size or the number of images, switch T5 off, choose bfloat16 "
        "precision, or pick a memory-saving plan (fp8 or low-vram)"
    )


def build_infotext(req: GenerationRequest, seed: int, model_name: str) -> str:
    """A1111-style parameters of one image (the gallery adds the model hash once it is computed)."""
    from app import __version__

    return a1111_infotext(req, seed, model_name, version=f"SD3.5 Studio {__version__}")
