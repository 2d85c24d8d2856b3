"""Memory plans as a table: (component sizes, machine) -> plan. Sizes are the real SD3.5 parameter counts
(test_sparse_files checks that ModelSet.sizes() of real-size headers gives exactly these). Machines sit well
inside each regime; the comments give the rough sums (GB, bf16 = 2 bytes, fp8 = 1 byte, +3 GB activations
on the accelerator / in RAM on the CPU, +2 GB RAM for the runtime)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.inference.memory.plan import PLAN_NAMES, ComponentSizes, Machine, choose_plan, plan_for

GB = 10**9

LARGE = ComponentSizes(
    mmdit_params=8_146_280_768,  # incl. pos_embed; 8.01e9 of it in joint-block Linear weights
    mmdit_fp8_params=8_014_315_520,
    mmdit_block_params=212_999_680,
    vae_params=83_819_683,
    clip_params=817_720_320,  # CLIP-L 123.1 M + CLIP-G 694.7 M
    t5_params=4_762_310_656,  # token table counted once
    t5_fp8_params=3_623_878_656,  # q, k, v, o, wi_0, wi_1 (wo stays 16-bit)
    mmdit_adaln_params=2_686_343_424,  # 33 % of the MMDiT: bf16 16.3 GB resident -> 10.9 GB without them
    mmdit_adaln_fp8_params=2_673_410_048,
)
MEDIUM = ComponentSizes(
    mmdit_params=2_469_663_936,
    mmdit_fp8_params=2_222_456_832,
    mmdit_block_params=101_506_944,
    vae_params=83_819_683,
    clip_params=817_720_320,
    t5_params=4_762_310_656,
    t5_fp8_params=3_623_878_656,
    mmdit_adaln_params=767_270_400,  # 31 %: bf16 4.9 GB -> 3.4 GB
    mmdit_adaln_fp8_params=762_052_608,
)
LARGE_NO_T5 = replace(LARGE, t5_params=0, t5_fp8_params=0)


def cuda(free_gb: float, ram_gb: float = 64, bf16: bool = True) -> Machine:
    return Machine("cuda", int(free_gb * GB), int(ram_gb * GB), bf16)


def cpu(ram_gb: float) -> Machine:
    return Machine("cpu", 0, int(ram_gb * GB))


# (sizes, machine, plan, compute dtype, MMDiT fp8, T5 fp8, T5 used, T5 on the CPU, fits)
# Every plan but `resident` keeps the MMDiT's adaLN weights in RAM (Large bf16: 16.3 -> 10.9 GB, fp8 8.3 -> 5.6).
TABLE = [
    # Large: all resident ~ 16.3 + 0.2 + 1.6 + 9.5 + 3 = 30.6
    (LARGE, cuda(80), "resident", "bfloat16", False, False, True, False, True),
    # 28 GB card: resident without the adaLN weights ~ 10.9 + 0.2 + 1.6 + 9.5 + 3 = 25.3
    (LARGE, cuda(28), "lean", "bfloat16", False, False, True, False, True),
    # 24 GB card: one network at a time ~ max(TE 11.1, MMDiT 10.9) + 0.2 + 3 = 14.1
    (LARGE, cuda(24), "offload", "bfloat16", False, False, True, False, True),
    # 16 GB card: the same, in bf16 (with the adaLN weights on the card it needed 19.5: fp8)
    (LARGE, cuda(16), "offload", "bfloat16", False, False, True, False, True),
    # 12 and 10 GB cards: fp8 ~ max(T5 5.9, MMDiT 5.6) + 3.2 = 9.1, no block streaming (it was 11.5)
    (LARGE, cuda(12), "fp8", "bfloat16", True, True, True, False, True),
    (LARGE, cuda(10), "fp8", "bfloat16", True, True, True, False, True),
    # 8 GB card: blocks streamed (0.3 + 2 x 0.2), T5 (5.9 + 3.2 > 8) on the CPU
    (LARGE, cuda(8, ram_gb=32), "low-vram", "bfloat16", True, True, True, True, True),
    # 6 GB card and 16 GB RAM: low-vram needs ~17.8 GB RAM; without T5 ~11.9
    (LARGE, cuda(6, ram_gb=16), "no-t5", "bfloat16", True, False, False, False, True),
    (MEDIUM, cuda(24), "resident", "bfloat16", False, False, True, False, True),  # ~19.3
    (MEDIUM, cuda(18), "lean", "bfloat16", False, False, True, False, True),  # ~17.7 (resident ~19.3)
    (MEDIUM, cuda(16), "offload", "bfloat16", False, False, True, False, True),  # ~12.7
    (MEDIUM, cuda(11), "fp8", "bfloat16", True, True, True, False, True),  # ~9.1
    (MEDIUM, cuda(6), "low-vram", "bfloat16", True, True, True, True, True),
    # no bf16: fp16 compute, T5 in float32 (it overflows in fp16): resident ~28.7, one at a time ~22.2
    (MEDIUM, cuda(24, bf16=False), "offload", "float16", False, False, True, False, True),
    # CPU: everything in RAM: float32 when it fits, else bf16 (DECISIONS row 8)
    (LARGE, cpu(64), "resident", "float32", False, False, True, False, True),  # ~60
    (LARGE, cpu(30), "fp8", "float32", True, True, True, False, True),  # resident bf16 ~32.5; fp8 fp32 ~25.3
    (LARGE, cpu(24), "fp8", "bfloat16", True, True, True, False, True),  # ~21
    (LARGE, cpu(16), "no-t5", "bfloat16", True, False, False, False, True),  # ~15.1
    (LARGE, cpu(8), "no-t5", "bfloat16", True, False, False, False, False),  # nothing fits: the smallest
    (MEDIUM, cpu(64), "resident", "float32", False, False, True, False, True),  # ~37.5
    (MEDIUM, cpu(28), "resident", "bfloat16", False, False, True, False, True),  # ~21.3
    (MEDIUM, cpu(18), "fp8", "bfloat16", True, True, True, False, True),  # ~15.4
    # Large in bf16 on a 24 GB machine with T5 switched off by the user (--no-t5): ~18.1 + 5
    (LARGE_NO_T5, cpu(24), "resident", "bfloat16", False, False, False, False, True),
]


@pytest.mark.parametrize(
    ("sizes", "machine", "name", "dtype", "mmdit_fp8", "t5_fp8", "use_t5", "t5_on_cpu", "fits"), TABLE
)
def test_auto_plan_table(sizes, machine, name, dtype, mmdit_fp8, t5_fp8, use_t5, t5_on_cpu, fits) -> None:
    plan = choose_plan(sizes, machine)
    got = (plan.name, plan.compute_dtype, plan.mmdit_fp8, plan.t5_fp8, plan.use_t5, plan.t5_on_cpu, plan.fits)
    assert got == (name, dtype, mmdit_fp8, t5_fp8, use_t5, t5_on_cpu, fits)
    assert not plan.forced
    if machine.device == "cpu":
        assert plan.device_bytes == 0 and not plan.offload and not plan.stream_blocks
        assert plan.ram_bytes <= machine.ram_free or not plan.fits
    else:
        assert plan.device_bytes <= machine.device_free or not plan.fits


def test_t5_dtype_is_never_fp16() -> None:
    assert choose_plan(MEDIUM, cuda(40, bf16=False)).t5_dtype == "float32"
    assert choose_plan(MEDIUM, cuda(40)).t5_dtype == "bfloat16"
    assert choose_plan(MEDIUM, cpu(64), dtype="float16").t5_dtype == "float32"
    assert choose_plan(MEDIUM, Machine("mps", 40 * GB, 64 * GB, bf16=False)).compute_dtype == "float16"


def test_fp8_files_stay_fp8_in_every_plan() -> None:
    sizes = replace(LARGE, mmdit_file_fp8=True, t5_file_fp8=True)
    for name in PLAN_NAMES:
        plan = plan_for(name, sizes, cuda(80), "bfloat16")
        assert plan.mmdit_fp8 and (plan.t5_fp8 or not plan.use_t5), name
    # fp8 files make a plan smaller: Large fp8-scaled fits a 12 GB card one network at a time (~9.1)
    assert choose_plan(sizes, cuda(12)).name == "offload"


def test_user_choice_wins_and_says_whether_it_fits() -> None:
    forced = choose_plan(LARGE, cuda(8), plan="resident")
    assert (forced.name, forced.forced, forced.fits) == ("resident", True, False)
    assert "more than is free" in forced.describe()
    assert choose_plan(LARGE, cpu(64), plan="low-vram").name == "resident"  # accelerator-only plans on a CPU
    assert choose_plan(LARGE, cpu(64), dtype="bfloat16").compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown memory plan"):
        choose_plan(LARGE, cpu(64), plan="tiny")


def test_auto_can_be_kept_from_dropping_t5() -> None:
    plan = choose_plan(LARGE, cpu(16), allow_t5_off=False)
    assert (plan.name, plan.use_t5, plan.fits) == ("fp8", True, False)


@pytest.mark.parametrize("sizes", [LARGE, MEDIUM])
def test_each_accelerator_plan_needs_no_more_device_memory_than_the_one_before(sizes) -> None:
    needs = [plan_for(name, sizes, cuda(1000), "bfloat16").device_bytes for name in PLAN_NAMES]
    assert needs == sorted(needs, reverse=True)
    assert needs[0] > 2 * needs[-1]


def test_description_names_the_plan_and_the_memory() -> None:
    text = choose_plan(LARGE, cuda(8, ram_gb=32)).describe()
    assert text.startswith("low-vram plan, bfloat16")
    assert "MMDiT and T5 weights in fp8" in text and "T5 on the CPU" in text and "GB on cuda" in text


def _bf16_bytes(params: int) -> float:
    return params * 2 / GB


@pytest.mark.parametrize(("variant", "sizes"), [("large", LARGE), ("medium", MEDIUM)])
def test_adaln_share_is_measured_on_the_full_size_models(variant, sizes) -> None:
    """The adaLN counts above are the full-size models' (built on `meta`), and the plans use them: `lean`
    holds exactly the resident plan minus the adaLN weights on the accelerator, and keeps them in RAM."""
    import torch

    from app.inference.networks.mmdit import MMDiT
    from app.inference.networks.mmdit_config import mmdit_config_from_shapes
    from app.inference.networks.modulation import adaln_modules
    from tests.factory.mmdit_model import PREFIX, real_manifest

    shapes = {k["key"][len(PREFIX) :]: tuple(k["shape"]) for k in real_manifest(variant)["keys"]}
    cfg = mmdit_config_from_shapes(shapes)
    with torch.device("meta"):
        model = MMDiT(cfg)
    adaln = [m[1] for m in adaln_modules(model)]
    params = sum(p.numel() for m in adaln for p in m.parameters())
    block_weights = sum(m.weight.numel() for m in adaln[:-1])  # joint blocks only: the fp8-eligible part
    total = sum(t.numel() for t in model.state_dict().values())
    assert (params, block_weights, total) == (
        sizes.mmdit_adaln_params,
        sizes.mmdit_adaln_fp8_params,
        sizes.mmdit_params,
    )
    assert (cfg.adaln_params, cfg.adaln_block_weight_params) == (params, block_weights)
    print(
        f"{variant}: adaLN {params / total:.1%} of the MMDiT; resident bf16 {_bf16_bytes(total):.2f} GB, "
        f"without adaLN {_bf16_bytes(total - params):.2f} GB"
    )
    resident = plan_for("resident", sizes, cuda(1000), "bfloat16")
    lean = plan_for("lean", sizes, cuda(1000), "bfloat16")
    assert not resident.adaln_on_host and lean.adaln_on_host and not lean.offload
    assert resident.device_bytes - lean.device_bytes == params * 2
    assert lean.ram_bytes - resident.ram_bytes == params * 2
    assert "adaLN weights in RAM" in lean.describe()


def test_every_accelerator_plan_but_resident_keeps_adaln_in_ram() -> None:
    on_host = {name: plan_for(name, LARGE, cuda(1000), "bfloat16").adaln_on_host for name in PLAN_NAMES}
    assert on_host == {name: name != "resident" for name in PLAN_NAMES}
    assert not any(plan_for(name, LARGE, cpu(1000), "float32").adaln_on_host for name in PLAN_NAMES)
    assert choose_plan(LARGE, cpu(64), plan="lean").name == "resident"  # lean needs an accelerator
