"""float8 weights: plain `float8_e4m3fn` files, ComfyUI "scaled fp8" files (SD35_MODEL.md §5.3), and fp8
storage with upcast at compute.

Two ways to use fp8 weights:
- dequantise at load: `W = float32(W_fp8) * scale_weight`, then the compute dtype (`weight_converter`);
- keep them in fp8 (1 byte per parameter) inside `Fp8Linear`, which rebuilds `W` in the compute dtype for each
  call and frees it afterwards (`assign_with_fp8_storage`). 16-bit weights chosen for fp8 storage are
  quantised with one scale per tensor (max |W| / 448), the same form as a scaled-fp8 file.
Both give the same weights: the scale multiply is done in float32 and rounded once to the compute dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from app.inference.checkpoints.weights import SafetensorsHeader, assign_weights, load_tensors

log = logging.getLogger(__name__)

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite float8_e4m3fn
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
FP8_NAMES = ("F8_E4M3", "F8_E5M2")
MARKER = "scaled_fp8"
SCALE_WEIGHT = ".scale_weight"
SCALE_INPUT = ".scale_input"


def is_scale_key(key: str) -> bool:
    return key == MARKER or key.endswith((SCALE_WEIGHT, SCALE_INPUT))


def read_scales(path: Path, prefix: str, header: SafetensorsHeader | None = None) -> dict[str, torch.Tensor]:
    """`{weight key: float32 scale}` of a scaled-fp8 file (empty for other files); reads only the scales."""
    scales = load_tensors(path, prefix, skip=lambda k: not k.endswith(SCALE_WEIGHT), header=header)
    return {k[: -len(SCALE_WEIGHT)] + ".weight": v.to(torch.float32).reshape(()) for k, v in scales.items()}


def dequantize(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """fp8 (or any) weight times its per-tensor scale, computed in float32, rounded once to `dtype`."""
    w = weight.to(torch.float32)
    if scale is not None:
        w = w * scale.to(torch.float32)
    return w.to(dtype)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """16/32-bit weight -> (float8_e4m3fn weight, float32 scale) with scale = max|W| / 448."""
    w = weight.to(torch.float32)
    amax = w.abs().max()
    scale = (amax / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


class Fp8Reader:
    """The `convert` of `load_tensors`, applied to each tensor as it is read (so loading never holds more than
    the result plus one tensor): scale tensors stay float32; weights for which `keep(name)` stay or become fp8
    (16/32-bit ones are quantised and their new scale recorded in `scales`); other fp8 tensors are dequantised
    with their file scale; every other floating tensor is cast to `dtype`."""

    def __init__(
        self,
        scales: Mapping[str, torch.Tensor],
        dtype: torch.dtype,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self.scales = dict(scales)  # weight key -> float32 scale: the file's, then those computed here
        self.dtype = dtype
        self.keep = keep

    def __call__(self, name: str, t: torch.Tensor) -> torch.Tensor:
        if is_scale_key(name):
            return t.to(torch.float32)
        if self.keep is not None and t.ndim == 2 and t.is_floating_point() and self.keep(name):
            if t.dtype in FP8_DTYPES:
                return t.to(FP8)
            w8, self.scales[name] = quantize(t)
            return w8
        if t.dtype in FP8_DTYPES:
            return dequantize(t, self.scales.get(name), self.dtype)
        if t.is_floating_point() and t.dtype != self.dtype:
            return t.to(self.dtype)
        return t


def weight_converter(
    scales: Mapping[str, torch.Tensor], dtype: torch.dtype, keep_fp8: Callable[[str], bool] | None = None
) -> Fp8Reader:
    """A reader that dequantises (or, for the `keep_fp8` weights, keeps fp8) as the file is read."""
    return Fp8Reader(scales, dtype, keep_fp8)


def dequantize_state(state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """In place: fp8 weights times their scales in `dtype`; markers and scale tensors removed."""
    scales = pop_scales(state)
    for key in list(state):
        if state[key].dtype in FP8_DTYPES:
            state[key] = dequantize(state[key], scales.get(key), dtype)


def pop_scales(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the marker, input scales and weight scales from `state`; return `{weight key: scale}`."""
    scales: dict[str, torch.Tensor] = {}
    for key in [k for k in state if is_scale_key(k)]:
        t = state.pop(key)
        if key.endswith(SCALE_WEIGHT):
            scales[key[: -len(SCALE_WEIGHT)] + ".weight"] = t.to(torch.float32).reshape(())
    return scales


# ----------------------------------------------------------------------------------------------------
# fp8 storage
# ----------------------------------------------------------------------------------------------------


class Fp8Linear(nn.Module):
    """A Linear whose weight is stored in float8_e4m3fn with one float32 scale, upcast for each call.

    y = x @ (float32(W_fp8) * scale_weight).to(x.dtype)^T + b; the upcast weight lives only during the call."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None
        self.register_buffer("scale_weight", torch.ones((), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = dequantize(self.weight, self.scale_weight, x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


def fp8_linear_names(module: nn.Module, eligible: Callable[[str], bool]) -> list[str]:
    """Names of the `nn.Linear` submodules of `module` for which `eligible(name)`."""
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear) and eligible(name)]


def _swap_in_fp8_linears(module: nn.Module, names: list[str]) -> None:
    """Replace each named Linear (on `meta`) by an Fp8Linear of the same size (on `meta`)."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        old = getattr(parent, child)
        with torch.device("meta"):
            setattr(parent, child, Fp8Linear(old.in_features, old.out_features, bias=old.bias is not None))


def assign_with_fp8_storage(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    eligible: Callable[[str], bool],
    source: str,
    what: str,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    scales: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """Assign `state` into a module built on `meta`, keeping the weights of the eligible Linear layers in fp8.

    `state` may hold fp8 weights (kept as they are, with their `scale_weight` from the state or `scales`),
    16/32-bit weights (quantised here, one tensor at a time) and scaled-fp8 markers. Every other tensor goes
    to `dtype`; fp8 ones are dequantised with their scale."""
    names = fp8_linear_names(module, eligible)
    scales = {**(scales or {}), **pop_scales(state)}
    fp8_weights = {f"{n}.weight" for n in names}
    for key in list(state):
        t = state[key]
        if key in fp8_weights:
            if t.dtype in FP8_DTYPES:
                w8, scale = t.to(FP8), scales.get(key, torch.ones((), dtype=torch.float32))
            else:
                w8, scale = quantize(t)
            state[key] = w8
            state[key[: -len(".weight")] + SCALE_WEIGHT] = scale
        elif t.dtype in FP8_DTYPES:
            state[key] = dequantize(t, scales.get(key), dtype)
        elif t.is_floating_point() and t.dtype != dtype:
            state[key] = t.to(dtype)
    _swap_in_fp8_linears(module, names)
    assign_weights(module, state, source=source, what=what, dtype=None, device=device)
    log.info("%s: %d linear layers stored in fp8 (upcast to %s per call)", source, len(names), dtype)
    return module


def weight_keys(eligible: Callable[[str], bool]) -> Callable[[str], bool]:
    """Module-name rule -> tensor-name rule: `name.weight` of an eligible module."""
    return lambda key: key.endswith(".weight") and eligible(key[: -len(".weight")])


def fp8_storage_bytes(module: nn.Module) -> int:
    """Bytes held by the fp8 weights of a module (for reports and tests)."""
    return sum(p.numel() for p in module.parameters() if p.dtype in FP8_DTYPES)
