"""The engine: the loaded networks of one model set (MMDiT, VAE, text encoders), kept between jobs.

Jobs themselves run in session.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from app.inference.device import pick_device, pick_dtypes
from app.inference.loading import load_mmdit
from app.inference.mmdit import MMDiT
from app.inference.model_set import ModelSet
from app.inference.text_encoders import TextConditioning, TextEncoders
from app.inference.vae import VAE, load_vae

log = logging.getLogger(__name__)


class Engine:
    """Owns the loaded networks; reloads only when the model set, T5 choice, device or dtype changes."""

    def __init__(self, device: str = "auto", dtype: str = "auto") -> None:
        self.device = pick_device(device)
        self.dtype_name = dtype
        self.model_set: ModelSet | None = None
        self.mmdit: MMDiT | None = None
        self.vae: VAE | None = None
        self.text: TextEncoders | None = None
        self._loaded_key: tuple | None = None

    def load(
        self, model_set: ModelSet, *, use_t5: bool = True, on_stage: Callable[[str], None] | None = None
    ) -> None:
        key = (model_set, use_t5)
        if key == self._loaded_key:
            return
        model_set.require_text_encoders(use_t5)
        params = model_set.mmdit_bytes // 2 + 84_000_000 + 820_000_000
        t5_params = 4_800_000_000 if use_t5 else 0
        dtype, t5_dtype = pick_dtypes(self.dtype_name, self.device, params, t5_params)
        log.info(
            "loading %s on %s (%s, T5 %s)",
            model_set.checkpoint,
            self.device,
            dtype,
            t5_dtype if use_t5 else "off",
        )
        self.mmdit = self.vae = self.text = None  # release the previous set before loading the next
        stage = on_stage or (lambda name: None)
        stage("text encoders")
        t5 = model_set.t5 if use_t5 else None
        self.text = TextEncoders.load(
            clip_l=model_set.clip_l.path,
            clip_g=model_set.clip_g.path,
            t5=t5.path if t5 is not None else None,
            clip_l_prefix=model_set.clip_l.prefix,
            clip_g_prefix=model_set.clip_g.prefix,
            t5_prefix=t5.prefix if t5 is not None else "",
            tokenizer_dir=model_set.tokenizer_dir,
            context_width=model_set.mmdit_config.context_in_channels,
            device=self.device,
            dtype=dtype,
            t5_dtype=t5_dtype,
        )
        stage("diffusion model")
        self.mmdit = load_mmdit(
            model_set.mmdit.path, prefix=model_set.mmdit.prefix, dtype=dtype, device=self.device
        )
        stage("VAE")
        self.vae = load_vae(model_set.vae.path, model_set.vae.prefix, dtype=dtype, device=self.device)
        self.model_set = model_set
        self._loaded_key = key

    def is_loaded(self, model_set: ModelSet, use_t5: bool) -> bool:
        return self._loaded_key == (model_set, use_t5)

    def encode(self, text: str, mode: str) -> TextConditioning:
        with torch.inference_mode():
            return self.text.encode(text, mode=mode)
