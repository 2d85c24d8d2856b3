"""How the command line reads an option's text: each kind parses and checks one value, or says in one sentence
why it cannot (argparse prints it as `argument --flag: <sentence>` and the command exits 1).

On Linux, argv bytes that are not UTF-8 reach Python as lone surrogates (PEP 383); every text kind refuses them
here, before they can reach a tokenizer, a file name or a PNG text chunk.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

_WHOLE_NUMBER = re.compile(r"\s*[+-]?\d+\s*")
_MAX_DIGITS = 30  # far above any sensible value; int() of a 5000-digit text would itself be an error
INT64_MAX = 2**63 - 1


def _shown(text: str, limit: int = 24) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def checked_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not valid UTF-8 text") from None
    return text


@dataclass(frozen=True, slots=True)
class Text:
    """Any text that is valid UTF-8 (prompts, choice names)."""

    def __call__(self, text: str) -> str:
        return checked_text(text)


@dataclass(frozen=True, slots=True)
class FilePath:
    """A file or folder name; `must_exist` checks a file that is read before anything else runs."""

    must_exist: bool = False

    def __call__(self, text: str) -> Path:
        path = Path(checked_text(text))
        if self.must_exist and not path.is_file():
            raise argparse.ArgumentTypeError(f"{text}: file not found")
        return path


def _lower_bound(minimum: float, exclusive: bool) -> str:
    if minimum == 0:
        return "must be positive" if exclusive else "must be 0 or more"
    return f"must be greater than {minimum:g}" if exclusive else f"must be at least {minimum:g}"


@dataclass(frozen=True, slots=True)
class Integer:
    """A whole number in [minimum, maximum]."""

    minimum: int = 0
    maximum: int = INT64_MAX

    def __call__(self, text: str) -> int:
        if not _WHOLE_NUMBER.fullmatch(checked_text(text)):
            raise argparse.ArgumentTypeError(f"must be a whole number, not {_shown(text)}")
        if len(text.strip().lstrip("+-")) > _MAX_DIGITS:
            raise argparse.ArgumentTypeError(self._too_large(text))
        value = int(text)
        if value < self.minimum:
            message = "must be positive" if self.minimum == 1 else _lower_bound(self.minimum, False)
            raise argparse.ArgumentTypeError(f"{message}, not {value}")
        if value > self.maximum:
            raise argparse.ArgumentTypeError(self._too_large(text))
        return value

    def _too_large(self, text: str) -> str:
        limit = "is too large" if self.maximum == INT64_MAX else f"must be at most {self.maximum}"
        return f"{limit}, not {_shown(text)}"


@dataclass(frozen=True, slots=True)
class Real:
    """A finite number >= minimum (> minimum when `exclusive`); nan and inf are refused. Upper bounds that
    depend on the model or on other options are checked by the request itself."""

    minimum: float = 0.0
    exclusive: bool = False

    def __call__(self, text: str) -> float:
        try:
            value = float(checked_text(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {_shown(text)}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {_shown(text)}")
        if value < self.minimum or (self.exclusive and value == self.minimum):
            raise argparse.ArgumentTypeError(f"{_lower_bound(self.minimum, self.exclusive)}, not {value:g}")
        return value


@dataclass(frozen=True, slots=True)
class IntegerList:
    """Comma-separated whole numbers in [minimum, maximum] (e.g. layer numbers `7,8,9`); "" is the empty list."""

    minimum: int = 0
    maximum: int = 10_000

    def __call__(self, text: str) -> tuple[int, ...]:
        text = checked_text(text).strip()
        if not text:
            return ()
        parts = [p.strip() for p in text.split(",")]
        if not all(_WHOLE_NUMBER.fullmatch(p) and len(p.lstrip("+-")) <= _MAX_DIGITS for p in parts):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated numbers like 7,8,9, not {_shown(text)}"
            )
        values = tuple(int(p) for p in parts)
        if not all(self.minimum <= v <= self.maximum for v in values):
            raise argparse.ArgumentTypeError(
                f"each number must be between {self.minimum} and {self.maximum}, not {_shown(text)}"
            )
        return values


@dataclass(frozen=True, slots=True)
class Sides:
    """Four whole numbers `left,top,right,bottom` in [0, maximum] (pixels added on each side)."""

    maximum: int = 4096

    def __call__(self, text: str) -> tuple[int, int, int, int]:
        parts = [p.strip() for p in checked_text(text).split(",")]
        if len(parts) != 4 or not all(_WHOLE_NUMBER.fullmatch(p) and len(p) <= _MAX_DIGITS for p in parts):
            raise argparse.ArgumentTypeError(
                f"expected four numbers left,top,right,bottom like 0,0,256,0, not {_shown(text)}"
            )
        left, top, right, bottom = (int(p) for p in parts)
        if not all(0 <= v <= self.maximum for v in (left, top, right, bottom)):
            raise argparse.ArgumentTypeError(
                f"each side must be between 0 and {self.maximum} px, not {_shown(text)}"
            )
        return left, top, right, bottom


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An existing image file that Pillow can read and that is not a decompression bomb. Only the header is
    read here; the pixels are read when the job needs them."""

    def __call__(self, text: str) -> Path:
        import warnings

        from PIL import Image, UnidentifiedImageError

        path = FilePath(must_exist=True)(text)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    width, height = im.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            limit = (Image.MAX_IMAGE_PIXELS or 0) / 1e6
            raise argparse.ArgumentTypeError(
                f"{text}: the image is too large to read safely (over {limit:.0f} megapixels)"
            ) from None
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise argparse.ArgumentTypeError(
                f"{text}: not a readable image ({exc.__class__.__name__})"
            ) from None
        if width <= 0 or height <= 0:
            raise argparse.ArgumentTypeError(f"{text}: the image is empty ({width}×{height})")
        return path


@dataclass(frozen=True, slots=True)
class LoraArg:
    """`FILE[:STRENGTH[:TE_STRENGTH]]`: an existing .safetensors LoRA file and its strengths."""

    def __call__(self, text: str):
        from app.inference.api.errors import InvalidRequestError
        from app.inference.api.lora import parse_lora_arg

        try:
            spec = parse_lora_arg(checked_text(text))
        except InvalidRequestError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        path = spec.path
        if path.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin", ".pkl"):
            raise argparse.ArgumentTypeError(
                f"{path}: pickle-based file, refused: opening it could run arbitrary code; use a .safetensors LoRA"
            )
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{path}: LoRA file not found")
        if path.suffix.lower() != ".safetensors":
            raise argparse.ArgumentTypeError(f"{path}: LoRA files must be .safetensors")
        return spec
