"""The LoRAs of a session: files read once and kept, the job's set put into the engine's networks.

`LoraStack.apply(engine, request, label)` runs before each job: it reads the request's LoRA files (or reuses
them), refuses one that cannot be used (the job fails with its sentence, and the networks keep the set they
had), replaces the applied set when it changed, and returns the request with each LoRA's hashes filled in (for
the image's metadata) and a warning per LoRA whose keys were not all applied.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from app.inference.api.errors import ModelFileError
from app.inference.api.lora import LoraSpec
from app.inference.api.request import GenerationRequest
from app.inference.lora.applying import LoraPatcher, Weighted
from app.inference.lora.hashing import lora_hashes
from app.inference.lora.loading import LoadedLora, TargetSet, load_lora
from app.inference.memory.device import available_ram_bytes

log = logging.getLogger(__name__)

MAX_CACHED = 8  # LoRA files kept in memory (rank-16 factors of a Large LoRA: about 100 MB each)
MODEL_LABELS = {"large": "SD3.5 Large", "large-turbo": "SD3.5 Large Turbo", "medium": "SD3.5 Medium"}


class LoraStack:
    def __init__(self) -> None:
        self.patcher = LoraPatcher()
        self._targets: TargetSet | None = None
        self._networks: tuple[int, ...] = ()  # ids of the networks `_targets` was built from
        self._cache: dict[tuple[str, int, int], LoadedLora] = {}
        self.reads = 0  # LoRA files read so far (tests: switching strengths reads nothing)

    def forget(self) -> None:
        """The engine is about to load other networks: drop every reference to the current ones."""
        self.patcher.forget()
        self._targets, self._networks = None, ()
        self._cache.clear()

    def _target_set(self, engine, label: str) -> TargetSet:
        text = engine.text
        t5 = text.t5.model if text.t5 is not None else None
        networks = (id(engine.mmdit), id(text.clip_l.model), id(text.clip_g.model), id(t5))
        if self._targets is None or networks != self._networks:
            if self._targets is not None:
                self.forget()
            self._targets = TargetSet.of(engine.mmdit, text.clip_l.model, text.clip_g.model, t5, label=label)
            self._networks = networks
        return self._targets

    def _load(self, spec: LoraSpec, targets: TargetSet) -> LoadedLora:
        path = spec.path.expanduser()
        try:
            stat = path.stat()
        except OSError:
            raise ModelFileError(f"LoRA file not found: {path}") from None
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._cache:
            self._cache[key] = load_lora(path, targets)
            self.reads += 1
            while len(self._cache) > MAX_CACHED:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    def apply(self, engine, request: GenerationRequest, variant: str) -> GenerationRequest:
        """Put `request.loras` into the engine's networks (taking the previous set out); see the module doc."""
        specs = request.loras
        if not specs and not self.patcher.active:
            return request
        targets = self._target_set(engine, MODEL_LABELS.get(variant, "this model"))
        loaded = [self._load(spec, targets) for spec in specs]  # refusals raise before anything changes
        key = tuple(
            (str(lo.path.resolve()), s.strength, s.text_strength) for lo, s in zip(loaded, specs, strict=True)
        )
        if key != self.patcher.key:
            weighted = [
                Weighted(lo, s.strength, s.text_strength) for lo, s in zip(loaded, specs, strict=True)
            ]
            self.patcher.apply(weighted, targets, key, keep_budget=available_ram_bytes() // 2)
        warnings = [r for lo in loaded if (r := lo.report())]
        return replace(
            request, loras=tuple(_hashed(s) for s in specs), warnings=(*request.warnings, *warnings)
        )


def _hashed(spec: LoraSpec) -> LoraSpec:
    try:  # always from the file (cached by size and time): a recalled spec may carry another file's hash
        full, short = lora_hashes(Path(spec.path).expanduser())
    except OSError as exc:
        log.warning("LoRA %s: cannot hash (%s)", spec.path, exc)
        return spec
    return spec.with_hashes(full, short)
