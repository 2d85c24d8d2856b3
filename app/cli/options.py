"""The options of `sd35-studio generate`, from one table.

`REQUEST_OPTIONS` has one row per `GenerationRequest` field: its flag, the kind that reads and checks its text
(app/cli/values.py), its help. The argparse options and the request are both derived from it, so a new generation
option is added to the request, the form and this table, and nowhere else in the CLI. `JOB_OPTIONS` are the
rest: where the model and the output are, and how the job runs.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.cli.control_options import add_control_arguments, controlnets_from_args
from app.cli.values import FilePath, ImageFile, Integer, IntegerList, LoraArg, Real, Sides, Text
from app.inference.api.errors import InvalidRequestError
from app.inference.api.request import (
    MAX_HIRES_SCALE,
    MAX_MASK_PX,
    MAX_OUTPAINT_PX,
    MAX_SEED,
    SAMPLER_NAMES,
    SCHEDULER_NAMES,
    TEXT_MODES,
    GenerationRequest,
)
from app.inference.api.variants import PRESETS
from app.inference.memory.plan import PLAN_NAMES

log = logging.getLogger(__name__)

IMG2IMG_DENOISE = 0.8  # --denoise when --init-image is given without it
OUTPAINT_DENOISE = 1.0  # ... and when --outpaint is given without a mask: the new area starts from noise


@dataclass(frozen=True, slots=True)
class Option:
    """One command-line option. `name` is the argparse dest (for a request row: the request field); `kind` reads
    one value, or is None for a switch, which stores `not switch_default` when given."""

    name: str
    kind: Callable[[str], Any] | None
    help: str
    flag: str = ""  # default: --name with dashes
    choices: tuple[str, ...] | None = None
    default: Any = None
    required: bool = False
    metavar: str | None = None
    repeat: bool = False  # may be given several times; the values are collected in order

    @property
    def flags(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        if self.kind is None:  # a switch
            action = "store_false" if self.default else "store_true"
            parser.add_argument(
                self.flags, dest=self.name, action=action, default=bool(self.default), help=self.help
            )
            return
        if self.repeat:
            parser.add_argument(
                self.flags, dest=self.name, type=self.kind, action="append", default=None, metavar=self.metavar,
                help=self.help,
            )  # fmt: skip
            return
        parser.add_argument(
            self.flags,
            dest=self.name,
            type=self.kind,
            choices=self.choices,
            default=self.default,
            required=self.required,
            metavar=self.metavar,
            help=self.help,
        )


REQUEST_OPTIONS: tuple[Option, ...] = (
    Option("prompt", Text(), "what the image shows", required=True),
    Option("negative", Text(), "what the image should not show", default=""),
    Option("seed", Integer(0, MAX_SEED), "seed of the first image", default=0),
    Option("count", Integer(1, 1000), "images with seeds S, S+1, ...", default=1),
    Option("steps", Integer(1), "sampling steps (default: the variant's)"),
    Option("cfg", Real(0), "classifier-free guidance scale (default: the variant's)"),
    Option("sampler", Text(), "sampler (default: the variant's)", choices=SAMPLER_NAMES),
    Option("scheduler", Text(), "sigma schedule (default: the variant's)", choices=SCHEDULER_NAMES),
    Option("width", Integer(1), "image width in px, a multiple of 16 (default: the variant's)"),
    Option("height", Integer(1), "image height in px, a multiple of 16 (default: the variant's)"),
    Option("shift", Real(0, exclusive=True), "timestep shift of the schedule (default: the variant's)"),
    Option("slg_layers", IntegerList(), "joint blocks skipped by skip-layer guidance, e.g. 7,8,9"),
    Option("slg_scale", Real(0), "skip-layer guidance scale; 0 switches it off"),
    Option("slg_start", Real(0), "skip-layer guidance starts at this fraction of the steps"),
    Option("slg_end", Real(0), "skip-layer guidance ends at this fraction of the steps"),
    Option("negative_until", Real(0), "use the negative prompt only for this first fraction"),
    Option("init_image", ImageFile(), "start from this image (img2img)", metavar="IMAGE"),
    Option("denoise", Real(0, exclusive=True), f"img2img strength in (0, 1] (default {IMG2IMG_DENOISE})"),
    Option("use_t5", None, "run without the T5-XXL encoder (less RAM, less fidelity)", flag="--no-t5", default=True),
    Option("text_mode", Text(), "full: long prompts and weights; reference: Stability's script", choices=TEXT_MODES,
           default="full"),
    Option("loras", LoraArg(), "apply a LoRA at a strength (default 1) and text-encoder strength (default: the "
           "same); repeat for several", flag="--lora", metavar="FILE[:STRENGTH[:TE_STRENGTH]]", repeat=True),
    Option("mask_image", ImageFile(), "regenerate only where this mask is white (grey PNG) or transparent (PNG with "
           "alpha); the init image's size", flag="--mask", metavar="MASK"),
    Option("mask_grow", Integer(0, MAX_MASK_PX), "px the mask grows before sampling (default 6)", metavar="PX"),
    Option("mask_blur", Integer(0, MAX_MASK_PX), "px of feather where the result meets the original (default 8)",
           metavar="PX"),
    Option("outpaint", Sides(MAX_OUTPAINT_PX), "extend the init image by these px and paint the new area",
           metavar="L,T,R,B"),
    Option("hires_scale", Real(1), f"hires fix: upscale by S (1 to {MAX_HIRES_SCALE:g}) and refine (default 1 = off)",
           metavar="S"),
    Option("hires_denoise", Real(0, exclusive=True), "strength of the hires pass in (0, 1] (default 0.4)", metavar="D"),
    Option("hires_steps", Integer(1), "steps of the hires pass (default: the same as --steps)", metavar="N"),
    Option("controlnets", FilePath(must_exist=True), "ControlNet file, repeatable (with --control-image, ...)",
           flag="--controlnet", metavar="FILE", repeat=True),
)  # fmt: skip

JOB_OPTIONS: tuple[Option, ...] = (
    Option("model", FilePath(), "snapshot folder or sd3.5_*.safetensors file", required=True),
    Option("variant", Text(), "the model's variant when its files do not tell", choices=tuple(PRESETS)),
    Option("device", Text(), "where to run", choices=("auto", "cpu", "cuda", "mps"), default="auto"),
    Option("dtype", Text(), "precision", choices=("auto", "float32", "bfloat16", "float16"), default="auto"),
    Option("out", FilePath(), "output PNG (FILE-<seed>.png for --count > 1)", required=True),
    Option("save_latent", None, "also write <stem>.latent.safetensors"),
    Option("json", None, "print one JSON event per line"),
    Option("clip_l", FilePath(), "CLIP-L text encoder file (replaces the model set's)"),
    Option("clip_g", FilePath(), "CLIP-G text encoder file"),
    Option("t5", FilePath(), "T5-XXL text encoder file (fp16, bf16, fp8 or scaled fp8)"),
    Option("vae", FilePath(), "VAE file (single-file or diffusers layout)"),
    Option("lora_dir", FilePath(), "a folder of LoRA files that <lora:name:0.8> tags in the prompt are looked up "
           "in (repeatable; also searched: ComfyUI's models/loras, the --lora files' folders)", metavar="FOLDER",
           repeat=True),
    Option("memory_plan", Text(), "where the networks live and in which precision (default: the first that fits)",
           choices=("auto", *PLAN_NAMES), default="auto"),
    Option("engine", Text(), "run on this ComfyUI server instead, or spread over several (URL,URL,...); --model is "
           "then a checkpoint name the server lists", metavar="URL"),
    Option("engine_partial_encoders", None, "with --engine: accept a server without CLIP-G (the image's graph "
           "says what ran)"),
    Option("engine_token_file", FilePath(), "with --engine: send the auth token in FILE (mode 0600; default: the "
           "token stored for the server in Settings ▸ Engines, else $SD35_ENGINE_TOKEN)", metavar="FILE"),
)  # fmt: skip


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    for option in (*JOB_OPTIONS[:1], *REQUEST_OPTIONS, *JOB_OPTIONS[1:]):
        option.add_to(parser)
    add_control_arguments(parser)


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    """The request the options describe. The rules that tie two options together live here; the ranges that
    depend on the model (sizes, layers, steps) are checked by `GenerationRequest.resolved`."""
    values = {option.name: getattr(args, option.name) for option in REQUEST_OPTIONS}
    if values["denoise"] is not None and values["init_image"] is None:
        raise InvalidRequestError("--denoise needs --init-image")
    values["loras"] = tuple(values["loras"] or ())
    for needs_init in ("mask_image", "outpaint"):
        if values[needs_init] is not None and values["init_image"] is None:
            raise InvalidRequestError(f"--{needs_init.split('_')[0]} needs --init-image")
    for needs_hires in ("hires_denoise", "hires_steps"):
        if values[needs_hires] is not None and values["hires_scale"] is None:
            raise InvalidRequestError(f"--{needs_hires.replace('_', '-')} needs --hires-scale")
    if values["denoise"] is None:
        outpainting = values["outpaint"] is not None and values["mask_image"] is None
        values["denoise"] = (
            (OUTPAINT_DENOISE if outpainting else IMG2IMG_DENOISE) if values["init_image"] else 1.0
        )
    for name in _DEFAULT_WHEN_NOT_GIVEN:
        if values[name] is None:
            del values[name]  # the request's own default
    values["controlnets"] = controlnets_from_args(values["controlnets"], args)
    return GenerationRequest(**values)


# Request fields whose default is not None: an option not given leaves the request's default.
_DEFAULT_WHEN_NOT_GIVEN = ("mask_grow", "mask_blur", "outpaint", "hires_scale", "hires_denoise")
