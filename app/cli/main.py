"""`sd35-studio` command line. `generate` is the headless contract that tests and other tools rely on."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app import __version__
from app.cli.download import add_arguments as add_download_arguments
from app.cli.models import add_arguments as add_models_arguments
from app.inference.memory.plan import PLAN_NAMES

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _floats_list(text: str) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer numbers like 7,8,9, not {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sd35-studio", description="SD3.5 Studio: local Stable Diffusion 3.5.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Without a subcommand the window opens (app.main); these two options are its automation contract.
    parser.add_argument("--model", dest="window_model", type=Path, help="open the window with this model set")
    parser.add_argument(
        "--output-dir", dest="window_output_dir", type=Path, help="write the window's images here"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    g = sub.add_parser("generate", help="generate images without the window")
    g.add_argument("--model", required=True, type=Path, help="snapshot folder or sd3.5_*.safetensors file")
    g.add_argument("--prompt", required=True)
    g.add_argument("--negative", default="")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int)
    g.add_argument("--cfg", type=float)
    g.add_argument("--sampler", choices=("euler", "dpmpp_2m", "euler_ancestral"))
    g.add_argument("--scheduler", choices=("normal", "simple", "sgm_uniform", "beta"))
    g.add_argument("--width", type=int)
    g.add_argument("--height", type=int)
    g.add_argument("--shift", type=float)
    g.add_argument("--variant", choices=("large", "large-turbo", "medium"))
    g.add_argument(
        "--slg-layers", type=_floats_list, help="joint blocks skipped by skip-layer guidance, e.g. 7,8,9"
    )
    g.add_argument("--slg-scale", type=float)
    g.add_argument("--slg-start", type=float)
    g.add_argument("--slg-end", type=float)
    g.add_argument(
        "--negative-until", type=float, help="use the negative prompt only for this first fraction"
    )
    g.add_argument("--init-image", type=Path)
    g.add_argument("--denoise", type=float, default=None, help="img2img strength in (0, 1] (default 0.8)")
    g.add_argument("--count", type=int, default=1, help="images with seeds S, S+1, ...")
    g.add_argument(
        "--no-t5", action="store_true", help="run without the T5-XXL encoder (less RAM, less fidelity)"
    )
    g.add_argument("--text-mode", choices=("full", "reference"), default="full")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    g.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto")
    g.add_argument("--out", required=True, type=Path, help="output PNG (FILE-<seed>.png for --count > 1)")
    g.add_argument("--save-latent", action="store_true", help="also write <stem>.latent.safetensors")
    g.add_argument("--json", action="store_true", help="print one JSON event per line")
    g.add_argument("--clip-l", type=Path, help="CLIP-L text encoder file (replaces the model set's)")
    g.add_argument("--clip-g", type=Path, help="CLIP-G text encoder file")
    g.add_argument("--t5", type=Path, help="T5-XXL text encoder file (fp16, bf16, fp8 or scaled fp8)")
    g.add_argument("--vae", type=Path, help="VAE file (single-file or diffusers layout)")
    g.add_argument(
        "--memory-plan",
        choices=("auto", *PLAN_NAMES),
        default="auto",
        help="where the networks live and in which precision (default: the first that fits)",
    )
    m = sub.add_parser("models", help="list the SD3.5 model sets found on this machine")
    add_models_arguments(m)
    d = sub.add_parser("download", help="download an SD3.5 model set from Hugging Face (resumable)")
    add_download_arguments(d)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Privacy: huggingface_hub reads this once at import; nothing leaves the machine unless the user downloads.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        from app.main import run_app  # Qt: only when opening the window

        return run_app(model=args.window_model, output_dir=args.window_output_dir)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    if args.command == "models":
        from app.cli.models import run_models  # reads headers only; torch for the memory plans

        return run_models(args)
    if args.command == "download":
        from app.cli.download import run_download  # huggingface_hub: only when downloading

        return run_download(args)
    from app.cli.generate import run_generate  # imports torch: only when actually generating

    return run_generate(args)
