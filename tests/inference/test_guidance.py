"""Classifier-free guidance, skip-layer guidance and the negative window, on a tiny real MMDiT."""

from types import SimpleNamespace

import pytest
import torch

from app.inference.checkpoints.weights import assign_weights
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from app.inference.sampling.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.sampling.schedules import make_sigmas, percent_to_sigma
from tests.factory.mmdit_model import PREFIX, tiny_mmdit_state


@pytest.fixture(scope="module")
def model():
    sd = {k[len(PREFIX) :]: v.float() for k, v in tiny_mmdit_state("medium", seed=5).items()}
    cfg = mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    with torch.device("meta"):
        m = MMDiT(cfg)
    return assign_weights(m, sd, source="tiny", what="MMDiT").eval()


class CallLog:
    """Records the batch size and context length of every forward call, live or prepared."""

    def __init__(self, model):
        self.calls = []
        self.model = model
        live, prepared = model.forward, model.forward_prepared

        def forward(x, t, y, context, skip_layers=()):
            self.calls.append((x.shape[0], context.shape[1], tuple(skip_layers)))
            return live(x, t, y, context, skip_layers)

        def forward_prepared(x, inputs, skip_layers=()):  # the per-job path: text tokens already embedded
            self.calls.append((x.shape[0], inputs.context.shape[1], tuple(skip_layers)))
            return prepared(x, inputs, skip_layers)

        model.forward, model.forward_prepared = forward, forward_prepared

    def close(self):
        del self.model.forward, self.model.forward_prepared  # the class's methods again


def _cond(length, seed, cfg):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        context=torch.randn(1, length, cfg.context_in_channels, generator=g),
        pooled=torch.randn(1, cfg.adm_in_channels, generator=g),
    )


def _raw_d(model, x, sigma, c, skip=()):
    v = model(x, (sigma * 1000).expand(1), c.pooled, c.context, skip_layers=skip)
    return x - sigma * v


@torch.inference_mode()
def test_cfg_batches_equal_lengths_and_combines_in_reference_order(model):
    cfg = model.cfg
    cond, uncond = _cond(154, 1, cfg), _cond(154, 2, cfg)
    den = GuidedDenoiser(model, cond, uncond, GuidanceConfig(cfg=4.5, steps=10))
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor(0.7)
    log = CallLog(model)
    d = den(x, sigma, 0)
    log.close()
    assert log.calls == [(2, 154, ())]  # one batched pass, positive and negative together
    d_c, d_u = _raw_d(model, x, sigma, cond), _raw_d(model, x, sigma, uncond)
    torch.testing.assert_close(d, d_u + (d_c - d_u) * 4.5, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_different_context_lengths_run_as_separate_passes(model):
    cond, uncond = _cond(231, 1, model.cfg), _cond(154, 2, model.cfg)
    den = GuidedDenoiser(model, cond, uncond, GuidanceConfig(cfg=3.0, steps=10))
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor(0.5)
    log = CallLog(model)
    d = den(x, sigma, 0)
    log.close()
    assert sorted(log.calls) == [(1, 154, ()), (1, 231, ())]  # never padded
    d_c, d_u = _raw_d(model, x, sigma, cond), _raw_d(model, x, sigma, uncond)
    torch.testing.assert_close(d, d_u + (d_c - d_u) * 3.0, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_cfg_one_skips_uncond(model):
    cond = _cond(154, 1, model.cfg)
    den = GuidedDenoiser(model, cond, None, GuidanceConfig(cfg=1.0, steps=4))
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor(1.0)
    log = CallLog(model)
    d = den(x, sigma, 0)
    log.close()
    assert log.calls == [(1, 154, ())]
    assert torch.equal(d, _raw_d(model, x, sigma, cond))


@pytest.mark.parametrize(
    ("steps", "active"), [(50, range(1, 10)), (40, range(1, 8)), (28, range(1, 6)), (4, [])]
)
def test_slg_window_follows_reference_step_rule(steps, active):
    g = GuidanceConfig(cfg=4.5, steps=steps, slg_layers=(7, 8, 9), slg_scale=2.5)
    assert [k for k in range(steps) if g.slg_active(k)] == list(active)


@torch.inference_mode()
def test_slg_adds_skip_pass_with_positive_only(model):
    cond, uncond = _cond(154, 1, model.cfg), _cond(154, 2, model.cfg)
    g = GuidanceConfig(cfg=4.0, steps=28, slg_layers=(1,), slg_scale=2.5)
    den = GuidedDenoiser(model, cond, uncond, g)
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor(0.9)
    log = CallLog(model)
    d = den(x, sigma, 3)
    den(x, sigma, 6)  # outside the window: no skip pass
    log.close()
    assert log.calls == [(2, 154, ()), (1, 154, (1,)), (2, 154, ())]
    d_c, d_u = _raw_d(model, x, sigma, cond), _raw_d(model, x, sigma, uncond)
    d_s = _raw_d(model, x, sigma, cond, skip=(1,))
    torch.testing.assert_close(d, d_u + (d_c - d_u) * 4.0 + (d_c - d_s) * 2.5, rtol=1e-4, atol=1e-4)


@torch.inference_mode()
def test_negative_window_switches_to_zeroed_negative(model):
    cond, uncond = _cond(154, 1, model.cfg), _cond(154, 2, model.cfg)
    zero = type(uncond)(context=torch.zeros_like(uncond.context), pooled=torch.zeros_like(uncond.pooled))
    den = GuidedDenoiser(model, cond, uncond, GuidanceConfig(cfg=4.0, steps=28, negative_until=0.1))
    sigmas = make_sigmas("normal", 28)
    threshold = percent_to_sigma(0.1)
    assert threshold == pytest.approx(0.96428571)
    x = torch.randn(1, 16, 8, 8)
    # Spec: steps 0, 1, 2 (sigma 1.0, 0.98738, 0.97411) use the real negative, from step 3 the zeroed one.
    for i, expect in [(2, uncond), (3, zero)]:
        d = den(x, sigmas[i], i)
        d_c, d_u = _raw_d(model, x, sigmas[i], cond), _raw_d(model, x, sigmas[i], expect)
        torch.testing.assert_close(d, d_u + (d_c - d_u) * 4.0, rtol=1e-4, atol=1e-4)
