"""Per-job adaLN modulation: every block's shift / scale / gate vectors for every timestep a job evaluates.

Each joint block's (and the final layer's) adaLN output depends only on c = t_embedder(t) + y_embedder(pooled).
Within a job the timesteps come from the sigma schedule and the pooled vectors (positive, negative, zeroed
negative) are fixed, so `ModulationTable` computes them all before the first step: block by block, one batched
matmul per adaLN layer over every (timestep, conditioning) row. The steps then only slice the table, and the
adaLN weights (about a third of the MMDiT's parameters) are read once per job instead of once per step, which
is what lets memory plans keep them off the accelerator (memory_plan.py, offload.py).

An evaluation point the table does not hold yet (a sampler evaluating between schedule entries, a caller
without a schedule) is computed the same way when it is first asked for and kept for later calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from app.inference.networks.layers import ModulationOut, timestep_embedding
from app.inference.networks.mmdit import Chunks, MMDiT, StreamModulation

RowKey = tuple[float, int]  # (timestep value t = 1000 sigma as float32, conditioning index)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one adaLN layer's output sits in a table row: `chunks` vectors of width `dim` from `offset`."""

    offset: int
    chunks: int
    dim: int

    @property
    def end(self) -> int:
        return self.offset + self.chunks * self.dim

    def take(self, values: torch.Tensor) -> Chunks:
        # (B, width) -> chunks x (B, D), views, in the checkpoint's chunk order
        return values[:, self.offset : self.end].chunk(self.chunks, dim=1)


@dataclass(frozen=True, slots=True)
class ModulationLayout:
    """The slots of every adaLN layer, in `adaln_modules` order: (context, image) per block, then final."""

    blocks: tuple[tuple[Slot, Slot], ...]
    final: Slot

    @property
    def slots(self) -> tuple[Slot, ...]:
        return (*(s for pair in self.blocks for s in pair), self.final)

    @property
    def width(self) -> int:
        return self.final.end

    @classmethod
    def of(cls, model: MMDiT) -> ModulationLayout:
        d = model.cfg.hidden_size
        offset = 0

        def slot(adaln: nn.Module) -> Slot:
            nonlocal offset
            chunks = adaln[1].out_features // d
            s = Slot(offset, chunks, d)
            offset = s.end
            return s

        blocks = tuple((slot(b.context_block.adaLN_modulation), slot(b.x_block.adaLN_modulation))
                       for b in model.joint_blocks)  # fmt: skip
        return cls(blocks, slot(model.final_layer.adaLN_modulation))


def adaln_modules(model: MMDiT) -> list[nn.Module]:
    """Every `adaLN_modulation` (SiLU, Linear) of the model, in `ModulationLayout` order."""
    pairs = ((b.context_block.adaLN_modulation, b.x_block.adaLN_modulation) for b in model.joint_blocks)
    return [*(m for pair in pairs for m in pair), model.final_layer.adaLN_modulation]


class RowModulation:
    """`Modulation` read from precomputed rows (B, width): slices only, nothing is computed."""

    def __init__(self, values: torch.Tensor, layout: ModulationLayout) -> None:
        self.values = values
        self.layout = layout

    def block(self, index: int) -> tuple[StreamModulation, StreamModulation]:
        context, image = self.layout.blocks[index]  # (B, width) -> named (B, D) views
        named = StreamModulation.from_chunks
        return named(context.take(self.values)), named(image.take(self.values))

    def final(self) -> ModulationOut:
        shift, scale = self.layout.final.take(self.values)
        return ModulationOut(shift, scale)


class ModulationTable:
    """adaLN outputs keyed by (timestep value, conditioning index), for the `pooled` vectors of one job.

    Rows live on the device of the model's embedders, in the model's dtype (what the live path computes). The
    adaLN layers are called as modules, so a memory plan's hooks can bring their weights in one layer at a
    time while the table is built."""

    def __init__(self, model: MMDiT, pooled: Sequence[torch.Tensor]) -> None:
        self.model = model
        self.layout = ModulationLayout.of(model)
        weight = model.t_embedder.mlp[0].weight
        self.device, self.dtype = weight.device, model.dtype
        # (K, D): each pooled vector embedded once per job
        with torch.inference_mode():
            self._y = model.y_embedder(
                torch.cat([p.reshape(1, -1) for p in pooled]).to(self.device, self.dtype)
            )
        self._index: dict[RowKey, int] = {}
        self.values = torch.empty(0, self.layout.width, device=self.device, dtype=self.dtype)
        self.builds = 0  # batched passes over the adaLN layers so far (1 for a job whose schedule was known)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: RowKey) -> bool:
        return key in self._index

    @torch.inference_mode()
    def add(self, keys: Iterable[RowKey]) -> None:
        """Compute the rows not in the table yet, all in one pass over the adaLN layers."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._index]
        if not missing:
            return
        times = sorted({t for t, _ in missing})
        t = torch.tensor(times, dtype=torch.float32, device=self.device)  # (T,)
        t_emb = self.model.t_embedder(timestep_embedding(t).to(self.dtype))  # (T, D)
        t_row = torch.tensor([times.index(t) for t, _ in missing], device=self.device)
        y_row = torch.tensor([k for _, k in missing], device=self.device)
        c = t_emb[t_row] + self._y[y_row]  # (R, D): the live path's c, row by row
        rows = torch.empty(len(missing), self.layout.width, device=self.device, dtype=self.dtype)
        for adaln, slot in zip(adaln_modules(self.model), self.layout.slots, strict=True):
            rows[:, slot.offset : slot.end] = adaln(c)  # one (R, D) x (D, n D) matmul per layer
        first = len(self._index)
        self.values = rows if first == 0 else torch.cat([self.values, rows])
        self._index.update((k, first + i) for i, k in enumerate(missing))
        self.builds += 1

    def rows(self, keys: Sequence[RowKey], repeat: int = 1) -> RowModulation:
        """The modulation of a batch made of `keys[0]` x `repeat`, `keys[1]` x `repeat`, ... (cond-major)."""
        self.add(keys)
        index = [self._index[k] for k in keys]
        if index == list(range(index[0], index[0] + len(index))):
            values = self.values[index[0] : index[0] + len(index)]  # a view: no copy, no index upload
        else:
            values = self.values[torch.tensor(index, device=self.device)]
        if repeat > 1:
            values = values.repeat_interleave(repeat, dim=0)  # (n * B, width)
        return RowModulation(values, self.layout)


def timestep_value(sigma: float | torch.Tensor) -> float:
    """t = 1000 sigma computed in float32 as the denoiser computes it, as a Python float (the table key)."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device="cpu")
    return float((s * 1000).float())
