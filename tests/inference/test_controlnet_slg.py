"""ControlNets and skip-layer guidance: the cond/uncond batch runs the ControlNets, the skip-layer pass does not, as
in Stability's reference (`SkipLayerCFGDenoiser` calls the skip pass without `controlnet_cond`):

    D = D_u + w (D_c − D_u) + s (D_c − D_skip)   with D_c, D_u controlled and D_skip plain (layers skipped)
"""

import pytest
import torch

from app.inference.checkpoints.controlnet_loading import load_controlnet
from app.inference.checkpoints.weights import assign_weights
from app.inference.control.apply import ControlStack, ControlUnit
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from app.inference.sampling.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.text.conditioning import TextConditioning
from tests.factory.controlnet_model import tiny_controlnet_state, write_controlnet
from tests.factory.mmdit_model import PREFIX, TinyMMDiTSpec, tiny_mmdit_state

SLG = {"slg_layers": (1, 2), "slg_scale": 2.5, "slg_start": 0.0, "slg_end": 1.0}
STEP = 3  # inside the window: 0 * 10 < 3 < 1 * 10


@pytest.fixture(scope="module")
def base():
    sd = {
        k[len(PREFIX) :]: v.float()
        for k, v in tiny_mmdit_state("large", TinyMMDiTSpec(depth=4), seed=5).items()
    }
    with torch.device("meta"):
        model = MMDiT(mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()}))
    return assign_weights(model, sd, source="tiny", what="MMDiT").eval()


@pytest.fixture(scope="module")
def stack_of(base, tmp_path_factory):
    path = write_controlnet(
        tmp_path_factory.mktemp("cn") / "canny.safetensors", tiny_controlnet_state(blocks=2)
    )
    cnet = load_controlnet(path, base=base.cfg, dtype=torch.float32, device="cpu")
    hint = cnet.embed_hint(torch.randn(1, 16, 8, 12, generator=torch.Generator().manual_seed(1)))
    return lambda: ControlStack([ControlUnit.of(cnet, hint, 0.9, 0.0, 1.0, 3.0, base.cfg.depth)])


def _conditioning(base, seed):
    gen = torch.Generator().manual_seed(seed)
    return TextConditioning(
        torch.randn(1, 12, base.cfg.context_in_channels, generator=gen),
        torch.randn(1, base.cfg.adm_in_channels, generator=gen),
    )


def _denoise(base, control, cfg=3.5, **slg):
    guidance = GuidanceConfig(cfg=cfg, steps=10, **slg)
    denoiser = GuidedDenoiser(base, _conditioning(base, 2), _conditioning(base, 3), guidance, control=control)
    x = torch.randn(1, 16, 8, 12, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        return denoiser(x, torch.tensor(0.6), STEP), x


def _skip_pass(base, x, stack):
    """D of the positive conditioning with the SLG layers skipped, with or without the ControlNet."""
    cond = _conditioning(base, 2)
    t = torch.tensor([600.0])
    with torch.inference_mode():
        prepared = base.prepare(t, cond.pooled, cond.context)
        if stack is not None:
            from dataclasses import replace

            prepared = replace(prepared, control=stack.for_call(0.6, t, cond.pooled))
        v = base.forward_prepared(x, prepared, skip_layers=SLG["slg_layers"])
    return x - 0.6 * v


def test_the_skip_layer_pass_runs_without_the_controlnet(base, stack_of):
    stack = stack_of()
    got, x = _denoise(base, stack, **SLG)
    assert stack.calls == 1  # the cond/uncond batch only; the skip pass did not call the ControlNet

    cfg_part, _ = _denoise(base, stack_of())  # D_u + w (D_c − D_u), controlled
    d_cond, _ = _denoise(base, stack_of(), cfg=1.0)  # D_c, controlled
    expected = cfg_part + SLG["slg_scale"] * (d_cond - _skip_pass(base, x, None))
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    # and the test can tell: a skip pass that ran the ControlNet (ComfyUI's way) gives another result
    controlled_skip = cfg_part + SLG["slg_scale"] * (d_cond - _skip_pass(base, x, stack_of()))
    assert (got - controlled_skip).abs().max() > 1e-3


def test_without_slg_the_controlnet_acts_once_per_step_on_the_batch(base, stack_of):
    stack = stack_of()
    with_cn, _ = _denoise(base, stack)
    plain, _ = _denoise(base, None)
    assert stack.calls == 1 and (with_cn - plain).abs().max() > 1e-3
