"""The ControlNet options of `sd35-studio generate`, read into the request's `controlnets`.

    --controlnet FILE --control-image IMAGE [--control-strength S] [--control-start A --control-end B]
    [--control-type blur|canny|depth] [--control-preprocess none|blur|canny|depth]
    [--canny-low L --canny-high H] [--blur-radius R] [--invert-depth]

`--controlnet` may be repeated for several ControlNets. Each per-ControlNet option is given either once (it then
applies to every ControlNet) or once per `--controlnet`, in the same order. The value ranges that tie options
together are checked by the request (api/control.py); the rules about the group are checked here.
"""

from __future__ import annotations

import argparse

from app.cli.values import ImageFile, Real, Text
from app.inference.api.control import (
    CONTROL_TYPES,
    DEFAULT_BLUR_RADIUS,
    DEFAULT_CANNY_HIGH,
    DEFAULT_CANNY_LOW,
    PREPROCESSORS,
    ControlPreprocess,
    ControlSpec,
)
from app.inference.api.errors import InvalidRequestError

# (dest, flag, kind, help, choices): per-ControlNet options, each repeatable
PER_CONTROLNET = (
    ("control_image", "--control-image", ImageFile(), "the control image of each --controlnet", None),
    ("control_strength", "--control-strength", Real(0), "how strongly it steers, 0-10 (default 1)", None),
    ("control_start", "--control-start", Real(0), "fraction of the steps where it starts (default 0)", None),
    ("control_end", "--control-end", Real(0), "fraction of the steps where it stops (default 1)", None),
    ("control_type", "--control-type", Text(), "the ControlNet's type (default: what its file says)", CONTROL_TYPES),
    ("control_preprocess", "--control-preprocess", Text(), "turn the control image into the map first (default none)",
     PREPROCESSORS),
)  # fmt: skip
# (dest, flag, kind, help, default): shared by every ControlNet
SHARED = (
    ("canny_low", "--canny-low", Real(0), "canny's low hysteresis threshold", DEFAULT_CANNY_LOW),
    ("canny_high", "--canny-high", Real(0), "canny's high hysteresis threshold", DEFAULT_CANNY_HIGH),
    ("blur_radius", "--blur-radius", Real(0, exclusive=True), "blur preprocessing sigma in px", DEFAULT_BLUR_RADIUS),
)  # fmt: skip


def add_control_arguments(parser: argparse.ArgumentParser) -> None:
    for dest, flag, kind, help_text, choices in PER_CONTROLNET:
        parser.add_argument(flag, dest=dest, type=kind, choices=choices, action="append", help=help_text)
    for dest, flag, kind, help_text, default in SHARED:
        parser.add_argument(
            flag, dest=dest, type=kind, default=None, help=f"{help_text} (default {default:g})"
        )
    parser.add_argument(
        "--invert-depth",
        dest="invert_depth",
        action="store_true",
        help="depth maps of the opposite convention",
    )


def _per_controlnet(args: argparse.Namespace, dest: str, flag: str, n: int) -> list:
    values = getattr(args, dest, None) or []
    if n == 0:
        if values:
            raise InvalidRequestError(f"{flag} needs --controlnet")
        return []
    if len(values) in (0, 1):
        return values * n if values else [None] * n
    if len(values) != n:
        raise InvalidRequestError(
            f"{flag} is given {len(values)} times for {n} ControlNets: give it once, or once per --controlnet"
        )
    return values


def controlnets_from_args(files: list | None, args: argparse.Namespace) -> tuple[ControlSpec, ...]:
    """The request's `controlnets` from the repeated `--controlnet` files and the options of the group."""
    files = files or []
    n = len(files)
    per = {dest: _per_controlnet(args, dest, flag, n) for dest, flag, *_ in PER_CONTROLNET}
    shared = {dest: getattr(args, dest, None) for dest, *_ in SHARED}
    if n == 0:
        given = [flag for dest, flag, *_ in SHARED if shared[dest] is not None]
        if given or getattr(args, "invert_depth", False):
            raise InvalidRequestError(f"{(given or ['--invert-depth'])[0]} needs --controlnet")
        return ()
    if any(image is None for image in per["control_image"]):
        raise InvalidRequestError("--controlnet needs --control-image (the image it follows)")
    specs = []
    for i, file in enumerate(files):
        preprocess = ControlPreprocess(
            kind=per["control_preprocess"][i] or "none",
            blur_radius=shared["blur_radius"] if shared["blur_radius"] is not None else DEFAULT_BLUR_RADIUS,
            canny_low=shared["canny_low"] if shared["canny_low"] is not None else DEFAULT_CANNY_LOW,
            canny_high=shared["canny_high"] if shared["canny_high"] is not None else DEFAULT_CANNY_HIGH,
            invert=bool(getattr(args, "invert_depth", False)),
        )
        strength, start, end = (per[k][i] for k in ("control_strength", "control_start", "control_end"))
        specs.append(
            ControlSpec(
                file=file, image=per["control_image"][i], strength=1.0 if strength is None else strength,
                start=0.0 if start is None else start, end=1.0 if end is None else end,
                control_type=per["control_type"][i], preprocess=preprocess,
            ).validated()
        )  # fmt: skip
    return tuple(specs)
