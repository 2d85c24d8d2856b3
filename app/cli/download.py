"""`sd35-studio download`: print the plan, fetch the files with progress, check the model set."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import TextIO

from app.cli.status import EXIT_ERROR
from app.cli.values import Text
from app.downloads.catalog import CONTROLNET_REPO, CONTROLNET_TYPES, HUB_WEBSITE
from app.downloads.errors import AccessDeniedError, DownloadCancelled, DownloadError
from app.downloads.layout import PARTIAL_DIR
from app.downloads.plan import DownloadPlan, build_plan
from app.downloads.progress import DownloadProgress, Phase, describe, format_bytes

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", required=True, type=Text(), choices=("large", "large-turbo", "medium"))
    parser.add_argument(
        "--t5",
        type=Text(),
        choices=("fp16", "fp8"),
        default="fp16",
        help="T5-XXL precision: fp16 9.79 GB, fp8 4.89 GB",
    )
    parser.add_argument(
        "--dest", type=Text(), default=None, help="destination folder (default: the app's models folder)"
    )
    parser.add_argument(
        "--token-from-env",
        action="store_true",
        help="use the access token in $HF_TOKEN and keep it in huggingface_hub's token store",
    )
    parser.add_argument(
        "--controlnet",
        type=Text(),
        choices=CONTROLNET_TYPES,
        action="append",
        default=[],
        help="also fetch this official SD3.5 Large ControlNet (8.65 GB each) into the set's controlnets/ folder; "
        "repeatable; Large and Large Turbo only",
    )
    parser.add_argument(
        "--controlnets-only",
        action="store_true",
        help="fetch only the --controlnet files (for a Large set you already have elsewhere)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan only; no network access")


def plan_lines(plan: DownloadPlan) -> list[str]:
    """The plan as the CLI prints it; the small tokenizer files are summed up on one line."""
    approx = "" if plan.sizes_exact else "≈"
    rows: list[tuple[str, str, int, bool, int, bool]] = []  # role, name, size, exact, present, complete
    tokenizers = [f for f in plan.files if f.remote.role == "tokenizer"]
    if tokenizers:
        folders = ", ".join(dict.fromkeys(f.local_path.split("/")[0] + "/" for f in tokenizers))
        rows.append(
            (
                "tokenizers",
                f"{folders} ({len(tokenizers)} files)",
                sum(f.size for f in tokenizers),
                all(f.size_exact for f in tokenizers),
                sum(f.present_bytes for f in tokenizers),
                all(f.complete for f in tokenizers),
            )
        )
    for f in plan.files:
        if f.remote.role != "tokenizer":
            rows.append((f.remote.role, f.local_path, f.size, f.size_exact, f.present_bytes, f.complete))
    width = max(len(r[1]) for r in rows)
    if plan.has_model_set:
        lines = [
            f"{plan.source.label} from {plan.source.repo_id} (T5-XXL {plan.t5})",
            f"into {plan.destination}",
        ]
    else:
        lines = [f"SD3.5 Large ControlNets from {CONTROLNET_REPO}", f"into {plan.destination}"]
    for role, name, size, exact, present, complete in rows:
        if complete:
            state = "  already here"
        elif present:
            state = f"  {format_bytes(present)} already here, resumes"
        else:
            state = ""
        shown = f"{'' if exact else '≈'}{format_bytes(size)}"
        lines.append(f"  {role:<16} {name:<{width}}  {shown:>10}{state}")
    lines.append(
        f"  total {approx}{format_bytes(plan.total_bytes)}; already here {format_bytes(plan.present_bytes)}; "
        f"to download {approx}{format_bytes(plan.remaining_bytes)}"
    )
    if plan.has_model_set:
        lines.append(f"Licence: accept it on {plan.source.page_url} (signed in) before downloading.")
    if plan.controlnets:
        also = "as well" if plan.has_model_set else "(signed in) before downloading"
        lines.append(f"ControlNets' licence: accept it on {HUB_WEBSITE}/{CONTROLNET_REPO} {also}.")
    return lines


class _ProgressPrinter:
    """One rewritten line on a terminal; a line every few seconds (and per file) in a log or a pipe."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_time = 0.0
        self.last_key: tuple[Phase, int] | None = None

    def __call__(self, progress: DownloadProgress) -> None:
        now = time.monotonic()
        key = (progress.phase, progress.file_index)
        changed = key != self.last_key
        if not changed and now - self.last_time < (0.25 if self.tty else 10.0):
            return
        self.last_time, self.last_key = now, key
        line = describe(progress)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        if self.tty and self.last_key is not None:
            self.stream.write("\n")
            self.stream.flush()


def _out(text: str = "") -> None:
    print(text, flush=True)  # noqa: T201 - CLI output


def run_download(args: argparse.Namespace) -> int:
    # huggingface_hub 2.x otherwise adds a daily GET /api/agent-harnesses and library versions to its requests;
    # read once at its import, which happens on the next line. The user can still opt in with =0.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from app.downloads import hub  # huggingface_hub: imported only for this command

    try:
        plan = build_plan(
            args.variant,
            args.t5,
            args.dest,
            tuple(getattr(args, "controlnet", ())),
            model_set=not getattr(args, "controlnets_only", False),
        )
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    for line in plan_lines(plan):
        _out(line)
    if args.dry_run:
        _out("Dry run: nothing was downloaded and the network was not used.")
        return 0

    try:
        if args.token_from_env:
            token = hub.token_from_env()
            hub.save_token(token)
            _out("Token from $HF_TOKEN checked and saved in huggingface_hub's token store.")
        else:
            token = hub.current_token()
            if token is None:
                _out(
                    "No Hugging Face token found (HF_TOKEN or `hf auth login`): the gated SD3.5 files will be refused."
                )
    except DownloadError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1

    printer = _ProgressPrinter(sys.stderr)
    from app.downloads.downloader import download_model_set

    try:
        result = download_model_set(plan, token=token, on_progress=printer)
    except KeyboardInterrupt:
        printer.end_line()
        sys.stderr.write(
            f"cancelled; partial data is kept in {plan.destination / PARTIAL_DIR} and the same command resumes it\n"
        )
        return 130
    except DownloadCancelled:
        printer.end_line()
        sys.stderr.write("cancelled\n")
        return 130
    except AccessDeniedError as exc:
        printer.end_line()
        sys.stderr.write(f"error: {exc}\n")
        return 3
    except DownloadError as exc:
        printer.end_line()
        sys.stderr.write(f"error: {exc}\n")
        return 1
    printer.end_line()
    what = f"{result.model_name} ({plan.source.label})" if plan.has_model_set else "the ControlNets"
    _out(
        f"Done: {what} is ready in {result.destination}; "
        f"{format_bytes(result.fetched_bytes)} downloaded in {result.seconds:.0f} s."
    )
    return 0
