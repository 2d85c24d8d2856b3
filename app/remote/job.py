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
from app.metadata.params import ImageParams
from app.remote.capabilities import ServerInfo

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
    """Parts of a job the remote engine does not send yet (their files would have to go to the server first)
    are refused before anything is queued, rather than run without them or failed by the server's check."""
    missing = [label for label, used in (("the hires fix", req.hires_scale not in (None, 1.0)),) if used]
    if missing:
        raise InvalidRequestError(
            f"a ComfyUI server cannot run {' or '.join(missing)} from SD3.5 Studio yet; run this job on this machine"
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
    """The ComfyFiles of the server's own names; CLIP-G None only when partial encoders are allowed."""
    clip_g = info.encoder("clip_g")  # ServerInfo.require has refused a missing one unless allowed
    return ComfyFiles(
        checkpoint=checkpoint,
        clip_l=info.encoder("clip_l") or "clip_l.safetensors",
        clip_g=clip_g if clip_g or partial_text_encoders else "clip_g.safetensors",
        t5=info.encoder("t5") or "t5xxl_fp16.safetensors",
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
    sampler_node: str
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


def image_graph(params: ImageParams, files: ComfyFiles) -> tuple[dict, str]:
    """(API graph, KSampler node id)."""
    nodes = build_prompt(params, files).nodes
    sampler = next(k for k, v in nodes.items() if v["class_type"] == "KSampler")
    return nodes, sampler


def step_sigmas(req: GenerationRequest) -> list[float]:
    """The sigma at the start of each of ComfyUI's KSampler steps (its denoise rule: the last `steps` of an
    `int(steps / denoise)`-step schedule); NaN where our schedule code cannot say."""
    try:
        from app.inference.sampling.schedules import make_sigmas

        total = req.steps if req.denoise >= 1 else int(req.steps / req.denoise)
        sigmas = make_sigmas(req.scheduler, total, req.shift).tolist()
        return sigmas[-(req.steps + 1) : -1]
    except Exception as exc:  # schedules are informative here; a job never fails for them
        log.debug("no sigmas for step events: %s", exc)
        return [math.nan] * req.steps
