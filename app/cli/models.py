"""`sd35-studio models [PATH ...] [--json]`: the SD3.5 model sets in the default places and in PATHs.

For each set: variant, the file behind each component with its dtype, parameter count and size on disk, whether
it is complete or what is missing, the errors found file by file, and the memory plan this machine would use.
`--json` prints one JSON list: per set `variant`, `complete`, `missing`, `components` (name -> path), `errors`,
plus `name`, `path`, `root`, `source`, `details`, `tokenizers` and `plan`; files that serve no set are entries
with `variant: null` and their message in `errors`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.values import FilePath

if TYPE_CHECKING:  # the engine (and torch) load only when the command runs
    from app.inference.checkpoints.discovery import ScanResult
    from app.inference.checkpoints.resolution import SetReport

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", type=FilePath(), metavar="PATH", help="more folders or files to look in"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of the model sets")


def _plan(report: SetReport) -> dict[str, Any] | None:
    """The memory plan this machine would use for a set (None when the set cannot load)."""
    from app.inference.api.errors import InferenceError
    from app.inference.checkpoints.model_set import model_set_from_report
    from app.inference.memory.device import pick_device
    from app.inference.memory.plan import choose_plan, probe_machine

    try:
        model_set = model_set_from_report(report)
        use_t5 = model_set.t5 is not None
        plan = choose_plan(model_set.sizes(use_t5), probe_machine(pick_device("auto")))
    except (InferenceError, ValueError, OSError):
        return None
    return {**plan.to_json(), "description": plan.describe()}


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _text(result: ScanResult, plans: dict[Path, dict[str, Any] | None]) -> str:
    from app.inference.api.variants import PRESETS
    from app.inference.checkpoints.formats import LABELS, format_bytes, format_params

    lines: list[str] = []
    for s in result.sets:
        if s.variant is None:
            continue
        state = "complete" if s.complete else "missing: " + ", ".join(LABELS.get(m, m) for m in s.missing)
        lines.append(f"{PRESETS[s.variant].label}  ({s.name})  {state}")
        lines.append(f"  folder      {s.root}  [{s.source}]")
        for name, c in s.components:
            where = _shown(c.path, s.root) + (f" [{c.prefix}*]" if c.prefix else "")
            size = f"{format_params(c.params)} params, {format_bytes(c.nbytes)}"
            layout = "  (diffusers layout)" if c.layout == "diffusers" else ""
            lines.append(f"  {name:<11} {where}  {c.dtype}, {size}{layout}")
        found = [
            (label, folder)
            for label, folder in (("CLIP", s.tokenizers.clip), ("T5", s.tokenizers.t5))
            if folder
        ]
        if found:
            lines.append(
                "  tokenizers  " + "  ".join(f"{label}: {_shown(folder, s.root)}" for label, folder in found)
            )
        plan = plans.get(s.anchor)
        if plan is not None:
            lines.append(f"  memory      {plan['description']}")
        lines.extend(f"  error: {e}" for e in s.errors)
        lines.append("")
    refused = [s for s in result.sets if s.variant is None]
    if refused or result.other_files:
        lines.append("Other files (not usable as an SD3.5 model set):")
        lines.extend(f"  {e}" for s in refused for e in s.errors)
        lines.extend(f"  {o.message}" for o in result.other_files)
        lines.append("")
    if not any(s.variant for s in result.sets):
        lines.insert(0, "No SD3.5 model sets found.\n")
    lines.append(f"(scanned in {result.seconds:.2f} s)")
    return "\n".join(lines)


def run_models(args: argparse.Namespace) -> int:
    from app.inference.checkpoints.discovery import scan

    missing = [p for p in args.paths if not p.expanduser().exists()]
    for p in missing:
        sys.stderr.write(f"sd35-studio: error: {p}: no such file or folder\n")
    result = scan([p for p in args.paths if p not in missing])
    plans = {s.anchor: _plan(s) for s in result.sets if s.variant is not None}
    if args.json:
        entries = []
        for s in result.sets:
            entry = s.to_json()
            entry["plan"] = plans.get(s.anchor)
            entries.append(entry)
        entries.extend(o.to_json() for o in result.other_files)
        print(json.dumps(entries, indent=2))  # noqa: T201 - CLI output
    else:
        print(_text(result, plans))  # noqa: T201 - CLI output
    return 1 if missing else 0
