"""Metadata in and out of image files: our JSON, A1111's infotext, ComfyUI graphs, EXIF; atomic writes."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import format_infotext, infotext_of, params_from_infotext, parse_infotext, split_pairs
from app.metadata.exif import read_user_comment, save_with_user_comment
from app.metadata.image_file import write_image
from app.metadata.limits import MetadataError
from app.metadata.params import ImageParams
from app.metadata.png_info import DiskFullError, save_png
from app.metadata.png_text import read_png_text
from app.metadata.recall import CurrentSetup, read_metadata, recall_from_text, reproduction_warnings
from tests.gallery.helpers import A1111_TEXT, comfy_template_prompt, params, pixels, write_a1111_png


def test_our_png_gives_back_identical_parameters(tmp_path):
    p = params(seed=2**64 - 1, prompt='ünïcödé 🦊, "quoted": yes\nsecond line', negative_until=0.1)
    path = tmp_path / "ours.png"
    write_image(path, pixels(), p)
    recalled = read_metadata(path)
    assert recalled.source == "sd35-studio"
    assert recalled.params == p
    assert recalled.unmapped == ()
    chunks = read_png_text(path)
    assert set(chunks) == {"parameters", "sd35-studio", "prompt", "workflow"}
    assert json.loads(chunks["sd35-studio"])["format"] == "sd35-studio.parameters"


def test_infotext_alone_also_round_trips_our_parameters():
    p = params(seed=77, cfg=5.25, slg_scale=0.0, slg_layers=(), use_t5=False, text_mode="reference")
    back, unmapped = params_from_infotext(infotext_of(p))
    assert unmapped == ()
    assert back.updated(slg_layers=(), slg_start=p.slg_start, slg_end=p.slg_end, slg_scale=0.0) == p


def test_a1111_string_for_a_known_case_character_for_character():
    request = GenerationRequest(prompt="a cat, sitting on a windowsill", negative="blurry", seed=42).resolved(
        "large"
    )
    p = ImageParams.from_request(request, 42, variant="large", model_name="sd3.5_large",
                                 model_hash="abcdef0123", app_version="0.1.0")  # fmt: skip
    assert infotext_of(p) == (
        "a cat, sitting on a windowsill\n"
        "Negative prompt: blurry\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Normal, CFG scale: 3.5, Seed: 42, Size: 1024x1024, "
        "Model hash: abcdef0123, Model: sd3.5_large, RNG: CPU, Shift: 3, Version: SD3.5 Studio 0.1.0"
    )
    medium = ImageParams.from_request(GenerationRequest(prompt="x").resolved("medium"), 1, variant="medium",
                                      model_name="sd3.5_medium", app_version="0.1.0")  # fmt: skip
    # A value holding a comma is JSON-quoted; a hyphen is not; no negative prompt, no line for it.
    assert infotext_of(medium) == (
        "x\nSteps: 40, Sampler: DPM++ 2M, Schedule type: Normal, CFG scale: 4.5, Seed: 1, Size: 1024x1024, "
        'Model: sd3.5_medium, RNG: CPU, Shift: 3, SLG layers: "7,8,9", SLG scale: 2.5, SLG range: 0.01-0.2, '
        "Version: SD3.5 Studio 0.1.0"
    )


def test_format_infotext_follows_a1111_rules():
    # A1111's own docstring example of an infotext's last line.
    fields = {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 965400086, "Size": "512x512",
              "Model hash": "45dee52b", "Unused": None}  # fmt: skip
    assert format_infotext("girl", "", fields) == (
        "girl\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
    )
    quoted = format_infotext("p", "n", {"A": "x: y", "B": 'say "hi"', "C": "l1\nl2", "Flag": "Flag"})
    assert quoted == 'p\nNegative prompt: n\nA: "x: y", B: say "hi", C: "l1\\nl2", Flag'


def test_recall_from_a1111_maps_what_it_can_and_lists_the_rest():
    prompt, negative, pairs = parse_infotext(A1111_TEXT)
    assert prompt == "masterpiece, a lighthouse on a cliff, (stormy sky:1.2)"
    assert negative == "lowres, watermark"
    assert ("Lora hashes", "detail: 0a1b2c3d4e5f") in pairs
    recalled = recall_from_text({"parameters": A1111_TEXT})
    p = recalled.params
    assert recalled.source == "a1111"
    assert (p.steps, p.sampler, p.scheduler, p.cfg, p.seed) == (30, "dpmpp_2m", None, 6.5, 3141592653)
    assert (p.width, p.height, p.model_hash, p.model_name, p.variant) == (832, 1216, "0123abcd45", "sd3.5_large",
                                                                         "large")  # fmt: skip
    assert p.noise == "gpu"
    assert recalled.unmapped == (
        "Schedule type: Karras (not available; using the variant's default)",
        "Clip skip: 2",
        "Lora hashes: detail: 0a1b2c3d4e5f",
    )
    request = p.to_request().resolved("large")  # fills what A1111 did not say from the variant
    assert request.scheduler == "normal" and request.shift == 3.0
    warnings = reproduction_warnings(recalled, CurrentSetup("sd3.5_large", "0123abcd45", "large"))
    assert warnings == (
        "The start noise was drawn on the GPU (A1111's default), so the same seed gives a different image here.",
    )


def test_old_a1111_sampler_names_and_a_prompt_without_parameters():
    p, unmapped = params_from_infotext("a dog\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 5")
    assert (p.prompt, p.sampler, p.scheduler, p.cfg) == ("a dog", "dpmpp_2m", None, 7.0)
    assert unmapped == ("Schedule type: Karras (not available; using the variant's default)",)
    p, unmapped = params_from_infotext("just a prompt, with: a colon")
    assert p.prompt == "just a prompt, with: a colon" and p.steps is None and unmapped == ()
    assert split_pairs('Steps: 3, Lora: "a, b", X: 1') == [("Steps", "3"), ("Lora", "a, b"), ("X", "1")]


def test_recall_from_the_comfyui_sd35_template():
    recalled = recall_from_text({"prompt": json.dumps(comfy_template_prompt()), "workflow": "{}"})
    p = recalled.params
    assert recalled.source == "comfyui"
    assert p.prompt == "a bottle with a pink and red galaxy inside it" and p.negative == ""
    assert (p.seed, p.steps, p.cfg, p.sampler, p.scheduler) == (
        585483408983215,
        20,
        4.01,
        "euler",
        "sgm_uniform",
    )
    assert (p.width, p.height, p.denoise, p.shift) == (1024, 1024, 1.0, None)
    assert (p.model_name, p.variant, p.fp8, p.use_t5, p.noise) == ("sd3.5_large_fp8_scaled", "large", True, True,
                                                                  "cpu")  # fmt: skip
    assert recalled.unmapped == ()
    warnings = reproduction_warnings(recalled, CurrentSetup("sd3.5_large", None, "large", fp8=False))
    assert warnings == (
        "Made with model sd3.5_large_fp8_scaled; you have sd3.5_large loaded.",
        "Made with fp8 weights; yours are full-precision, so details will differ slightly.",
    )


def test_recall_from_comfyui_negative_window_slg_and_lora():
    prompt = comfy_template_prompt()
    prompt["3"]["inputs"]["model"] = ["60", 0]
    prompt["3"]["inputs"]["negative"] = ["64", 0]
    prompt.update({
        "60": {"class_type": "SkipLayerGuidanceSD3", "inputs": {"model": ["61", 0], "layers": "7, 8, 9",
               "scale": 3.0, "start_percent": 0.01, "end_percent": 0.15}},
        "61": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["62", 0], "shift": 2.5}},
        "62": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["4", 0], "lora_name": "x.safetensors"}},
        "63": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["40", 0]}},
        "65": {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["40", 0], "start": 0.0,
               "end": 0.1}},
        "66": {"class_type": "ConditioningSetTimestepRange", "inputs": {"conditioning": ["63", 0], "start": 0.1,
               "end": 1.0}},
        "64": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["65", 0],
               "conditioning_2": ["66", 0]}},
    })  # fmt: skip
    prompt["40"]["inputs"]["text"] = "ugly"
    recalled = recall_from_text({"prompt": json.dumps(prompt)})
    p = recalled.params
    assert (p.negative, p.negative_until, p.shift) == ("ugly", 0.1, 2.5)
    assert (p.slg_layers, p.slg_scale, p.slg_start, p.slg_end) == ((7, 8, 9), 3.0, 0.01, 0.15)
    # The LoRA loader is recalled as a LoRA (model only: text-encoder strength 0), no longer left out.
    assert [(lo.path.name, lo.strength, lo.te_strength) for lo in p.loras] == [("x.safetensors", 1.0, 0.0)]
    assert not any("LoraLoader" in note for note in recalled.unmapped)


def test_our_comfyui_graph_recalls_to_the_same_settings(tmp_path):
    p = params(negative_until=0.1)
    path = tmp_path / "x.png"
    write_image(path, pixels(), p)
    chunks = read_png_text(path)
    back = recall_from_text({"prompt": chunks["prompt"]}).params
    for name in ("prompt", "negative", "seed", "steps", "cfg", "sampler", "scheduler", "width", "height", "shift",
                 "slg_layers", "slg_scale", "slg_start", "slg_end", "negative_until", "use_t5", "model_name",
                 "variant"):  # fmt: skip
        assert getattr(back, name) == getattr(p, name), name


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_jpeg_and_webp_exports_carry_the_infotext_in_exif(tmp_path, fmt):
    src = tmp_path / "src.png"
    p = params(prompt="émoji 🦊 prompt, with comma")
    write_image(src, pixels(), p)
    dest = tmp_path / f"out.{fmt}"
    save_with_user_comment(src, dest, infotext_of(p), fmt)
    with Image.open(dest) as im:
        assert im.format == fmt.upper()
    assert read_user_comment(dest) == infotext_of(p)
    recalled = read_metadata(dest)
    assert recalled.source == "sd35-studio"
    assert recalled.params.prompt == p.prompt and recalled.params.seed == p.seed and recalled.unmapped == ()


def test_warnings_for_t5_off_and_a_different_model():
    recalled = recall_from_text({"sd35-studio": params(use_t5=False).to_json()})
    assert reproduction_warnings(
        recalled, CurrentSetup("sd3.5_large", "9999999999", "large", t5_available=False)
    ) == (
        "Made with a different model file (sd3.5_medium, hash 0123456789); yours is sd3.5_large (hash 9999999999). "
        "The image will differ.",
        "Made with SD3.5 medium; the loaded model is SD3.5 large.",
        "Made without T5: keep T5 switched off to reproduce it.",
    )
    assert reproduction_warnings(recall_from_text({"sd35-studio": params().to_json()}), None) == ()


def test_a_full_disk_gives_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out" / "image.png"
    target.parent.mkdir()
    target.write_bytes(b"previous image")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=r"not enough disk space to save image\.png"):
        save_png(target, pixels(), "p")
    assert sorted(p.name for p in target.parent.iterdir()) == ["image.png"]
    assert target.read_bytes() == b"previous image"


def test_a_real_write_limit_fails_cleanly_in_a_subprocess(tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse the write itself (EFBIG), as a full disk would."""
    code = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        from pathlib import Path
        from app.metadata.png_info import DiskFullError, save_png
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
        noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
        try:
            save_png(Path({str(tmp_path / "big.png")!r}), noise, "p")
        except DiskFullError as exc:
            print("DiskFullError", exc)
            sys.exit(3)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert proc.returncode == 3, proc.stderr
    assert "not enough disk space to save big.png" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_png_without_metadata_and_unreadable_files(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert read_metadata(plain) is None
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MetadataError, match="The PNG file is cut off"):
        read_metadata(broken)
    a1111 = write_a1111_png(tmp_path / "a.png")
    assert read_metadata(a1111).source == "a1111"


def test_every_request_field_is_carried_by_the_image_parameters(tmp_path):
    request = GenerationRequest(
        prompt="p", negative="n", seed=5, steps=12, cfg=2.5, sampler="euler", scheduler="beta", width=832,
        height=1216, shift=2.0, slg_layers=(7, 8), slg_scale=2.5, slg_start=0.02, slg_end=0.3,
        negative_until=0.2, init_image=tmp_path / "in.png", denoise=0.6, use_t5=False, text_mode="reference",
    )  # fmt: skip
    p = ImageParams.from_request(request, 9, variant="medium", model_name="m")
    assert p.seed == 9
    assert p.init_image == tmp_path / "in.png" and json.loads(p.to_json())["init_image"] == str(
        tmp_path / "in.png"
    )
    assert p.to_request() == replace(request, seed=9, count=1)
    assert ImageParams.from_json(p.to_json()).to_request() == p.to_request()


# Our JSON exactly as the version before ImageParams held its request by composition wrote it (field order of
# the flat ImageParams, init_image a string): such PNGs and gallery rows must still recall, unchanged.
OLD_JSON = (
    '{"format": "sd35-studio.parameters", "version": 1, "prompt": "a harbour at dawn", "negative": "fog", '
    '"seed": 42, "steps": 12, "cfg": 4.5, "sampler": "euler", "scheduler": "beta", "width": 832, "height": 1216, '
    '"shift": 3.0, "slg_layers": [7, 8], "slg_scale": 2.5, "slg_start": 0.01, "slg_end": 0.2, '
    '"negative_until": 0.3, "denoise": 0.6, "init_image": "/pictures/in.png", "use_t5": false, '
    '"text_mode": "full", "variant": "medium", "model_name": "sd3.5_medium", "model_hash": "0123456789", '
    '"fp8": true, "noise": "cpu", "app_version": "0.1.0", "future_key": {"a": 1}}'
)


def test_json_written_by_the_flat_version_still_recalls(tmp_path):
    p = ImageParams.from_json(OLD_JSON)
    request = p.to_request()
    assert request == GenerationRequest(
        prompt="a harbour at dawn", negative="fog", seed=42, steps=12, cfg=4.5, sampler="euler", scheduler="beta",
        width=832, height=1216, shift=3.0, slg_layers=(7, 8), slg_scale=2.5, slg_start=0.01, slg_end=0.2,
        negative_until=0.3, denoise=0.6, init_image=Path("/pictures/in.png"), use_t5=False,
    )  # fmt: skip
    assert (p.variant, p.model_name, p.model_hash, p.fp8, p.app_version) == (
        "medium", "sd3.5_medium", "0123456789", True, "0.1.0")  # fmt: skip
    # Written again: the same keys and values (an unknown key kept), read back equal.
    assert json.loads(p.to_json()) == json.loads(OLD_JSON)
    assert ImageParams.from_json(p.to_json()) == p
    assert "FP8 weight: Enable" in infotext_of(p) and "Denoising strength: 0.6" in infotext_of(p)


def test_request_fields_read_through_and_unknown_names_do_not():
    p = params(seed=5, cfg=6.0)
    assert (p.seed, p.cfg, p.prompt) == (p.request.seed, 6.0, p.request.prompt)
    with pytest.raises(AttributeError):
        p.no_such_field  # noqa: B018 - the attribute access is the test
    with pytest.raises(TypeError, match="no field"):
        ImageParams.from_fields(prompt="x", no_such_field=1)
