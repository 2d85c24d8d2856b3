"""Prompt weight syntax: `(word)` x1.1 per nesting level, `(word:1.5)` explicit, `\\(` `\\)` literal.

The parser of SD35_MODEL.md §3.3 step 1 (the reference's and ComfyUI's `token_weights`), written from the
spec's description. The reference parses the syntax and then ignores the weights; the `full` text mode applies
them. Unbalanced parentheses follow the same scanning rules literally, so they never raise.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

NESTING_FACTOR = 1.1

# Escaped parentheses are hidden behind two-character placeholders while the groups are scanned.
_ESCAPED_CLOSE = "\x00\x01"
_ESCAPED_OPEN = "\x00\x02"


def parse_parentheses(text: str) -> list[str]:
    """Split `text` into top-level `(...)` groups (parentheses kept) and the plain runs between them."""
    items: list[str] = []
    current = ""
    level = 0
    for ch in text:
        if ch == "(":
            if level == 0:
                if current:
                    items.append(current)
                current = "("
            else:
                current += ch
            level += 1
        elif ch == ")":
            level -= 1
            if level == 0:
                items.append(current + ")")
                current = ""
            else:
                # A ")" that does not close a group (nested, or unbalanced at level 0) is ordinary text.
                current += ch
        else:
            current += ch
    if current:
        items.append(current)
    return items


def _explicit_weight(inner: str) -> tuple[str, float] | None:
    """`"word:1.5"` -> ("word", 1.5); None without a `:<float>` suffix (a leading ":" does not count)."""
    j = inner.rfind(":")
    if j <= 0:
        return None
    try:
        return inner[:j], float(inner[j + 1 :])
    except ValueError:
        return None


def token_weights(text: str, weight: float) -> list[tuple[str, float]]:
    """Recursively assign a weight to every plain run of `text` (placeholders for escapes left in place)."""
    out: list[tuple[str, float]] = []
    for item in parse_parentheses(text):
        if len(item) >= 2 and item[0] == "(" and item[-1] == ")":
            inner = item[1:-1]
            inner_weight = weight * NESTING_FACTOR
            explicit = _explicit_weight(inner)
            if explicit is not None:
                inner, inner_weight = explicit
            out.extend(token_weights(inner, inner_weight))
        else:
            out.append((item, weight))
    return out


def parse_prompt_weights(text: str) -> list[tuple[str, float]]:
    """Parse a prompt into (text, weight) segments, in order; the weight syntax is removed from the text.

    >>> parse_prompt_weights("a (red:1.3) cat")
    [('a ', 1.0), ('red', 1.3), (' cat', 1.0)]
    """
    hidden = text.replace("\\)", _ESCAPED_CLOSE).replace("\\(", _ESCAPED_OPEN)
    return [
        (segment.replace(_ESCAPED_CLOSE, ")").replace(_ESCAPED_OPEN, "("), w)
        for segment, w in token_weights(hidden, 1.0)
    ]
