"""Recalled LoRAs made usable here: each found by its path or, failing that, by its file name in the LoRA
folders, and checked against the hash the image recorded. Torch-free (the window's recall uses it)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from app.inference.api.lora import LoraSpec
from app.inference.lora.hashing import lora_hashes

log = logging.getLogger(__name__)

MAX_SEARCHED = (
    20_000  # files looked at per folder when searching by name (a huge folder must not hang recall)
)


def _find_by_name(name: str, folders: Iterable[Path]) -> Path | None:
    for folder in folders:
        direct = Path(folder) / name
        if direct.is_file():
            return direct
        try:
            for n, candidate in enumerate(Path(folder).rglob("*.safetensors")):
                if n >= MAX_SEARCHED:
                    break
                if candidate.name.lower() == name.lower():
                    return candidate
        except OSError:
            continue
    return None


def resolve_loras(
    loras: Iterable[LoraSpec], folders: Iterable[Path] = ()
) -> tuple[tuple[LoraSpec, ...], tuple[str, ...]]:
    """(the LoRAs that exist here, with their paths; a warning per LoRA that is missing or whose file differs
    from the one the image was made with). Missing ones are left out of the set."""
    folders = tuple(folders)
    found: list[LoraSpec] = []
    warnings: list[str] = []
    for spec in loras:
        path = spec.path.expanduser()
        if not path.is_file():
            path = _find_by_name(path.name, folders)
        if path is None:
            warnings.append(
                f"LoRA {spec.name} is not on this machine (looked for {spec.path.name}); left out."
            )
            continue
        try:
            full, short = lora_hashes(path)
        except OSError as exc:
            warnings.append(f"LoRA {spec.name}: {path} cannot be read ({exc.strerror or exc}); left out.")
            continue
        recorded = spec.sha256 or spec.short_hash
        mine = full if spec.sha256 else short
        if recorded and recorded.lower() != mine.lower():
            warnings.append(
                f"LoRA {spec.name}: the file here ({path}) is not the one the image was made with "
                f"(hash {mine[:12]}, the image says {recorded[:12]}); the image will differ."
            )
        found.append(replace(spec, path=path, sha256=full, short_hash=short))
    return tuple(found), tuple(warnings)
