"""Tooltips: what each control does and, for the variant-dependent ones, the variant's recommended range."""

from __future__ import annotations

import logging

from app.inference.api.variants import PRESETS

log = logging.getLogger(__name__)

DESCRIPTIONS: dict[str, str] = {
    "model": "The SD3.5 model set used for the next job. Large: best quality; Large Turbo: 4 steps, fast drafts; "
    "Medium: smaller and faster than Large, good up to 2 MP.",
    "locate": "Point to a folder holding an SD3.5 model set (or its sd3.5_*.safetensors file).",
    "prompt": "Describe the picture. Weight words with (word) ×1.1, ((word)) ×1.21 or (word:1.4); "
    "write \\( and \\) for literal parentheses.",
    "negative": "What the picture should avoid. Used only when CFG is above 1.",
    "style": "Wraps your prompt in tested wording and adds to the negative prompt when the job is built. "
    "The exact text is shown below and saved with the image. Edit the presets via Edit ▸ Style Presets.",
    "aspect": "Aspect ratio presets at about one megapixel, in multiples of 64 px.",
    "width": "Image width in pixels, in steps of 64.",
    "height": "Image height in pixels, in steps of 64.",
    "seed": "The starting noise. The same seed and settings give the same image.",
    "random_seed": "Draw a new random seed for every job.",
    "reuse_seed": "Put the last job's seed back in the field (and stop randomising).",
    "count": "Images per job (1–16), with seeds S, S+1, S+2, … so each one can be made again on its own.",
    "steps": "Denoising steps: more steps refine detail but take longer.",
    "cfg": "Classifier-free guidance: how strongly the image follows the prompt and avoids the negative prompt. "
    "At 1 guidance is off and the negative prompt is ignored.",
    "sampler": "How each step moves towards the image. Euler a adds fresh noise each step (more variety).",
    "scheduler": "How the noise levels are spaced across the steps.",
    "shift": "Timestep shift: higher values spend more steps on composition, lower on detail.",
    "slg": "Skip-layer guidance: improves anatomy and structure on SD3.5 Medium by also guiding away from a "
    "prediction with some layers skipped.",
    "slg_layers": "Joint blocks skipped for skip-layer guidance, e.g. 7,8,9.",
    "slg_scale": "Strength of skip-layer guidance.",
    "slg_range": "The part of the steps (start–end, as fractions) where skip-layer guidance applies.",
    "negative_window": "Use the negative prompt only for the first part of the steps (ComfyUI's SD3 trick): "
    "it shapes the composition and then lets details form freely. 0.1 = the first 10 %.",
    "use_t5": "T5-XXL reads long prompts and text in images. Off: less memory and faster loading, "
    "weaker prompt following.",
    "preview": "How step previews are drawn: TAESD3 (sharper, needs its small decoder file), linear "
    "(always available, blurry), or off.",
    "preview_every": "Draw a preview every N steps.",
    "memory_plan": "Where the networks live: all loaded; lean (the third of the image model that only prepares each "
    "job waits in RAM); offloaded so only the active one is on the GPU; "
    "stored in fp8 (about half the memory, tiny quality loss); or streamed block by block for small GPUs. "
    "Automatic takes the first that fits the free memory. A change reloads the models.",
    "device": "Where to run: automatic (GPU when available), CPU, CUDA or Apple GPU.",
    "precision": "Number format: automatic (bf16/fp16 on GPUs, float32 on the CPU when it fits), or forced.",
    "pin": "Pinned: keep this value when switching to another variant.",
    "generate": "Generate with the current settings (Ctrl+Enter). While a job runs, this queues another.",
    "cancel": "Stop the running job within one step (Esc). Finished images are kept.",
}

RECOMMENDED: dict[str, dict[str, str]] = {
    "steps": {"large": "28 (20–40)", "large-turbo": "4 (4–8)", "medium": "40 (28–50)"},
    "cfg": {
        "large": "3.5 (3–5)",
        "large-turbo": "1 (guidance off); higher values over-saturate Turbo",
        "medium": "4.5 (3.5–6)",
    },
    "sampler": {"large": "DPM++ 2M", "large-turbo": "Euler", "medium": "DPM++ 2M"},
    "scheduler": {"large": "normal", "large-turbo": "normal", "medium": "normal"},
    "shift": {"large": "3 (2–6)", "large-turbo": "3", "medium": "3 (2–6)"},
    "aspect": {
        "large": "about 1 MP (1024×1024 class), up to 3072 px per side",
        "large-turbo": "about 1 MP (1024×1024 class), up to 3072 px per side",
        "medium": "0.25–2 MP; 1024×1024 by default, up to about 1440×1440",
    },
    "slg": {
        "large": "not used on Large",
        "large-turbo": "not used on Large Turbo",
        "medium": "on: layers 7,8,9, scale 2.5, from 1 % to 20 % of the steps",
    },
}
RECOMMENDED["width"] = RECOMMENDED["height"] = RECOMMENDED["aspect"]


def tooltip(control: str, variant: str | None = None) -> str:
    text = DESCRIPTIONS.get(control, "")
    if variant in PRESETS and control in RECOMMENDED:
        text += f"\n\nRecommended for {PRESETS[variant].label}: {RECOMMENDED[control][variant]}."
    return text
