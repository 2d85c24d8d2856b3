"""Memory plans: where each network lives and in which precision, chosen from the component sizes and the free
memory of the machine (`choose_plan` is a pure function; `probe_machine` reads the machine).

Plans, cheapest in memory last; `auto` takes the first that fits:
  resident   everything on the accelerator (or in RAM on a CPU-only machine)
  lean       resident, except the MMDiT's adaLN modulation weights (about a third of it), which stay in RAM:
             a job computes every step's modulation before its first step (modulation.py), bringing those
             weights to the accelerator one layer at a time (accelerators only)
  offload    only the active network on the accelerator: the text encoders while encoding, the MMDiT (without
             its adaLN weights) while sampling; the others wait in RAM (accelerators only)
  fp8        offload, with MMDiT and T5 Linear weights stored in float8 and upcast per layer at compute
             (on a CPU-only machine: everything in RAM, fp8 storage)
  low-vram   fp8, with the MMDiT's joint blocks streamed to the accelerator one after another; T5 runs on
             the CPU when it does not fit on the accelerator by itself (accelerators only)
  no-t5      the previous plan without T5 (zeros in its place, DECISIONS row 7)
Every plan after `lean` keeps the adaLN weights in RAM too. Compute dtype (DECISIONS rows 8 and 9): bf16 on
accelerators that support it, else fp16; on the CPU float32 when it fits, else bf16. T5 never computes in
fp16. Weight files that are already fp8 stay fp8 in every plan.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

log = logging.getLogger(__name__)

GB = 1e9
ACTIVATIONS = 3.0 * GB  # at 1024x1024 (the VAE decode is the peak), plus CUDA context and allocator slack
ACTIVATIONS_FULL_AT = 2e9  # MMDiT parameters from which the full reserve applies (SD3.5 Medium and Large)
RAM_RESERVE = 2.0 * GB  # Python, torch, transformers and the tokenizers
PLAN_NAMES = ("resident", "lean", "offload", "fp8", "low-vram", "no-t5")
PLAN_CHOICES = ("auto", *PLAN_NAMES)
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_ACCELERATOR_ONLY = ("lean", "offload", "low-vram")


@dataclass(frozen=True, slots=True)
class ComponentSizes:
    """Parameter counts of a model set, from its headers."""

    mmdit_params: int
    mmdit_fp8_params: int  # of which Linear weights in the joint blocks (what fp8 storage holds in 1 byte)
    mmdit_block_params: int  # the largest joint block (what block streaming holds on the accelerator)
    vae_params: int
    clip_params: int  # CLIP-L + CLIP-G
    t5_params: int  # 0 when T5 is absent or switched off
    t5_fp8_params: int = 0
    mmdit_adaln_params: int = 0  # adaLN modulation Linears (weights and biases, final layer included)
    mmdit_adaln_fp8_params: int = 0  # of which joint-block weights (1 byte each in fp8 storage)
    mmdit_file_fp8: bool = False  # the file itself is fp8: it stays fp8
    t5_file_fp8: bool = False

    controlnet_params: int = 0  # the job's ControlNets (8.65 GB in bf16 each on Large), 0 without
    controlnet_fp8_params: int = 0  # of which block Linear weights (1 byte each where the MMDiT's are fp8)
    controlnet_block_params: int = 0  # one ControlNet block with its output Linear (what streaming holds)
    controlnet_file_fp8: bool = False  # a ControlNet file stored in fp8: it stays fp8


@dataclass(frozen=True, slots=True)
class Machine:
    device: str  # "cuda" | "mps" | "cpu"
    device_free: int  # bytes free on the accelerator (0 on a CPU-only machine)
    ram_free: int  # bytes of RAM available
    bf16: bool = True  # the accelerator computes in bfloat16

    @property
    def accelerated(self) -> bool:
        return self.device != "cpu"


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    name: str
    device: str
    compute_dtype: str  # "float32" | "bfloat16" | "float16": MMDiT, VAE, CLIPs
    t5_dtype: str  # "float32" | "bfloat16"
    mmdit_fp8: bool  # joint-block Linear weights stored in fp8, upcast per layer
    t5_fp8: bool
    use_t5: bool
    offload: bool  # networks on the accelerator only while they run
    stream_blocks: bool  # MMDiT joint blocks moved to the accelerator one at a time
    t5_on_cpu: bool  # T5 runs on the CPU (it does not fit the accelerator by itself)
    device_bytes: int  # expected peak on the accelerator (0 on a CPU-only machine)
    ram_bytes: int  # expected peak RAM
    fits: bool
    adaln_on_host: bool = (
        False  # the MMDiT's adaLN weights stay in RAM (the job's modulation table needs them)
    )
    forced: bool = False  # chosen by the user, not by `auto`

    def describe(self) -> str:
        parts = [f"{self.name} plan, {self.compute_dtype}"]
        stored = [n for n, on in (("MMDiT", self.mmdit_fp8), ("T5", self.t5_fp8 and self.use_t5)) if on]
        if stored:
            parts.append(f"{' and '.join(stored)} weights in fp8")
        if self.adaln_on_host:
            parts.append("adaLN weights in RAM")
        if self.stream_blocks:
            parts.append("MMDiT blocks streamed one at a time")
        elif self.offload:
            parts.append("one network at a time on the accelerator")
        if self.t5_on_cpu and self.use_t5:
            parts.append("T5 on the CPU")
        if not self.use_t5:
            parts.append("T5 off")
        where = f"{_gb(self.device_bytes)} on {self.device}, " if self.device != "cpu" else ""
        text = f"{'; '.join(parts)} — expects {where}{_gb(self.ram_bytes)} RAM"
        return text if self.fits else text + " (more than is free: it may run out of memory)"

    def to_json(self) -> dict:
        return asdict(self)


def _gb(n: float) -> str:
    return f"{n / GB:.1f} GB"


def activation_reserve(sizes: ComponentSizes) -> float:
    """Memory for activations; the real models get the full reserve, small test models a share of it."""
    return ACTIVATIONS * min(1.0, sizes.mmdit_params / ACTIVATIONS_FULL_AT)


def _storage_bytes(params: int, fp8_params: int, fp8: bool, width: int) -> int:
    return fp8_params + (params - fp8_params) * width if fp8 else params * width


def plan_for(name: str, sizes: ComponentSizes, machine: Machine, compute: str) -> MemoryPlan:
    """The memory a named plan needs with this compute dtype (no choosing)."""
    if name not in PLAN_NAMES:
        raise ValueError(f"unknown memory plan {name!r}; choose from {', '.join(PLAN_CHOICES)}")
    accel = machine.accelerated
    if accel:
        t5_dtype = "bfloat16" if machine.bf16 else "float32"
    else:
        t5_dtype = "float32" if compute == "float16" else compute  # T5 v1.1 overflows in fp16
    b, tb = _BYTES[compute], _BYTES[t5_dtype]
    small = name in ("resident", "lean", "offload")
    mmdit_fp8 = not small or sizes.mmdit_file_fp8
    t5_fp8 = not small or sizes.t5_file_fp8
    use_t5 = name != "no-t5" and sizes.t5_params > 0
    mmdit = _storage_bytes(sizes.mmdit_params, sizes.mmdit_fp8_params, mmdit_fp8, b)
    t5 = _storage_bytes(sizes.t5_params, sizes.t5_fp8_params, t5_fp8, tb) if use_t5 else 0
    clip, vae = sizes.clip_params * b, sizes.vae_params * b
    offload = accel and name not in ("resident", "lean")
    stream = accel and name in ("low-vram", "no-t5")
    adaln_on_host = accel and name != "resident"
    adaln = (
        _storage_bytes(sizes.mmdit_adaln_params, sizes.mmdit_adaln_fp8_params, mmdit_fp8, b)
        if adaln_on_host
        else 0
    )
    mmdit_device = mmdit - adaln  # what the MMDiT itself holds on the accelerator
    reserve = activation_reserve(sizes)
    t5_on_cpu = stream and use_t5 and t5 + vae + reserve > machine.device_free
    # ControlNets stay on the accelerator, except in the streaming plans (blocks streamed like the MMDiT's)
    cnet_fp8 = mmdit_fp8 or sizes.controlnet_file_fp8
    cnet = _storage_bytes(sizes.controlnet_params, sizes.controlnet_fp8_params, cnet_fp8, b)
    cnet_block = sizes.controlnet_block_params * (1 if cnet_fp8 else b)
    cnet_streamed = (sizes.controlnet_params - sizes.controlnet_fp8_params) * b + 2 * cnet_block
    cnet_device = 0 if not accel else (cnet_streamed if stream and cnet else cnet)
    cnet_ram = cnet if stream or not accel else 0
    if not accel:
        device_bytes, ram = 0, mmdit + vae + clip + t5 + RAM_RESERVE + reserve  # activations in RAM
    elif not offload:
        device_bytes, ram = mmdit_device + vae + clip + t5 + reserve, adaln + RAM_RESERVE
    elif not stream:
        device_bytes = max(clip, t5, mmdit_device) + vae + reserve
        ram = max(clip + t5 + adaln, mmdit + clip) + RAM_RESERVE
    else:
        # (a streamed block is counted with its adaLN weights, which it no longer carries: an over-estimate)
        block = sizes.mmdit_block_params * (1 if mmdit_fp8 else b)
        resident_part = (
            sizes.mmdit_params - sizes.mmdit_fp8_params
        ) * b  # embedders, pos_embed, norms, biases
        t5_device = 0 if t5_on_cpu else t5
        device_bytes = max(clip, t5_device, resident_part + 2 * block) + vae + reserve
        ram = mmdit + clip + t5 + RAM_RESERVE
    device_bytes, ram = device_bytes + cnet_device, ram + cnet_ram
    fits = ram <= machine.ram_free and (not accel or device_bytes <= machine.device_free)
    return MemoryPlan(
        name, machine.device, compute, t5_dtype, mmdit_fp8, t5_fp8 and use_t5, use_t5, offload, stream,
        t5_on_cpu, int(device_bytes), int(ram), fits, adaln_on_host,
    )  # fmt: skip


def ladder(machine: Machine, sizes: ComponentSizes, allow_t5_off: bool = True) -> tuple[str, ...]:
    """The plans `auto` tries, in order."""
    names = [n for n in PLAN_NAMES if machine.accelerated or n not in _ACCELERATOR_ONLY]
    return tuple(n for n in names if n != "no-t5" or (allow_t5_off and sizes.t5_params > 0))


def compute_dtypes(machine: Machine, dtype: str = "auto") -> tuple[str, ...]:
    if dtype != "auto":
        if dtype not in _BYTES:
            raise ValueError(f"unknown dtype {dtype!r}; choose auto, float32, bfloat16 or float16")
        return (dtype,)
    if machine.device == "cuda":
        return ("bfloat16",) if machine.bf16 else ("float16",)
    if machine.device == "mps":
        return ("float16",)
    return ("float32", "bfloat16")


def choose_plan(
    sizes: ComponentSizes,
    machine: Machine,
    *,
    plan: str = "auto",
    dtype: str = "auto",
    allow_t5_off: bool = True,
) -> MemoryPlan:
    """The plan to run with: `plan` if the user named one, else the first in the ladder that fits (each with
    the preferred compute dtype that fits). When nothing fits, the smallest plan, marked `fits=False`.
    `allow_t5_off=False` keeps `auto` from switching T5 off (for callers that cannot tell the user)."""
    dtypes = compute_dtypes(machine, dtype)
    if plan != "auto":
        name = plan if machine.accelerated or plan not in _ACCELERATOR_ONLY else "resident"
        if name != plan:
            log.info("memory plan %s needs an accelerator; on the CPU it is %s", plan, name)
        options = [plan_for(name, sizes, machine, d) for d in dtypes]
        chosen = next((p for p in options if p.fits), options[-1])
        return replace(chosen, forced=True)
    last = None
    for name in ladder(machine, sizes, allow_t5_off):
        for d in dtypes:
            last = plan_for(name, sizes, machine, d)
            if last.fits:
                return last
    assert last is not None
    return last


def probe_machine(device) -> Machine:
    """Free memory of `device` (a torch.device) and of RAM, now."""
    import torch

    from app.inference.memory.device import available_ram_bytes

    ram = available_ram_bytes()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return Machine("cuda", int(free), ram, bool(torch.cuda.is_bf16_supported()))
    if device.type == "mps":
        budget = int(torch.mps.recommended_max_memory()) - int(torch.mps.current_allocated_memory())
        return Machine("mps", max(0, min(budget, ram)), ram, bf16=False)
    return Machine("cpu", 0, ram)
