"""Putting a set of LoRAs into the loaded networks, and taking them out again exactly.

Each adapted module gets one combined low-rank update `ΔW = B @ A`, B = [s_1·scale_1·B_1 | s_2·scale_2·B_2 | …]
(rows outside a fused-qkv slice zero) and A = [A_1; A_2; …], so several LoRAs and strengths cost one matmul.

- Dense weights (fp32/bf16/fp16, resident, offloaded or block-streamed: the host copy is the weight at rest) are
  merged in place: `W ← round(float32(W₀) + ΔW)`, and W₀ of the touched modules only is kept in host memory, so
  taking a set out is a copy back (bit-exact, no re-read of the model file).
- fp8-stored weights (`Fp8Linear`) stay untouched: a forward hook adds `B(A(x))` to the layer's output (the side
  branch), in the compute dtype, restricted to the slice by B's zero rows.

Module calls are all it takes: the per-job adaLN table (networks/modulation.py) calls the adaLN layers, so it
computes from the adapted weights, merged or side-branched alike.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from app.inference.checkpoints.fp8 import FP8_DTYPES
from app.inference.lora.loading import LoadedLora, LowRank, TargetSet

log = logging.getLogger(__name__)

TEXT_NETWORKS = ("clip_l", "clip_g", "t5")
_MERGE_ROWS = 256  # rows per float32 block: ~1.5 MB at Medium widths, stays in cache (1.7x 1024 rows)


@dataclass(frozen=True, slots=True)
class Weighted:
    """A loaded LoRA with the strengths it is used at (text encoders: `te_strength`)."""

    lora: LoadedLora
    strength: float
    te_strength: float

    def factor(self, update: LowRank) -> float:
        s = self.te_strength if update.target.network in TEXT_NETWORKS else self.strength
        return s * update.scale


def combined_updates(
    loras: Sequence[Weighted], targets: TargetSet
) -> dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]:
    """(network, module) -> (A (R, in_flat), B (out, R)), float32: every LoRA's update of that module side by
    side, its strength and alpha/r folded into B, B zero outside the update's rows. Strength-0 parts are left
    out (strength 0 must equal no LoRA, not a zero-valued sum)."""
    parts: dict[tuple[str, str], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for w in loras:
        for update in w.lora.updates:
            factor = w.factor(update)
            if factor == 0:
                continue
            target = update.target
            out_rows = targets.weight(target).shape[0]
            up = update.up * factor
            if target.rows is not None:
                full = torch.zeros(out_rows, update.rank)
                full[target.rows[0] : target.rows[1]] = up
                up = full
            parts.setdefault((target.network, target.module), []).append((update.down.flatten(1), up))
    return {
        key: (torch.cat([a for a, _ in pieces]), torch.cat([b for _, b in pieces], dim=1))
        for key, pieces in parts.items()
    }


class SideBranch:
    """Forward hook `y += (x Aᵀ) Bᵀ` on a Linear whose stored weight must not change; A and B are cast to the
    input's device and dtype once and kept."""

    def __init__(self, down: torch.Tensor, up: torch.Tensor) -> None:
        self.down, self.up = down, up  # (R, in), (out, R) float32 on the CPU
        self._cast: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        key = (x.device, x.dtype)
        if key not in self._cast:
            self._cast[key] = (self.down.to(x.device, x.dtype), self.up.to(x.device, x.dtype))
        down, up = self._cast[key]
        h = F.linear(x, down).reshape(-1, down.shape[0])  # (…, in) -> (N, R)
        out = output.view(-1, output.shape[-1])  # (N, out): a fresh tensor of this call, added to in place
        out.addmm_(h, up.t())
        return output


def _merge(
    weight: torch.Tensor, down: torch.Tensor, up: torch.Tensor, original: torch.Tensor | None
) -> torch.Tensor:
    """`weight ← round(float32(W₀) + up @ down)` in place, W₀ = `original` when given (a copy kept from an
    earlier merge), else the weight itself, copied to host memory first. Returns W₀ (for the undo)."""
    if original is None:
        original = weight.detach().to("cpu", copy=True)
    w = weight.data.view(weight.shape[0], -1)  # (out, in) or a conv's (out, in·kh·kw)
    source = original.view(weight.shape[0], -1)
    up, down = up.to(w.device), down.to(w.device)
    for start in range(0, w.shape[0], _MERGE_ROWS):  # row blocks: float32 for one block at a time
        rows = slice(start, start + _MERGE_ROWS)
        block = source[rows].to(w.device, torch.float32, copy=True).addmm_(up[rows], down)
        w[rows].copy_(block)  # rounded once to the weight's dtype
    return original


def is_fp8(module: nn.Module) -> bool:
    return module.weight.dtype in FP8_DTYPES


class LoraPatcher:
    """The LoRA set currently in a set of networks; `apply` replaces it (first restoring what it changed)."""

    def __init__(self) -> None:
        self.targets: TargetSet | None = None
        self.key: tuple = ()  # what is applied now: ((path, strength, te_strength), ...)
        self._originals: dict[tuple[str, str], torch.Tensor] = {}  # merged modules: W₀ in host memory
        self._hooks: list[Any] = []
        self.merged = 0  # modules merged by the last apply
        self.side_branches = 0  # modules given a side branch by the last apply

    @property
    def active(self) -> bool:
        return bool(self._originals or self._hooks)

    def apply(
        self, loras: Sequence[Weighted], targets: TargetSet, key: tuple = (), keep_budget: int | None = None
    ) -> None:
        """Make `loras` (possibly none) the set in `targets`' networks. `keep_budget`: host bytes the originals
        of merged weights may take; Linear layers beyond it get a side branch instead (no copy kept)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        if self.targets is not targets:
            self.remove()  # into the networks it was applied to (harmless where those were replaced since)
        self.targets = targets
        previous, self._originals = self._originals, {}  # W₀ of what the last set merged
        updates = combined_updates(loras, targets)
        kept = 0
        with torch.inference_mode():
            for (network, name), (down, up) in updates.items():
                module = targets.modules[network].get_submodule(name)  # type: ignore[index]
                size = module.weight.numel() * module.weight.element_size()
                over = keep_budget is not None and kept + size > keep_budget and module.weight.ndim == 2
                if is_fp8(module) or over:
                    original = previous.pop((network, name), None)
                    if original is not None:
                        module.weight.data.copy_(original)
                    self._hooks.append(module.register_forward_hook(SideBranch(down, up)))
                else:  # merged again from the kept W₀ when the last set touched it too: no restore pass
                    original = previous.pop((network, name), None)
                    self._originals[(network, name)] = _merge(module.weight, down, up, original)
                    kept += size
            for (network, name), original in previous.items():  # touched before, not now
                targets.modules[network].get_submodule(name).weight.data.copy_(original)  # type: ignore[index]
        self.key = key
        self.merged, self.side_branches = len(self._originals), len(self._hooks)
        if updates:
            log.info("LoRA: %d layers merged, %d with a side branch", self.merged, self.side_branches)

    def remove(self) -> None:
        """Take the current set out: merged weights get their originals back (bit-exact), hooks go."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        if self._originals and self.targets is not None:
            with torch.inference_mode():
                for (network, name), original in self._originals.items():
                    weight = self.targets.modules[network].get_submodule(name).weight  # type: ignore[index]
                    weight.data.copy_(original)
        self._originals.clear()
        self.key = ()

    def forget(self) -> None:
        """Drop the state of networks that were replaced (nothing to restore in the new ones)."""
        self._hooks.clear()
        self._originals.clear()
        self.targets = None
        self.key = ()
