"""LoRA choices as plain values (torch-free): what a request, the CLI, the window and the metadata share.

`LoraSpec` names one LoRA file with its strengths; the session fills in its hashes once it has read the file
(they travel with the request into the image's metadata). A1111's prompt syntax `<lora:NAME:STRENGTH>` is read
by `split_prompt_loras` (the window and the CLI turn names into files with a LoRA folder scan).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from app.inference.api.errors import InvalidRequestError

MAX_STRENGTH = 100.0  # far beyond any useful value; keeps typos like 80 (for 0.8) from going through silently


@dataclass(frozen=True, slots=True)
class LoraSpec:
    """One LoRA of a job. `te_strength` None: the text encoders get `strength` too (A1111's default)."""

    path: Path
    strength: float = 1.0
    te_strength: float | None = None
    sha256: str | None = None  # full-file SHA-256 (hex), filled in when the file is read
    short_hash: str | None = None  # A1111 / Civitai "AutoV3": SHA-256 of the bytes after the header, 12 hex

    @property
    def name(self) -> str:
        """The name A1111 and ComfyUI users see: the file name without `.safetensors`."""
        return _stem(self.path)

    @property
    def text_strength(self) -> float:
        return self.strength if self.te_strength is None else self.te_strength

    def checked(self) -> LoraSpec:
        """Raise InvalidRequestError for a strength that is not a finite number in range."""
        for label, value in (("strength", self.strength), ("text-encoder strength", self.te_strength)):
            if value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= MAX_STRENGTH):
                raise InvalidRequestError(
                    f"LoRA {self.name}: {label} must be a number between -{MAX_STRENGTH:g} and "
                    f"{MAX_STRENGTH:g}, not {value}"
                )
        return self

    def with_hashes(self, sha256: str, short_hash: str) -> LoraSpec:
        return replace(self, sha256=sha256, short_hash=short_hash)

    def to_dict(self) -> dict[str, object]:
        """Our JSON form (image metadata): file, name, strengths and hashes."""
        out: dict[str, object] = {"file": str(self.path), "name": self.name, "strength": self.strength}
        if self.te_strength is not None:
            out["te_strength"] = self.te_strength
        if self.sha256:
            out["sha256"] = self.sha256
        if self.short_hash:
            out["short_hash"] = self.short_hash
        return out

    @classmethod
    def from_dict(cls, data: object) -> LoraSpec:
        if not isinstance(data, dict) or not isinstance(data.get("file"), str):
            raise ValueError(f"not a LoRA entry: {data!r}")
        te = data.get("te_strength")
        return cls(
            Path(data["file"]),
            float(data.get("strength", 1.0)),
            None if te is None else float(te),
            data.get("sha256") if isinstance(data.get("sha256"), str) else None,
            data.get("short_hash") if isinstance(data.get("short_hash"), str) else None,
        )


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".safetensors")] if name.lower().endswith(".safetensors") else path.stem


def _number(text: str, what: str, arg: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequestError(f"{arg!r}: the {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidRequestError(f"{arg!r}: the {what} must be a finite number, not {text}")
    return value


def parse_lora_arg(arg: str) -> LoraSpec:
    """`FILE[:STRENGTH[:TE_STRENGTH]]` -> LoraSpec. A trailing part counts as a strength only when it is a number
    (so `C:\\loras\\x.safetensors` stays a path)."""
    parts = arg.split(":")
    numbers: list[str] = []
    while len(parts) > 1 and len(numbers) < 2 and _looks_numeric(parts[-1]):
        numbers.insert(0, parts.pop())
    path = ":".join(parts)
    if not path.strip():
        raise InvalidRequestError(f"{arg!r}: give a LoRA file, e.g. style.safetensors:0.8")
    strength = _number(numbers[0], "strength", arg) if numbers else 1.0
    te = _number(numbers[1], "text-encoder strength", arg) if len(numbers) > 1 else None
    return LoraSpec(Path(path).expanduser(), strength, te).checked()


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*|\s*[-+]?(inf|nan)\s*", text, re.I))


# ----------------------------------------------------------------------------------------------------
# A1111 prompt syntax
# ----------------------------------------------------------------------------------------------------

# <lora:NAME>, <lora:NAME:S>, <lora:NAME:S:TE> (A1111 also writes <lyco:...> for LyCORIS files)
_TAG = re.compile(r"<(?:lora|lyco):([^:<>]+)(?::([^:<>]*))?(?::([^:<>]*))?>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PromptLora:
    """A `<lora:...>` tag found in a prompt: the name as written (a file stem), its strengths, where it was."""

    name: str
    strength: float = 1.0
    te_strength: float | None = None
    span: tuple[int, int] = (0, 0)  # character range of the tag in the original prompt (for highlighting)


def find_prompt_loras(prompt: str) -> tuple[PromptLora, ...]:
    """Every `<lora:NAME[:S[:TE]]>` tag of `prompt`. A strength that is not a number raises
    InvalidRequestError naming the tag."""
    found = []
    for m in _TAG.finditer(prompt):
        name = m.group(1).strip()
        strength = _tag_number(m.group(2), m.group(0), default=1.0)
        te = _tag_number(m.group(3), m.group(0), default=None)
        found.append(PromptLora(name, strength, te, m.span()))
    return tuple(found)


def _tag_number(text: str | None, tag: str, default: float | None) -> float | None:
    if text is None or not text.strip():
        return default
    return _number(text.strip(), "strength", tag)


def split_prompt_loras(prompt: str) -> tuple[str, tuple[PromptLora, ...]]:
    """(prompt without its `<lora:...>` tags, the tags). Whitespace left by a removed tag is collapsed, so the
    text the encoders see is what the user wrote around the tags."""
    tags = find_prompt_loras(prompt)
    text = _TAG.sub(" ", prompt)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\s+([,.;])", r"\1", text) if tags else text
    return text.strip() if tags else prompt, tags


def lora_tag(name: str, strength: float, te_strength: float | None = None) -> str:
    """A1111's tag for one LoRA: `<lora:name:0.8>` (the text-encoder strength only when it differs)."""
    text = f"<lora:{name}:{strength:g}"
    if te_strength is not None and te_strength != strength:
        text += f":{te_strength:g}"
    return text + ">"
