"""What the gallery shows: a frozen filter (search text, minimum rating, variant, job, LoRA), saved by name."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class GalleryFilter:
    text: str = ""  # full-text search over prompts; every word must match (prefix match)
    min_rating: int = 0
    variant: str | None = None
    job_id: str | None = None
    newest_first: bool = True
    lora: str | None = None  # only images that used this LoRA (by name, app.gallery.lora_index)

    @property
    def is_empty(self) -> bool:
        return not (self.text.strip() or self.min_rating or self.variant or self.job_id or self.lora)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GalleryFilter:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def describe(self) -> str:
        parts = []
        if self.text.strip():
            parts.append(f"“{self.text.strip()}”")
        if self.min_rating:
            parts.append("★" * self.min_rating + " or more")
        if self.variant:
            parts.append(self.variant)
        if self.job_id:
            parts.append("one job")
        if self.lora:
            parts.append(f"LoRA {self.lora}")
        return ", ".join(parts) or "all images"


def fts_query(text: str) -> str:
    """User text → an FTS5 query over the prompt column: every word as a quoted prefix term, all required.
    Quoting each word makes FTS5 syntax characters in the text harmless."""
    words = _WORD.findall(text)
    return " AND ".join(f'prompt : "{w}"*' for w in words)
