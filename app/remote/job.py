"""One remote job planned: the server's file names, one graph per seed (from the builder that writes the PNG's
`prompt` chunk), the init image as the server will see it, and the schedule's sigmas for step events."""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from app.inference.api.errors import InvalidRequestError
from app.inference.api.request import GenerationRequest
from app.metadata.comfy_graph import ComfyFiles, build_prompt
from app.metadata.comfy_sampler import our_steps
from app.metadata.params import ImageParams
from app.remote.capabilities import ServerInfo
from app.remote.errors import ServerMissing

log = logging.getLogger(__name__)

UPLOAD_SUBFOLDER = "sd35-studio"


def checkpoint_name(model: object) -> str:
    """The server's checkpoint name as its loader lists it (`sub/name.safetensors`), from a str or Path.

    A local path is refused, never sent: a server names its files relative to its own models/checkpoints."""
    text = str(model).replace("\\", "/")
    if (
        text.startswith(("/", "~"))
        or re.match(r"^[A-Za-z]:", text)
        or ".." in text.split("/")
        or not text.strip()
    ):
        raise InvalidRequestError(
            f"{text!r} is a path on this machine; a ComfyUI server takes a checkpoint name it lists "
            "(sd35-studio engines test URL shows them)"
        )
    return text


def refuse_what_is_not_sent(req: GenerationRequest) -> None:
    """Parts of a job a ComfyUI server cannot run as we do are refused before anything is sent, rather than
    run differently. Masks, outpainting, the hires fix, LoRAs and ControlNets are sent (inputs.py,
    server_files.py); what remains is the reference text mode: ComfyUI encodes prompts its own way, which is
    our "full" mode (every CLIP window, weights applied, T5 given the whole text)."""
    if getattr(req, "text_mode", "full") == "reference":
        raise InvalidRequestError(
            "a ComfyUI server encodes prompts its own way (SD3.5 Studio's full text mode), not Stability's "
            "reference way; use the full text mode or run this job on this machine"
        )


def model_stem(checkpoint: str) -> str:
    name = checkpoint.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def variant_of(checkpoint: str, variant: str | None) -> str:
    """The variant given, else from the file name (turbo, medium, large); "large" when the name does not say."""
    if variant:
        return variant
    name = checkpoint.rsplit("/", 1)[-1]
    if re.search("turbo", name, re.IGNORECASE):
        return "large-turbo"
    if re.search("medium", name, re.IGNORECASE):
        return "medium"
    if not re.search("large", name, re.IGNORECASE):
        log.info("%s: the name does not tell the variant; using SD3.5 Large's defaults", checkpoint)
    return "large"


def server_files(info: ServerInfo, checkpoint: str, partial_text_encoders: bool) -> ComfyFiles:
    """The ComfyFiles of the server's own names; CLIP-G None only when partial encoders are allowed. A partial
    denoise samples our img2img schedule where the server has the custom-sampling nodes (comfy_sampler.py)."""
    clip_g = info.encoder("clip_g")  # ServerInfo.require has refused a missing one unless allowed
    ours = all(n in info.nodes for n in SCHEDULE_NODES)
    if not ours:
        log.info("%s lacks %s: a partial denoise follows ComfyUI's KSampler schedule there", info.url,
                 ", ".join(n for n in SCHEDULE_NODES if n not in info.nodes))  # fmt: skip
    return ComfyFiles(
        checkpoint=checkpoint,
        clip_l=info.encoder("clip_l") or "clip_l.safetensors",
        clip_g=clip_g if clip_g or partial_text_encoders else "clip_g.safetensors",
        t5=info.encoder("t5") or "t5xxl_fp16.safetensors",
        our_schedule=ours,
    )


def init_image_upload(path: Path, width: int, height: int) -> tuple[str, bytes]:
    """(name, PNG bytes) of the init image as our local engine reads it: resized with LANCZOS in its own mode,
    then RGB, so ComfyUI's LoadImage gets the same pixels. The name is a content hash: no local name is sent."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            image = im.resize((width, height), Image.Resampling.LANCZOS).convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidRequestError(f"{path}: cannot read the init image ({exc})") from None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    return f"init-{hashlib.sha256(data).hexdigest()[:20]}.png", data


@dataclass
class RemoteImage:
    """One seed of the job on the server: its prompt id, graph and progress."""

    index: int
    seed: int
    prompt_id: str
    graph: dict
    samplers: dict  # {sampler node id: steps of the image before its own}
    started: float | None = None
    done: bool = False
    last_step: int = 0
    preview: object = None  # the latest undelivered messages.Preview


def image_params(
    req: GenerationRequest, seed: int, variant: str, stem: str, sent: object = None
) -> ImageParams:
    """Exactly what `finished_image_params` makes of our ImageFinished event, so the graph sent and the PNG's
    `prompt` chunk are the same builder's output on the same parameters. `sent`: the job's SentInputs."""
    from app import __version__

    return ImageParams.from_request(req, seed, variant=variant, model_name=stem, model_hash=None, fp8=False,
                                    app_version=__version__, source_sha256=getattr(sent, "source_sha256", None),
                                    mask_alpha=bool(getattr(sent, "mask_alpha", False)),
                                    mask_soft=bool(getattr(sent, "mask_soft", False)))  # fmt: skip


SAMPLER_TYPES = ("KSampler", "SamplerCustom")
SCHEDULE_NODES = ("BasicScheduler", "SplitSigmas", "KSamplerSelect", "SamplerCustom")


def image_graph(params: ImageParams, files: ComfyFiles) -> tuple[dict, dict[str, int]]:
    """(API graph, {sampler node id: how many of the image's steps come before its own}): the first pass's
    sampler, then the hires pass's, whose steps continue the count as the local engine's do."""
    nodes = build_prompt(params, files).nodes
    samplers = sorted((k for k, v in nodes.items() if v["class_type"] in SAMPLER_TYPES), key=int)
    first = len(pass_sigmas(params.request, files.our_schedule)[0])
    return nodes, {node: (first if i else 0) for i, node in enumerate(samplers)}


def require_nodes(graph: dict, info: ServerInfo) -> None:
    """ServerMissing naming the node types of the job's graph the server lacks (a mask, a LoRA, a ControlNet or
    the hires fix each need their own), before anything is queued; nothing when the server listed no nodes."""
    missing = sorted({n["class_type"] for n in graph.values()} - info.nodes) if info.nodes else []
    if missing:
        raise ServerMissing(
            f"{info.url} lacks the {', '.join(missing)} node{'s' if len(missing) > 1 else ''} this job needs; "
            "update ComfyUI there or run this job on this machine"
        )


def _schedule(scheduler: str, steps: int, shift: float, denoise: float, ours: bool) -> list[float]:
    """The sigmas at the start of each step of one pass: our img2img rule, or ComfyUI KSampler's (the last
    `steps` of an `int(steps / denoise)`-step schedule)."""
    from app.inference.sampling.schedules import img2img_sigmas, make_sigmas

    if ours or denoise >= 1:
        return img2img_sigmas(make_sigmas(scheduler, steps, shift), denoise).tolist()[:-1]
    return make_sigmas(scheduler, int(steps / denoise), shift).tolist()[-(steps + 1) : -1]


def pass_sigmas(req: GenerationRequest, ours: bool) -> tuple[list[float], list[float]]:
    """(first pass, hires pass) step sigmas as the server will run them; NaN where our schedule code cannot say
    (the counts stay right: they come from the same rules)."""
    passes = [(req.steps, req.denoise)] + (
        [(req.hires_steps or req.steps, req.hires_denoise)] if req.hires else []
    )
    out: list[list[float]] = []
    for steps, denoise in passes:
        try:
            out.append(_schedule(req.scheduler, steps, req.shift, denoise, ours))
        except Exception as exc:  # schedules are informative here; a job never fails for them
            log.debug("no sigmas for step events: %s", exc)
            out.append([math.nan] * (our_steps(steps, denoise) if ours else steps))
    return out[0], (out[1] if len(out) > 1 else [])


def step_sigmas(req: GenerationRequest, ours: bool = False) -> list[float]:
    """The sigma at the start of each step of the image, both passes."""
    first, hires = pass_sigmas(req, ours)
    return first + hires
