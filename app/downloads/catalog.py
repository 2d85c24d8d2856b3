"""What to fetch for each SD3.5 variant: repositories, files, where they go, and their published sizes.

The layout is the one `app.inference.checkpoints.model_set.locate_model_set` reads (SD35_MODEL.md §5.1): the single-file
checkpoint at the top, `text_encoders/`, `tokenizer/`, `tokenizer_2/`, `tokenizer_3/`; the TAESD3 preview decoder
(SD35_SAMPLING.md §8.2) goes to `vae_approx/taesd3_decoder.safetensors`, where `find_taesd3_decoder` looks.

The official SD3.5 Large ControlNets (SD35_ADDONS.md §2) are optional extras of a Large or Large Turbo set: they go to
the set's `controlnets/` folder, where `app.inference.checkpoints.controlnet_discovery` looks.

Sizes here are the Hub's displayed sizes (decimal, three significant figures) and are shown with "≈"; the exact
sizes come from the Hub's file metadata once the user starts a download.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

HUB_WEBSITE = "https://huggingface.co"  # licences are accepted here, whatever HF_ENDPOINT says
TOKEN_SETTINGS_URL = f"{HUB_WEBSITE}/settings/tokens"
TAESD3_REPO = "madebyollin/taesd3"
CONTROLNET_REPO = "stabilityai/stable-diffusion-3.5-controlnets"  # gated, the same licence as the models
CONTROLNET_FOLDER = "controlnets"  # inside the model set's folder
CONTROLNET_TYPES = ("blur", "canny", "depth")
CONTROLNET_VARIANTS = ("large", "large-turbo")  # the ControlNets are trained for the Large (8B) MMDiT

T5_CHOICES = {
    "fp16": "t5xxl_fp16.safetensors",  # 9.79 GB, the reference precision
    "fp8": "t5xxl_fp8_e4m3fn.safetensors",  # 4.89 GB, up-cast on load; about half the download and RAM
}

_GB = 1_000_000_000
_MB = 1_000_000


@dataclass(frozen=True, slots=True)
class VariantSource:
    variant: str  # "large" | "large-turbo" | "medium"
    label: str
    repo_id: str
    checkpoint: str
    checkpoint_size: int  # published, approximate

    @property
    def page_url(self) -> str:
        return f"{HUB_WEBSITE}/{self.repo_id}"

    @property
    def folder_name(self) -> str:
        return self.repo_id.split("/", 1)[1]


VARIANT_SOURCES: dict[str, VariantSource] = {
    "large": VariantSource(
        "large",
        "SD3.5 Large",
        "stabilityai/stable-diffusion-3.5-large",
        "sd3.5_large.safetensors",
        16_500 * _MB,
    ),
    "large-turbo": VariantSource(
        "large-turbo",
        "SD3.5 Large Turbo",
        "stabilityai/stable-diffusion-3.5-large-turbo",
        "sd3.5_large_turbo.safetensors",
        16_500 * _MB,
    ),
    # 2,469,663,936 MMDiT-X + ~83.8 M VAE parameters, 2 bytes each
    "medium": VariantSource(
        "medium",
        "SD3.5 Medium",
        "stabilityai/stable-diffusion-3.5-medium",
        "sd3.5_medium.safetensors",
        5_110 * _MB,
    ),
}


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a model set: where it lives on the Hub and where it goes in the destination folder."""

    repo_id: str
    filename: str  # path inside the repository
    local_path: str  # path inside the destination folder, "/"-separated
    published_size: int  # bytes, approximate
    role: str  # shown to the user: "model", "text encoder", "tokenizer", "preview decoder", "controlnet"
    gated: bool = True
    optional: bool = False  # a 404 skips it instead of failing (files that some repository revisions lack)


_TEXT_ENCODER_SIZES = {
    "clip_l.safetensors": 246 * _MB,
    "clip_g.safetensors": 1_390 * _MB,
    "t5xxl_fp16.safetensors": 9_790 * _MB,
    "t5xxl_fp8_e4m3fn.safetensors": 4_890 * _MB,
}
# Tokenizer files: CLIP's BPE (same for both CLIPs) and T5's SentencePiece model; a few MB together.
_TOKENIZER_FILES: tuple[tuple[str, int, bool], ...] = (
    ("tokenizer/vocab.json", 1_060_000, False),
    ("tokenizer/merges.txt", 525_000, False),
    ("tokenizer/special_tokens_map.json", 600, False),
    ("tokenizer/tokenizer_config.json", 700, False),
    ("tokenizer_2/vocab.json", 1_060_000, False),
    ("tokenizer_2/merges.txt", 525_000, False),
    ("tokenizer_2/special_tokens_map.json", 600, False),
    ("tokenizer_2/tokenizer_config.json", 700, False),
    ("tokenizer_3/spiece.model", 792_000, False),
    ("tokenizer_3/special_tokens_map.json", 2_500, False),
    ("tokenizer_3/tokenizer_config.json", 20_600, False),
    (
        "tokenizer_3/tokenizer.json",
        2_420_000,
        True,
    ),  # fast-tokenizer cache; built from spiece.model if absent
)
TAESD3_FILE = RemoteFile(
    repo_id=TAESD3_REPO,
    filename="diffusion_pytorch_model.safetensors",  # diffusers AutoencoderTiny layout, encoder + decoder
    local_path="vae_approx/taesd3_decoder.safetensors",
    published_size=9_850_000,  # ~2.46 M float32 parameters
    role="preview decoder",
    gated=False,
)


def controlnet_file(control_type: str) -> RemoteFile:
    """One official SD3.5 Large ControlNet: 8.65 GB each (the Hub's displayed size; bf16)."""
    if control_type not in CONTROLNET_TYPES:
        raise ValueError(f"unknown ControlNet {control_type!r}; choose from {', '.join(CONTROLNET_TYPES)}")
    name = f"sd3.5_large_controlnet_{control_type}.safetensors"
    return RemoteFile(CONTROLNET_REPO, name, f"{CONTROLNET_FOLDER}/{name}", 8_650 * _MB, "controlnet")


def variant_source(variant: str) -> VariantSource:
    try:
        return VARIANT_SOURCES[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANT_SOURCES)}") from None


def model_set_files(
    variant: str, t5: str = "fp16", controlnets: tuple[str, ...] = (), *, model_set: bool = True
) -> tuple[RemoteFile, ...]:
    """The files of one model set, in download order: the checkpoint comes last, then the chosen ControlNets.

    The checkpoint is the file that makes a folder a model set (`locate_model_set` starts from it), so until it
    is complete and in place no half-downloaded folder can be mistaken for a usable model. The ControlNets come
    after it: the model is usable while they (8.65 GB each) are still arriving. Without `model_set`, only the
    ControlNets (for a Large set the user already has elsewhere: the Hugging Face cache, ComfyUI).
    """
    source = variant_source(variant)
    if t5 not in T5_CHOICES:
        raise ValueError(f"unknown T5 precision {t5!r}; choose from {', '.join(T5_CHOICES)}")
    if controlnets and variant not in CONTROLNET_VARIANTS:
        raise ValueError(
            f"the SD3.5 ControlNets work with SD3.5 Large and Large Turbo only, not {source.label}"
        )
    if not model_set:
        if not controlnets:
            raise ValueError("nothing to download: choose the model set or at least one ControlNet")
        return tuple(controlnet_file(kind) for kind in dict.fromkeys(controlnets))
    repo = source.repo_id
    files = [
        RemoteFile(repo, name, name, size, "tokenizer", optional=optional)
        for name, size, optional in _TOKENIZER_FILES
    ]
    for name in ("clip_l.safetensors", "clip_g.safetensors", T5_CHOICES[t5]):
        path = f"text_encoders/{name}"
        files.append(RemoteFile(repo, path, path, _TEXT_ENCODER_SIZES[name], "text encoder"))
    files.append(TAESD3_FILE)
    files.append(RemoteFile(repo, source.checkpoint, source.checkpoint, source.checkpoint_size, "model"))
    files += [controlnet_file(kind) for kind in dict.fromkeys(controlnets)]
    return tuple(files)
