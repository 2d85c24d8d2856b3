"""Reading a LoRA file into low-rank updates of our networks' modules, with a report of what did not fit.

`load_lora(path, targets)` refuses what cannot be used as a whole (a pickle, a LyCORIS LoHa/LoKr/DoRA file, a
LoRA of another architecture or size, a file none of whose layers exist here) with one sentence, and otherwise
returns every layer it could place as `LowRank(target, down, up, alpha / r)`, counting the tensor keys it could
not place ("12 of 480 keys not applied: …") so the user can tell whether a LoRA took effect.
"""

from __future__ import annotations

import fnmatch
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from app.inference.api.errors import UnsupportedModelError
from app.inference.checkpoints.weights import load_tensors
from app.inference.lora.formats import LoraFile, LoraLayer, Network, read_lora_file, refusal
from app.inference.lora.mapping import Target, mmdit_targets, resolve, text_encoder_targets
from app.inference.networks.mmdit import MMDiT

log = logging.getLogger(__name__)

NETWORK_LABELS = {"mmdit": "the diffusion model", "clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5": "T5-XXL"}
_PEFT_PREFIX = {
    "mmdit": "transformer",
    "clip_l": "text_encoder",
    "clip_g": "text_encoder_2",
    "t5": "text_encoder_3",
}


@dataclass
class TargetSet:
    """The loaded networks a LoRA can adapt, with their name tables (built once per model set)."""

    modules: dict[Network, nn.Module]
    tables: dict[Network, dict[str, Target]]
    hidden: int
    label: str  # "SD3.5 Large", for refusals

    @classmethod
    def of(
        cls,
        mmdit: MMDiT,
        clip_l: nn.Module | None = None,
        clip_g: nn.Module | None = None,
        t5: nn.Module | None = None,
        label: str = "this model",
    ) -> TargetSet:
        modules: dict[Network, nn.Module] = {"mmdit": mmdit}
        tables: dict[Network, dict[str, Target]] = {"mmdit": mmdit_targets(mmdit)}
        for network, model in (("clip_l", clip_l), ("clip_g", clip_g), ("t5", t5)):
            if model is not None:
                modules[network] = model
                tables[network] = text_encoder_targets(network, model)
        return cls(modules, tables, mmdit.cfg.hidden_size, label)

    def weight(self, target: Target) -> torch.Tensor:
        return self.modules[target.network].get_submodule(target.module).weight


@dataclass(frozen=True, slots=True)
class LowRank:
    """`W[rows] += strength * scale * up @ down` for one module. down (r, in) or (r, in, kh, kw); up (rows, r);
    float32 on the CPU; `up` already in our row order (diffusers' (scale, shift) halves swapped)."""

    target: Target
    down: torch.Tensor
    up: torch.Tensor
    scale: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]


@dataclass
class LoadedLora:
    path: Path
    updates: list[LowRank]
    total_keys: int
    not_applied: dict[str, str] = field(default_factory=dict)  # tensor key -> why

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".safetensors")

    def adapts(self, network: Network) -> bool:
        return any(u.target.network == network for u in self.updates)

    def report(self) -> str | None:
        """`LoRA x: 12 of 480 keys not applied: 8 for T5-XXL, which is not loaded (e.g. …); …`, or None."""
        if not self.not_applied:
            return None
        reasons = Counter(self.not_applied.values())
        parts = []
        for reason, n in reasons.most_common():
            examples = [k for k, r in self.not_applied.items() if r == reason][:2]
            parts.append(f"{n} {reason} (e.g. {', '.join(examples)})")
        return (
            f"LoRA {self.name}: {len(self.not_applied)} of {self.total_keys} keys not applied: "
            + "; ".join(parts)
        )


def _alpha(lf: LoraFile, layer: LoraLayer, tensors: dict[str, torch.Tensor], rank: int) -> float:
    """alpha: the file's `.alpha` tensor, else diffusers' adapter metadata (PEFT `lora_alpha`, `alpha_pattern`),
    else the rank (scale 1)."""
    key = layer.keys.get("alpha")
    if key is not None:
        return float(tensors[key].reshape(-1)[0])
    config = lf.adapter_config()
    prefix = _PEFT_PREFIX[layer.network]
    pattern = config.get(f"{prefix}.alpha_pattern")
    if isinstance(pattern, dict):
        for pat, value in pattern.items():  # PEFT matches patterns against the module name's end
            if layer.name.endswith(pat) or fnmatch.fnmatch(layer.name, f"*{pat}"):
                return float(value)
    value = config.get(f"{prefix}.lora_alpha")
    return float(value) if isinstance(value, int | float) else float(rank)


def _check_shapes(down: torch.Tensor, up: torch.Tensor, target: Target, weight: torch.Tensor) -> str | None:
    rows = weight.shape[0] if target.rows is None else target.rows[1] - target.rows[0]
    r = down.shape[0]
    if up.ndim not in (2, 4) or up.shape[0] != rows or up.shape[1] != r or up[0].numel() != r:
        return f"up matrix {tuple(up.shape)} does not fit {rows} output rows of rank {r}"
    if down.ndim != weight.ndim or tuple(down.shape[1:]) != tuple(weight.shape[1:]):
        return f"down matrix {tuple(down.shape)} does not fit a weight {tuple(weight.shape)}"
    return None


def load_lora(path: str | Path, targets: TargetSet) -> LoadedLora:
    """Read a LoRA file and place its layers on `targets`; raise UnsupportedModelError when none can be used."""
    lf = read_lora_file(path)
    lf.require_plain_lora()
    name = lf.path.name
    refused = refusal(lf.architecture, targets.hidden, targets.label, lf.path)
    if refused:
        raise UnsupportedModelError(refused)
    not_applied = {k: "that are not LoRA weights of a known convention" for k in lf.unknown}
    placed: list[tuple[LoraLayer, Target]] = []
    for layer in lf.layers:
        if "down" not in layer.keys or "up" not in layer.keys:
            not_applied.update({k: "of layers missing their down or up matrix" for k in layer.keys.values()})
            continue
        target = resolve(layer, targets.tables)
        if target is None:
            reason = (
                f"for {NETWORK_LABELS[layer.network]}, which is not loaded"
                if layer.network not in targets.tables
                else f"for layers {NETWORK_LABELS[layer.network]} does not have"
            )
            not_applied.update({k: reason for k in layer.keys.values()})
            continue
        placed.append((layer, target))
    wanted = [k for layer, _ in placed for k in layer.keys.values()]
    tensors = load_tensors(lf.path, keys=wanted, dtype=torch.float32, header=lf.header)
    updates = []
    for layer, target in placed:
        down, up = tensors[layer.keys["down"]], tensors[layer.keys["up"]]
        problem = _check_shapes(down, up, target, targets.weight(target))
        if problem:
            not_applied.update({k: "of layers of another size" for k in layer.keys.values()})
            log.info("%s: %s not applied: %s", name, layer.name, problem)
            continue
        up = up.reshape(up.shape[0], -1)  # conv up (out, r, 1, 1) -> (out, r)
        if target.swap:
            first, second = up.chunk(2, dim=0)  # diffusers (scale, shift) -> ours (shift, scale)
            up = torch.cat([second, first], dim=0)
        rank = down.shape[0]
        updates.append(LowRank(target, down, up, _alpha(lf, layer, tensors, rank) / rank))
    if not updates:
        raise UnsupportedModelError(
            f"{name}: none of its {lf.num_keys} tensors fits {targets.label} (it was made for "
            f"{lf.architecture.label}); nothing would change, so it is not used"
        )
    loaded = LoadedLora(lf.path, updates, lf.num_keys, not_applied)
    log.info("LoRA %s: %d layers placed (%s)", name, len(updates), loaded.report() or "every key applied")
    return loaded
