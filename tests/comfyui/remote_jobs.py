"""The small job the real-server tests send (tiny SD3 set: 64x64, 2 steps, CLIP-L only)."""

from app.inference.api.request import GenerationRequest


def tiny_request(**overrides) -> GenerationRequest:
    values = {"prompt": "a red fox", "negative": "blurry", "seed": 7, "steps": 2, "width": 64, "height": 64,
              "use_t5": False, "cfg": 2.0, "sampler": "euler"}  # fmt: skip
    return GenerationRequest(**{**values, **overrides})
