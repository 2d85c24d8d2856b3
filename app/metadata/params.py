"""The parameters of one image: all it takes to make it again, as a frozen value with a versioned JSON form.

`ImageParams` is what the gallery stores, what our PNGs carry in their `sd35-studio` iTXt chunk, and what
recall turns back into a `GenerationRequest`. Fields an imported image does not state are `None` (meaning
"the variant's default").
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from app.inference.api.request import GenerationRequest

log = logging.getLogger(__name__)

PARAMS_FORMAT = "sd35-studio.parameters"
PARAMS_VERSION = 1

# The request fields an image carries under the same name: a new generation option is added to
# GenerationRequest and here once (a test fails when ImageParams lacks one). `count` belongs to the job.
REQUEST_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(GenerationRequest) if f.name not in ("count", "warnings")
)


@dataclass(frozen=True, slots=True)
class ImageParams:
    prompt: str
    negative: str = ""
    seed: int | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    width: int | None = None
    height: int | None = None
    shift: float | None = None
    slg_layers: tuple[int, ...] | None = None
    slg_scale: float | None = None
    slg_start: float | None = None
    slg_end: float | None = None
    negative_until: float | None = None
    denoise: float = 1.0
    init_image: str | None = None
    use_t5: bool = True
    text_mode: str = "full"
    variant: str | None = None  # "large" | "large-turbo" | "medium"
    model_name: str | None = None  # the checkpoint's file stem, e.g. "sd3.5_large"
    model_hash: str | None = None  # A1111 short hash: first 10 hex digits of the file's SHA-256
    fp8: bool = False  # the diffusion model's weights were stored in fp8
    noise: str = "cpu"  # where start noise was drawn: "cpu" (ours, ComfyUI), "gpu"/"nv" (A1111's default)
    app_version: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=(), compare=False)  # unknown keys kept as text

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
    ) -> ImageParams:
        """One image of a resolved request (all `None`s already filled in from the variant)."""
        values = {name: getattr(request, name) for name in REQUEST_FIELDS}
        init_image = None if request.init_image is None else str(request.init_image)
        return cls(
            **values | {"seed": seed, "init_image": init_image},
            variant=variant,
            model_name=model_name,
            model_hash=model_hash,
            fp8=fp8,
            app_version=app_version,
        )

    def to_request(self) -> GenerationRequest:
        """A one-image request with these settings; unknown fields stay `None` (the variant's default)."""
        values = {name: getattr(self, name) for name in REQUEST_FIELDS}
        init_image = None if self.init_image is None else Path(self.init_image)
        return GenerationRequest(**values | {"seed": self.seed or 0, "init_image": init_image}, count=1)

    def with_seed(self, seed: int) -> ImageParams:
        return replace(self, seed=seed)

    @property
    def size_label(self) -> str:
        return f"{self.width}x{self.height}" if self.width and self.height else ""

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"format": PARAMS_FORMAT, "version": PARAMS_VERSION}
        for key, value in asdict(self).items():
            if key == "extra":
                continue
            data[key] = list(value) if isinstance(value, tuple) else value
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
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        if "prompt" not in values or not isinstance(values["prompt"], str):
            raise ValueError("parameters without a prompt")
        if isinstance(values.get("slg_layers"), list):
            values["slg_layers"] = tuple(int(i) for i in values["slg_layers"])
        unknown = [k for k in data if k not in known and k not in ("format", "version")]
        extra = tuple((k, json.dumps(data[k])) for k in unknown)
        return cls(**values, extra=extra)

    @classmethod
    def from_json(cls, text: str) -> ImageParams:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("parameters JSON is not an object")
        return cls.from_dict(data)


def variant_of_name(name: str | None) -> str | None:
    """The SD3.5 variant a checkpoint's file name suggests (DECISIONS 13: "turbo" in the name), or None."""
    lower = (name or "").lower()
    if "medium" in lower:
        return "medium"
    if "turbo" in lower:
        return "large-turbo"
    return "large" if "large" in lower else None
