"""Walking the places that may hold SD3.5 weights and reading what each file holds (headers only).

Places (`default_roots` plus whatever the user adds):
  Hugging Face hub cache   models--*--*stable-diffusion-3.5*/snapshots/<rev>/ (the revisions refs/ point to)
  snapshot / plain folder  sd3.5_*.safetensors, text_encoders/, vae/, tokenizer*/; diffusers transformer/,
                           vae/, text_encoder*/ (sharded files through their index json)
  ComfyUI install          models/{checkpoints,diffusion_models,unet} hold the diffusion models, models/{clip,
                           text_encoders} the text encoders, models/vae the VAEs; comfy/ the tokenizers
Each file holding an SD3.5 MMDiT anchors one model set (`resolution.py` finds its other parts). A scan reads at most
MAX_ENTRIES directory entries and MAX_DEPTH levels, follows no directory symlinks, opens only regular files,
and turns every problem into a message naming the file: it never raises.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.inference.api.errors import InferenceError
from app.inference.api.variants import foreign_family
from app.inference.checkpoints.formats import ComponentHit, identify_components
from app.inference.checkpoints.weights import PICKLE_SUFFIXES, SafetensorsHeader, is_index_file, read_header
from app.inference.text.tokenizer_sources import hf_cache_snapshots

log = logging.getLogger(__name__)

MAX_DEPTH = 4  # folder levels below a user-added folder
MAX_ENTRIES = 20_000  # directory entries per scan
SD35_REPO = re.compile(r"^models--[^/]+--[^/]*stable-diffusion-3\.5", re.IGNORECASE)
REFUSED_SUFFIXES = (*PICKLE_SUFFIXES, ".gguf")
COMFY_MODEL_DIRS = ("checkpoints", "diffusion_models", "unet")
COMFY_TEXT_DIRS = ("clip", "text_encoders")
COMFY_VAE_DIRS = ("vae",)
COMFY_PREVIEW_DIRS = ("vae_approx",)
COMPONENT_DIRS = ("text_encoders", "vae", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")


@dataclass(frozen=True, slots=True)
class FileReport:
    """What one weight file holds, or why it cannot be used."""

    path: Path
    hits: tuple[ComponentHit, ...] = ()
    error: str | None = None
    header: SafetensorsHeader | None = field(default=None, compare=False, repr=False)

    def hit(self, component: str) -> ComponentHit | None:
        return next((h for h in self.hits if h.component == component), None)


@dataclass(frozen=True, slots=True)
class Context:
    """Where the rest of a model set may be: its folder, its ComfyUI install, names that identify it."""

    root: Path
    source: str  # "hf-cache" | "comfyui" | "folder"
    comfy: Path | None = None  # the ComfyUI install (the folder holding models/)
    names: tuple[str, ...] = ()  # e.g. the Hugging Face repo id, for Large vs Turbo


class Scanner:
    """Cached header reads and bounded, error-collecting directory listings for one scan."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.reports: dict[Path, FileReport] = {}
        self.folder_errors: dict[Path, str] = {}
        self.entries_left = max_entries

    def file(self, path: Path) -> FileReport:
        path = Path(path)
        if path not in self.reports:
            self.reports[path] = _read_report(path)
        return self.reports[path]

    def listdir(self, folder: Path) -> list[Path]:
        """Sorted entries of `folder`; an unreadable folder is recorded, not raised."""
        if self.entries_left <= 0:
            self.folder_errors.setdefault(
                folder, f"{folder}: not scanned (the scan stopped at {MAX_ENTRIES} entries)"
            )
            return []
        try:
            with os.scandir(folder) as it:
                names = [Path(e.path) for e in it if not e.name.startswith(".")]
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.folder_errors[folder] = f"{folder}: cannot read this folder ({exc.strerror or exc})"
            return []
        self.entries_left -= len(names)
        return sorted(names)

    def weight_files(self, folder: Path, *, recurse: int = 0) -> list[Path]:
        """Weight files in `folder` (and `recurse` levels below): indexes instead of the shards they list,
        refused formats (pickles, GGUF) included so they can be reported."""
        files, dirs = [], []
        for p in self.listdir(folder):
            if _is_dir(p):
                dirs.append(p)
            elif _is_weight_name(p.name):
                files.append(p)
        indexes = [p for p in files if is_index_file(p)]
        sharded = {shard for index in indexes for shard in _shards_of(index)}
        out = [p for p in files if p not in sharded]
        if recurse > 0:
            for d in dirs:
                out.extend(self.weight_files(d, recurse=recurse - 1))
        return out


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink()
    except OSError:
        return False


def _is_weight_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".safetensors", *REFUSED_SUFFIXES)) or is_index_file(name)


def _shards_of(index: Path) -> set[Path]:
    """The shard files an index names (read from its weight_map only, so a broken index still hides them)."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return {index.parent / str(v) for v in weight_map.values()}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return set()


def _read_report(path: Path) -> FileReport:
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return FileReport(path, error=f"{path}: GGUF files are not supported; use a .safetensors checkpoint")
    try:
        header = read_header(path)
    except InferenceError as exc:
        return FileReport(path, error=str(exc))
    except (OSError, ValueError, MemoryError, RecursionError) as exc:  # a scan never crashes on one file
        return FileReport(path, error=f"{path}: cannot read the file ({exc.__class__.__name__})")
    try:
        hits = tuple(identify_components(header, hint=str(path)))
    except InferenceError as exc:
        return FileReport(path, error=str(exc), header=header)
    if not hits:
        family = foreign_family(header.tensors)
        what = f"is {family}, not Stable Diffusion 3.5" if family else "holds no SD3.5 component"
        return FileReport(path, error=f"{path} {what}", header=header)
    if not any(h.component == "mmdit" for h in hits):
        family = foreign_family(header.tensors)
        if family is not None:  # e.g. a FLUX all-in-one: its VAE and encoders are not taken apart
            return FileReport(path, error=f"{path} is {family}, not Stable Diffusion 3.5", header=header)
    return FileReport(path, hits, header=header)


# ----------------------------------------------------------------------------------------------------
# Default places
# ----------------------------------------------------------------------------------------------------


def hf_hub_cache(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The hub cache the way huggingface_hub finds it: HF_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME, ~/.cache."""
    env = os.environ if env is None else env
    home = home or Path.home()
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub"
    return home / ".cache" / "huggingface" / "hub"


def default_roots(env: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """The hub cache and the usual ComfyUI locations (portable, ComfyUI Desktop)."""
    home = home or Path.home()
    return [hf_hub_cache(env, home), home / "ComfyUI", home / "Documents" / "ComfyUI", home / "comfyui"]


# ----------------------------------------------------------------------------------------------------
# Finding the files that anchor model sets
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    report: FileReport
    context: Context


def comfy_install_of(path: Path) -> Path | None:
    """The ComfyUI install holding `path` (a file or folder under `<install>/models/<kind>/`), if any."""
    parts = path.parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "models" and parts[i + 1] in (*COMFY_MODEL_DIRS, *COMFY_TEXT_DIRS, *COMFY_VAE_DIRS):
            return Path(*parts[:i])
    return None


def is_comfy_install(folder: Path) -> bool:
    models = folder / "models"
    return any(_is_dir(models / d) for d in (*COMFY_MODEL_DIRS, *COMFY_TEXT_DIRS))


def collect_anchors(scanner: Scanner, root: Path, *, user_given: bool) -> list[Anchor]:
    """Every MMDiT-holding file under `root`, with the context its other components are looked for in."""
    root = Path(root).expanduser()
    if not _exists(root):
        return []
    if not _is_dir(root) and not root.is_dir():
        return _file_anchor(scanner, root)
    if root.name == "transformer" and _exists(root.parent / "model_index.json"):
        root = root.parent  # a diffusers folder's transformer/: the set is the whole folder
    if root.name.startswith("models--"):
        return _hf_repo_anchors(scanner, root)
    if any(SD35_REPO.match(p.name) for p in scanner.listdir(root)):
        return [
            a for p in scanner.listdir(root) if SD35_REPO.match(p.name) for a in _hf_repo_anchors(scanner, p)
        ]
    if is_comfy_install(root):
        return _comfy_anchors(scanner, root)
    if root.name == "models" and is_comfy_install(root.parent):
        return _comfy_anchors(scanner, root.parent)
    return _folder_anchors(scanner, root, Context(root, "folder"), MAX_DEPTH if user_given else 1)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _file_anchor(scanner: Scanner, path: Path) -> list[Anchor]:
    folder = path.parent.parent if path.parent.name == "transformer" else path.parent
    comfy = comfy_install_of(path)
    context = Context(folder, "comfyui" if comfy else "folder", comfy, _hf_names(path))
    return [Anchor(scanner.file(path), context)]


def _hf_names(path: Path) -> tuple[str, ...]:
    repo = next((p for p in path.parents if p.name.startswith("models--")), None)
    return (repo.name.removeprefix("models--").replace("--", "/"),) if repo else ()


def _hf_repo_anchors(scanner: Scanner, repo: Path) -> list[Anchor]:
    repo_id = repo.name.removeprefix("models--").replace("--", "/")
    anchors = []
    for snapshot in hf_cache_snapshots(repo.parent, repo_id):
        anchors.extend(_folder_anchors(scanner, snapshot, Context(snapshot, "hf-cache", names=(repo_id,)), 1))
    return anchors


def _comfy_anchors(scanner: Scanner, install: Path) -> list[Anchor]:
    anchors = []
    for kind in COMFY_MODEL_DIRS:
        folder = install / "models" / kind
        for path in scanner.weight_files(folder, recurse=2):
            context = Context(path.parent, "comfyui", install)
            anchors.append(Anchor(scanner.file(path), context))
    return anchors


def _folder_anchors(scanner: Scanner, folder: Path, context: Context, depth: int) -> list[Anchor]:
    """Files in `folder` itself and its diffusers `transformer/`; subfolders (other than component folders)
    down to `depth` levels, each the root of its own sets."""
    anchors = [Anchor(scanner.file(p), context) for p in scanner.weight_files(folder)]
    transformer = folder / "transformer"
    if _is_dir(transformer):
        anchors.extend(Anchor(scanner.file(p), context) for p in scanner.weight_files(transformer))
    if depth <= 1:
        return anchors
    for sub in scanner.listdir(folder):
        if not _is_dir(sub) or sub.name in COMPONENT_DIRS or sub.name.startswith("tokenizer"):
            continue
        if is_comfy_install(sub):
            anchors.extend(_comfy_anchors(scanner, sub))
        elif sub.name.startswith("models--"):
            anchors.extend(_hf_repo_anchors(scanner, sub))
        else:
            anchors.extend(
                _folder_anchors(scanner, sub, Context(sub, context.source, context.comfy), depth - 1)
            )
    return anchors


def unique(paths: Iterable[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for p in paths:
        key = Path(p).expanduser().absolute()
        if key not in seen:
            seen.add(key)
            out.append(Path(p).expanduser())
    return out
