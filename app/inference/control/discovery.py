"""Finding ControlNet files: ComfyUI's `models/controlnet`, the user's folders, and the Hugging Face snapshot of
`stabilityai/stable-diffusion-3.5-controlnets`. Headers only (`inspect_controlnet`); a file that is not an SD3.5
ControlNet becomes an entry with the sentence saying why. A scan never raises.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.inference.api.errors import InferenceError
from app.inference.checkpoints.controlnet_loading import inspect_controlnet
from app.inference.checkpoints.scanning import hf_hub_cache

log = logging.getLogger(__name__)

COMFY_HOMES = ("ComfyUI", "Documents/ComfyUI", "comfyui")
HF_REPO_FOLDER = "models--stabilityai--stable-diffusion-3.5-controlnets"
MAX_DEPTH = 3
MAX_FILES = 5_000


@dataclass(frozen=True, slots=True)
class ControlNetEntry:
    path: Path
    control_type: str | None = None  # "blur" | "canny" | "depth" as the file declares it
    error: str | None = None


def default_controlnet_roots(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    home = home or Path.home()
    return [
        *(home / c / "models" / "controlnet" for c in COMFY_HOMES),
        hf_hub_cache(env, home) / HF_REPO_FOLDER / "snapshots",
    ]


def _files(root: Path, depth: int, budget: list[int]) -> Iterable[Path]:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        try:
            if entry.is_dir(follow_symlinks=False) and depth > 0 and not entry.name.startswith("."):
                yield from _files(Path(entry.path), depth - 1, budget)
            elif entry.name.lower().endswith(".safetensors") and entry.is_file():
                yield Path(entry.path)
        except OSError:
            continue


def read_controlnet_entry(path: Path) -> ControlNetEntry:
    try:
        info = inspect_controlnet(Path(path))
    except (InferenceError, OSError) as exc:
        return ControlNetEntry(Path(path), error=str(exc))
    return ControlNetEntry(Path(path), info.config.control_type)


def scan_controlnets(paths: Iterable[Path] = (), *, defaults: bool = True) -> tuple[ControlNetEntry, ...]:
    """Every ControlNet under `paths` (folders or files) and, with `defaults`, the usual places; files that are
    not ControlNets (no `controlnet_blocks`) found in folders are left out, a file given by name is kept with
    its error."""
    budget = [MAX_FILES]
    found: dict[Path, ControlNetEntry] = {}
    roots = [Path(p).expanduser() for p in paths] + (default_controlnet_roots() if defaults else [])
    for root in roots:
        given = root.is_file()
        for path in [root] if given else _files(root, MAX_DEPTH, budget):
            key = path.resolve()
            if key in found:
                continue
            entry = read_controlnet_entry(path)
            if entry.error is None or given or "not a ControlNet" not in entry.error:
                found[key] = entry
    return tuple(sorted(found.values(), key=lambda e: (e.path.name.lower(), str(e.path))))
