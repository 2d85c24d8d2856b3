"""`sd35-studio loras [PATH ...] [--json]`: the LoRA files in the default places (ComfyUI `models/loras`, the
Hugging Face cache) and in PATHs, with the architecture each was made for and whether it fits SD3.5 Large and
Medium. `--json` prints one JSON list (see `LoraEntry.to_json`)."""

from __future__ import annotations

import argparse
import json
import sys

from app.cli.values import FilePath


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", type=FilePath(), metavar="PATH", help="more folders or files to look in"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of the LoRA files")


def _text(scan) -> str:
    lines = []
    for e in scan.entries:
        if e.error:
            lines.append(f"{e.name}  refused: {e.error}")
            continue
        fits = [label for label, v in (("Large", "large"), ("Medium", "medium")) if e.usable_with(v) is None]
        arch = e.architecture.label if e.architecture else "unknown"
        rank = f", rank {e.rank}" if e.rank else ""
        lines.append(f"{e.name}  ({arch}{rank})  " + (f"works with SD3.5 {' and '.join(fits)}" if fits else
                                                      f"not usable: {e.usable_with('large')}"))  # fmt: skip
        if e.title != e.name:
            lines.append(f"  title     {e.title}")
        lines.append(f"  file      {e.path}")
        if e.trigger_words:
            lines.append(f"  triggers  {', '.join(e.trigger_words)}")
        if e.preview:
            lines.append(f"  preview   {e.preview}")
    if not scan.entries:
        lines.append("No LoRA files found.")
    lines.append(f"(scanned in {scan.seconds:.2f} s)")
    return "\n".join(lines)


def run_loras(args: argparse.Namespace) -> int:
    from app.inference.lora.discovery import scan_loras

    missing = [p for p in args.paths if not p.expanduser().exists()]
    for p in missing:
        sys.stderr.write(f"sd35-studio: error: {p}: no such file or folder\n")
    scan = scan_loras([p for p in args.paths if p not in missing])
    if args.json:
        print(json.dumps([e.to_json() for e in scan.entries], indent=2))  # noqa: T201 - CLI output
    else:
        print(_text(scan))  # noqa: T201 - CLI output
    return 1 if missing else 0
