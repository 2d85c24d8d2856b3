"""The generation session: the one way to run a job, used by the CLI and the UI worker alike.

A job runs as a sequence of phases (`execute`): load the networks → encode the prompts → prepare guidance
(the guided denoiser, its schedule, the img2img start) → per batch of seeds: sample (batch.py) → decode →
report. `run(model, request, cancel)` yields the typed events (app.inference.api.events) as they happen.
Models stay loaded between jobs; a failed or cancelled job leaves them ready for the next one.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
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
    ImageFailed,
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    ModelLoading,
    PromptEncoding,
)
from app.inference.api.request import GenerationRequest
from app.inference.api.session import RunsOnAThread, SessionOptions
from app.inference.checkpoints.model_set import ModelSet, locate_model_set
from app.inference.checkpoints.taesd_loading import find_taesd3_decoder, load_taesd3_decoder
from app.inference.control.job import ControlNetCache, build_control_stack, plan_sizes
from app.inference.lora.stack import LoraStack
from app.inference.memory.oom import is_out_of_memory
from app.inference.memory.vae_decode import decode_fitting
from app.inference.networks.vae import image_to_tensor, process_in, process_out, tensor_to_uint8
from app.inference.pipeline.batch import Batch, BatchRunner, Sampling, non_finite_message
from app.inference.pipeline.engine import Engine
from app.inference.pipeline.hires_job import HiresJob
from app.inference.pipeline.refine import Source, load_source, sized_for_source
from app.inference.sampling.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.sampling.masked import DifferentialThreshold, latent_mask
from app.inference.sampling.preview import LinearPreview, PreviewDecoder, TaesdPreview
from app.inference.sampling.schedules import img2img_sigmas, make_sigmas
from app.inference.text.conditioning import TextConditioning

log = logging.getLogger(__name__)

LOAD_STAGES = ("text encoders", "diffusion model", "VAE")


@dataclass(frozen=True, slots=True)
class Prompts:
    """The job's text conditioning, encoded once whatever the number of images."""

    cond: TextConditioning
    uncond: TextConditioning | None  # None when guidance needs no negative (cfg 1)


class _JobReport:
    """The job's event sink: passes every event on and counts the finished images."""

    def __init__(self, emit: Callable[[Event], None]) -> None:
        self.emit = emit
        self.finished = 0

    def __call__(self, event: Event) -> None:
        self.finished += isinstance(event, ImageFinished)
        self.emit(event)


class GenerationSession(RunsOnAThread):
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
        self.loras = LoraStack()  # LoRA files read so far and the set now in the networks
        self.decode_free_bytes: Callable[[], int] | None = None  # None: measure; tests force tiled decodes
        self._controlnets = ControlNetCache()  # loaded ControlNets, kept between jobs

    # ----------------------------------------------------------------------------------------------- public

    @classmethod
    def from_options(cls, options: SessionOptions) -> GenerationSession:
        """The `SessionFactory` of the local engine."""
        return cls(
            device=options.device, dtype=options.dtype, preview=options.preview,
            preview_every=options.preview_every, memory_plan=options.memory_plan,
        )  # fmt: skip

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
        report = _JobReport(emit)
        try:
            model_set = model if isinstance(model, ModelSet) else self._locate(Path(model), variant)
            req = sized_for_source(request).resolved(model_set.variant, model_set.mmdit_config)
            guidance = GuidanceConfig.from_request(req)
            self.engine.controlnet_sizes = plan_sizes(
                req.controlnets, model_set.mmdit_config
            )  # the memory plan counts them
            self._load(model_set, req.use_t5, report)
            req = self.loras.apply(
                self.engine, req, model_set.variant
            )  # the job's LoRA set, hashes filled in
            source = load_source(req) if req.inpaints else None  # a masked job's init image and mask
            prompts = self._encode_prompts(req, guidance, cancel, report)
            sampling = self._prepare_guidance(req, guidance, prompts, source)
            hires = (
                HiresJob.prepare(self, req, guidance, prompts, first_steps=sampling.steps)
                if req.hires
                else None
            )
            if hires is not None:  # an image's events count the steps of both passes
                sampling = replace(sampling, total_steps=hires.sampling.total_steps)
            preview = self._preview_decoder(model_set)
            job = _JobFacts.of(req, model_set, source)
            for batch in self._batches(req):
                latents = BatchRunner(sampling, batch, cancel, report, preview, self.preview_every).run()
                final = job
                if hires is not None:
                    first = self._decode_batch(latents, batch, job, report)
                    latents, batch = hires.run(first, batch, cancel, report, preview)
                    final = replace(job, source=None)  # the hires pass samples the whole, composited image
                self._decode_and_report(latents, batch, final, cancel, report)
            emit(JobFinished(report.finished, time.perf_counter() - started))
        except GenerationCancelled:
            emit(JobCancelled(report.finished))
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

    # ----------------------------------------------------------------------------------------------- 1. load

    def _locate(self, path: Path, variant: str | None) -> ModelSet:
        key = (path.expanduser().resolve(), variant)
        if key not in self._model_sets:
            self._model_sets[key] = locate_model_set(path, variant)
        return self._model_sets[key]

    def _load(self, model_set: ModelSet, use_t5: bool, emit: Callable[[Event], None]) -> None:
        if self.engine.is_loaded(model_set, use_t5):
            return
        started = time.perf_counter()
        stage = itertools.count(1)
        self.loras.forget()  # the LoRA state refers to the networks about to be replaced
        self.engine.load(
            model_set,
            use_t5=use_t5,
            on_stage=lambda name: emit(ModelLoading(name, next(stage), len(LOAD_STAGES))),
        )
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

    # ----------------------------------------------------------------------------------------------- 2. encode

    def _encode_prompts(
        self,
        req: GenerationRequest,
        guidance: GuidanceConfig,
        cancel: CancelToken,
        emit: Callable[[Event], None],
    ) -> Prompts:
        """Once per job, whatever the number of images; the negative only when guidance uses it."""
        cond = self._encode(req.prompt, req.text_mode, "prompt", cancel, emit)
        uncond = None
        if guidance.uses_uncond:
            uncond = self._encode(req.negative, req.text_mode, "negative prompt", cancel, emit)
        return Prompts(cond, uncond)

    def _encode(
        self, text: str, mode: str, label: str, cancel: CancelToken, emit: Callable[[Event], None]
    ) -> TextConditioning:
        self.encode_calls += 1

        def progress(done: int, total: int) -> None:  # after each window: a long prompt can be cancelled
            cancel.raise_if_cancelled()
            emit(PromptEncoding(label, done, total))

        return self.engine.encode(text, mode, progress=progress)

    # ----------------------------------------------------------------------------------------------- 3. guidance

    def _prepare_guidance(
        self, req: GenerationRequest, guidance: GuidanceConfig, prompts: Prompts, source: Source | None = None
    ) -> Sampling:
        """The guided denoiser over the job's schedule, and where sampling starts (noise, or img2img's image);
        with a `source`, sampling is masked."""
        engine = self.engine
        sigmas = make_sigmas(req.scheduler, req.steps, req.shift)
        init_latent = None
        mask = threshold = None
        if source is not None:
            init_latent = self.encode_pixels(source.vae_input())
            sigmas = img2img_sigmas(sigmas, req.denoise)
            mask = latent_mask(source.mask, tuple(init_latent.shape[-2:]))
            threshold = DifferentialThreshold(sigmas, req.shift) if source.soft else None
        elif req.init_image is not None:
            init_latent = self._encode_init_image(req.init_image, req.width, req.height)
            sigmas = img2img_sigmas(sigmas, req.denoise)
        # Per-job constants (text tokens, every step's adaLN modulation) are computed where the MMDiT runs.
        engine.prepare_mmdit()
        control = build_control_stack(
            req.controlnets, self._controlnets, engine.mmdit, engine.vae, engine.plan, engine.device,
            (req.width, req.height), req.shift,
        )  # fmt: skip
        denoiser = GuidedDenoiser(
            engine.mmdit, prompts.cond, prompts.uncond, guidance, sigmas, precompute=self.precompute,
            control=control,
        )  # fmt: skip
        latent_shape = (1, engine.mmdit.cfg.in_channels, req.height // 8, req.width // 8)
        return Sampling(
            denoiser, sigmas, req.sampler, latent_shape, init_latent, engine.device, self._precision(),
            mask=mask, threshold=threshold,
        )  # fmt: skip

    def encode_pixels(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> (1, 16, H/8, W/8) model space, float32 on the CPU (the posterior mean)."""
        with torch.inference_mode():
            return process_in(self.engine.vae.encode(image)).cpu()

    def _encode_init_image(self, path: Path, width: int, height: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                image = image_to_tensor(im, (width, height))
        except (OSError, UnidentifiedImageError) as exc:
            raise InvalidRequestError(f"{path}: cannot read the init image ({exc})") from None
        return self.encode_pixels(image)

    def _precision(self) -> str:
        plan = self.engine.plan
        if plan is None:
            return self.engine.dtype_name
        return plan.compute_dtype + (" with fp8 weights" if plan.mmdit_fp8 else "")

    # ----------------------------------------------------------------------------------------------- 4. sample

    def _batches(self, req: GenerationRequest) -> Iterator[Batch]:
        size = self.batch_size or (1 if self.engine.device.type == "cpu" else 4)
        for first in range(0, req.count, size):
            yield Batch.of(first, min(size, req.count - first), req.seed)

    # ------------------------------------------------------------------------------------ 5-6. decode, report

    def _decode_row(
        self, latents: torch.Tensor, batch: Batch, row: int, job: _JobFacts, emit: Callable[[Event], None]
    ) -> tuple[np.ndarray, torch.Tensor] | None:
        """((H, W, 3) uint8 pixels, (1, 16, h, w) VAE-space latent) of one image of the batch; None when the
        VAE turned it into NaN/Inf (the image fails with a sentence and leaves the batch)."""
        with torch.inference_mode():
            latent = process_out(latents[row : row + 1]).float()  # (1, 16, h, w) VAE space
            image, _tiling = decode_fitting(self.engine.vae, latent, self.decode_free_bytes)  # [-1, 1]
            finite = bool(torch.isfinite(image).all())
            pixels = tensor_to_uint8(image)[0] if finite else None
        if pixels is None:
            what, when = "the VAE produced NaN or infinite values", "while decoding"
            message = non_finite_message(what, when, self._precision())
            batch.active[row] = False
            emit(ImageFailed(batch.indices[row], batch.seeds[row], message, FailureKind.NON_FINITE))
            return None
        if job.source is not None:
            pixels = job.source.finish(pixels)  # unmasked pixels: the init image's own
        return pixels, latent

    def _decode_batch(
        self, latents: torch.Tensor, batch: Batch, job: _JobFacts, emit: Callable[[Event], None]
    ) -> dict[int, np.ndarray]:
        """{row: (H, W, 3) uint8 pixels} of each image still in the batch (a hires job's first pass)."""
        decoded = {row: self._decode_row(latents, batch, row, job, emit) for row, _, _ in list(batch.live())}
        return {row: d[0] for row, d in decoded.items() if d is not None}

    def _decode_and_report(
        self,
        latents: torch.Tensor,
        batch: Batch,
        job: _JobFacts,
        cancel: CancelToken,
        emit: Callable[[Event], None],
    ) -> None:
        """Decode each image still in the batch and report it: pixels and the facts of how they were made."""
        fp8 = self.engine.plan is not None and self.engine.plan.mmdit_fp8
        model_set = job.model_set
        for row, index, seed in list(batch.live()):
            decoded = self._decode_row(latents, batch, row, job, emit)
            if decoded is not None:
                pixels, latent = decoded
                emit(ImageFinished(index, seed, pixels, latent.cpu(), job.request, model_name=model_set.name,
                                   variant=model_set.variant, fp8=fp8, noise_device="cpu",
                                   source_sha256=job.source_sha256, mask_alpha=job.mask_alpha,
                                   mask_soft=job.mask_soft))  # fmt: skip
            cancel.raise_if_cancelled()


@dataclass(frozen=True, slots=True)
class _JobFacts:
    """What decoding and reporting an image needs to know of its job."""

    request: GenerationRequest
    model_set: ModelSet
    source: Source | None  # a masked job's init image: the decoded canvas is composited onto it
    source_sha256: str | None  # SHA-256 of the init image file, for "made from ..."

    @property
    def mask_alpha(self) -> bool:
        return self.source is not None and self.source.alpha_mask

    @property
    def mask_soft(self) -> bool:
        return self.source is not None and self.source.soft

    @classmethod
    def of(cls, req: GenerationRequest, model_set: ModelSet, source: Source | None) -> _JobFacts:
        sha = source.sha256 if source is not None else None
        if sha is None and req.init_image is not None:
            sha = _file_sha256(req.init_image)
        return cls(req, model_set, source, sha)


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _memory_advice() -> str:
    return (
        "out of memory. Lower the image size or the number of images, switch T5 off, choose bfloat16 "
        "precision, or pick a memory-saving plan (fp8 or low-vram)"
    )
