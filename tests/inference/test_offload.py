"""The mechanisms behind the memory plans, on the CPU: where each tensor lives while the networks run, and
outputs equal to the resident plan's. (On a CPU-only machine "the accelerator" is the CPU too; the checks use
tensor identity: a streamed block runs on copies and its weights are back at home afterwards.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from app.inference.checkpoints.model_set import locate_model_set
from app.inference.checkpoints.weights import assign_weights
from app.inference.memory.offload import BlockStreamer, ComponentOffloader, stream_mmdit_blocks
from app.inference.memory.plan import Machine, plan_for
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from app.inference.pipeline.engine import Engine
from tests.factory.mmdit_model import PREFIX, tiny_mmdit_state
from tests.factory.snapshot import write_snapshot


def tiny_mmdit() -> MMDiT:
    state = {k[len(PREFIX) :]: v.float() for k, v in tiny_mmdit_state("medium").items()}
    with torch.device("meta"):
        model = MMDiT(mmdit_config_from_shapes({k: tuple(v.shape) for k, v in state.items()}))
    return assign_weights(model, state, source="tiny", what="MMDiT").eval()


def inputs() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, 16, 8, 8, generator=gen),
        torch.tensor([500.0]),
        torch.randn(1, 192, generator=gen),
        torch.randn(1, 12, 256, generator=gen),
    )


def test_streamed_blocks_run_on_copies_one_at_a_time() -> None:
    resident = tiny_mmdit()
    with torch.inference_mode():
        expected = resident(*inputs())
    model = tiny_mmdit()
    streamer = stream_mmdit_blocks(model, "cpu")
    home = {id(p): p.data for p in model.joint_blocks.parameters()}
    seen: list[tuple[int, set[int], bool]] = []

    def probe(index: int):
        def hook(module: nn.Module, args) -> None:  # runs after the streamer's own pre-hook
            on_copies = all(p.data.data_ptr() != home[id(p)].data_ptr() for p in module.parameters())
            seen.append((index, set(streamer.on_device), on_copies))

        return hook

    for i, block in enumerate(model.joint_blocks):
        block.register_forward_pre_hook(probe(i))
    with torch.inference_mode():
        got = model(*inputs(), skip_layers=(7, 8))
    depth = len(model.joint_blocks)
    assert [s[0] for s in seen] == [i for i in range(depth) if i not in (7, 8)]  # skipped blocks never load
    assert all(on == {i} and copies for i, on, copies in seen)
    assert streamer.on_device == set() and streamer.loads == depth - 2
    assert all(p.data.data_ptr() == home[id(p)].data_ptr() for p in model.joint_blocks.parameters())
    with torch.inference_mode():
        assert torch.equal(model(*inputs()), expected)
    assert not torch.equal(got, expected)  # skip-layer guidance changed something: the hooks pass it through


class Spy(nn.Linear):
    """A Linear that records where it is moved."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        super().__init__(4, 4)
        self.name, self.log = name, log

    def to(self, *args, **kwargs):
        self.log.append((self.name, str(torch.device(args[0] if args else kwargs["device"]))))
        return super().to(*args, **kwargs)


def test_offloader_keeps_one_network_on_the_accelerator() -> None:
    log: list[tuple[str, str]] = []
    a, b = Spy("a", log), Spy("b", log)
    x = torch.randn(2, 4)
    expected = (a(x), b(x))
    offloader = ComponentOffloader("cpu")
    offloader.attach(a)
    offloader.attach(b)
    got = (a(x), a(x), b(x), a(x))
    assert log == [("a", "cpu"), ("a", "cpu"), ("b", "cpu"), ("b", "cpu"), ("a", "cpu")]
    #               a in          a out, b in              b out, a in  (second a(x): no move)
    assert offloader.active is a and offloader.moves == 3
    assert torch.equal(got[0], expected[0]) and torch.equal(got[2], expected[1])
    offloader.detach()
    b(x)
    assert offloader.active is a  # detached: no more moves


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("offload") / "set", "medium")


def _run(engine: Engine) -> tuple[torch.Tensor, torch.Tensor]:
    cond = engine.encode("a red fox in the snow", "full")
    with torch.inference_mode():
        return cond.context, engine.mmdit(*inputs()[:2], cond.pooled, cond.context)


@pytest.mark.parametrize("name", ["offload", "low-vram"])
def test_engine_applies_offload_and_streaming_plans(snapshot: Path, name: str) -> None:
    """The plans' hooks wired by Engine.load (forced onto the CPU here) give the resident plan's outputs."""
    model_set = locate_model_set(snapshot)
    resident = Engine("cpu", "float32", "resident")
    resident.load(model_set)
    plan = plan_for(name, model_set.sizes(), Machine("cuda", 10**12, 10**12), "float32")
    plan = replace(plan, device="cpu", t5_dtype="float32", mmdit_fp8=False, t5_fp8=False)
    engine = Engine("cpu", "float32")
    engine.load(model_set, plan=plan)
    assert engine.plan == plan
    assert isinstance(engine._offloader, ComponentOffloader)
    assert isinstance(engine._streamer, BlockStreamer) == (name == "low-vram")
    context, velocity = _run(engine)
    expected_context, expected_velocity = _run(resident)
    assert torch.equal(context, expected_context) and torch.equal(velocity, expected_velocity)
    assert engine._offloader.moves >= 3  # CLIP-L, CLIP-G, T5 (and the MMDiT unless it streams)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_low_vram_on_cuda_holds_one_block(snapshot: Path) -> None:
    model_set = locate_model_set(snapshot)
    engine = Engine("cuda", "bfloat16", "low-vram")
    engine.load(model_set)
    assert engine.plan.stream_blocks
    block = engine.mmdit.joint_blocks[0]
    assert next(block.parameters()).device.type == "cpu"
    peak = []
    block.register_forward_hook(lambda m, a, o: peak.append(next(m.parameters()).device.type))
    _run(engine)
    assert peak == ["cuda"] and next(block.parameters()).device.type == "cpu"
