"""python -m tests.factory OUT_DIR [--variant large|large-turbo|medium]: write a tiny random-weight model set."""

import argparse
import logging
from pathlib import Path

from tests.factory.snapshot import CHECKPOINT_NAMES, write_snapshot

log = logging.getLogger("tests.factory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--variant", choices=tuple(CHECKPOINT_NAMES), default="medium")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = write_snapshot(args.out, args.variant, seed=args.seed)
    log.info("wrote a tiny SD3.5 %s model set to %s", args.variant, folder)


if __name__ == "__main__":
    main()
