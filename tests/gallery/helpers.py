"""Small builders shared by the gallery tests: parameters, pixels, files in each metadata dialect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from app.inference.api.request import GenerationRequest
from app.metadata.params import ImageParams


def params(
    seed: int = 1234, prompt: str = "a red fox in fresh snow, golden hour", **overrides
) -> ImageParams:
    request = GenerationRequest(prompt=prompt, negative="blurry, low quality").resolved("medium")
    p = ImageParams.from_request(
        request,
        seed,
        variant="medium",
        model_name="sd3.5_medium",
        model_hash="0123456789",
        app_version="0.1.0",
    )
    return p.updated(**overrides)


def pixels(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    ramp = np.linspace(0, 60, size, dtype=np.float64)[None, :, None]
    return np.clip(base[None, None, :] + ramp + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)


A1111_TEXT = (
    "masterpiece, a lighthouse on a cliff, (stormy sky:1.2)\n"
    "Negative prompt: lowres, watermark\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, Size: 832x1216, "
    'Model hash: 0123abcd45, Model: sd3.5_large, Clip skip: 2, Lora hashes: "detail: 0a1b2c3d4e5f", '
    "Version: v1.10.1"
)


def write_a1111_png(path: Path, text: str = A1111_TEXT) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.fromarray(pixels(7), "RGB").save(path, pnginfo=info)
    return path


def comfy_template_prompt() -> dict:
    """ComfyUI's SD3.5 "simple example" template in API format, as ComfyUI's SaveImage stores it."""
    return {
        "3": {"inputs": {"seed": 585483408983215, "steps": 20, "cfg": 4.01, "sampler_name": "euler",
                         "scheduler": "sgm_uniform", "denoise": 1, "model": ["4", 0], "positive": ["16", 0],
                         "negative": ["40", 0], "latent_image": ["53", 0]}, "class_type": "KSampler"},
        "4": {"inputs": {"ckpt_name": "sd3.5_large_fp8_scaled.safetensors"}, "class_type": "CheckpointLoaderSimple"},
        "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode"},
        "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage"},
        "16": {"inputs": {"text": "a bottle with a pink and red galaxy inside it", "clip": ["4", 1]},
               "class_type": "CLIPTextEncode"},
        "40": {"inputs": {"text": "", "clip": ["4", 1]}, "class_type": "CLIPTextEncode"},
        "53": {"inputs": {"width": 1024, "height": 1024, "batch_size": 1}, "class_type": "EmptySD3LatentImage"},
    }  # fmt: skip


def write_comfy_png(path: Path, prompt: dict | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(prompt or comfy_template_prompt()))
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    Image.fromarray(pixels(9), "RGB").save(path, pnginfo=info)
    return path
