"""LoRA files as written by the trainers artists use (SD35_ADDONS.md §1.1), read from the header alone.

A LoRA file holds, per adapted layer, a down matrix A (r x in), an up matrix B (out x r) and optionally a scalar
`alpha`. This module splits each tensor name into the layer it adapts and its role (down / up / alpha), under one
of the key conventions (kohya `lora_unet_`/`lora_te1_`…, diffusers/PEFT `transformer.`/`text_encoder.`…,
OneTrainer `lora_transformer_`, LyCORIS `lycoris_`, and the suffix variants), and tells which architecture the
file was trained for: from its `modelspec.architecture` / `ss_base_model_version` metadata, else from its keys
and shapes. Nothing here reads tensor data, so discovery can run it over hundreds of files.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.inference.api.errors import UnsupportedModelError
from app.inference.checkpoints.weights import SafetensorsHeader, read_header

log = logging.getLogger(__name__)

Network = Literal["mmdit", "clip_l", "clip_g", "t5"]
Role = Literal["down", "up", "alpha"]

# Suffix variants: (suffix, role). None is a suffix of another, so the most common come first (kohya, PEFT).
_SUFFIXES: tuple[tuple[str, Role], ...] = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".alpha", "alpha"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_A.default.weight", "down"),
    (".lora_B.default.weight", "up"),
    (".lora_linear_layer.down.weight", "down"),
    (".lora_linear_layer.up.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    ("_lora.down.weight", "down"),
    ("_lora.up.weight", "up"),
)
# Adapter kinds we do not implement, by a key fragment each of them always writes.
_OTHER_KINDS_BY_FRAGMENT = {
    "hada_w1": "LoHa",
    "lokr_w1": "LoKr",
    "lokr_w2": "LoKr",
    "dora_scale": "DoRA",
    "lora_magnitude_vector": "DoRA",
    "lora_mid.": "LoCon/Tucker",
}


def _other_kind(text: str) -> str | None:
    """The adapter kind a key (or all keys joined) shows, if not plain LoRA (substring tests: fast)."""
    return next((kind for frag, kind in _OTHER_KINDS_BY_FRAGMENT.items() if frag in text), None)


# Key prefixes -> (network, names written with dots?). Longest first.
_PREFIXES: tuple[tuple[str, Network, bool], ...] = (
    ("base_model.model.transformer.", "mmdit", True),
    ("base_model.model.", "mmdit", True),
    ("model.diffusion_model.", "mmdit", True),
    ("diffusion_model.", "mmdit", True),
    ("transformer.", "mmdit", True),
    ("text_encoder_3.", "t5", True),
    ("text_encoder_2.", "clip_g", True),
    ("text_encoder.", "clip_l", True),
    ("lora_transformer_", "mmdit", False),
    ("lora_unet_", "mmdit", False),
    ("lycoris_", "mmdit", False),
    ("lora_te1_", "clip_l", False),
    ("lora_te2_", "clip_g", False),
    ("lora_te3_", "t5", False),
)

_PREFIX_RE = re.compile("|".join(re.escape(p) for p, _, _ in _PREFIXES))  # longest first, as listed
_PREFIX_INFO = {p: (network, dotted) for p, network, dotted in _PREFIXES}
SUPPORTED_EXTENSION = ".safetensors"


@dataclass
class LoraLayer:
    """One adapted layer as the file names it: `name` is the path inside `network` (dotted or underscored)."""

    network: Network
    name: str
    dotted: bool
    keys: dict[Role, str] = field(default_factory=dict)  # role -> tensor key in the file


@dataclass(frozen=True, slots=True)
class Architecture:
    """What a LoRA was trained for. `family`: sd3.5-large | sd3.5-medium | sd3-medium | sd3 (size unknown) |
    flux | sdxl | sd1 | unknown; `hidden`: the MMDiT width its matrices have (None: it adapts no MMDiT layer)."""

    family: str
    label: str
    hidden: int | None = None
    source: str = "keys"  # "metadata" or "keys"

    @property
    def is_sd3(self) -> bool:
        return self.family.startswith("sd3")


@dataclass
class LoraFile:
    """A LoRA file's layers and metadata, from its header."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]
    layers: list[LoraLayer]
    unknown: list[str]  # tensor keys that are no LoRA factor of a known convention
    architecture: Architecture
    kind: str = "LoRA"  # or "LoHa", "LoKr", "DoRA", ... (refused by `require_plain_lora`)
    header: SafetensorsHeader | None = None  # the checked header (tensors are read through it)

    @property
    def num_keys(self) -> int:
        return len(self.shapes)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.shapes[key]

    def require_plain_lora(self) -> None:
        if self.kind != "LoRA":
            raise UnsupportedModelError(
                f"{self.path.name}: this is a {self.kind} adapter (LyCORIS family); only plain LoRA files "
                "(down/up matrices) are supported"
            )

    def adapter_config(self) -> dict[str, object]:
        """diffusers' `lora_adapter_metadata` (PEFT config per prefix, e.g. `transformer.lora_alpha`)."""
        raw = self.metadata.get("lora_adapter_metadata")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            log.warning("%s: unreadable lora_adapter_metadata ignored", self.path.name)
            return {}
        return data if isinstance(data, dict) else {}


def split_key(key: str) -> tuple[str, Role] | None:
    """`…q_proj.lora_down.weight` -> (`…q_proj`, "down"); None for a key of no known LoRA suffix."""
    for suffix, role in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], role
    return None


def split_module(module: str) -> tuple[Network, str, bool] | None:
    """A module key -> (network, path inside it, dotted?) by its convention prefix; a bare dotted path is taken
    as an MMDiT path (diffusers files saved without a prefix)."""
    m = _PREFIX_RE.match(module)
    if m:
        network, dotted = _PREFIX_INFO[m.group(0)]
        return network, module[m.end() :], dotted
    if "." in module:
        return "mmdit", module, True
    return None


def _quick_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """(shapes, metadata) from the JSON header alone, for scans; any oddity falls back to `read_header`,
    which checks everything and says what is wrong."""
    try:
        if path.suffix.lower() != SUPPORTED_EXTENSION:
            raise ValueError
        size = path.stat().st_size
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 0 < n <= size - 8:
                raise ValueError
            raw = json.loads(f.read(n))
        meta = raw.pop("__metadata__", None) or {}
        shapes = {k: tuple(v["shape"]) for k, v in raw.items()}
        end = max((v["data_offsets"][1] for v in raw.values()), default=0)
        if 8 + n + end > size or not isinstance(meta, dict):
            raise ValueError
        return shapes, {str(k): str(v) for k, v in meta.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, struct.error, RecursionError):
        header = read_header(path)
        return {k: v.shape for k, v in header.tensors.items()}, header.metadata


def read_lora_file(path: str | Path) -> LoraFile:
    """Parse a LoRA file's header (no tensor data): its layers, other keys and architecture. A pickle file
    (`.ckpt`, `.pt`, ...) is refused by `read_header` without being opened as a pickle."""
    header = read_header(path)
    path = Path(header.path)
    shapes, metadata = {k: v.shape for k, v in header.tensors.items()}, header.metadata
    kind = _other_kind("\n".join(shapes)) or "LoRA"
    layers: dict[str, LoraLayer] = {}
    where_of: dict[str, tuple[Network, str, bool] | None] = {}
    unknown: list[str] = []
    for key in shapes:
        parts = split_key(key)
        if parts is None or (kind != "LoRA" and _other_kind(key)):
            unknown.append(key)
            continue
        module, role = parts
        if module not in where_of:  # once per layer, not per tensor
            where_of[module] = split_module(module)
        where = where_of[module]
        if where is None:
            unknown.append(key)
            continue
        layer = layers.get(module)
        if layer is None:
            network, name, dotted = where
            name = name.replace(".processor.", ".")  # old diffusers attention-processor LoRAs
            layer = layers[module] = LoraLayer(network, name, dotted)
        layer.keys[role] = key
    arch = identify_architecture(shapes, metadata)
    return LoraFile(path, shapes, metadata, list(layers.values()), unknown, arch, kind, header)


@dataclass(frozen=True, slots=True)
class LoraSummary:
    """What a listing shows of a LoRA file, from its JSON header with string tests only (no per-layer work)."""

    metadata: dict[str, str]
    architecture: Architecture
    kind: str
    networks: tuple[Network, ...]
    rank: int | None
    is_lora: bool  # False: a safetensors file of another kind (a model checkpoint, an embedding, ...)


def summarize_lora_file(path: str | Path) -> LoraSummary:
    """The summary of a LoRA file for discovery; raises ModelFileError like `read_header` for a bad file."""
    shapes, metadata = _quick_header(Path(path))
    text = " " + " ".join(shapes) + " "  # " name " finds a whole key, " prefix" a key's start
    kind = _other_kind(text) or "LoRA"
    is_lora = any(suffix + " " in text for suffix, role in _SUFFIXES if role == "down")
    networks = {network for prefix, network, _ in _PREFIXES if " " + prefix in text}
    rank = next(
        (shape[0] for key, shape in shapes.items() if shape and (p := split_key(key)) and p[1] == "down"),
        None,
    )
    arch = identify_architecture(shapes, metadata)
    return LoraSummary(metadata, arch, kind, tuple(sorted(networks or {"mmdit"})), rank, is_lora)


# ----------------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------------

_LABELS = {
    "sd3.5-large": "Stable Diffusion 3.5 Large",
    "sd3.5-medium": "Stable Diffusion 3.5 Medium",
    "sd3-medium": "Stable Diffusion 3 Medium (2B)",
    "sd3": "Stable Diffusion 3 / 3.5",
    "flux": "FLUX.1",
    "sdxl": "SDXL",
    "sd1": "Stable Diffusion 1.x/2.x",
    "unknown": "an unknown model",
}
_HIDDEN = {"sd3.5-large": 2432, "sd3.5-medium": 1536, "sd3-medium": 1536}
_FLUX_KEYS = ("double_blocks", "single_blocks", "single_transformer_blocks")
_UNET_KEYS = ("input_blocks", "output_blocks", "middle_block", "down_blocks", "up_blocks", "mid_block")
_SD3_KEYS = ("joint_blocks", "transformer_blocks", "context_block", "x_block")
_QKV_DOWN = re.compile(
    r"joint_blocks[._]\d+[._](x|context)_block[._]attn2?[._]qkv|transformer_blocks[._]\d+[._]attn2?[._](to|add)_q"
)


def _family_from_metadata(meta: dict[str, str]) -> str | None:
    arch = meta.get("modelspec.architecture", "").lower()
    base = meta.get("ss_base_model_version", "").lower()
    for text in (arch, base):
        if not text:
            continue
        if "flux" in text:
            return "flux"
        if "xl" in text:
            return "sdxl"
        if "3.5" in text or "3-5" in text or "v3_5" in text or "sd35" in text:
            if "large" in text:
                return "sd3.5-large"
            if "medium" in text:
                return "sd3.5-medium"
            return "sd3"
        if "v3" in text or "sd3" in text or "diffusion-3" in text:
            return "sd3-medium" if "medium" in text else "sd3"
        if re.search(r"v1|v2|sd_?1|sd_?2|stable-diffusion-v", text):
            return "sd1"
    return None


def identify_architecture(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> Architecture:
    """The architecture a LoRA was made for: shapes first for the MMDiT width (the one fact that decides whether
    it fits), metadata for the name, keys when the metadata says nothing."""
    keys = list(shapes)
    hidden = _mmdit_hidden(shapes)
    family = _family_from_metadata(metadata)
    source = "metadata"
    if family is None:
        source = "keys"
        text = " " + " ".join(keys)  # " prefix" finds a key that starts with it
        if any(k in text for k in _FLUX_KEYS):
            family = "flux"
        elif any(k in text for k in (*_UNET_KEYS, " lora_te_", " unet.")):
            two_encoders = " lora_te2_" in text or " text_encoder_2." in text
            family = "sdxl" if two_encoders else "sd1"
        elif any(k in text for k in (*_SD3_KEYS, " lora_te1_", " lora_te3_", " text_encoder")):
            family = "sd3"
        else:
            family = "unknown"
    if family in ("sd3", "sd3-medium", "sd3.5-medium", "sd3.5-large") and hidden is not None:
        has_attn2 = "attn2" in " ".join(keys)
        if family == "sd3":
            family = "sd3.5-large" if hidden == _HIDDEN["sd3.5-large"] else family
            if hidden == _HIDDEN["sd3.5-medium"] and has_attn2:
                family = "sd3.5-medium"
    return Architecture(family, _LABELS[family], hidden, source)


def _mmdit_hidden(shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The MMDiT width a LoRA's attention qkv / q down matrix reads (its `in` size), if it adapts one."""
    for key, shape in shapes.items():
        parts = split_key(key)
        if parts and parts[1] == "down" and len(shape) == 2 and _QKV_DOWN.search(parts[0]):
            return shape[1]
    for key, shape in shapes.items():  # an attention output projection reads the width too
        parts = split_key(key)
        if parts and parts[1] == "down" and shape and re.search(r"attn2?[._](proj|to_out)", parts[0]):
            return shape[-1]
    return None


def refusal(arch: Architecture, model_hidden: int, model_label: str, path: Path) -> str | None:
    """The sentence refusing a LoRA for another architecture, or None when it fits this model."""
    name = path.name
    if arch.family in ("flux", "sdxl", "sd1"):
        return (
            f"{name} is a LoRA for {arch.label}, not for Stable Diffusion 3.5; it cannot be used with "
            f"{model_label}"
        )
    hidden = arch.hidden or _HIDDEN.get(arch.family)  # shapes first; the metadata's word when none tells
    if hidden is not None and hidden != model_hidden:
        made_for = arch.label if arch.family != "sd3" else _by_width(hidden)
        return (
            f"{name} is a LoRA for {made_for} (layers {hidden} wide); it cannot be used with "
            f"{model_label} (layers {model_hidden} wide)"
        )
    return None


def _by_width(hidden: int) -> str:
    for family, width in _HIDDEN.items():
        if width == hidden:
            return "SD3 Medium or SD3.5 Medium" if width == 1536 else _LABELS[family]
    return f"an SD3-family model {hidden // 64 if hidden % 64 == 0 else '?'} blocks deep"
