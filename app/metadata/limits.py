"""Bounds for reading metadata that anyone can write: sizes, JSON depth, and the one error a reader raises.

Every chunk or comment we parse is at most MAX_TEXT_BYTES (real ones are a few KB; ComfyUI's biggest workflows
are around a megabyte), every JSON value at most MAX_JSON_DEPTH levels deep (ComfyUI's are under ten), so a
crafted file costs a bounded amount of time and memory and never reaches Python's recursion limit.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 4 << 20  # one text chunk or EXIF comment, decoded
MAX_TOTAL_TEXT_BYTES = 16 << 20  # all text chunks of one PNG
MAX_JSON_DEPTH = 64


class MetadataError(ValueError):
    """An image's metadata cannot be read; the message is one sentence saying why (without the file's name)."""


def mib(n: int) -> str:
    """A size for a sentence: "4 MB", "47.7 MB", "12 KB"."""
    if n < 1 << 20:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1 << 20):.1f}".removesuffix(".0") + " MB"


def check_size(text: str | bytes, what: str) -> None:
    if len(text) > MAX_TEXT_BYTES:
        raise MetadataError(f"{what} is {mib(len(text))}, more than the {mib(MAX_TEXT_BYTES)} that are read.")


def load_json(text: str | bytes, what: str) -> object:
    """`json.loads` with the size and depth bounds; MetadataError (naming `what`) for anything it refuses."""
    check_size(text, what)
    try:
        value = json.loads(text)
    except RecursionError:  # the C decoder's own guard, far past MAX_JSON_DEPTH
        raise MetadataError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep.") from None
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes
        raise MetadataError(f"{what} is not valid JSON ({exc}).") from None
    check_depth(value, what)
    return value


def check_depth(value: object, what: str) -> None:
    """Walk `value` level by level, without recursion; MetadataError when lists or objects nest too deeply."""
    level, depth = [value], 0
    while level:
        depth += 1
        containers = [item for item in level if isinstance(item, dict | list)]
        if containers and depth > MAX_JSON_DEPTH:
            raise MetadataError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep.")
        level = [
            child for item in containers for child in (item.values() if isinstance(item, dict) else item)
        ]
