"""The engine: the loaded networks of one model set (MMDiT, VAE, text encoders), kept between jobs.

Jobs themselves run in session.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import torch

from app.inference.checkpoints.mmdit_loading import load_mmdit_component
from app.inference.checkpoints.model_set import ModelSet
from app.inference.checkpoints.text_encoder_loading import load_text_encoders
from app.inference.checkpoints.vae_loading import load_vae_component
from app.inference.memory.device import DTYPES, pick_device
from app.inference.memory.offload import (
    BlockStreamer,
    ComponentOffloader,
    move_module,
    stream_adaln,
    stream_mmdit_blocks,
)
from app.inference.memory.plan import ComponentSizes, MemoryPlan, choose_plan, plan_for, probe_machine
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.modulation import adaln_modules
from app.inference.networks.vae import VAE
from app.inference.text.conditioning import Progress, TextConditioning, TextEncoders
from app.inference.text.tokenizer_sources import load_tokenizer, snapshot_tokenizers

log = logging.getLogger(__name__)


class Engine:
    """Owns the loaded networks; reloads only when the model set, T5 choice, device or dtype changes."""

    def __init__(self, device: str = "auto", dtype: str = "auto", memory_plan: str = "auto") -> None:
        self.device = pick_device(device)
        self.dtype_name = dtype
        self.memory_plan = memory_plan  # "auto" or a name from memory_plan.PLAN_NAMES
        self.plan: MemoryPlan | None = None  # the plan the loaded networks follow
        self.model_set: ModelSet | None = None
        self.mmdit: MMDiT | None = None
        self.vae: VAE | None = None
        self.text: TextEncoders | None = None
        self._loaded_key: tuple | None = None
        self._offloader: ComponentOffloader | None = None
        self._streamer: BlockStreamer | None = None
        self._adaln: BlockStreamer | None = None  # the adaLN layers, when the plan keeps them in host memory
        self._plan_request: tuple[str, str] | None = None  # (memory_plan, dtype) the loaded plan came from
        # The next job's ControlNets as ComponentSizes fields (controlnet_*): the plan counts them (control/job.py)
        self.controlnet_sizes: dict[str, int | bool] = {}
        self._fit: tuple | None = None  # (component sizes, machine) the loaded plan was chosen for

    def load(
        self,
        model_set: ModelSet,
        *,
        use_t5: bool = True,
        on_stage: Callable[[str], None] | None = None,
        plan: MemoryPlan | None = None,
    ) -> None:
        """Load the set following `plan` (default: chosen now from free memory; never T5 off unless asked)."""
        key = (model_set, use_t5)
        request = (self.memory_plan, self.dtype_name)
        if plan is not None and key == self._loaded_key and plan == self.plan:
            return
        if plan is None and self.is_loaded(model_set, use_t5):
            return
        model_set.require_text_encoders(use_t5)
        fit = None
        if plan is None:
            machine = probe_machine(self.device)
            sizes = self._with_controlnets(model_set.sizes(use_t5))
            fit = (sizes, machine)
            plan = choose_plan(
                sizes, machine, plan=self.memory_plan, dtype=self.dtype_name, allow_t5_off=False
            )
        log.info("loading %s on %s: %s", model_set.checkpoint, self.device, plan.describe())
        for hooks in (self._offloader, self._streamer, self._adaln):  # the previous set goes first
            if hooks is not None:
                hooks.detach()
        self._offloader = self._streamer = self._adaln = self.plan = self.model_set = self._loaded_key = None
        self.mmdit = self.vae = self.text = None
        dtype, t5_dtype = DTYPES[plan.compute_dtype], DTYPES[plan.t5_dtype]
        host = torch.device("cpu")
        offload = plan.offload  # (auto plans never offload on a CPU-only machine)
        stage = on_stage or (lambda name: None)
        stage("text encoders")
        t5 = model_set.t5 if use_t5 and plan.use_t5 else None
        tokenizers = model_set.tokenizers.or_else(snapshot_tokenizers(model_set.tokenizer_dir))
        self.text = load_text_encoders(
            clip_l=model_set.clip_l.path,
            clip_g=model_set.clip_g.path,
            t5=t5.path if t5 is not None else None,
            clip_l_prefix=model_set.clip_l.prefix,
            clip_g_prefix=model_set.clip_g.prefix,
            t5_prefix=t5.prefix if t5 is not None else "",
            tokenizer_dir=model_set.tokenizer_dir,
            tokenizer=load_tokenizer(tokenizers, t5=t5 is not None, where=model_set.root),
            context_width=model_set.mmdit_config.context_in_channels,
            device=host if offload else self.device,
            dtype=dtype,
            t5_dtype=t5_dtype,
            t5_device=host if offload or plan.t5_on_cpu else self.device,
            t5_fp8=plan.t5_fp8,
        )
        stage("diffusion model")
        # With the adaLN weights in host memory the MMDiT loads there, and the rest of it moves on.
        mmdit_device = host if offload or plan.adaln_on_host else self.device
        self.mmdit = load_mmdit_component(
            model_set.mmdit, dtype=dtype, device=mmdit_device, fp8=plan.mmdit_fp8
        )
        adaln = adaln_modules(self.mmdit) if plan.adaln_on_host else []
        if adaln:
            self._adaln = stream_adaln(self.mmdit, self.device)
            if not offload:
                move_module(self.mmdit, self.device, exclude=adaln)
        stage("VAE")
        self.vae = load_vae_component(model_set.vae, dtype=dtype, device=self.device)
        if offload:
            self._offloader = ComponentOffloader(self.device)
            self._offloader.attach(self.text.clip_l.model)
            self._offloader.attach(self.text.clip_g.model)
            if self.text.t5 is not None and not plan.t5_on_cpu:
                self._offloader.attach(self.text.t5.model)
            if plan.stream_blocks:
                self._streamer = stream_mmdit_blocks(self.mmdit, self.device, exclude=adaln)
            else:
                self._offloader.attach(self.mmdit, exclude=adaln)
        self.plan = plan
        self.model_set = model_set
        self._loaded_key = key
        self._plan_request = request
        self._fit = fit

    def is_loaded(self, model_set: ModelSet, use_t5: bool) -> bool:
        """True when `load(model_set, use_t5=...)` would find nothing to do: the same set and plan request, and
        the job's ControlNets still fit the loaded plan (on the machine it was chosen for); a ControlNet that
        does not fit makes the next load choose the plan again."""
        if self._loaded_key != (model_set, use_t5) or self._plan_request != (
            self.memory_plan,
            self.dtype_name,
        ):
            return False
        if self._fit is None or self.plan is None or self.plan.forced:
            return True
        sizes, machine = self._fit
        with_cn = self._with_controlnets(sizes)
        return with_cn == sizes or plan_for(self.plan.name, with_cn, machine, self.plan.compute_dtype).fits

    def _with_controlnets(self, sizes: ComponentSizes) -> ComponentSizes:
        none = {"controlnet_params": 0, "controlnet_fp8_params": 0, "controlnet_block_params": 0}
        return replace(sizes, **{**none, "controlnet_file_fp8": False, **self.controlnet_sizes})

    def prepare_mmdit(self) -> None:
        """Put the MMDiT where it computes now (offload plans otherwise move it at its first forward), so a
        job's per-job work (text tokens, modulation table) runs there too."""
        if self._offloader is not None and self._streamer is None and self.mmdit is not None:
            self._offloader.activate(self.mmdit)

    def encode(self, text: str, mode: str, progress: Progress | None = None) -> TextConditioning:
        with torch.inference_mode():
            return self.text.encode(text, mode=mode, progress=progress)
