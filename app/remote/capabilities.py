"""What a ComfyUI server can run, read on connect from `/system_stats` and `/object_info`.

Every value is checked for its type before use (a field of the wrong type counts as absent); lists are capped.
`problems(request)` names, in one sentence each, what keeps the server from running a job as asked."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from app.remote.errors import ProtocolError, ServerMissing
from app.remote.http import ComfyHttp
from app.remote.limits import MAX_OBJECT_INFO_BYTES

log = logging.getLogger(__name__)

TESTED_VERSION = "0.8.0"  # the ComfyUI the tests run against (../shared/comfyui-server)
_MAX_NAMES = 20_000
SD35_NAME = re.compile(r"sd3\.?5|stable[-_ ]?diffusion[-_ ]?3\.5", re.IGNORECASE)
SD3_NAME = re.compile(r"sd3|stable[-_ ]?diffusion[-_ ]?3", re.IGNORECASE)
# The nodes of our graphs (app.metadata.comfy_graph): a server lacking one cannot run the feature.
CORE_NODES = ("CheckpointLoaderSimple", "ModelSamplingSD3", "CLIPTextEncode", "EmptySD3LatentImage",
              "KSampler", "VAEDecode", "SaveImage")  # fmt: skip
FEATURE_NODES = {
    "skip-layer guidance": ("SkipLayerGuidanceSD3",),
    "the negative-prompt window": (
        "ConditioningZeroOut",
        "ConditioningSetTimestepRange",
        "ConditioningCombine",
    ),
    "image to image": ("LoadImage", "VAEEncode"),
}
# (role, name pattern) in preference order: the shipped names first.
_ENCODERS = {
    "clip_l": (r"^clip_l\.safetensors$", r"clip[_-]?l\b", r"clip[_-]?l"),
    "clip_g": (r"^clip_g\.safetensors$", r"clip[_-]?g\b", r"clip[_-]?g"),
    "t5": (r"^t5xxl_fp16\.safetensors$", r"t5xxl.*fp16", r"t5xxl", r"t5"),
}


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    type: str
    vram_total: int  # bytes
    vram_free: int


@dataclass(frozen=True, slots=True)
class ServerInfo:
    url: str
    comfyui_version: str
    devices: tuple[Device, ...]
    preview_method: str  # the server's default ("none" when started without --preview-method)
    nodes: frozenset[str]
    checkpoints: tuple[str, ...]
    text_encoders: tuple[str, ...]
    loras: tuple[str, ...] = ()
    controlnets: tuple[str, ...] = ()
    samplers: tuple[str, ...] = ()
    schedulers: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def previews_by_default(self) -> bool:
        return self.preview_method not in ("none", "")

    @property
    def sd35_checkpoints(self) -> tuple[str, ...]:
        return tuple(n for n in self.checkpoints if SD35_NAME.search(n))

    def encoder(self, role: str) -> str | None:
        """The server's file for a text encoder role ("clip_l", "clip_g", "t5"), by name, or None."""
        for pattern in _ENCODERS[role]:
            for name in self.text_encoders:
                if re.search(pattern, name.rsplit("/", 1)[-1], re.IGNORECASE):
                    return name
        return None

    def missing_nodes(self) -> list[str]:
        return [n for n in CORE_NODES if n not in self.nodes]

    def problems(self, request, partial_text_encoders: bool = False) -> list[str]:
        """Why this server cannot run `request` (resolved) as asked; [] when it can."""
        out = [f"the server has no {n} node" for n in self.missing_nodes()]
        wanted = {
            "skip-layer guidance": bool(request.slg_scale and request.slg_layers),
            "the negative-prompt window": request.negative_until is not None,
            "image to image": request.init_image is not None,
        }
        for feature, needed in wanted.items():
            absent = [n for n in FEATURE_NODES[feature] if n not in self.nodes]
            if needed and absent:
                out.append(f"{feature} needs the {', '.join(absent)} node(s), which this server lacks")
        if self.samplers and request.sampler not in self.samplers:
            out.append(f"the server has no sampler {request.sampler!r}")
        if self.schedulers and request.scheduler not in self.schedulers:
            out.append(f"the server has no scheduler {request.scheduler!r}")
        if self.encoder("clip_l") is None:
            out.append("the server has no CLIP-L text encoder (clip_l*.safetensors in models/clip)")
        if self.encoder("clip_g") is None and not partial_text_encoders:
            out.append("the server has no CLIP-G text encoder (clip_g*.safetensors in models/clip)")
        if request.use_t5 and self.encoder("t5") is None:
            out.append(
                "the server has no T5-XXL text encoder (t5xxl*.safetensors in models/clip); switch T5 off"
            )
        return out

    def require(self, request, partial_text_encoders: bool = False) -> None:
        problems = self.problems(request, partial_text_encoders)
        if problems:
            raise ServerMissing(f"{self.url} cannot run this job: {'; '.join(problems)}")

    def to_json(self) -> dict:
        return {
            "url": self.url, "comfyui_version": self.comfyui_version,
            "devices": [{"name": d.name, "type": d.type, "vram_total": d.vram_total, "vram_free": d.vram_free}
                        for d in self.devices],
            "previews": self.previews_by_default, "preview_method": self.preview_method,
            "sd35_checkpoints": list(self.sd35_checkpoints), "checkpoints": list(self.checkpoints),
            "text_encoders": {role: self.encoder(role) for role in _ENCODERS},
            "loras": list(self.loras), "controlnets": list(self.controlnets),
            "missing_nodes": self.missing_nodes() + [n for ns in FEATURE_NODES.values() for n in ns
                                                     if n not in self.nodes],
            "warnings": list(self.warnings),
        }  # fmt: skip


# --------------------------------------------------------------------------------------------- reading
def _str(value: object, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _names(values: object) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    return tuple(v for v in values[:_MAX_NAMES] if isinstance(v, str) and len(v) < 1024)


def combo_options(object_info: dict, node: str, input_name: str) -> tuple[str, ...]:
    """A COMBO input's choices in either of ComfyUI's spellings: `[[choices...], {...}]` (classic nodes) or
    `["COMBO", {"options": [choices...]}]` (nodes written against the newer node API)."""
    spec = object_info.get(node)
    inputs = spec.get("input") if isinstance(spec, dict) else None
    for group in ("required", "optional"):
        table = inputs.get(group) if isinstance(inputs, dict) else None
        entry = table.get(input_name) if isinstance(table, dict) else None
        if isinstance(entry, list) and entry:
            if isinstance(entry[0], list):
                return _names(entry[0])
            if entry[0] == "COMBO" and len(entry) > 1 and isinstance(entry[1], dict):
                return _names(entry[1].get("options"))
    return ()


def preview_method_of(argv: object) -> str:
    """The server's --preview-method from its command line (/system_stats reports argv); "none" when absent."""
    args = [a for a in argv if isinstance(a, str)] if isinstance(argv, list) else []
    method = "none"
    for i, arg in enumerate(args):
        if arg == "--preview-method" and i + 1 < len(args):
            method = args[i + 1]
        elif arg.startswith("--preview-method="):
            method = arg.split("=", 1)[1]
    return method or "none"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def read_capabilities(http: ComfyHttp) -> ServerInfo:
    """GET /system_stats and /object_info; ServerUnreachable/ProtocolError when the server cannot tell."""
    stats = http.get_json("/system_stats", "system stats")
    if not isinstance(stats, dict) or not isinstance(stats.get("system"), dict):
        raise ProtocolError(f"{http.url} does not look like a ComfyUI server (no system stats)")
    system = stats["system"]
    devices = tuple(
        Device(
            _str(d.get("name"), "?"),
            _str(d.get("type"), "?"),
            _int(d.get("vram_total")),
            _int(d.get("vram_free")),
        )
        for d in (stats.get("devices") if isinstance(stats.get("devices"), list) else [])[:64]
        if isinstance(d, dict)
    )
    info = http.get_json("/object_info", "node catalogue", max_bytes=MAX_OBJECT_INFO_BYTES, timeout=60)
    if not isinstance(info, dict):
        raise ProtocolError(f"{http.url}'s node catalogue is not an object")
    version = _str(system.get("comfyui_version"), "unknown")
    warnings = []
    if version_tuple(version) < version_tuple(TESTED_VERSION):
        warnings.append(
            f"ComfyUI {version} is older than {TESTED_VERSION}, the version SD3.5 Studio is tested with"
        )
    encoders = combo_options(info, "CLIPLoader", "clip_name") or combo_options(
        info, "DualCLIPLoader", "clip_name1"
    )
    return ServerInfo(
        url=http.url,
        comfyui_version=version,
        devices=devices,
        preview_method=preview_method_of(system.get("argv")),
        nodes=frozenset(k for k in list(info)[:_MAX_NAMES] if isinstance(k, str)),
        checkpoints=combo_options(info, "CheckpointLoaderSimple", "ckpt_name"),
        text_encoders=encoders,
        loras=combo_options(info, "LoraLoader", "lora_name")
        or combo_options(info, "LoraLoaderModelOnly", "lora_name"),
        controlnets=combo_options(info, "ControlNetLoader", "control_net_name"),
        samplers=combo_options(info, "KSampler", "sampler_name"),
        schedulers=combo_options(info, "KSampler", "scheduler"),
        warnings=tuple(warnings),
    )
