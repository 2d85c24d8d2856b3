"""Refine settings (mask, outpaint, hires) in our JSON and the A1111 text, both ways, and through recall."""

from pathlib import Path

from app.metadata.a1111 import infotext_of, params_from_infotext
from app.metadata.params import ImageParams
from app.metadata.recall import recall_from_text, settings_for
from tests.gallery.helpers import params

REFINED = {"init_image": Path("/pics/in.png"), "denoise": 0.65, "mask_image": Path("/pics/mask.png"),
           "mask_grow": 4, "mask_blur": 12, "outpaint": (0, 64, 128, 0), "hires_scale": 1.5, "hires_denoise": 0.3,
           "hires_steps": 10, "source_sha256": "ab" * 32, "mask_alpha": True, "mask_soft": True}  # fmt: skip


def test_json_round_trip_keeps_every_refine_field():
    p = params(**REFINED)
    back = ImageParams.from_json(p.to_json())
    assert back == p and back.outpaint == (0, 64, 128, 0) and back.source_sha256 == "ab" * 32
    request = settings_for(recall_from_text({"sd35-studio": p.to_json()}), None).request
    assert (request.mask_image, request.mask_grow, request.outpaint, request.hires_steps) == (
        Path("/pics/mask.png"), 4, (0, 64, 128, 0), 10)  # fmt: skip


def test_images_without_refine_keep_the_json_they_had():
    data = params().to_dict()
    assert not {"mask_image", "outpaint", "hires_scale", "source_sha256"} & set(data)
    assert "source_sha256" in params(init_image=Path("a.png"), source_sha256="cd" * 32).to_dict()


def test_a1111_text_uses_a1111_names_and_reads_back():
    p = params(**REFINED)
    text = infotext_of(p)
    pairs = ["Denoising strength: 0.65", "Mask blur: 12", "Hires upscale: 1.5", "Hires steps: 10",
             "Hires upscaler: Lanczos", "Mask grow: 4", 'Outpaint: "0,64,128,0"', "Hires denoise: 0.3"]  # fmt: skip
    for pair in pairs:
        assert pair in text, pair
    back, notes = params_from_infotext(text)
    for name in (
        "denoise",
        "mask_blur",
        "mask_grow",
        "outpaint",
        "hires_scale",
        "hires_steps",
        "hires_denoise",
    ):
        assert getattr(back, name) == getattr(p, name), name
    assert any("source image" in n for n in notes)


def test_a1111_txt2img_hires_text_reads_its_denoising_strength_as_the_hires_pass():
    text = ("a castle\nSteps: 20, Sampler: Euler, CFG scale: 4, Seed: 7, Size: 512x768, Denoising strength: 0.45, "
            "Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+")  # fmt: skip
    back, notes = params_from_infotext(text)
    assert (back.hires_scale, back.hires_steps, back.hires_denoise, back.denoise) == (2.0, 15, 0.45, 1.0)
    assert any("R-ESRGAN 4x+" in n and "Lanczos" in n for n in notes)
    assert not any("source image" in n for n in notes)
