"""Finding SD3.5 ControlNet files: the Hugging Face snapshot of `stabilityai/stable-diffusion-3.5-controlnets`,
the `controlnets/` folder of each model set the in-app download wrote (`app.downloads.catalog`), ComfyUI's
`models/controlnet/` (portable and Desktop locations), and folders the user names. Headers only.

    for found in find_controlnets([Path("~/models")]): found.path, found.control_type, found.error
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.downloads.catalog import CONTROLNET_FOLDER  # plain Python: where the in-app download puts them
from app.downloads.layout import default_models_dir
from app.inference.api.errors import InferenceError
from app.inference.checkpoints.controlnet_loading import inspect_controlnet
from app.inference.checkpoints.scanning import default_roots, hf_hub_cache, is_comfy_install

log = logging.getLogger(__name__)

HF_REPO_FOLDER = "models--stabilityai--stable-diffusion-3.5-controlnets"
MAX_FILES = 2000  # a user folder with more weight files than this is not searched further


@dataclass(frozen=True, slots=True)
class FoundControlNet:
    path: Path
    control_type: str | None  # "blur" | "canny" | "depth", or None when the file does not say (or is refused)
    source: str  # "huggingface" | "download" | "comfyui" | "folder"
    error: str | None = None  # why it cannot be used (an SD3-Medium ControlNet, a damaged file, ...)

    @property
    def usable(self) -> bool:
        return self.error is None


def _candidates(
    env: Mapping[str, str] | None, home: Path | None, folders: list[Path], defaults: bool
) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    roots = default_roots(env, home) if defaults else []
    snapshots = hf_hub_cache(env, home) / HF_REPO_FOLDER / "snapshots"
    if defaults and snapshots.is_dir():
        out += [(p, "huggingface") for p in sorted(snapshots.glob("*/*.safetensors"))]
    if defaults:  # <models>/<model set>/controlnets/*.safetensors, as the download dialog lays them out
        downloads = default_models_dir(env, home)
        out += [(p, "download") for p in sorted(downloads.glob(f"*/{CONTROLNET_FOLDER}/*.safetensors"))]
    for root in [*roots, *folders]:
        root = root.expanduser()
        if is_comfy_install(root) or (root.name == "models" and is_comfy_install(root.parent)):
            install = root if is_comfy_install(root) else root.parent
            folder = install / "models" / "controlnet"
            if folder.is_dir():
                out += [(p, "comfyui") for p in sorted(folder.rglob("*.safetensors"))[:MAX_FILES]]
        elif root in folders and root.is_dir():
            out += [(p, "folder") for p in sorted(root.rglob("*.safetensors"))[:MAX_FILES]]
        elif root in folders and root.is_file():
            out.append((root, "folder"))
    return out


def find_controlnets(
    folders: Iterable[str | Path] = (),
    *,
    defaults: bool = True,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> list[FoundControlNet]:
    """Every ControlNet file in the default places (if `defaults`) and in `folders`; other weight files in a
    user's folder are skipped silently, ControlNets SD3.5 Studio cannot run are listed with their reason."""
    found: dict[Path, FoundControlNet] = {}
    for path, source in _candidates(env, home, [Path(f) for f in folders], defaults):
        key = path.resolve()
        if key in found:
            continue
        try:
            info = inspect_controlnet(path)
            found[key] = FoundControlNet(path, info.config.control_type, source)
        except InferenceError as exc:
            message = str(exc)
            if "not an SD3.5 ControlNet" in message:
                continue  # another model, or another family's ControlNet (SD1.5, SDXL, FLUX)
            found[key] = FoundControlNet(path, None, source, message)
        except OSError as exc:
            found[key] = FoundControlNet(path, None, source, f"{path}: cannot read the file ({exc})")
    return list(found.values())
