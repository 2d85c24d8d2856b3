"""The parameters of one image: all it takes to make it again, as a frozen value with a versioned JSON form.

`ImageParams` is what the gallery stores, what our PNGs carry in their `sd35-studio` iTXt chunk, and what
recall turns back into a `GenerationRequest`. It holds the image's request (count 1, the image's own seed) plus
where the image came from (model, hash, fp8, noise device, app version), so a new generation option added to
`GenerationRequest` reaches the JSON, the A1111 text, the gallery and the ComfyUI graph without being listed
here. Request fields read through: `params.prompt` is `params.request.prompt`.

For an imported image the request holds what the file stated: `None` means "the variant's default", and a seed
of `None` means the file did not state one (`to_request` then uses 0).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from app.inference.api.control import ControlSpec
from app.inference.api.lora import LoraSpec
from app.inference.api.request import GenerationRequest
from app.metadata.controlnet_meta import controlnet_to_dict, controlnets_from_json, with_hashes

log = logging.getLogger(__name__)

PARAMS_FORMAT = "sd35-studio.parameters"
PARAMS_VERSION = 1  # version 1 is flat: the request's fields and the provenance fields side by side

# The request fields an image carries (`count` belongs to the job, `warnings` to the moment of resolving).
REQUEST_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(GenerationRequest) if f.name not in ("count", "warnings")
)
_REQUEST_FIELD_SET = frozenset(REQUEST_FIELDS)
# Written to the JSON only when they are in use (a masked job; a hires job).
_MASK_FIELDS = ("mask_image", "mask_grow", "mask_blur", "outpaint", "mask_alpha", "mask_soft")
_HIRES_FIELDS = ("hires_scale", "hires_denoise", "hires_steps")


@dataclass(frozen=True, slots=True)
class ImageParams:
    request: GenerationRequest  # one image: count 1, seed = the image's seed
    variant: str | None = None  # "large" | "large-turbo" | "medium"
    model_name: str | None = None  # the checkpoint's file stem, e.g. "sd3.5_large"
    model_hash: str | None = None  # A1111 short hash: first 10 hex digits of the file's SHA-256
    fp8: bool = False  # the diffusion model's weights were stored in fp8
    noise: str = "cpu"  # where start noise was drawn: "cpu" (ours, ComfyUI), "gpu"/"nv" (A1111's default)
    app_version: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # unknown keys kept as text
    source_sha256: str | None = None  # SHA-256 of the init image file: "made from ..." (request.init_image)
    mask_alpha: bool = False  # the mask was read from its transparency (ComfyUI's LoadImage MASK)
    mask_soft: bool = False  # the mask had soft values: sampled with differential diffusion

    def __getattr__(self, name: str) -> object:
        # Only called when normal lookup fails: the request's fields read as our own (`params.steps`).
        if name in _REQUEST_FIELD_SET:
            return getattr(self.request, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def from_request(
        cls,
        request: GenerationRequest,
        seed: int,
        *,
        variant: str | None,
        model_name: str | None,
        model_hash: str | None = None,
        fp8: bool = False,
        app_version: str | None = None,
        source_sha256: str | None = None,
        mask_alpha: bool = False,
        mask_soft: bool = False,
    ) -> ImageParams:
        """One image of a resolved request (all `None`s already filled in from the variant)."""
        one = replace(request, seed=seed, count=1, warnings=(), controlnets=with_hashes(request.controlnets))
        return cls(
            one,
            variant=variant,
            model_name=model_name,
            model_hash=model_hash,
            fp8=fp8,
            app_version=app_version,
            source_sha256=source_sha256,
            mask_alpha=mask_alpha,
            mask_soft=mask_soft,
        )

    @classmethod
    def from_fields(cls, **values: object) -> ImageParams:
        """From flat names (request fields and provenance fields), as readers of other formats collect them;
        a field not given is "not stated" (the seed included)."""
        own = {f.name for f in fields(cls)} - {"request"}
        unknown = set(values) - _REQUEST_FIELD_SET - own
        if unknown:
            raise TypeError(f"ImageParams has no field {sorted(unknown)}")
        request_values = {k: v for k, v in values.items() if k in _REQUEST_FIELD_SET}
        for name in ("init_image", "mask_image"):
            if isinstance(request_values.get(name), str):
                request_values[name] = Path(request_values[name])  # type: ignore[arg-type]
        request_values.setdefault("seed", None)
        request = GenerationRequest(**request_values)  # type: ignore[arg-type]
        return cls(request, **{k: v for k, v in values.items() if k in own})  # type: ignore[arg-type]

    def to_request(self) -> GenerationRequest:
        """A one-image request with these settings; unknown fields stay `None` (the variant's default)."""
        return replace(self.request, seed=self.request.seed or 0, count=1)

    def with_seed(self, seed: int) -> ImageParams:
        return replace(self, request=replace(self.request, seed=seed))

    def updated(self, **changes: object) -> ImageParams:
        """A copy with some fields changed, request fields and provenance fields alike."""
        request_changes = {k: v for k, v in changes.items() if k in _REQUEST_FIELD_SET}
        own = {k: v for k, v in changes.items() if k not in _REQUEST_FIELD_SET}
        return replace(self, request=replace(self.request, **request_changes), **own)  # type: ignore[arg-type]

    @property
    def size_label(self) -> str:
        r = self.request
        return f"{r.width}x{r.height}" if r.width and r.height else ""

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"format": PARAMS_FORMAT, "version": PARAMS_VERSION}
        data.update({name: _jsonable(getattr(self.request, name)) for name in REQUEST_FIELDS})
        if not self.request.loras:  # written only when used, so files of earlier versions read back unchanged
            del data["loras"]
        if not self.request.controlnets:  # written only when there are any: older files read back unchanged
            del data["controlnets"]
        for f in fields(self):
            if f.name not in ("request", "extra"):
                data[f.name] = getattr(self, f.name)
        for name in self._unused_refine_fields():  # images without a mask or hires pass keep their old JSON
            del data[name]
        data.update({k: json.loads(v) for k, v in self.extra})
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ImageParams:
        if data.get("format") != PARAMS_FORMAT:
            raise ValueError(f"not SD3.5 Studio parameters (format {data.get('format')!r})")
        version = data.get("version")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"bad parameters version {version!r}")
        if version > PARAMS_VERSION:
            log.info("parameters from a newer version (%s); reading the fields this version knows", version)
        known = _REQUEST_FIELD_SET | ({f.name for f in fields(cls)} - {"request", "extra"})
        values = {k: v for k, v in data.items() if k in known}
        if "prompt" not in values or not isinstance(values["prompt"], str):
            raise ValueError("parameters without a prompt")
        if isinstance(values.get("loras"), list):
            values["loras"] = tuple(LoraSpec.from_dict(x) for x in values["loras"])  # type: ignore[union-attr]
        if isinstance(values.get("slg_layers"), list):
            values["slg_layers"] = tuple(int(i) for i in values["slg_layers"])  # type: ignore[union-attr]
        if isinstance(values.get("outpaint"), list):
            values["outpaint"] = tuple(int(i) for i in values["outpaint"])  # type: ignore[union-attr]
        if "controlnets" in values:
            values["controlnets"] = controlnets_from_json(values["controlnets"])
        unknown = [k for k in data if k not in known and k not in ("format", "version")]
        extra = tuple((k, json.dumps(data[k])) for k in unknown)
        return replace(cls.from_fields(**values), extra=extra)

    def _unused_refine_fields(self) -> list[str]:
        r = self.request
        unused = [] if r.mask_image is not None or any(r.outpaint or ()) else list(_MASK_FIELDS)
        unused += [] if r.hires_scale not in (None, 1.0) else list(_HIRES_FIELDS)
        unused += [] if self.source_sha256 is not None else ["source_sha256"]
        return unused

    @classmethod
    def from_json(cls, text: str) -> ImageParams:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("parameters JSON is not an object")
        return cls.from_dict(data)


def _jsonable(value: object) -> object:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, LoraSpec):
        return value.to_dict()
    if isinstance(value, ControlSpec):
        return controlnet_to_dict(value)
    return str(value) if isinstance(value, Path) else value


def variant_of_name(name: str | None) -> str | None:
    """The SD3.5 variant a checkpoint's file name suggests (DECISIONS 13: "turbo" in the name), or None."""
    lower = (name or "").lower()
    if "medium" in lower:
        return "medium"
    if "turbo" in lower:
        return "large-turbo"
    return "large" if "large" in lower else None
