"""Which SD3.5 model sets this computer has: found at start-up and validated when the user points at a folder.

Reading a model set's headers goes through `app.inference.checkpoints.model_set`, which imports torch, so `inspect_path`
and `scan` run in an executor thread, awaited by coroutines on the UI side. The results are plain values.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from app.inference.api.variants import PRESETS, VARIANTS

log = logging.getLogger(__name__)

HF_REPOS = {
    "large": "stabilityai/stable-diffusion-3.5-large",
    "large-turbo": "stabilityai/stable-diffusion-3.5-large-turbo",
    "medium": "stabilityai/stable-diffusion-3.5-medium",
}


@dataclass(frozen=True, slots=True)
class ModelSetInfo:
    path: Path  # what the session is given
    variant: str | None
    name: str
    max_side: int | None = None
    depth: int | None = None  # joint blocks of the diffusion model (skip-layer guidance layers must exist)
    has_t5: bool = False
    missing: tuple[str, ...] = ()
    error: str = ""
    # A model set on ComfyUI servers (app/ui/engines): `path` is then the checkpoint's name as the servers list
    # it, `engine` their URLs in priority order, `server` what the picker shows ("gpu-box", "gpu-box +1").
    engine: tuple[str, ...] = ()
    server: str = ""

    @property
    def is_remote(self) -> bool:
        return bool(self.engine)

    @property
    def key(self) -> str:
        """What the picker stores per entry: the path for this machine's sets, servers and name for remote ones."""
        return f"remote:{','.join(self.engine)}|{self.path.as_posix()}" if self.engine else str(self.path)

    @property
    def usable(self) -> bool:
        return not self.error and not {"CLIP-L", "CLIP-G"} & set(self.missing)

    @property
    def label(self) -> str:
        if self.engine:
            return f"{self.name} · {self.server}" + ("" if self.has_t5 else " · no T5")
        if self.error:
            return f"{self.path.name} — unusable"
        variant = PRESETS[self.variant].label if self.variant in PRESETS else "SD3.5"
        folder = self.path.name if self.path.is_dir() else self.path.parent.name
        suffix = "" if self.has_t5 else " · no T5"
        return f"{variant} — {folder}{suffix}"

    def problem(self) -> str:
        """What stops (or limits) this set, as advice; "" when complete."""
        if self.error:
            return self.error
        if not self.usable and self.engine:
            return f"{', '.join(self.missing)} missing on {self.server}: it cannot run this model set."
        if not self.usable:
            return f"{', '.join(self.missing)} missing in {self.path / 'text_encoders'}."
        if self.engine and not self.has_t5:
            return f"{self.server} has no T5-XXL text encoder: this set runs with T5 off there."
        if not self.has_t5:
            return "T5-XXL not found: this set runs with T5 off (weaker prompt following)."
        return ""


def guess_variant(path: Path) -> str | None:
    """A quick guess from the file or folder name, shown until the headers have been read."""
    name = str(path).lower()
    if "turbo" in name:
        return "large-turbo"
    if "medium" in name:
        return "medium"
    if "large" in name:
        return "large"
    return None


def inspect_path(path: Path) -> ModelSetInfo:
    """Validate one folder or checkpoint file (headers only). Never raises for a bad model."""
    from app.inference.api.errors import InferenceError  # torch is imported here, on the executor thread
    from app.inference.checkpoints.model_set import locate_model_set

    path = Path(path).expanduser()
    try:
        model_set = locate_model_set(path)
    except (InferenceError, OSError, ValueError) as exc:
        return ModelSetInfo(path, guess_variant(path), path.name, error=str(exc))
    except Exception as exc:  # a scan must survive any file, however broken
        log.exception("unexpected error reading %s", path)
        return ModelSetInfo(path, guess_variant(path), path.name, error=f"cannot read this model: {exc}")
    missing = tuple(
        label
        for label, component in (
            ("CLIP-L", model_set.clip_l),
            ("CLIP-G", model_set.clip_g),
            ("T5-XXL", model_set.t5),
        )
        if component is None
    )
    return ModelSetInfo(
        path=model_set.root if path.is_dir() else path,
        variant=model_set.variant,
        name=model_set.name,
        max_side=model_set.mmdit_config.max_image_side,
        depth=model_set.mmdit_config.depth,
        has_t5=model_set.t5 is not None,
        missing=missing,
    )


def default_search_roots() -> list[Path]:
    """Where model sets usually are: our own download folder, the Hugging Face hub cache snapshots of the three
    official repositories, and ComfyUI installs in the usual places."""
    cache = os.environ.get("HF_HUB_CACHE")
    if cache is None:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
        )
        cache = os.path.join(home, "hub")
    roots: list[Path] = []
    for repo in HF_REPOS.values():
        snapshots = Path(cache) / f"models--{repo.replace('/', '--')}" / "snapshots"
        try:
            roots.extend(sorted(p for p in snapshots.iterdir() if p.is_dir()))
        except OSError:
            continue
    from app.downloads.layout import default_models_dir  # torch-free

    downloads = default_models_dir()
    with contextlib.suppress(OSError):
        roots[:0] = sorted(p for p in downloads.iterdir() if p.is_dir() and not p.name.startswith("."))
    home = Path.home()
    roots += [p for p in (home / "ComfyUI", home / "Documents" / "ComfyUI", home / "comfyui") if p.is_dir()]
    return roots


def scan(paths: list[Path], include_defaults: bool = True) -> list[ModelSetInfo]:
    """Inspect `paths` (the user's, first) and the default locations; one entry per distinct set."""
    seen: set[Path] = set()
    found: list[ModelSetInfo] = []
    candidates = list(paths) + (default_search_roots() if include_defaults else [])
    for path in candidates:
        try:
            key = Path(path).expanduser().resolve()
        except OSError:
            key = Path(path)
        if key in seen:
            continue
        seen.add(key)
        info = inspect_path(Path(path))
        if info.error and path not in paths:
            log.info("skipping %s: %s", path, info.error)
            continue
        found.append(info)
    log.info("model sets: %s", ", ".join(f"{i.label}" for i in found) or "none")
    return found


def missing_variants(found: list[ModelSetInfo]) -> list[str]:
    have = {i.variant for i in found if i.usable}
    return [v for v in VARIANTS if v not in have]
