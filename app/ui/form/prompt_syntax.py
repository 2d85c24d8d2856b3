"""Where the weight syntax sits in a prompt, for the editor's highlighter. Qt-free.

The engine's parser (`app.inference.text.prompt_weights`) turns a prompt into weighted segments; a highlighter needs
positions instead. This scanner follows the same rules for balanced text: `(words)` multiplies by 1.1 per
level, `(words:1.5)` sets the weight, `\\(` and `\\)` are literal. Parentheses without a partner are reported
so the editor can mark them (the engine reads them literally, which is rarely what was meant).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import Enum

from app.inference.text.prompt_weights import NESTING_FACTOR

log = logging.getLogger(__name__)


class SpanKind(Enum):
    PAREN = "paren"  # a matched "(" or ")"
    WEIGHT = "weight"  # the ":1.5" of an explicit weight
    TEXT = "text"  # text inside a group (weight != 1)
    ESCAPE = "escape"  # "\(" or "\)"
    UNBALANCED = "unbalanced"  # a parenthesis without a partner
    LORA = "lora"  # an A1111 `<lora:name:0.8>` tag: it adds a LoRA and is taken out of the text


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    length: int
    kind: SpanKind
    weight: float = 1.0
    depth: int = 0


def _explicit_weight(inner: str) -> tuple[int, float] | None:
    """(offset of ":" in `inner`, weight) for `words:1.5`; None otherwise (a leading ":" does not count)."""
    j = inner.rfind(":")
    if j <= 0:
        return None
    try:
        return j, float(inner[j + 1 :])
    except ValueError:
        return None


def scan_weight_syntax(text: str) -> list[Span]:
    """Spans of syntax and weighted text, sorted by start."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    spans: list[Span] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "()":
            spans.append(Span(i, 2, SpanKind.ESCAPE))
            i += 2
            continue
        if ch == "(":
            stack.append(i)
        elif ch == ")":
            if stack:
                pairs[stack.pop()] = i
            else:
                spans.append(Span(i, 1, SpanKind.UNBALANCED))
        i += 1
    spans.extend(Span(p, 1, SpanKind.UNBALANCED) for p in stack)

    # Weight of every position inside groups: outer groups first, inner ones override their range.
    weights = [1.0] * len(text)
    depths = [0] * len(text)
    hidden = [False] * len(text)  # parentheses and explicit-weight suffixes are syntax, not text
    for open_at in sorted(pairs):
        close_at = pairs[open_at]
        parent = weights[open_at]
        depth = depths[open_at] + 1
        inner = _unescaped(text[open_at + 1 : close_at])
        explicit = _explicit_weight(inner)
        weight = parent * NESTING_FACTOR if explicit is None else explicit[1]
        end = close_at
        if explicit is not None:
            colon = _raw_offset(text, open_at + 1, explicit[0])
            spans.append(Span(colon, close_at - colon, SpanKind.WEIGHT, weight, depth))
            for k in range(colon, close_at):
                hidden[k] = True
            end = colon
        for k in range(open_at + 1, end):
            weights[k], depths[k] = weight, depth
        spans.append(Span(open_at, 1, SpanKind.PAREN, weight, depth))
        spans.append(Span(close_at, 1, SpanKind.PAREN, weight, depth))
        hidden[open_at] = hidden[close_at] = True

    start = None
    for k in range(len(text) + 1):
        inside = k < len(text) and not hidden[k] and depths[k] > 0
        if start is not None and (not inside or weights[k] != weights[start] or depths[k] != depths[start]):
            spans.append(Span(start, k - start, SpanKind.TEXT, weights[start], depths[start]))
            start = None
        if inside and start is None:
            start = k
    return sorted(spans, key=lambda s: (s.start, s.kind.value))


def _unescaped(raw: str) -> str:
    """The inner text as the engine sees it when looking for ":<weight>" (escapes count as one character)."""
    return raw.replace("\\(", "(").replace("\\)", ")")


def _raw_offset(text: str, begin: int, unescaped_offset: int) -> int:
    """Position in `text` of the character at `unescaped_offset` of `_unescaped(text[begin:...])`."""
    i, seen = begin, 0
    while seen < unescaped_offset:
        i += 2 if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "()" else 1
        seen += 1
    return i


# A1111's LoRA tags as `app.inference.api.lora` reads them (any text between the colons: a bad strength is still
# marked as a tag, and the form says what is wrong with it).
_LORA_TAG = re.compile(r"<(?:lora|lyco):[^<>]*>", re.IGNORECASE)


def lora_tag_spans(text: str) -> list[Span]:
    return [Span(m.start(), m.end() - m.start(), SpanKind.LORA) for m in _LORA_TAG.finditer(text)]


def without_lora_tags(text: str) -> str:
    """The text the encoders see, for the token counter: the tags removed."""
    return _LORA_TAG.sub(" ", text)
