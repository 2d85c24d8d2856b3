"""The guided denoiser: classifier-free guidance, skip-layer guidance and the negative-prompt window.

D(x, sigma) = x - sigma * v(x, 1000 sigma, ...) for each conditioning, combined in float32 in the reference's
order (SD35_SAMPLING.md section 5):  D = D_u + (D_c - D_u) * cfg [+ (D_c - D_skip) * slg_scale].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from app.inference.networks.mmdit import MMDiT, PreparedInputs
from app.inference.networks.modulation import ModulationTable, timestep_value
from app.inference.sampling.schedules import percent_to_sigma

if TYPE_CHECKING:
    from app.inference.api.request import GenerationRequest
    from app.inference.control.apply import ControlStack
    from app.inference.text.conditioning import TextConditioning


@dataclass(frozen=True, slots=True)
class GuidanceConfig:
    cfg: float
    steps: int  # the requested step count N; the SLG window is counted against it, as in the reference
    shift: float = 3.0
    slg_layers: tuple[int, ...] = ()
    slg_scale: float = 0.0
    slg_start: float = 0.01
    slg_end: float = 0.20
    negative_until: float | None = None  # ComfyUI's SD3 negative window; None = negative for every step

    @classmethod
    def from_request(cls, req: GenerationRequest) -> GuidanceConfig:
        """The one place a request becomes guidance (`req` resolved: every field set)."""
        return cls(
            cfg=req.cfg, steps=req.steps, shift=req.shift, slg_layers=req.slg_layers, slg_scale=req.slg_scale,
            slg_start=req.slg_start, slg_end=req.slg_end, negative_until=req.negative_until,
        )  # fmt: skip

    @property
    def uses_uncond(self) -> bool:
        # cfg == 1 skips the uncond pass entirely (ComfyUI's isclose with rel_tol 1e-9).
        return not math.isclose(self.cfg, 1.0, rel_tol=1e-9)

    def slg_active(self, step_index: int) -> bool:
        """The reference's step-counter rule: start*N < k < end*N, both strict."""
        if not self.slg_layers or self.slg_scale <= 0:
            return False
        return self.slg_start * self.steps < step_index < self.slg_end * self.steps


@dataclass(frozen=True, slots=True)
class _Cond:
    index: int  # the conditioning's rows in the modulation table
    context: torch.Tensor  # (1, L, C)
    pooled: torch.Tensor  # (1, P)
    tokens: torch.Tensor | None = None  # (1, L, D): context embedded once per job (None: live path)


class GuidedDenoiser:
    """Callable (x, sigma, step_index) -> guided denoised estimate, for the samplers.

    One per job. With `precompute` (the default) the work that does not change between steps is done once:
    the text tokens are embedded, the position table is cropped, and every block's adaLN modulation is taken
    from a `ModulationTable` built for the whole schedule `sigmas` before the first step (or, without a
    schedule, for each new sigma as it comes). `precompute=False` runs the plain forward at every call."""

    def __init__(
        self,
        model: MMDiT,
        cond: TextConditioning,
        uncond: TextConditioning | None,
        guidance: GuidanceConfig,
        sigmas: torch.Tensor | None = None,
        *,
        precompute: bool = True,
        control: ControlStack | None = None,
    ) -> None:
        self.model = model
        self.guidance = guidance
        self.control = control  # the job's ControlNets (None: none)
        device, dtype = model.context_embedder.weight.device, model.dtype
        self.cond = _Cond(0, cond.context.to(device, dtype), cond.pooled.to(device, dtype))
        self.uncond = None
        self.zero_uncond = None
        if guidance.uses_uncond:
            if uncond is None:
                raise ValueError("cfg != 1 needs an unconditional (negative) encoding")
            self.uncond = _Cond(1, uncond.context.to(device, dtype), uncond.pooled.to(device, dtype))
            if guidance.negative_until is not None:
                self.zero_uncond = _Cond(
                    2, torch.zeros_like(self.uncond.context), torch.zeros_like(self.uncond.pooled)
                )
                self.window_sigma = float(
                    torch.tensor(
                        percent_to_sigma(guidance.negative_until, guidance.shift), dtype=torch.float32
                    )
                )
        # The schedule on the model's device, for the sampler: its entries are found without reading the device.
        self.sigmas = None if sigmas is None else sigmas.to(device)
        self._sigmas_host = None if sigmas is None else sigmas.cpu().tolist()
        self.table: ModulationTable | None = None
        self._contexts: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}
        self._pos: dict[tuple[int, int], torch.Tensor] = {}
        if precompute:
            self._prepare_job()
        self.calls = 0

    # ------------------------------------------------------------------------------------ per-job constants

    def _conds(self) -> list[_Cond]:
        return [c for c in (self.cond, self.uncond, self.zero_uncond) if c is not None]

    @torch.inference_mode()
    def _prepare_job(self) -> None:
        embed = self.model.embed_context
        self.cond, *rest = [replace(c, tokens=embed(c.context)) for c in self._conds()]
        self.uncond = rest[0] if rest else None
        self.zero_uncond = rest[1] if len(rest) > 1 else None
        self.table = ModulationTable(self.model, [c.pooled for c in self._conds()])
        if self._sigmas_host is not None:  # every point the samplers evaluate: sigma_0 .. sigma_{N-1}
            self.table.add(
                (timestep_value(s), c.index) for s in self._sigmas_host[:-1] for c in self._entries(s)
            )

    def _entries(self, sigma: float | None) -> list[_Cond]:
        """The conditionings evaluated at `sigma` (the positive first)."""
        return [self.cond, *self._uncond_entries(sigma)] if self.guidance.uses_uncond else [self.cond]

    def _context(self, conds: list[_Cond], b: int) -> torch.Tensor:
        key = (tuple(c.index for c in conds), b)
        if key not in self._contexts:
            self._contexts[key] = torch.cat([c.tokens.expand(b, -1, -1) for c in conds])  # (n*B, L, D)
        return self._contexts[key]

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        p = self.model.cfg.patch_size
        key = (x.shape[-2] // p, x.shape[-1] // p)
        if key not in self._pos:
            self._pos[key] = self.model.cropped_pos_embed(*key).to(self.model.dtype)  # (1, N, D)
        return self._pos[key]

    def _host_sigma(self, sigma: torch.Tensor) -> float:
        """sigma as a Python float, without a host-device sync when it is an entry of the job's schedule (the
        samplers pass `sigmas[i]`, a view into it) or lives on the CPU."""
        s = self.sigmas
        if (
            s is not None
            and sigma.ndim == 0
            and sigma.device == s.device
            and sigma.untyped_storage().data_ptr() == s.untyped_storage().data_ptr()
        ):
            return self._sigmas_host[(sigma.storage_offset() - s.storage_offset()) // s.stride(0)]
        return float(sigma)  # a sync on accelerators: only for points outside the schedule

    # ------------------------------------------------------------------------------------------- per step

    def _velocity(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        conds: list[_Cond],
        skip=(),
        t_key: float | None = None,
        host: float | None = None,
        with_control: bool = True,
    ) -> list[torch.Tensor]:
        """One batched forward over several conditionings of equal context length; returns D per conditioning."""
        b = x.shape[0]
        n = len(conds)
        xs = x.repeat(n, 1, 1, 1)
        control = None
        if self.control is not None and with_control:  # the ControlNets take the raw pooled rows and t
            pooled = torch.cat([c.pooled.expand(b, -1) for c in conds])  # (n*B, P)
            control = self.control.for_call(host, (sigma * 1000).float().expand(n * b), pooled)
        if self.table is None:
            context = torch.cat([c.context.expand(b, -1, -1) for c in conds])  # (n*B, L, C)
            pooled = torch.cat([c.pooled.expand(b, -1) for c in conds])  # (n*B, P)
            t = (sigma * 1000).float().expand(n * b)
            if control is None:
                v = self.model(xs, t, pooled, context, skip_layers=skip)  # float32
            else:
                self.model.check_inputs(xs, t, pooled, context)
                prepared = replace(self.model.prepare(t, pooled, context), control=control)
                v = self.model.forward_prepared(xs, prepared, skip_layers=skip)  # float32
        else:
            prepared = PreparedInputs(
                self._context(conds, b),
                self.table.rows([(t_key, c.index) for c in conds], repeat=b),
                self._pos_embed(x),
                control=control,
            )
            v = self.model.forward_prepared(xs, prepared, skip_layers=skip)  # float32
        denoised = xs.float() - sigma.float() * v
        return list(denoised.chunk(n))

    def _denoise(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        conds: list[_Cond],
        t_key: float | None,
        host: float | None,
    ) -> list[torch.Tensor]:
        # Batch conditionings whose contexts have the same length; never pad a context (DECISIONS row 5).
        out: list[torch.Tensor | None] = [None] * len(conds)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(conds):
            groups.setdefault(tuple(c.context.shape), []).append(i)
        for idx in groups.values():
            group = [conds[i] for i in idx]
            for i, d in zip(idx, self._velocity(x, sigma, group, t_key=t_key, host=host), strict=True):
                out[i] = d
        return out  # type: ignore[return-value]

    def _uncond_entries(self, sigma: float | None) -> list[_Cond]:
        if self.zero_uncond is None:
            return [self.uncond]
        if sigma > self.window_sigma:
            return [self.uncond]
        if sigma < self.window_sigma:
            return [self.zero_uncond]
        return [self.uncond, self.zero_uncond]  # both active at equality: averaged

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, step_index: int) -> torch.Tensor:
        self.calls += 1
        g = self.guidance
        # sigma on the host, for the table and the negative window (free for the schedule's own entries)
        needs_host = self.table is not None or self.zero_uncond is not None or self.control is not None
        host = self._host_sigma(sigma) if needs_host else None
        entries = self._entries(host)
        t_key = None
        if self.table is not None:
            t_key = timestep_value(host)
            self.table.add((t_key, c.index) for c in entries)  # nothing to do for the schedule's own sigmas
        d_all = self._denoise(x, sigma, entries, t_key, host)
        d_cond = d_all[0]
        if not g.uses_uncond:
            denoised = d_cond
        else:
            d_unconds = d_all[1:]
            d_uncond = d_unconds[0] if len(d_unconds) == 1 else sum(d_unconds) / len(d_unconds)
            denoised = d_uncond + (d_cond - d_uncond) * g.cfg
        if g.slg_active(step_index):
            # The skip-layer pass runs without the ControlNets, as Stability's reference does: its
            # SkipLayerCFGDenoiser calls apply_model for the skip pass without the extra arguments that carry
            # controlnet_cond, while the cond/uncond batch gets them. (ComfyUI differs: the ControlNet rides on
            # the positive conditioning, so its SLG pass runs it too and adds every residual, skipped blocks
            # included.) So s * (D_c - D_skip) also carries the ControlNet's effect, and each SLG step costs
            # one MMDiT forward instead of an MMDiT and a ControlNet forward.
            d_skip = self._velocity(
                x, sigma, [self.cond], skip=g.slg_layers, t_key=t_key, host=host, with_control=False
            )[0]
            denoised = denoised + (d_cond - d_skip) * g.slg_scale
        return denoised
