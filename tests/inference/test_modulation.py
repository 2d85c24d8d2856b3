"""The per-job modulation table and per-job constants: the same denoised estimates as the live forward, for
every sampler x scheduler with CFG, skip-layer guidance and the negative window, with the constant work done
once per job (counted with hooks)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from app.inference.api.events import ImageFinished
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.checkpoints.weights import assign_weights
from app.inference.memory.plan import Machine, plan_for
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from app.inference.networks.modulation import ModulationTable, adaln_modules, timestep_value
from app.inference.pipeline.engine import Engine
from app.inference.pipeline.session import GenerationSession
from app.inference.sampling.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.sampling.samplers import SAMPLERS, ancestral_noise_sampler
from app.inference.sampling.schedules import SCHEDULERS, img2img_sigmas, make_sigmas
from tests.factory.mmdit_model import PREFIX, tiny_mmdit_state
from tests.factory.snapshot import write_snapshot

SHAPE = (1, 16, 8, 8)
GUIDANCE = {
    "cfg": GuidanceConfig(cfg=4.5, steps=6),
    "cfg+slg": GuidanceConfig(
        cfg=3.0, steps=6, slg_layers=(7, 8), slg_scale=2.5, slg_start=0.01, slg_end=0.6
    ),
    "cfg+negative window": GuidanceConfig(cfg=4.0, steps=6, negative_until=0.3),
    "no cfg": GuidanceConfig(cfg=1.0, steps=6),
}


@pytest.fixture(scope="module")
def model() -> MMDiT:
    sd = {k[len(PREFIX) :]: v.float() for k, v in tiny_mmdit_state("medium", seed=7).items()}
    with torch.device("meta"):
        m = MMDiT(mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()}))
    return assign_weights(m, sd, source="tiny", what="MMDiT").eval()


def _cond(model: MMDiT, length: int, seed: int) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(
        context=torch.randn(1, length, model.cfg.context_in_channels, generator=g),
        pooled=torch.randn(1, model.cfg.adm_in_channels, generator=g),
    )


class Shadowed:
    """The table denoiser, with the live one evaluated on the same (x, sigma, i) at every call."""

    def __init__(self, model, sigmas, guidance) -> None:
        cond, uncond = _cond(model, 20, 1), _cond(model, 20, 2)
        self.table = GuidedDenoiser(model, cond, uncond, guidance, sigmas)
        self.live = GuidedDenoiser(model, cond, uncond, guidance, precompute=False)
        self.worst = 0.0  # largest relative difference of one call's denoised estimate

    def __call__(self, x, sigma, i):
        d = self.table(x, sigma, i)
        self.worst = max(self.worst, _rel(d, self.live(x, sigma, i)))
        return d


def _sample(model, sampler, sigmas, guidance, precompute):
    den = GuidedDenoiser(
        model, _cond(model, 20, 1), _cond(model, 20, 2), guidance, sigmas, precompute=precompute
    )
    return _run(den, sampler, sigmas), den


def _run(den, sampler, sigmas):
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)) * float(sigmas[0])
    extra = {"noise": ancestral_noise_sampler(9, SHAPE)} if sampler == "euler_ancestral" else {}
    schedule = den.table.sigmas if isinstance(den, Shadowed) else den.sigmas
    with torch.inference_mode():
        return SAMPLERS[sampler](den, x, schedule, **extra)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("guidance", list(GUIDANCE))
@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_table_gives_the_live_result_for_every_sampler_and_scheduler(model, sampler, scheduler, guidance):
    """Each call's denoised estimate equals the live one's to 1e-6 relative per network forward (float32: the
    table's adaLN matmuls batch more rows, which changes the last bits). Guidance combines several forwards,
    D = (1 - cfg) D_u + (cfg + s) D_c - s D_skip, so the bound on D grows with the gain |1 - cfg| + cfg + 2 s
    (1 without CFG: the forward itself). The whole run's latent stays within 1e-5 of the live-only run."""
    g = GUIDANCE[guidance]
    gain = abs(1 - g.cfg) + g.cfg + 2 * g.slg_scale if g.uses_uncond else 1.0
    sigmas = make_sigmas(scheduler, g.steps)
    shadowed = Shadowed(model, sigmas, g)
    table = _run(shadowed, sampler, sigmas)
    live, _ = _sample(model, sampler, sigmas, g, precompute=False)
    assert shadowed.worst <= 1e-6 * gain
    assert _rel(table, live) <= 1e-5
    # Every point the sampler evaluated was in the table built before the first step: nothing was added.
    assert shadowed.table.table.builds == 1
    assert shadowed.table.calls == len(sigmas) - 1


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_img2img_schedule_is_covered_too(model, sampler):
    g = replace(GUIDANCE["cfg+slg"], steps=10)
    sigmas = img2img_sigmas(make_sigmas("normal", 10), 0.55)
    shadowed = Shadowed(model, sigmas, g)
    _run(shadowed, sampler, sigmas)
    assert shadowed.worst <= 1e-6 * (2 + 3 + 5) and shadowed.table.table.builds == 1  # the gain above


@torch.inference_mode()
def test_a_sigma_outside_the_schedule_is_computed_when_asked_and_kept(model):
    g = GUIDANCE["cfg+negative window"]
    sigmas = make_sigmas("normal", 6)
    den = GuidedDenoiser(model, _cond(model, 20, 1), _cond(model, 20, 2), g, sigmas)
    live = GuidedDenoiser(model, _cond(model, 20, 1), _cond(model, 20, 2), g, precompute=False)
    rows = len(den.table)
    x = torch.randn(SHAPE)
    midpoint = (sigmas[1] + sigmas[2]) / 2  # where a second-order sampler would evaluate
    assert _rel(den(x, midpoint, 1), live(x, midpoint, 1)) <= 1e-6
    assert den.table.builds == 2 and len(den.table) == rows + 2  # positive and negative at the new sigma
    den(x, midpoint.clone(), 1)  # the same value again: found by value
    assert den.table.builds == 2


@torch.inference_mode()
def test_without_a_schedule_each_new_sigma_is_added_once(model):
    den = GuidedDenoiser(model, _cond(model, 20, 1), _cond(model, 12, 2), GUIDANCE["cfg"])
    live = GuidedDenoiser(model, _cond(model, 20, 1), _cond(model, 12, 2), GUIDANCE["cfg"], precompute=False)
    x, sigma = torch.randn(2, *SHAPE[1:]), torch.tensor(0.8)  # two images, different context lengths
    assert _rel(den(x, sigma, 0), live(x, sigma, 0)) <= 1e-6
    den(x, sigma, 1)
    assert den.table.builds == 1 and (timestep_value(0.8), 1) in den.table


@torch.inference_mode()
def test_table_rows_equal_the_live_adaln_outputs(model):
    pooled = [torch.randn(1, model.cfg.adm_in_channels), torch.zeros(1, model.cfg.adm_in_channels)]
    times = [1000.0, 734.5, 3.0]
    table = ModulationTable(model, pooled)
    table.add((t, k) for t in times for k in (0, 1))
    assert table.builds == 1 and len(table) == 6
    rows = table.rows([(734.5, 1), (734.5, 0)], repeat=2)  # batch: uncond x 2, cond x 2
    c = model.conditioning(torch.tensor([734.5] * 4), torch.cat([pooled[1], pooled[1], pooled[0], pooled[0]]))
    for i, block in enumerate(model.joint_blocks):
        (ctx_mod, x_mod) = rows.block(i)
        live = (*block.context_block.modulation(c).chunks(), *block.x_block.modulation(c).chunks())
        for got, want in zip((*ctx_mod.chunks(), *x_mod.chunks()), live, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    shift, scale = rows.final().shift, rows.final().scale
    want_shift, want_scale = model.final_layer.adaLN_modulation(c).chunk(2, dim=1)
    torch.testing.assert_close((shift, scale), (want_shift, want_scale), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# A whole job through the session: per-job work counted, the lean plan's adaLN weights kept at home
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("modulation") / "set", "medium")


class CallCounter:
    def __init__(self, modules: dict[str, torch.nn.Module]) -> None:
        self.counts = dict.fromkeys(modules, 0)
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str):
        def hook(module, args, output) -> None:
            self.counts[name] += 1

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _job(
    session: GenerationSession, model_set, monkeypatch, **kw
) -> tuple[dict[str, int], list[ImageFinished]]:
    request = GenerationRequest(prompt="a lighthouse", negative="fog", width=32, height=32, steps=5, seed=2,
                                count=2, **kw)  # fmt: skip
    list(session.run(model_set, replace(request, steps=1, count=1)))  # loads the models
    mmdit = session.engine.mmdit
    adaln = adaln_modules(mmdit)
    counter = CallCounter({
        "final_layer": mmdit.final_layer, "context_embedder": mmdit.context_embedder, "t_embedder": mmdit.t_embedder,
        "y_embedder": mmdit.y_embedder, "x_embedder": mmdit.x_embedder,
        **{f"adaln{i}": m for i, m in enumerate(adaln)},
    })  # fmt: skip
    crops = []
    real_crop = mmdit.cropped_pos_embed
    monkeypatch.setattr(mmdit, "cropped_pos_embed", lambda h, w: crops.append((h, w)) or real_crop(h, w))
    try:
        images = [e for e in session.run(model_set, request) if isinstance(e, ImageFinished)]
    finally:
        counter.close()
        monkeypatch.undo()
    counts = {k: v for k, v in counter.counts.items() if not k.startswith("adaln")}
    counts["adaln_max"] = max(v for k, v in counter.counts.items() if k.startswith("adaln"))
    counts["pos_crop"] = len(crops)
    return counts, images


def test_constant_work_runs_once_per_job(snapshot, monkeypatch):
    """5 steps x 2 images (one at a time on the CPU), CFG: 10 batched forwards (one final layer each), but the
    text tokens are embedded once per conditioning, the pooled vectors and timesteps once, every adaLN layer
    once, and the position table cropped once. The live path (precompute=False) does all of it at every forward."""
    model_set = locate_model_set(snapshot)
    counts, images = _job(GenerationSession("cpu", "float32", preview="off"), model_set, monkeypatch)
    assert counts == {"final_layer": 10, "x_embedder": 10, "context_embedder": 2, "t_embedder": 1, "y_embedder": 1,
                      "adaln_max": 1, "pos_crop": 1}  # fmt: skip
    live_counts, live_images = _job(
        GenerationSession("cpu", "float32", preview="off", precompute=False), model_set, monkeypatch
    )
    assert live_counts == {"final_layer": 10, "x_embedder": 10, "context_embedder": 10, "t_embedder": 10,
                           "y_embedder": 10, "adaln_max": 10, "pos_crop": 10}  # fmt: skip
    for a, b in zip(images, live_images, strict=True):
        assert _rel(a.latent, b.latent) <= 1e-5


def test_lean_plan_keeps_adaln_weights_at_home_and_gives_the_resident_result(snapshot):
    """The lean plan on the CPU (standing in for the accelerator): the adaLN layers run on copies, once per
    job, and their weights are back at home afterwards; the images equal the resident plan's."""
    model_set = locate_model_set(snapshot)
    request = GenerationRequest(prompt="a red fox", negative="blur", width=32, height=32, steps=4, seed=8)
    resident = GenerationSession("cpu", "float32", preview="off")
    expected = next(e for e in resident.run(model_set, request) if isinstance(e, ImageFinished))

    lean = GenerationSession("cpu", "float32", preview="off")
    plan = plan_for("lean", model_set.sizes(), Machine("cuda", 10**12, 10**12), "float32")
    lean.engine.load(model_set, plan=replace(plan, device="cpu", t5_dtype="float32"))
    engine: Engine = lean.engine
    assert engine.plan.adaln_on_host and engine._adaln is not None and engine._offloader is None
    adaln = adaln_modules(engine.mmdit)
    home = {id(p): p.data.data_ptr() for m in adaln for p in m.parameters()}
    got = next(e for e in lean.run(model_set, request) if isinstance(e, ImageFinished))
    assert engine._adaln.loads == len(adaln)  # every layer brought in once: one table per job
    assert all(p.data.data_ptr() == home[id(p)] for m in adaln for p in m.parameters())
    assert _rel(got.latent, expected.latent) <= 1e-5  # both use a table: rows equal up to GEMM rounding
