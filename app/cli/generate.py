"""`sd35-studio generate`: run one job through the generation session, write PNGs (and latents), report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from app.cli.lora_prompt import with_prompt_loras
from app.cli.options import request_from_args
from app.cli.output_folder import remove_stale_output_temp_files
from app.cli.status import EXIT_ERROR, closed_stdout
from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind, InferenceError
from app.inference.api.events import (
    Event,
    ImageCancelled,
    ImageFailed,
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    ModelLoading,
    PromptEncoding,
    StepUpdate,
)
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.memory.plan import MemoryPlan, choose_plan, probe_machine
from app.metadata.controlnet_meta import prefetch_hashes
from app.metadata.file_names import batch_path
from app.metadata.image_file import finished_image_params, write_image

log = logging.getLogger(__name__)


def save_latent(path: Path, event: ImageFinished) -> Path:
    from safetensors.torch import save_file

    latent_path = path.with_name(f"{path.stem}.latent.safetensors")
    save_file({"latent": event.latent.contiguous()}, str(latent_path))
    return latent_path


class _CommandLineJob:
    """Turns session events into files on disk and progress output (JSON lines or one human-readable line)."""

    def __init__(self, args: argparse.Namespace, count: int, cancel: CancelToken) -> None:
        self.args = args
        self.count = count
        self.cancel = cancel
        self.failed: JobFailed | None = None
        self.images_failed: list[ImageFailed] = []
        self.cancelled = False
        self.line_open = False  # a progress line without its newline is on stderr
        self.stdout_closed = False  # the reader of the JSON lines went away: the job stops, quietly
        self.plan: MemoryPlan | None = None  # shown once the model set has loaded
        self.shown_warnings: set[str] = (
            set()
        )  # the job's own warnings (LoRA keys not applied) arrive with images

    def print_json(self, event: str, **fields) -> None:
        if not self.args.json or self.stdout_closed:
            return
        try:
            print(json.dumps({"event": event, **fields}), flush=True)  # noqa: T201 - CLI output
        except BrokenPipeError:
            self.stdout_closed = True
            self.cancel.cancel()

    def _warn_line(self, message: str) -> None:
        if self.line_open and not self.args.json:
            sys.stderr.write("\n")
            self.line_open = False
        self.warning(message)

    def warning(self, message: str) -> None:
        if self.args.json:
            self.print_json("warning", message=message)
        else:
            sys.stderr.write(f"warning: {message}\n")

    def __call__(self, event: Event) -> None:
        if isinstance(event, ModelLoading):
            self.print_json("load", component=event.component, index=event.index, total=event.total)
        elif isinstance(event, ModelLoaded):
            self.print_json(
                "loaded", seconds=round(event.seconds, 3), variant=event.variant, model=event.model_name
            )
            if self.plan is not None and not self.args.json:
                sys.stderr.write(f"loaded {event.model_name}: {self.plan.describe()}\n")
        elif isinstance(event, PromptEncoding):
            self._encoding(event)
        elif isinstance(event, StepUpdate):
            self._step(event)
        elif isinstance(event, ImageFinished):
            self._image(event)
        elif isinstance(event, ImageFailed):
            self._image_failed(event)
        elif isinstance(event, ImageCancelled):
            self.print_json("image_cancelled", seed=event.seed, index=event.image_index)
        elif isinstance(event, JobFinished):
            self.print_json("done", images=event.images, seconds=round(event.seconds, 3))
        elif isinstance(event, JobCancelled):
            self.cancelled = True
            self.print_json("cancelled", images=event.images_finished)
        elif isinstance(event, JobFailed):
            self.failed = event
            self.print_json("error", message=event.message, kind=event.kind)

    def _encoding(self, e: PromptEncoding) -> None:
        if self.args.json:
            self.print_json("encode", prompt=e.prompt, done=e.done, total=e.total)
        elif e.total > 3:  # a prompt of several 77-token windows takes a while: show that it moves
            sys.stderr.write(f"\rencoding the {e.prompt} {e.done}/{e.total}")
            sys.stderr.flush()
            self.line_open = True

    def _step(self, e: StepUpdate) -> None:
        if self.args.json:
            self.print_json(
                "step", index=e.step, steps=e.steps, image=e.image_index, seed=e.seed, sigma=round(e.sigma, 8),
                elapsed=round(e.elapsed, 4), its=round(e.its, 4), eta=None if e.eta is None else round(e.eta, 2),
            )  # fmt: skip
        else:
            eta = f"  ETA {e.eta:.0f} s " if e.eta is not None else ""
            sys.stderr.write(
                f"\rimage {e.image_index + 1}/{self.count} (seed {e.seed})  step {e.step}/{e.steps}  "
                f"{e.its:.2f} it/s{eta}"
            )
            sys.stderr.flush()
            self.line_open = True

    def _image(self, e: ImageFinished) -> None:
        for warning in e.request.warnings:
            if warning not in self.shown_warnings:
                self.shown_warnings.add(warning)
                self._warn_line(warning)
        path = batch_path(self.args.out, e.seed, self.count)
        write_image(
            path, e.pixels, finished_image_params(e), e.comfy_files
        )  # OSError (full disk, ...) propagates: the job stops
        latent = save_latent(path, e) if self.args.save_latent else None
        if self.args.json:
            self.print_json("image", path=str(path), seed=e.seed, index=e.image_index,
                            latent=None if latent is None else str(latent))  # fmt: skip
        else:
            sys.stderr.write(f"\nsaved {path}\n")
            self.line_open = False

    def _image_failed(self, e: ImageFailed) -> None:
        """No file for this image (never a black one); the command exits 1 once the others are done."""
        self.images_failed.append(e)
        message = e.message if self.count == 1 else f"image {e.image_index + 1} (seed {e.seed}): {e.message}"
        self.print_json("image_failed", seed=e.seed, index=e.image_index, message=e.message, kind=e.kind)
        _error(message, self.line_open)
        self.line_open = False


def _error(message: str, line_open: bool = False) -> int:
    sys.stderr.write(("\n" if line_open else "") + f"sd35-studio: error: {message}\n")
    return EXIT_ERROR


def run_generate(args: argparse.Namespace) -> int:
    from app.inference.pipeline.refine import load_source, sized_for_source
    from app.inference.pipeline.session import GenerationSession

    remove_stale_output_temp_files(args.out.parent)
    try:
        overrides = {part: getattr(args, part, None) for part in ("clip_l", "clip_g", "t5", "vae")}
        model_set = locate_model_set(args.model, args.variant, **overrides)
        request = with_prompt_loras(request_from_args(args), args.lora_dir or [])
        resolved = sized_for_source(request).resolved(model_set.variant, model_set.mmdit_config)  # fail fast
        if resolved.inpaints:
            load_source(resolved)  # a mask of another size, an all-black one: said before loading anything
        prefetch_hashes(request.controlnets)  # for the metadata, while the job runs
        model_set.require_text_encoders(request.use_t5)
        session = GenerationSession(device=args.device, dtype=args.dtype, preview="off")
        plan = choose_plan(
            model_set.sizes(request.use_t5),
            probe_machine(session.engine.device),
            plan=getattr(args, "memory_plan", "auto"),
            dtype=args.dtype,
        )
    except (InferenceError, ValueError) as exc:
        if args.json:
            print(json.dumps({"event": "error", "message": str(exc)}), flush=True)  # noqa: T201
        return _error(str(exc))
    cancel = CancelToken()
    job = _CommandLineJob(args, resolved.count, cancel)
    job.plan = plan
    session.engine.memory_plan = plan.name
    if request.use_t5 and not plan.use_t5:  # the chosen plan switches T5 off to fit in memory
        request = dataclasses.replace(request, use_t5=False)
        job.warning("T5-XXL is off to fit in memory (--memory-plan fp8 or low-vram keeps it, at a risk)")
    job.print_json("plan", description=plan.describe(), **plan.to_json())
    for warning in resolved.warnings:
        job.warning(warning)
        job.shown_warnings.add(warning)
    if job.stdout_closed:  # nobody reads the events: do not even load the model
        return closed_stdout()
    try:
        session.execute(model_set, request, cancel, job)
    except OSError as exc:  # raised by our own event handler while writing an image
        job.print_json("error", message=str(exc), kind=FailureKind.IO)
        return _error(f"cannot write output: {exc}", job.line_open)
    except KeyboardInterrupt:
        sys.stderr.write("\nsd35-studio: cancelled\n")
        return 130
    if job.stdout_closed:
        return closed_stdout()
    if job.failed is not None:
        return _error(job.failed.message, job.line_open)
    if job.images_failed:
        return EXIT_ERROR
    return 130 if job.cancelled else 0
