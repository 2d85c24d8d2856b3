"""A1111's `ControlNet N: "…"` units read back: ours round trip through a PNG's `parameters` text, a literal
sd-webui-controlnet string (current and older format) gives the units to recall and to the gallery import, unknown
keys are ignored, a bad value is a note and never a crash, and recalled names are matched to the files here."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.gallery.db import GalleryDB
from app.gallery.filters import GalleryFilter
from app.gallery.importer import import_folder
from app.inference.api.control import ControlPreprocess, ControlSpec
from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import infotext_of, params_from_infotext
from app.metadata.controlnet_a1111 import NO_IMAGE, controlnet_from_a1111, resolve_controlnet_files
from app.metadata.params import ImageParams
from app.metadata.recall import CurrentSetup, read_metadata, reproduction_warnings, settings_for
from tests.gallery.helpers import write_a1111_png

CANNY = "sd3.5_large_controlnet_canny.safetensors"
BLUR = "sd3.5_large_controlnet_blur.safetensors"
DEPTH = "sd3.5_large_controlnet_depth.safetensors"

# As A1111 1.10 with sd-webui-controlnet 1.1.455 writes it: each unit's fields in the extension's order and
# spelling, the whole unit JSON-quoted by A1111 because it holds commas and colons.
EXTENSION_TEXT = (
    "a castle on a hill, golden hour\n"
    "Negative prompt: blurry\n"
    "Steps: 40, Sampler: Euler, Schedule type: Simple, CFG scale: 3.5, Seed: 42, Size: 1024x1024, "
    "Model hash: 0c9b1bd9ea, Model: sd3.5_large, "
    'ControlNet 0: "Module: canny, Model: sd3.5_large_controlnet_canny [4bc5cf94], Weight: 0.8, '
    "Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, "
    "Guidance Start: 0.0, Guidance End: 0.75, Pixel Perfect: False, Control Mode: Balanced, Hr Option: Both, "
    'Save Detected Map: True", '
    'ControlNet 1: "Module: blur_gaussian, Model: sd3.5_large_controlnet_blur [0123abcd], Weight: 0.5, '
    "Resize Mode: Just Resize, Processor Res: 1024, Threshold A: 9.0, Guidance Start: 0.1, Guidance End: 1.0, "
    'Pixel Perfect: True, Control Mode: My prompt is more important", '
    'ControlNet 2: "Module: depth_midas, Model: sd3.5_large_controlnet_depth [89abcdef], Weight: 1.0, '
    'Made Up Key: whatever, Guidance Start: 0.0, Guidance End: 1.0", '
    "Version: v1.10.1"
)
# The extension's format before 1.1.4xx: lower-case keys, pairs in parentheses.
LEGACY_UNIT = (
    "preprocessor: canny, model: sd3.5_large_controlnet_canny [4bc5cf94], weight: 0.6, starting/ending: (0.2, 0.8), "
    "resize mode: Crop and Resize, pixel perfect: False, control mode: Balanced, preprocessor params: (512, 64, 128)"
)


def _unit_values(spec: ControlSpec) -> tuple:
    return (spec.file, spec.image, spec.strength, spec.start, spec.end, spec.control_type, spec.preprocess)


def test_a_literal_extension_string_gives_back_every_unit(tmp_path):
    recalled = read_metadata(write_a1111_png(tmp_path / "a1111.png", EXTENSION_TEXT))
    assert recalled is not None and recalled.source == "a1111"
    units = recalled.params.controlnets
    assert [_unit_values(u) for u in units] == [
        (
            Path(CANNY),
            NO_IMAGE,
            0.8,
            0.0,
            0.75,
            None,
            ControlPreprocess("canny", canny_low=100, canny_high=200),
        ),
        (Path(BLUR), NO_IMAGE, 0.5, 0.1, 1.0, None, ControlPreprocess("blur", blur_radius=9.0)),
        (Path(DEPTH), NO_IMAGE, 1.0, 0.0, 1.0, None, ControlPreprocess("depth")),
    ]
    notes = recalled.unmapped
    assert "ControlNet 0: the control image is not part of A1111 metadata; choose it again" in notes
    assert any(n.startswith("ControlNet 1: Control Mode: My prompt is more important") for n in notes)
    assert any(n.startswith("ControlNet 2: Module: depth_midas (no depth estimator here") for n in notes)
    assert not any("Made Up Key" in n or "Resize Mode" in n or "Pixel Perfect" in n for n in notes)  # ignored
    p = recalled.params
    assert (p.prompt, p.steps, p.cfg, p.seed, p.model_name) == ("a castle on a hill, golden hour", 40, 3.5, 42,
                                                                "sd3.5_large")  # fmt: skip
    assert p.to_request().controlnets == units  # what "use these settings" hands to the form
    warnings = reproduction_warnings(recalled, None)
    assert sum(CANNY in w and "missing" in w for w in warnings) == 1  # the file, not the (unknown) image


def test_our_text_round_trips_through_a_png_without_our_json(tmp_path):
    image = tmp_path / "edges.png"
    specs = (
        ControlSpec(Path(f"/models/{CANNY}"), image, 0.8, 0.1, 0.9, "canny",
                    ControlPreprocess("canny", canny_low=80, canny_high=160)),
        ControlSpec(Path(f"/models/{BLUR}"), image, 1.25, 0.0, 0.5, None, ControlPreprocess("blur", blur_radius=4.5)),
        ControlSpec(Path(f"/models/{DEPTH}"), image, 0.5, preprocess=ControlPreprocess("depth", invert=True)),
        ControlSpec(Path(f"/models/{DEPTH}"), image, 0.3, 0.2, 0.6, "depth", ControlPreprocess("depth")),
    )  # fmt: skip
    request = GenerationRequest(prompt="a house", controlnets=specs).resolved("large")
    params = ImageParams.from_request(request, 7, variant="large", model_name="sd3.5_large")
    recalled = read_metadata(write_a1111_png(tmp_path / "ours.png", infotext_of(params)))

    got = recalled.params.controlnets
    assert [replace_dir(g) for g in got] == [replace_dir(s, image=NO_IMAGE) for s in specs]


def replace_dir(spec: ControlSpec, image: Path | None = None) -> tuple:
    """A spec's values with its file reduced to the name (A1111 text keeps only the model's name)."""
    values = _unit_values(spec)
    return (Path(spec.file).name, image if image is not None else values[1], *values[2:])


def test_the_older_extension_format_is_read_too():
    spec, notes = controlnet_from_a1111("ControlNet 0", LEGACY_UNIT)
    assert _unit_values(spec) == (
        Path(CANNY),
        NO_IMAGE,
        0.6,
        0.2,
        0.8,
        None,
        ControlPreprocess("canny", canny_low=64, canny_high=128),
    )
    assert notes == ["ControlNet 0: the control image is not part of A1111 metadata; choose it again"]


@pytest.mark.parametrize(
    ("unit", "expected", "note"),
    [
        ("Module: canny, Model: x [12345678], Weight: strong, Guidance Start: 0.2",
         (1.0, 0.2, 1.0), "ControlNet 0: Weight: strong (not understood; using the default)"),
        ("Module: canny, Model: x, Weight: 0.5, Guidance Start: 0.9, Guidance End: 0.1",
         (0.5, 0.0, 1.0), "ControlNet 0: Guidance Start/End 0.9/0.1 (not a range in 0..1; using 0..1)"),
        ("Module: canny, Model: x, Weight: nan", (1.0, 0.0, 1.0), "ControlNet 0: Weight: nan (not understood"),
        ("Module: canny, Model: x, Threshold A: 300, Threshold B: 20", (1.0, 0.0, 1.0), "canny thresholds need"),
        ("Module: openpose_full, Model: x, Weight: 2", (2.0, 0.0, 1.0), "Module: openpose_full (not available"),
        ("Module: none, Model: x, starting/ending: (1, 2, 3)", (1.0, 0.0, 1.0), "starting/ending: (1, 2, 3)"),
    ],
)  # fmt: skip
def test_a_bad_value_is_a_note_and_the_rest_of_the_unit_is_kept(unit, expected, note):
    spec, notes = controlnet_from_a1111("ControlNet 0", unit)
    assert spec is not None and spec.file == Path("x.safetensors")
    assert (spec.strength, spec.start, spec.end) == expected
    assert any(n.startswith(note) or note in n for n in notes), notes
    spec.validated()  # whatever the text said, what recall hands on is a valid ControlNet


def test_units_without_a_model_or_broken_beyond_reading_never_crash_the_recall():
    text = EXTENSION_TEXT.replace("Model: sd3.5_large_controlnet_blur [0123abcd]", "Model: None")
    text = text.replace('ControlNet 2: "Module', 'ControlNet 2: "::,,((Module')
    params, notes = params_from_infotext(text)
    assert [u.file.name for u in params.controlnets] == [CANNY]
    assert "ControlNet 1: no ControlNet model named; left out" in notes
    assert "ControlNet 2: no ControlNet model named; left out" in notes
    assert params.seed == 42  # the rest of the line still reads


def test_gallery_import_keeps_the_units_of_an_a1111_png(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_a1111_png(folder / "a1111.png", EXTENSION_TEXT)
    db = GalleryDB.open(tmp_path / "data")
    try:
        import_folder(db, folder)
        (record,) = db.get([k.id for k in db.row_keys(GalleryFilter())])
    finally:
        db.close()
    assert [(u.file.name, u.strength, u.preprocess.kind) for u in record.params.controlnets] == [
        (CANNY, 0.8, "canny"),
        (BLUR, 0.5, "blur"),
        (DEPTH, 1.0, "depth"),
    ]


def test_recalled_names_are_matched_to_the_controlnet_files_here(tmp_path):
    here = tmp_path / "controlnets"
    here.mkdir()
    (here / "SD3.5_Large_ControlNet_Canny.safetensors").write_bytes(b"w")
    params, _ = params_from_infotext(EXTENSION_TEXT)
    resolved, missing = resolve_controlnet_files(params.controlnets, sorted(here.iterdir()))
    assert [u.file for u in resolved] == [
        here / "SD3.5_Large_ControlNet_Canny.safetensors",
        Path(BLUR),
        Path(DEPTH),
    ]
    assert [u.strength for u in resolved] == [0.8, 0.5, 1.0]
    assert missing == (
        f"ControlNet {BLUR} is not in the ControlNet folders here; choose it again.",
        f"ControlNet {DEPTH} is not in the ControlNet folders here; choose it again.",
    )


def test_use_these_settings_gets_the_files_found_here_and_warns_only_about_the_others(tmp_path):
    here = tmp_path / "controlnets"
    here.mkdir()
    canny = here / CANNY
    canny.write_bytes(b"w")
    recalled = read_metadata(write_a1111_png(tmp_path / "a1111.png", EXTENSION_TEXT))
    setup = CurrentSetup(model_name="sd3.5_large", variant="large", controlnet_files=(canny,))

    settings = settings_for(recalled, setup)
    assert [u.file for u in settings.request.controlnets] == [canny, Path(BLUR), Path(DEPTH)]
    assert [u.strength for u in settings.request.controlnets] == [0.8, 0.5, 1.0]
    missing = [w for w in settings.warnings if "ControlNet file" in w]
    assert [w.split(" ")[2] for w in missing] == [BLUR, DEPTH]  # the canny one is here: no warning
    assert (
        settings_for(recalled, None).request.controlnets == recalled.params.controlnets
    )  # nothing known here
