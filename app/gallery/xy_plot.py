"""X/Y plots: two axes of parameter values → one request per cell → one labelled sheet.

A plain object, testable without a model: `XYPlot.cells()` expands the axes into `GenerationRequest`s (row by
row); the generation session runs them; `XYPlot.sheet()` assembles the finished images into one labelled image
and `XYPlot.save()` writes it as a PNG whose metadata lists every cell's parameters.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from app.gallery.grid_image import labelled_grid
from app.gallery.labels import sampler_label, scheduler_label
from app.inference.api.lora import MAX_STRENGTH, LoraSpec
from app.inference.api.request import SAMPLER_NAMES, SCHEDULER_NAMES, GenerationRequest
from app.metadata.a1111 import infotext_of
from app.metadata.params import ImageParams
from app.metadata.png_info import save_png

log = logging.getLogger(__name__)

AXIS_KINDS = ("seed", "cfg", "steps", "sampler", "scheduler", "shift", "prompt", "lora_strength")
AXIS_TITLES = {
    "seed": "Seed",
    "cfg": "CFG",
    "steps": "Steps",
    "sampler": "Sampler",
    "scheduler": "Schedule",
    "shift": "Shift",
    "prompt": "Prompt S/R",
    "lora_strength": "LoRA strength",
}
XY_KEY = "sd35-studio-xy"
XY_FORMAT = "sd35-studio.xy-plot"


@dataclass(frozen=True, slots=True)
class Axis:
    """`kind` in AXIS_KINDS. For "prompt" (search and replace) the first value is the text searched for in the
    prompt and every value, the first included, replaces it once per column/row. For "lora_strength" the values
    are strengths of the job's LoRA named `lora` (its file name without `.safetensors`), or of its first LoRA
    when `lora` is empty."""

    kind: str
    values: tuple[object, ...]
    lora: str = ""

    def __post_init__(self) -> None:
        if self.kind not in AXIS_KINDS:
            raise ValueError(f"unknown axis {self.kind!r}; choose from {', '.join(AXIS_KINDS)}")
        if not self.values:
            raise ValueError(f"the {self.kind} axis has no values")
        if self.kind == "sampler" and (bad := [v for v in self.values if v not in SAMPLER_NAMES]):
            raise ValueError(f"unknown sampler(s) {bad}")
        if self.kind == "scheduler" and (bad := [v for v in self.values if v not in SCHEDULER_NAMES]):
            raise ValueError(f"unknown schedule(s) {bad}")
        if self.kind == "lora_strength" and any(
            not (isinstance(v, int | float) and math.isfinite(v) and abs(v) <= MAX_STRENGTH)
            for v in self.values
        ):
            raise ValueError(
                f"the LoRA strength axis takes numbers between -{MAX_STRENGTH:g} and {MAX_STRENGTH:g}"
            )

    @classmethod
    def parse(cls, kind: str, text: str) -> Axis:
        """ "1, 2, 3"; numbers also as ranges "100-103" (integers); prompt values may contain spaces; LoRA
        strengths may name their LoRA first: "clay: 0, 0.5, 1"."""
        lora = ""
        if kind == "lora_strength" and ":" in text:
            lora, _, text = (part.strip() for part in text.partition(":"))
        items = [t.strip() for t in text.split(",") if t.strip()]
        values: list[object] = []
        for item in items:
            if kind in ("seed", "steps"):
                m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", item)
                values.extend(range(int(m.group(1)), int(m.group(2)) + 1) if m else [int(item)])
            elif kind in ("cfg", "shift", "lora_strength"):
                values.append(float(item))
            else:
                values.append(item)
        return cls(kind, tuple(values), lora)

    def apply(self, request: GenerationRequest, value: object) -> GenerationRequest:
        if self.kind == "prompt":
            search = str(self.values[0])
            if search not in request.prompt:
                raise ValueError(f"prompt S/R: “{search}” does not occur in the prompt")
            return replace(request, prompt=request.prompt.replace(search, str(value)))
        if self.kind == "lora_strength":
            at = _lora_index(request.loras, self.lora)
            swept = replace(request.loras[at], strength=float(value))  # type: ignore[arg-type]
            return replace(request, loras=(*request.loras[:at], swept, *request.loras[at + 1 :]))
        return replace(request, **{self.kind: value})

    def label(self, value: object) -> str:
        if self.kind == "seed":
            return f"seed {value}"
        if self.kind == "cfg":
            return f"CFG {value:g}"
        if self.kind == "steps":
            return f"{value} steps"
        if self.kind == "shift":
            return f"shift {value:g}"
        if self.kind == "sampler":
            return sampler_label(str(value))
        if self.kind == "scheduler":
            return scheduler_label(str(value))
        if self.kind == "lora_strength":
            return f"{self.lora or 'LoRA'} {value:g}"
        return f"“{value}”"


@dataclass(frozen=True, slots=True)
class XYCell:
    column: int
    row: int
    request: GenerationRequest


@dataclass(frozen=True, slots=True)
class XYPlot:
    base: GenerationRequest
    x: Axis
    y: Axis | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(columns, rows)."""
        return len(self.x.values), len(self.y.values) if self.y else 1

    def cells(self) -> list[XYCell]:
        base = replace(self.base, count=1)
        out = []
        for r in range(self.shape[1]):
            row_request = self.y.apply(base, self.y.values[r]) if self.y else base
            for c, value in enumerate(self.x.values):
                out.append(XYCell(c, r, self.x.apply(row_request, value)))
        return out

    def requests(self) -> list[GenerationRequest]:
        return [cell.request for cell in self.cells()]

    def sheet(
        self, images: dict[tuple[int, int], Image.Image | np.ndarray], *, cell_size: int = 384
    ) -> Image.Image:
        """The labelled grid; `images` maps (column, row) to a finished image; missing cells stay empty."""
        cols, rows = self.shape
        grid = [[_pil(images.get((c, r))) for c in range(cols)] for r in range(rows)]
        return labelled_grid(
            grid,
            [self.x.label(v) for v in self.x.values],
            [self.y.label(v) for v in self.y.values] if self.y else [""],
            title=_short(self.base.prompt, 90),
            cell_size=(cell_size, cell_size),
            x_title=AXIS_TITLES[self.x.kind],
            y_title=AXIS_TITLES[self.y.kind] if self.y else "",
        )

    def metadata(self, cell_params: dict[tuple[int, int], ImageParams]) -> str:
        cells = [
            {
                "column": c,
                "row": r,
                "x": _jsonable(self.x.values[c]),
                "y": _jsonable(self.y.values[r]) if self.y else None,
                "parameters": p.to_dict(),
            }
            for (c, r), p in sorted(cell_params.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]
        data = {
            "format": XY_FORMAT,
            "version": 1,
            "x": _axis_dict(self.x),
            "y": None if self.y is None else _axis_dict(self.y),
            "cells": cells,
        }
        return json.dumps(data, ensure_ascii=False)

    def save(
        self,
        path: Path,
        images: dict[tuple[int, int], Image.Image | np.ndarray],
        cell_params: dict[tuple[int, int], ImageParams],
        cell_size: int = 384,
    ) -> Path:
        """Write the sheet (atomically) with the first cell's A1111 text (the one `infotext_of`) as its
        `parameters` chunk and every cell's parameters as JSON in an `sd35-studio-xy` iTXt chunk."""
        sheet = self.sheet(images, cell_size=cell_size)
        first = min(cell_params, key=lambda cell: (cell[1], cell[0]), default=None)
        infotext = self.base.prompt if first is None else infotext_of(cell_params[first])
        save_png(path, np.asarray(sheet), infotext, extra_itxt={XY_KEY: self.metadata(cell_params)})
        return path


def _pil(image: Image.Image | np.ndarray | None) -> Image.Image | None:
    if image is None or isinstance(image, Image.Image):
        return image
    return Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")


def _axis_dict(axis: Axis) -> dict[str, object]:
    out: dict[str, object] = {"kind": axis.kind, "values": [_jsonable(v) for v in axis.values]}
    if axis.lora:
        out["lora"] = axis.lora
    return out


def _lora_index(loras: tuple[LoraSpec, ...], name: str) -> int:
    """Which of the job's LoRAs a strength axis sweeps: the one named `name` (any case), else the first."""
    if not loras:
        raise ValueError("LoRA strength: this job uses no LoRA; add one in the LoRA panel first")
    if not name:
        return 0
    for i, lora in enumerate(loras):
        if lora.name.lower() == name.lower():
            return i
    used = ", ".join(lora.name for lora in loras)
    raise ValueError(f"LoRA strength: “{name}” is not one of this job's LoRAs ({used})")


def _jsonable(value: object) -> object:
    return value if isinstance(value, int | float | str) else str(value)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
