"""`sd35-studio` command line. `generate` is the headless contract that tests and other tools rely on."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from app import __version__

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    from app.generate_command import run_generate  # imports torch: only when actually generating

    return run_generate(args)
