"""`sd35-studio generate`: run one job from the command line, write PNGs (and latents), report progress."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from app import __version__
from app.inference.engine import Engine, GeneratedImage, StepProgress
from app.inference.errors import InferenceError
from app.inference.model_set import locate_model_set
from app.inference.png_info import A1111_SAMPLER_NAMES, A1111_SCHEDULE_NAMES, format_infotext, save_png
from app.inference.request import GenerationRequest

log = logging.getLogger(__name__)


def output_path(out: Path, seed: int, count: int) -> Path:
    return out if count == 1 else out.with_name(f"{out.stem}-{seed}{out.suffix or '.png'}")


def infotext(image: GeneratedImage, model_name: str) -> str:
    r = image.request
    fields = {
        "Steps": r.steps,
        "Sampler": A1111_SAMPLER_NAMES[r.sampler],
        "Schedule type": A1111_SCHEDULE_NAMES[r.scheduler],
        "CFG scale": f"{r.cfg:g}",
        "Seed": image.seed,
        "Size": f"{r.width}x{r.height}",
        "Model": model_name,
        "Denoising strength": f"{r.denoise:g}" if r.init_image is not None else None,
        "Shift": f"{r.shift:g}",
        "SLG layers": ",".join(map(str, r.slg_layers)) if r.slg_scale > 0 and r.slg_layers else None,
        "SLG scale": f"{r.slg_scale:g}" if r.slg_scale > 0 and r.slg_layers else None,
        "SLG range": f"{r.slg_start:g}-{r.slg_end:g}" if r.slg_scale > 0 and r.slg_layers else None,
        "Negative until": f"{r.negative_until:g}" if r.negative_until is not None else None,
        "T5": None if r.use_t5 else "off",
        "Text mode": None if r.text_mode == "full" else r.text_mode,
        "Version": f"SD3.5 Studio {__version__}",
    }
    return format_infotext(r.prompt, r.negative, fields)


def _save_latent(path: Path, image: GeneratedImage) -> Path:
    from safetensors.torch import save_file

    latent_path = path.with_name(f"{path.stem}.latent.safetensors")
    save_file({"latent": image.latent.contiguous()}, str(latent_path))
    return latent_path


class _Reporter:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._last_step_time: float | None = None

    def emit(self, event: str, **fields) -> None:
        if self.as_json:
            print(json.dumps({"event": event, **fields}), flush=True)  # noqa: T201 - CLI output

    def warning(self, message: str) -> None:
        if self.as_json:
            self.emit("warning", message=message)
        else:
            sys.stderr.write(f"warning: {message}\n")

    def step(self, p: StepProgress) -> None:
        rate = p.step / p.elapsed if p.elapsed > 0 else 0.0
        eta = (p.steps - p.step) / rate if rate > 0 else None
        if self.as_json:
            self.emit(
                "step", index=p.step, steps=p.steps, image=p.image_index, seed=p.seed, sigma=round(p.sigma, 8),
                elapsed=round(p.elapsed, 4), its=round(rate, 4), eta=None if eta is None else round(eta, 2),
            )
        else:
            sys.stderr.write(
                f"\rimage {p.image_index + 1} (seed {p.seed})  step {p.step}/{p.steps}  {rate:.2f} it/s"
                + (f"  ETA {eta:.0f} s " if eta is not None else "")
            )
            sys.stderr.flush()

    def image(self, path: Path, image: GeneratedImage, latent: Path | None) -> None:
        if self.as_json:
            self.emit("image", path=str(path), seed=image.seed, index=image.index,
                      latent=None if latent is None else str(latent))
        else:
            sys.stderr.write(f"\nsaved {path}\n")


def run_generate(args: argparse.Namespace) -> int:
    reporter = _Reporter(args.json)
    try:
        model_set = locate_model_set(args.model, args.variant)
        if args.denoise is not None and args.init_image is None:
            raise InferenceError("--denoise needs --init-image")
        if args.init_image is not None and not args.init_image.is_file():
            raise InferenceError(f"{args.init_image}: init image not found")
        request = GenerationRequest(
            prompt=args.prompt, negative=args.negative, seed=args.seed, count=args.count, steps=args.steps,
            cfg=args.cfg, sampler=args.sampler, scheduler=args.scheduler, width=args.width, height=args.height,
            shift=args.shift, slg_layers=args.slg_layers, slg_scale=args.slg_scale, slg_start=args.slg_start,
            slg_end=args.slg_end, negative_until=args.negative_until, init_image=args.init_image,
            denoise=args.denoise if args.denoise is not None else (0.8 if args.init_image is not None else 1.0),
            use_t5=not args.no_t5, text_mode=args.text_mode,
        )
        # Validate everything cheap before the expensive load.
        resolved = request.resolved(model_set.variant, model_set.mmdit_config)
        for warning in resolved.warnings:
            reporter.warning(warning)
        engine = Engine(device=args.device, dtype=args.dtype)
        started = time.perf_counter()
        engine.load(model_set, use_t5=request.use_t5, on_stage=lambda c: reporter.emit("load", component=c))
        reporter.emit("loaded", seconds=round(time.perf_counter() - started, 3), variant=model_set.variant)
        for image in engine.generate(resolved, on_step=reporter.step):
            path = output_path(args.out, image.seed, resolved.count)
            save_png(path, image.pixels, infotext(image, model_set.name))
            latent = _save_latent(path, image) if args.save_latent else None
            reporter.image(path, image, latent)
    except (InferenceError, ValueError) as exc:
        reporter.emit("error", message=str(exc))
        sys.stderr.write(f"\nsd35-studio: error: {exc}\n" if not args.json else f"sd35-studio: error: {exc}\n")
        return 1
    except OSError as exc:  # full disk, unwritable output folder, ...
        reporter.emit("error", message=str(exc))
        sys.stderr.write(f"sd35-studio: error: cannot write output: {exc}\n")
        return 1
    except MemoryError:
        sys.stderr.write("sd35-studio: error: out of memory; try --dtype bfloat16, --no-t5 or a smaller size\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\nsd35-studio: cancelled\n")
        return 130
    reporter.emit("done")
    return 0
