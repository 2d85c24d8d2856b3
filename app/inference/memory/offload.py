"""Applying memory plans to loaded networks: only the active network on the accelerator (`ComponentOffloader`),
the MMDiT's joint blocks streamed one at a time (`BlockStreamer`), and the MMDiT's adaLN layers kept in host
memory, copied to the accelerator only while they run (`stream_adaln`: once per job, for the modulation table).

Both work through forward hooks, so the code that runs the networks does not change: a network or block moves
to the accelerator when its forward starts (its tensor inputs follow it) and is released when the plan says so.
On a machine without an accelerator they are not needed; the tests run them with `device="cpu"` and check
where each tensor lives and that the outputs equal the resident plan's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

import torch
from torch import nn

from app.inference.networks.modulation import adaln_modules

log = logging.getLogger(__name__)


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _tensor_ids(modules: Iterable[nn.Module]) -> set[int]:
    return {id(t) for m in modules for t in (*m.parameters(), *m.buffers())}


def move_module(module: nn.Module, device: torch.device | str, exclude: Collection[nn.Module] = ()) -> None:
    """`module.to(device)`, leaving the tensors of the `exclude` submodules where they are."""
    if not exclude:
        module.to(device)
        return
    skip = _tensor_ids(exclude)
    for t in (*module.parameters(), *module.buffers()):
        if id(t) not in skip:
            t.data = t.data.to(device)


class ComponentOffloader:
    """Only one attached network on the accelerator at a time: a network moves there when its forward starts
    and the one that was there moves back to host memory. Typical order per job: CLIP-L, CLIP-G, T5 while
    encoding, then the MMDiT for all steps."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.active: nn.Module | None = None
        self.moves = 0  # networks moved to the accelerator so far (for logs and tests)
        self._handles: list[Any] = []
        self._exclude: dict[int, tuple[nn.Module, ...]] = {}  # per network: submodules that never move

    def attach(self, module: nn.Module, exclude: Collection[nn.Module] = ()) -> nn.Module:
        """Hook `module`; it should start in host memory. The `exclude` submodules stay in host memory."""
        self._exclude[id(module)] = tuple(exclude)
        self._handles.append(module.register_forward_pre_hook(self._before_forward, with_kwargs=True))
        return module

    def _before_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        self.activate(module)
        return _to_device(args, self.device), _to_device(kwargs, self.device)

    def activate(self, module: nn.Module) -> None:
        if self.active is module:
            return
        if self.active is not None:
            self._move(self.active, "cpu")
        self._move(module, self.device)
        self.active = module
        self.moves += 1
        log.debug("offload: %s now on %s", type(module).__name__, self.device)

    def release(self) -> None:
        """Move the active network back to host memory (e.g. before loading another model set)."""
        if self.active is not None:
            self._move(self.active, "cpu")
            self.active = None

    def _move(self, module: nn.Module, device: torch.device | str) -> None:
        move_module(module, device, self._exclude.get(id(module), ()))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class BlockStreamer:
    """Low-VRAM sampling: each block's weights stay in host memory ("home"); a copy goes to the accelerator
    just before the block runs and is dropped right after it, so one block at a time is on the accelerator
    (two while the next is being copied). Copies are asynchronous from pinned memory on CUDA."""

    def __init__(
        self, blocks: Iterable[nn.Module], device: torch.device | str, exclude: Collection[nn.Module] = ()
    ) -> None:
        self.device = torch.device(device)
        self.on_device: set[int] = set()  # indices of the blocks whose weights are on the accelerator now
        self.loads = 0
        self._home: list[list[tuple[torch.Tensor, torch.Tensor]]] = []  # per block: (param or buffer, home)
        self._handles: list[Any] = []
        pin = self.device.type == "cuda"
        skip = _tensor_ids(exclude)  # tensors that something else moves (the adaLN layers' own streamer)
        for index, block in enumerate(blocks):
            entries = []
            for t in [*block.parameters(), *block.buffers()]:
                if id(t) in skip:
                    continue
                home = t.data.to("cpu")
                if pin:
                    home = home.pin_memory()
                t.data = home
                entries.append((t, home))
            self._home.append(entries)
            self._handles.append(block.register_forward_pre_hook(self._hook_in(index)))
            self._handles.append(block.register_forward_hook(self._hook_out(index)))

    def _hook_in(self, index: int):
        def before(module: nn.Module, args: tuple) -> tuple:
            for t, home in self._home[index]:
                # copy=True: a real copy even when "the accelerator" is the CPU (tests check tensor identity)
                t.data = home.to(self.device, non_blocking=True, copy=True)
            self.on_device.add(index)
            self.loads += 1
            return _to_device(args, self.device)

        return before

    def _hook_out(self, index: int):
        def after(module: nn.Module, args: tuple, output: Any) -> None:
            for t, home in self._home[index]:
                t.data = home  # the accelerator copy is freed once the block's outputs no longer need it
            self.on_device.discard(index)

        return after

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def stream_mmdit_blocks(
    model: nn.Module, device: torch.device | str, exclude: Collection[nn.Module] = ()
) -> BlockStreamer:
    """Put everything of the MMDiT except its joint blocks (and `exclude`) on `device` and stream the blocks.
    Pass the adaLN layers as `exclude` when `stream_adaln` moves them: the live path runs them outside the
    blocks' forward."""
    device = torch.device(device)
    for name, child in model.named_children():
        if name != "joint_blocks":
            move_module(child, device, exclude)
    for name, buffer in list(model.named_buffers(recurse=False)):
        setattr(model, name, buffer.to(device))
    return BlockStreamer(model.joint_blocks, device, exclude)


def stream_adaln(model: nn.Module, device: torch.device | str) -> BlockStreamer:
    """Keep the MMDiT's adaLN layers in host memory (pinned on CUDA); each is copied to `device` while it runs.

    With a job's modulation table they run once per job, one layer at a time, so the accelerator never holds
    more than one of them. Building the table there, rather than on the CPU, is the cheaper side: a layer's
    weights cross the bus once (Large in bf16: 5.4 GB per job, about 0.2-0.5 s at 12-25 GB/s) while the CPU
    would need 2 x rows x params flops (56 rows for 28 steps with CFG: about 3e11, seconds on a desktop CPU)."""
    modules = adaln_modules(model)
    for module in modules:
        module.to("cpu")
    return BlockStreamer(modules, device)
