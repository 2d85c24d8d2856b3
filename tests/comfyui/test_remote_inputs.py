"""A remote job's own images on the REAL ComfyUI server (tiny SD3 set, tests/comfyui/server.py): masks and
outpainting send the canvas and masks our local engine samples from; the graph sent is the PNG's `prompt` chunk."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.inference.api.events import ImageFinished, JobFailed, JobFinished
from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.image_file import finished_image_params, write_image
from app.remote.inputs import mask_levels, sized
from tests.comfyui.remote_jobs import tiny_request
from tests.comfyui.server import TINY_CLIP_L

pytestmark = pytest.mark.slow


def _ran(server, written: dict) -> int:
    """How many prompts in the server's history are exactly `written`."""
    return sum(entry["prompt"][2] == written for entry in server.get("/history?max_items=64").values())


def _init_and_mask(tmp_path, size=(60, 40), soft=False):
    w, h = size
    rng = np.random.default_rng(0)
    init = tmp_path / "holiday photo.png"
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(init)
    mask = np.zeros((h, w), np.uint8)
    mask[10:24, 20:36] = 255
    if soft:
        mask[10:24, 36:44] = 128
    mask_path = tmp_path / "my mask.png"
    Image.fromarray(mask).save(mask_path)
    return init, mask_path


def test_an_outpaint_with_a_mask_runs_on_the_server_from_our_engines_pixels(remote, tmp_path):
    from app.inference.pipeline.refine import load_source

    server, session, checkpoint = remote
    init, mask = _init_and_mask(tmp_path)
    request = tiny_request(init_image=init, mask_image=mask, outpaint=(0, 8, 4, 0), mask_grow=2, mask_blur=3,
                           denoise=1.0)  # fmt: skip
    events = list(session.run(checkpoint, request))
    assert isinstance(events[-1], JobFinished), events[-1]
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    assert finished.pixels.shape == (48, 64, 3)  # 40+8 x 60+4: the canvas (64x48) needs no alignment here
    files = finished.comfy_files
    names = (files.init_image, files.mask_image, files.composite_mask)
    assert all(n.startswith("sd35-studio/") for n in names)
    assert not any("holiday" in n or "my mask" in n for n in names)  # no local name leaves the machine

    # What the server read is exactly what our local engine samples from and composites with.
    source = load_source(sized(request).resolved("large"))
    uploaded = {n: np.asarray(Image.open(server.comfy / "input" / n)) for n in names}
    assert np.array_equal(uploaded[files.init_image], source.pixels)
    assert np.array_equal(uploaded[files.mask_image], mask_levels(source.mask))
    assert np.array_equal(uploaded[files.composite_mask], mask_levels(source.alpha))
    assert uploaded[files.mask_image].max() == 255 and uploaded[files.mask_image][:8].min() == 255  # outpaint

    # The PNG's `prompt` chunk is the graph the server ran.
    path = write_image(tmp_path / "a.png", finished.pixels, finished_image_params(finished), files)
    written = json.loads(Image.open(path).text["prompt"])
    assert _ran(server, written) == 1
    kinds = [n["class_type"] for n in written.values()]
    assert "SetLatentNoiseMask" in kinds and "ImageCompositeMasked" in kinds
    assert not {"ImagePadForOutpaint", "GrowMask", "ImageCrop"} & set(kinds)  # prepared here, not there

    # Away from the feathered mask the result is the init image (ComfyUI saves by truncating floats: ±1).
    keep = mask_levels(source.alpha) == 0
    diff = np.abs(finished.pixels.astype(int) - source.pixels.astype(int))[keep]
    assert keep.sum() > 1000 and diff.max() <= 1


def test_an_aligned_canvas_is_cropped_back_and_a_soft_mask_uses_differential_diffusion(remote, tmp_path):
    server, session, checkpoint = remote
    init, mask = _init_and_mask(tmp_path, soft=True)  # 60x40: the canvas is aligned to 64x48
    events = list(
        session.run(checkpoint, tiny_request(init_image=init, mask_image=mask, mask_blur=0, seed=3))
    )
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    assert (
        finished.pixels.shape == (40, 60, 3)
        and finished.mask_soft
        and finished.comfy_files.output_size == (60, 40)
    )
    assert finished.comfy_files.composite_mask == finished.comfy_files.mask_image  # no blur: one mask
    path = write_image(
        tmp_path / "b.png", finished.pixels, finished_image_params(finished), finished.comfy_files
    )
    written = json.loads(Image.open(path).text["prompt"])
    assert _ran(server, written) == 1
    kinds = [n["class_type"] for n in written.values()]
    assert "ImageCrop" in kinds and "DifferentialDiffusion" in kinds


def test_an_unusable_mask_fails_the_job_with_one_sentence_before_anything_is_sent(remote, tmp_path):
    server, session, checkpoint = remote
    init, _ = _init_and_mask(tmp_path)
    wrong = tmp_path / "small mask.png"
    Image.new("L", (10, 10), 255).save(wrong)
    before = server.get("/history?max_items=200")
    (event,) = session.run(checkpoint, tiny_request(init_image=init, mask_image=wrong))
    assert (
        isinstance(event, JobFailed)
        and "the mask is 10×10 px but the init image is 60×40 px" in event.message
    )
    assert server.get("/history?max_items=200").keys() == before.keys()


# ------------------------------------------------------------------------------------------------ LoRAs


def _tiny_lora(path, seed: int, rank: int = 4, hash_of=None):
    """A LoRA for the tiny set's first joint block (ComfyUI's generic `diffusion_model.<module>` keys), with
    kohya's `sshs_model_hash` of the tensor bytes (A1111's LoRA hash) in its metadata, or of `hash_of`'s."""
    import torch
    from safetensors.torch import save_file

    from app.inference.lora.hashing import lora_hashes

    g = torch.Generator().manual_seed(seed)
    key = "diffusion_model.joint_blocks.0.x_block.attn.qkv"
    tensors = {f"{key}.lora_up.weight": torch.randn(384, rank, generator=g) * 2,
               f"{key}.lora_down.weight": torch.randn(rank, 128, generator=g) * 2}  # fmt: skip
    save_file(tensors, str(path))
    lora_hashes.__globals__["_cache"].clear()  # same path rewritten within one mtime tick: read it again
    addnet = lora_hashes(hash_of or path)[1] if hash_of is None else hash_of
    save_file(tensors, str(path), metadata={"sshs_model_hash": addnet + "0" * 52})
    lora_hashes.__globals__["_cache"].clear()
    return path


def test_a_lora_runs_on_the_server_under_its_name_and_changes_the_image(remote, tmp_path):
    from app.inference.api.lora import LoraSpec

    server, session, checkpoint = remote
    (tmp_path / "server").mkdir()
    theirs = _tiny_lora(tmp_path / "server" / "style.safetensors", seed=1)
    mine = tmp_path / "my loras" / "style.safetensors"
    mine.parent.mkdir()
    mine.write_bytes(theirs.read_bytes())  # the same file here and there
    link = server.link_model("loras", theirs, "sub/style.safetensors")
    try:
        plain = [e for e in session.run(checkpoint, tiny_request(seed=5)) if isinstance(e, ImageFinished)]
        events = list(session.run(checkpoint, tiny_request(seed=5, loras=(LoraSpec(mine, 1.0),))))
    finally:
        link.unlink()
    assert isinstance(events[-1], JobFinished) and events[-1].images == 1, events[-1]
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    assert finished.comfy_files.loras == ("sub/style.safetensors",)
    assert not np.array_equal(finished.pixels, plain[0].pixels)  # the LoRA really ran
    path = write_image(
        tmp_path / "l.png", finished.pixels, finished_image_params(finished), finished.comfy_files
    )
    written = json.loads(Image.open(path).text["prompt"])
    assert _ran(server, written) == 1
    (loader,) = [n for n in written.values() if n["class_type"] == "LoraLoader"]
    assert loader["inputs"]["lora_name"] == "sub/style.safetensors" and "my loras" not in json.dumps(written)


def test_a_lora_the_server_lacks_or_has_as_another_file_is_refused_naming_it(remote, tmp_path):
    from app.inference.api.lora import LoraSpec

    server, session, checkpoint = remote
    (tmp_path / "server").mkdir()
    theirs = _tiny_lora(tmp_path / "server" / "clay.safetensors", seed=2)
    mine = _tiny_lora(tmp_path / "clay.safetensors", seed=3)  # same name, other weights
    before = server.get("/history?max_items=200").keys()
    (event,) = session.run(checkpoint, tiny_request(loras=(LoraSpec(mine, 0.7),)))
    assert isinstance(event, JobFailed) and event.kind.name == "MODEL"
    assert f"{server.url} has no LoRA clay.safetensors" in event.message and "never uploads" in event.message
    link = server.link_model("loras", theirs)
    try:
        (event,) = session.run(checkpoint, tiny_request(loras=(LoraSpec(mine, 0.7),)))
    finally:
        link.unlink()
    assert isinstance(event, JobFailed) and "has a LoRA named clay.safetensors, but it is a different file" in \
        event.message  # fmt: skip
    assert server.get("/history?max_items=200").keys() == before


# ------------------------------------------------------------------------------------------------ ControlNets


def test_a_controlnet_job_uploads_its_control_image_and_the_server_accepts_the_graph(remote, tmp_path):
    """The tiny set has no ControlNet ComfyUI can execute: an empty file under the right name passes the server's
    validation (no node_errors: the job is queued) and then fails in ControlNetLoader, which the job reports."""
    from app.inference.api.control import ControlPreprocess, ControlSpec

    server, session, checkpoint = remote
    server.place_models("controlnet", "sd3.5_large_controlnet_canny.safetensors")
    photo = tmp_path / "private pose.png"
    pixels = np.random.default_rng(1).integers(0, 256, (40, 52, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(photo)
    spec = ControlSpec(tmp_path / "sd3.5_large_controlnet_canny.safetensors", photo, 0.8, 0.0, 0.9, "canny",
                       ControlPreprocess("canny", canny_low=80, canny_high=160))  # fmt: skip
    events = list(session.run(checkpoint, tiny_request(controlnets=(spec,), seed=9)))
    failed = [e for e in events if type(e).__name__ == "ImageFailed"]
    assert len(failed) == 1 and "ControlNetLoader" in failed[0].message, events
    assert isinstance(events[-1], JobFinished) and events[-1].images == 0

    (entry,) = _history_entries(server, seed=9)
    graph = entry["prompt"][2]
    (name,) = [n["inputs"]["image"] for n in graph.values() if n["class_type"] == "LoadImage"]
    assert name.startswith("sd35-studio/control-") and "private" not in json.dumps(graph)
    from app.inference.control.encoding import read_control_image

    ours = np.rint(read_control_image(photo, (64, 64))[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(server.comfy / "input" / name)), ours)  # our engine's pixels

    # The graph the server validated and queued is what the PNG writer builds for this job's files.
    files = ComfyFiles(checkpoint, clip_l=TINY_CLIP_L, clip_g=None, controlnets=(spec.file.name,),
                       control_images=(name,))  # fmt: skip
    params = finished_image_params(ImageFinished(0, 9, None, None, tiny_request(controlnets=(spec,), seed=9)
                                                 .resolved("large"), model_name=Path(checkpoint).stem,
                                                 variant="large"))  # fmt: skip
    assert json.loads(comfy_chunks(params, files)[0]) == graph
    assert "Canny" in {n["class_type"] for n in graph.values()}


def _history_entries(server, seed: int, timeout: float = 15.0) -> list[dict]:
    """The server's history entries of `seed`. A failed prompt reaches /history only after its execution_error
    message (which ended our job): on a busy machine a moment later, so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in server.get("/history?max_items=64").values() if _seed_of(e) == seed]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _seed_of(entry: dict) -> int | None:
    seeds = (n["inputs"].get("seed", n["inputs"].get("noise_seed")) for n in entry["prompt"][2].values()
             if n["class_type"] in ("KSampler", "SamplerCustom"))  # fmt: skip
    return next(seeds, None)


# ------------------------------------------------------------------------------------------------ schedules, hires


def _written(server, finished, tmp_path, name):
    path = write_image(
        tmp_path / name, finished.pixels, finished_image_params(finished), finished.comfy_files
    )
    written = json.loads(Image.open(path).text["prompt"])
    assert _ran(server, written) == 1  # the PNG's `prompt` chunk is the graph the server ran
    return written


def test_image_to_image_follows_our_schedule_on_the_server(remote, tmp_path):
    """Denoise 0.6 of 5 steps: we drop int(5 x 0.4) = 2 sigmas and run 3 steps (ComfyUI's KSampler would run 5 of
    an 8-step schedule); the server gets our sigmas through BasicScheduler + SplitSigmas + SamplerCustom."""
    from app.inference.sampling.schedules import img2img_sigmas, make_sigmas

    server, session, checkpoint = remote
    init = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(init)
    request = tiny_request(init_image=init, denoise=0.6, steps=5, seed=12)
    events = list(session.run(checkpoint, request))
    steps = [e for e in events if type(e).__name__ == "StepUpdate"]
    assert [(e.step, e.steps) for e in steps] == [(1, 3), (2, 3), (3, 3)]
    resolved = request.resolved("large")
    expected = img2img_sigmas(make_sigmas(resolved.scheduler, 5, resolved.shift), 0.6).tolist()[:-1]
    assert [e.sigma for e in steps] == pytest.approx(expected) and len(expected) == 3
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    written = _written(server, finished, tmp_path, "i.png")
    kinds = {n["class_type"]: n["inputs"] for n in written.values()}
    assert (
        "KSampler" not in kinds
        and kinds["SplitSigmas"]["step"] == 2
        and kinds["BasicScheduler"]["steps"] == 5
    )


def test_the_hires_fix_runs_on_the_server_and_counts_both_passes(remote, tmp_path):
    server, session, checkpoint = remote
    request = tiny_request(seed=4, steps=2, hires_scale=1.5, hires_steps=3, hires_denoise=0.5)
    events = list(session.run(checkpoint, request))
    assert isinstance(events[-1], JobFinished) and events[-1].images == 1, events[-1]
    steps = [(e.step, e.steps) for e in events if type(e).__name__ == "StepUpdate"]
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 2 steps, then 3 x 0.5 -> int(1.5) = 1 dropped: 2 more
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    assert finished.pixels.shape == (96, 96, 3)
    written = _written(server, finished, tmp_path, "h.png")
    kinds = [n["class_type"] for n in written.values()]
    assert kinds.count("SamplerCustom") == 1 and kinds.count("KSampler") == 1 and "ImageScale" in kinds


def test_everything_at_once_is_one_graph_the_server_accepts(remote, tmp_path):
    """Outpaint + mask + LoRA + ControlNet + hires + partial denoise in one job: validated and queued (no
    node_errors), then stopped in ControlNetLoader by the empty ControlNet file; every upload is the job's own."""
    from app.inference.api.control import ControlPreprocess, ControlSpec
    from app.inference.api.lora import LoraSpec

    server, session, checkpoint = remote
    (tmp_path / "server").mkdir()
    lora = _tiny_lora(tmp_path / "server" / "ink.safetensors", seed=6)
    server.place_models("controlnet", "sd3.5_large_controlnet_blur.safetensors")
    init, mask = _init_and_mask(tmp_path)
    spec = ControlSpec(tmp_path / "sd3.5_large_controlnet_blur.safetensors", init, 0.5,
                       preprocess=ControlPreprocess("blur", blur_radius=2))  # fmt: skip
    request = tiny_request(init_image=init, mask_image=mask, outpaint=(6, 0, 0, 0), denoise=0.7, seed=41,
                           loras=(LoraSpec(lora, 0.5, 0.0),), controlnets=(spec,), hires_scale=1.25)  # fmt: skip
    link = server.link_model("loras", lora)
    try:
        events = list(session.run(checkpoint, request))
    finally:
        link.unlink()
    failed = [e for e in events if type(e).__name__ == "ImageFailed"]
    assert len(failed) == 1 and "ControlNetLoader" in failed[0].message, events[-1]
    (entry,) = _history_entries(server, seed=41)
    kinds = {n["class_type"] for n in entry["prompt"][2].values()}
    assert {"LoraLoaderModelOnly", "ControlNetApplyAdvanced", "ImageBlur", "SetLatentNoiseMask", "ImageCrop",
            "ImageScale", "SamplerCustom"} <= kinds  # fmt: skip
    loads = [n["inputs"]["image"] for n in entry["prompt"][2].values() if "LoadImage" in n["class_type"]]
    assert len(loads) == 4 and all(n.startswith("sd35-studio/") for n in loads)  # canvas, masks, control
    sent = json.dumps(entry["prompt"])
    assert (
        str(tmp_path) not in sent and "holiday photo" not in sent and "my mask" not in sent
    )  # no local path


def test_the_cli_outpaints_on_a_server_and_writes_the_png_of_what_ran(comfyui_tiny, tmp_path, capsys):
    from app.cli.main import main

    server, checkpoint, _ = comfyui_tiny
    init, mask = _init_and_mask(tmp_path)
    out = tmp_path / "remote outpaint.png"
    args = ["generate", "--engine", server.url, "--engine-partial-encoders", "--model", checkpoint, "--prompt",
            "a lighthouse", "--seed", "13", "--steps", "2", "--no-t5", "--sampler", "euler", "--init-image", str(init),
            "--mask", str(mask), "--outpaint", "0,0,4,8", "--denoise", "1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    image = Image.open(out)
    assert image.size == (64, 48)  # 60+4 x 40+8
    written = json.loads(image.text["prompt"])
    assert _ran(server, written) == 1 and "SetLatentNoiseMask" in {n["class_type"] for n in written.values()}
    assert json.loads(image.text["sd35-studio"])["outpaint"] == [0, 0, 4, 8]
