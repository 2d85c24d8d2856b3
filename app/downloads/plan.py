"""A download plan: the files of one model set, their sizes and total, and the destination folder.

`build_plan` never touches the network: it uses the published sizes and looks at what is already on disk (complete
files, resumable partial data). `app.downloads.hub.resolve_plan` replaces the sizes with the Hub's exact ones when
the user starts (or asks for) a download.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from app.downloads.catalog import (
    CONTROLNET_VARIANTS,
    T5_CHOICES,
    RemoteFile,
    VariantSource,
    model_set_files,
    variant_source,
)
from app.downloads.layout import default_models_dir, find_partials

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlannedFile:
    remote: RemoteFile
    size: int  # bytes: exact when `size_exact`, else the published (rounded) size
    size_exact: bool = False
    present_bytes: int = 0  # bytes already on disk: the whole file, or resumable partial data
    complete: bool = False  # the finished file is in place
    elsewhere: Path | None = None  # the same ControlNet in the other Large set's folder: linked, not fetched

    @property
    def local_path(self) -> str:
        return self.remote.local_path

    @property
    def remaining(self) -> int:
        return 0 if self.complete or self.elsewhere else max(self.size - self.present_bytes, 0)


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    source: VariantSource
    t5: str  # "fp16" | "fp8"
    destination: Path
    files: tuple[PlannedFile, ...]
    controlnets: tuple[
        str, ...
    ] = ()  # the optional SD3.5 Large ControlNets chosen ("blur", "canny", "depth")

    @property
    def variant(self) -> str:
        return self.source.variant

    @property
    def has_model_set(self) -> bool:
        """False for a plan of ControlNets only."""
        return any(f.remote.role == "model" for f in self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def present_bytes(self) -> int:
        return sum(f.size if f.complete or f.elsewhere else f.present_bytes for f in self.files)

    @property
    def remaining_bytes(self) -> int:
        return sum(f.remaining for f in self.files)

    @property
    def sizes_exact(self) -> bool:
        return all(f.size_exact for f in self.files)

    @property
    def repositories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.remote.repo_id for f in self.files))

    def replace_file(self, index: int, planned: PlannedFile) -> DownloadPlan:
        files = list(self.files)
        files[index] = planned
        return dataclasses.replace(self, files=tuple(files))


def default_destination(variant: str) -> Path:
    return default_models_dir() / variant_source(variant).folder_name


def local_state(destination: Path, remote: RemoteFile, size: int, size_exact: bool) -> PlannedFile:
    """What of one file is already on disk, without any network access."""
    final = destination / remote.local_path
    if final.is_file():  # its real size is what counts from now on
        on_disk = final.stat().st_size
        return PlannedFile(remote, on_disk, True, present_bytes=on_disk, complete=True)
    partial = max((p.stat().st_size for p in find_partials(destination, remote.local_path)), default=0)
    elsewhere = next(iter(other_copies(destination, remote)), None)
    present = min(partial, size) if size_exact else partial
    return PlannedFile(remote, size, size_exact, present_bytes=present, elsewhere=elsewhere)


def other_copies(destination: Path, remote: RemoteFile) -> list[Path]:
    """The same ControlNet file in the other Large sets' folders next to `destination` and in the app's models
    folder (`app.downloads.reuse` links one of them in place of a download)."""
    if remote.role != "controlnet":
        return []
    own = destination / remote.local_path
    sets = [variant_source(v).folder_name for v in CONTROLNET_VARIANTS]
    roots = dict.fromkeys([destination.parent, default_models_dir()])
    found = []
    for path in dict.fromkeys(root / name / remote.local_path for root in roots for name in sets):
        if path != own and path.is_file() and not _same_file(path, own):
            found.append(path)
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def build_plan(
    variant: str,
    t5: str = "fp16",
    destination: str | Path | None = None,
    controlnets: tuple[str, ...] = (),
    *,
    model_set: bool = True,
) -> DownloadPlan:
    """The plan for one variant (and the chosen ControlNets) with published sizes and the local state of each
    file. No network access. With the set already in `destination`, only the ControlNets remain to fetch;
    without `model_set` the plan holds the ControlNets only (into the same `controlnets/` folder)."""
    if t5 not in T5_CHOICES:
        raise ValueError(f"unknown T5 precision {t5!r}; choose from {', '.join(T5_CHOICES)}")
    source = variant_source(variant)
    dest = Path(destination).expanduser() if destination is not None else default_destination(variant)
    remotes = model_set_files(variant, t5, tuple(controlnets), model_set=model_set)
    files = tuple(local_state(dest, r, r.published_size, False) for r in remotes)
    chosen = tuple(dict.fromkeys(controlnets))
    return DownloadPlan(source=source, t5=t5, destination=dest, files=files, controlnets=chosen)
