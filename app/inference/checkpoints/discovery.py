"""Discovery: every SD3.5 model set in the default places and the folders or files the user adds, from
safetensors headers only — what each set has, what it lacks, and what is wrong, file by file.

    result = scan([Path("~/models")])           # defaults too: HF hub cache, ~/ComfyUI, ...
    for entry in result.sets: entry.variant, entry.complete, entry.missing, entry.components, entry.errors
    result.other_files                          # files that belong to no set, each with its message

Two sets of the same variant in one folder are both reported, each naming the other: pointing at that folder
is ambiguous, pointing at either file is not. A folder holding both the single-file checkpoint and the
diffusers `transformer/` of the same variant (a full Hugging Face download) is one set (the single file).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.inference.api.variants import PRESETS
from app.inference.checkpoints.formats import LABELS
from app.inference.checkpoints.resolution import SetReport, resolve
from app.inference.checkpoints.scanning import (
    MAX_ENTRIES,
    Anchor,
    Scanner,
    collect_anchors,
    default_roots,
    hf_hub_cache,
    unique,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OtherFile:
    """A file (or folder) that serves no set: refused, broken, of another family, or a lone component."""

    path: Path
    message: str
    components: tuple[str, ...] = ()  # what a lone component file holds, e.g. ("clip_l",)

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": None,
            "name": self.path.name,
            "path": str(self.path),
            "complete": False,
            "missing": [],
            "components": {c: str(self.path) for c in self.components},
            "errors": [self.message],
        }


@dataclass(frozen=True, slots=True)
class ScanResult:
    sets: tuple[SetReport, ...]
    other_files: tuple[OtherFile, ...]
    seconds: float = 0.0

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.sets] + [o.to_json() for o in self.other_files]


def scan(
    paths: Iterable[str | Path] = (),
    *,
    defaults: bool = True,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    max_entries: int = MAX_ENTRIES,
) -> ScanResult:
    """Find the model sets in the default places (if `defaults`) and in `paths`. Never raises for bad files."""
    import time

    started = time.perf_counter()
    env = os.environ if env is None else env
    scanner = Scanner(max_entries)
    hf_cache = hf_hub_cache(env, home)
    user = unique(Path(p) for p in paths)
    roots = unique([*(default_roots(env, home) if defaults else []), *user])
    anchors: dict[Path, Anchor] = {}
    for root in roots:
        for anchor in collect_anchors(scanner, root, user_given=root in user):
            anchors.setdefault(anchor.report.path, anchor)
    sets: list[SetReport] = []
    reported: set[Path] = set()
    for anchor in anchors.values():
        try:
            found, files = resolve(scanner, anchor, hf_cache)
        except Exception as exc:  # a scan never crashes: one set's failure is that set's message
            log.exception("resolving %s failed", anchor.report.path)
            found = SetReport(
                None,
                anchor.report.path,
                anchor.context.root,
                anchor.context.source,
                errors=(f"{anchor.report.path}: internal error ({exc.__class__.__name__})",),
            )
            files = {anchor.report.path}
        if found is not None:
            sets.append(found)
            reported |= files
    sets = _mark_conflicts(_drop_diffusers_duplicates(sets))
    others = _other_files(scanner, reported, user)
    return ScanResult(tuple(sets), tuple(others), time.perf_counter() - started)


def _drop_diffusers_duplicates(sets: list[SetReport]) -> list[SetReport]:
    single = {(s.root, s.variant) for s in sets if s.variant and s.component("mmdit").layout == "single-file"}
    return [
        s
        for s in sets
        if not (s.variant and s.component("mmdit").layout == "diffusers" and (s.root, s.variant) in single)
    ]


def _mark_conflicts(sets: list[SetReport]) -> list[SetReport]:
    out = []
    for s in sets:
        rivals = [o for o in sets if o is not s and o.variant and o.variant == s.variant and o.root == s.root]
        if rivals:
            names = ", ".join(o.anchor.name for o in rivals)
            label = PRESETS[s.variant].label
            message = (
                f"{s.root}: {s.anchor.name} and {names} both claim {label}; pass the file you want "
                "(--model FILE), not the folder"
            )
            s = replace(s, errors=(*s.errors, message))
        out.append(s)
    return out


def _other_files(scanner: Scanner, reported: set[Path], user: list[Path]) -> list[OtherFile]:
    others = []
    for path, report in sorted(scanner.reports.items()):
        if path in reported:
            continue
        if report.error is not None:
            others.append(OtherFile(path, report.error))
        elif path in user and report.hit("mmdit") is None:
            held = tuple(h.component for h in report.hits)
            what = ", ".join(LABELS.get(c, c) for c in held)
            others.append(OtherFile(path, f"{path} holds no SD3.5 diffusion model (it holds: {what})", held))
    others.extend(OtherFile(folder, message) for folder, message in sorted(scanner.folder_errors.items()))
    return others
