"""A1111's `<lora:name:strength>` tags in `generate --prompt`: each becomes a LoRA of the request, its file found
by name in `--lora-dir` folders, the folders of the `--lora` files and the default LoRA places (discovery); the
tags leave the prompt the encoders see. A name found nowhere is a warning, not an error (as in A1111)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.inference.api.lora import find_prompt_loras
from app.inference.api.request import GenerationRequest


def with_prompt_loras(request: GenerationRequest, folders: list[Path]) -> GenerationRequest:
    if not find_prompt_loras(
        request.prompt
    ):  # raises InvalidRequestError for a tag without a numeric strength
        return request
    from app.inference.lora.discovery import loras_from_prompt, scan_loras

    places = [*folders, *{lora.path.parent for lora in request.loras}]
    text, specs, missing = loras_from_prompt(request.prompt, scan_loras([p for p in places if p.is_dir()]))
    return replace(
        request, prompt=text, loras=(*request.loras, *specs), warnings=(*request.warnings, *missing)
    )
