"""Short, artist-facing labels for parameters: a value on its own ("CFG 4.5") and, for a set of images, only
what differs between them ("seed 1234", "CFG 4.5 · 28 steps")."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from app.metadata.a1111 import A1111_SAMPLER_NAMES, A1111_SCHEDULE_NAMES
from app.metadata.params import ImageParams

log = logging.getLogger(__name__)


def sampler_label(name: str | None) -> str:
    return A1111_SAMPLER_NAMES.get(name or "", name or "default sampler")


def scheduler_label(name: str | None) -> str:
    return A1111_SCHEDULE_NAMES.get(name or "", name or "default schedule")


def _num(value: float | None) -> str:
    return "default" if value is None else f"{value:g}"


def _slg(p: ImageParams) -> str:
    if not p.slg_scale or not p.slg_layers:
        return "SLG off"
    return f"SLG {','.join(map(str, p.slg_layers))} ×{p.slg_scale:g}"


# (name, how to read the value that is compared, how to show it)
_FIELDS: tuple[tuple[str, Callable[[ImageParams], object], Callable[[ImageParams], str]], ...] = (
    ("seed", lambda p: p.seed, lambda p: f"seed {p.seed}"),
    ("prompt", lambda p: p.prompt, lambda p: p.prompt),  # replaced by the differing words, below
    (
        "negative",
        lambda p: p.negative,
        lambda p: f"neg “{_short(p.negative)}”" if p.negative else "no negative",
    ),
    ("cfg", lambda p: p.cfg, lambda p: f"CFG {_num(p.cfg)}"),
    ("steps", lambda p: p.steps, lambda p: f"{p.steps} steps" if p.steps else "default steps"),
    ("sampler", lambda p: p.sampler, lambda p: sampler_label(p.sampler)),
    ("scheduler", lambda p: p.scheduler, lambda p: scheduler_label(p.scheduler)),
    ("shift", lambda p: p.shift, lambda p: f"shift {_num(p.shift)}"),
    ("size", lambda p: (p.width, p.height), lambda p: p.size_label or "default size"),
    ("model", lambda p: (p.model_name, p.model_hash), lambda p: p.model_name or "unknown model"),
    ("slg", lambda p: (p.slg_layers, p.slg_scale, p.slg_start, p.slg_end), _slg),
    ("negative window", lambda p: p.negative_until, lambda p: f"neg until {_num(p.negative_until)}"),
    ("t5", lambda p: p.use_t5, lambda p: "T5" if p.use_t5 else "no T5"),
    ("denoise", lambda p: p.denoise, lambda p: f"denoise {p.denoise:g}"),
    ("text mode", lambda p: p.text_mode, lambda p: f"{p.text_mode} text"),
)


def _short(text: str, limit: int = 32) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def _prompt_difference(prompt: str, common: set[str]) -> str:
    own = [w for w in _words(prompt) if w not in common]
    return f"“{_short(' '.join(own))}”" if own else "“…” (fewer words)"


def differing_fields(params: Sequence[ImageParams]) -> list[str]:
    """Names of the fields whose values are not the same for all images."""
    return [name for name, value, _ in _FIELDS if len({repr(value(p)) for p in params}) > 1]


def differing_labels(params: Sequence[ImageParams]) -> list[str]:
    """One label per image, with only the parameters that differ; all empty when nothing differs."""
    names = set(differing_fields(params))
    common: set[str] = set.intersection(*(set(_words(p.prompt)) for p in params)) if params else set()
    labels = []
    for p in params:
        parts = []
        for name, _, show in _FIELDS:
            if name not in names:
                continue
            parts.append(_prompt_difference(p.prompt, common) if name == "prompt" else show(p))
        labels.append(" · ".join(parts))
    return labels


def summary(p: ImageParams) -> str:
    """A one-line description of an image's settings, for tooltips and contact sheets."""
    bits = [
        f"seed {p.seed}" if p.seed is not None else None,
        f"CFG {_num(p.cfg)}" if p.cfg is not None else None,
        f"{p.steps} steps" if p.steps else None,
        sampler_label(p.sampler) if p.sampler else None,
        p.size_label or None,
        p.model_name,
    ]
    return " · ".join(b for b in bits if b)
