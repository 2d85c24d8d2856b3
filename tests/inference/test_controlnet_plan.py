"""Memory plans count a job's ControlNets (sizes of the full-size Large ControlNet, built on the meta device), and
the streaming plans stream its blocks like the MMDiT's without changing its outputs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from app.inference.checkpoints.controlnet_loading import controlnet_fp8_eligible, load_controlnet
from app.inference.control.job import _load_placed
from app.inference.memory.plan import choose_plan, plan_for
from app.inference.networks.controlnet import ControlNet, ControlNetConfig
from tests.factory.controlnet_model import tiny_controlnet_state, write_controlnet
from tests.factory.mmdit_model import TinyMMDiTSpec, tiny_mmdit_state
from tests.inference.test_controlnet_forward import _base, _inputs, _tokens
from tests.inference.test_memory_plan import GB, LARGE, cpu, cuda


def _full_size_sizes() -> tuple[int, int, int]:
    cfg = ControlNetConfig(19, 2432, 38, 2, 16, 2048, 4 * 2432, "canny")
    with torch.device("meta"):
        model = ControlNet(cfg)
    params = sum(p.numel() for p in model.parameters())
    fp8 = sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and controlnet_fp8_eligible(name)
    )
    block = sum(p.numel() for p in model.transformer_blocks[0].parameters()) + sum(
        p.numel() for p in model.controlnet_blocks[0].parameters()
    )
    return params, fp8, block


CN = _full_size_sizes()
WITH_CN = replace(LARGE, controlnet_params=CN[0], controlnet_fp8_params=CN[1], controlnet_block_params=CN[2])


def test_full_size_counts():
    assert CN == (2_153_677_056, 2_135_179_264, 112_416_768)


@pytest.mark.parametrize(
    ("name", "extra_device_gb", "extra_ram_gb"),
    [
        ("resident", 4.307, 0.0),  # bf16 on the accelerator
        ("lean", 4.307, 0.0),
        ("offload", 4.307, 0.0),  # stays on the accelerator next to the MMDiT while sampling
        ("fp8", 2.172, 0.0),  # block Linears in one byte: 2.135 + 2 x 0.0185
        (
            "low-vram",
            0.262,
            2.172,
        ),  # streamed: embedders (bf16) + two fp8 blocks on the card, the rest in RAM
    ],
)
def test_plans_count_the_controlnet(name, extra_device_gb, extra_ram_gb):
    machine = cuda(200, ram_gb=200)
    plain = plan_for(name, LARGE, machine, "bfloat16")
    with_cn = plan_for(name, WITH_CN, machine, "bfloat16")
    assert (with_cn.device_bytes - plain.device_bytes) / GB == pytest.approx(extra_device_gb, abs=2e-3)
    assert (with_cn.ram_bytes - plain.ram_bytes) / GB == pytest.approx(extra_ram_gb, abs=2e-3)


def test_cpu_plans_hold_it_in_ram():
    plain = plan_for("resident", LARGE, cpu(200), "bfloat16")
    with_cn = plan_for("resident", WITH_CN, cpu(200), "bfloat16")
    assert (with_cn.ram_bytes - plain.ram_bytes) / GB == pytest.approx(4.307, abs=2e-3)
    assert with_cn.device_bytes == 0


def test_auto_moves_down_the_ladder_for_a_controlnet():
    machine = cuda(28)  # Large alone runs "lean" here (test_memory_plan)
    assert choose_plan(LARGE, machine).name == "lean"
    assert choose_plan(WITH_CN, machine).name == "offload"


def test_streamed_controlnet_gives_the_same_outputs(tmp_path):
    base = _base(tiny_mmdit_state("large", TinyMMDiTSpec(depth=4), seed=11))
    path = write_controlnet(tmp_path / "cn.safetensors", tiny_controlnet_state(blocks=2, seed=4))
    resident = load_controlnet(path, base=base.cfg, dtype=torch.float32, device="cpu")
    streamed, streamer = _load_placed(path, base, fp8=False, stream=True, device=torch.device("cpu"))
    x, hint_latent, sigma, y, _ = _inputs(base)
    with torch.inference_mode():
        tokens = _tokens(base, x)
        a = resident(tokens, resident.embed_hint(hint_latent), sigma * 1000, y)
        b = streamed(tokens, streamed.embed_hint(hint_latent), sigma * 1000, y)
    assert streamer.loads == 4  # two transformer blocks and two output Linears, each copied in once
    assert not streamer.on_device  # and released after running
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    streamer.detach()


def test_an_fp8_file_stays_fp8_in_every_plan(tmp_path):
    fp8_file = replace(WITH_CN, controlnet_file_fp8=True)
    machine = cuda(200, ram_gb=200)
    for name in ("resident", "lean", "offload"):
        added = plan_for(name, fp8_file, machine, "bfloat16").device_bytes
        added -= plan_for(name, LARGE, machine, "bfloat16").device_bytes
        assert added / GB == pytest.approx(2.172, abs=2e-3), name
    # and the loader keeps its Linear weights in fp8 even where the MMDiT's are 16-bit
    from app.inference.checkpoints.fp8 import Fp8Linear
    from app.inference.control.job import ControlNetCache
    from tests.factory.layouts import to_scaled_fp8

    base = _base(tiny_mmdit_state("large", TinyMMDiTSpec(depth=4), seed=11))
    state = tiny_controlnet_state(blocks=2, dtype=torch.float32)
    path = write_controlnet(
        tmp_path / "cn_fp8.safetensors",
        to_scaled_fp8(state, lambda k, t: k.startswith("transformer_blocks.") and t.ndim == 2),
    )
    model = ControlNetCache().get(path, base, None, torch.device("cpu"))
    assert isinstance(model.transformer_blocks[0].mlp.fc1, Fp8Linear)
