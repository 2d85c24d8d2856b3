"""`sd35-studio` command line. `generate` is the headless contract that tests and other tools rely on."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from app import __version__
from app.cli.download import add_arguments as add_download_arguments
from app.cli.engines import add_arguments as add_engines_arguments
from app.cli.loras import add_arguments as add_loras_arguments
from app.cli.models import add_arguments as add_models_arguments
from app.cli.options import add_generate_arguments
from app.cli.status import EXIT_ERROR, closed_stdout
from app.cli.values import FilePath

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, no usage dump
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sd35-studio", description="SD3.5 Studio: local Stable Diffusion 3.5.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Without a subcommand the window opens (app.main); these two options are its automation contract.
    parser.add_argument(
        "--model", dest="window_model", type=FilePath(), help="open the window with this model set"
    )
    parser.add_argument(
        "--output-dir", dest="window_output_dir", type=FilePath(), help="write the window's images here"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    g = sub.add_parser("generate", help="generate images without the window")
    add_generate_arguments(g)
    m = sub.add_parser("models", help="list the SD3.5 model sets found on this machine")
    add_models_arguments(m)
    lo = sub.add_parser("loras", help="list the LoRA files found, with the model each was made for")
    add_loras_arguments(lo)
    d = sub.add_parser("download", help="download an SD3.5 model set from Hugging Face (resumable)")
    add_download_arguments(d)
    e = sub.add_parser("engines", help="ComfyUI servers as the engine: test one (engines test URL)")
    add_engines_arguments(e)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (usage errors and --help included, nothing raises)."""
    # Privacy: huggingface_hub reads this once at import; nothing leaves the machine unless the user downloads.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        code = _run(argv)
        sys.stdout.flush()  # a reader that stopped early shows up here, not in the flush at interpreter exit
        return code
    except BrokenPipeError:
        return closed_stdout()


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error that argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if args.command is None:
        from app.main import run_app  # Qt: only when opening the window

        return run_app(model=args.window_model, output_dir=args.window_output_dir)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    if args.command == "models":
        from app.cli.models import run_models  # reads headers only; torch for the memory plans

        return run_models(args)
    if args.command == "loras":
        from app.cli.loras import run_loras  # headers only

        return run_loras(args)
    if args.command == "download":
        from app.cli.download import run_download  # huggingface_hub: only when downloading

        return run_download(args)
    if args.command == "engines":
        from app.cli.engines import run_engines  # HTTP only

        return run_engines(args)
    if args.engine:
        from app.cli.remote import run_remote  # a ComfyUI server runs the job

        return run_remote(args)
    from app.cli.generate import run_generate  # imports torch: only when actually generating

    return run_generate(args)
