"""X/Y plots expand into requests and assemble a labelled sheet; compare labels show only what differs."""

import json

import numpy as np
import pytest
from PIL import Image

from app.gallery.labels import differing_fields, differing_labels
from app.gallery.xy_plot import XY_KEY, Axis, XYPlot
from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import infotext_of
from app.metadata.png_text import read_png_text
from tests.gallery.helpers import params

BASE = GenerationRequest(prompt="a lighthouse at dusk, oil painting", seed=10, count=4, steps=20)


def test_a_2_by_3_plot_gives_6_requests_row_by_row():
    plot = XYPlot(BASE, Axis("cfg", (3.5, 5.0)), Axis.parse("seed", "10-12"))
    cells = plot.cells()
    assert plot.shape == (2, 3) and len(cells) == 6
    assert [(c.column, c.row, c.request.cfg, c.request.seed) for c in cells] == [
        (0, 0, 3.5, 10), (1, 0, 5.0, 10), (0, 1, 3.5, 11), (1, 1, 5.0, 11), (0, 2, 3.5, 12), (1, 2, 5.0, 12)
    ]  # fmt: skip
    assert all(c.request.count == 1 and c.request.steps == 20 for c in cells)
    assert [r.resolved("large").cfg for r in plot.requests()] == [3.5, 5.0] * 3


def test_axes_of_every_kind():
    assert Axis.parse("steps", "20, 28-30").values == (20, 28, 29, 30)
    sr = XYPlot(BASE, Axis.parse("prompt", "dusk, dawn, noon"), Axis("sampler", ("euler", "dpmpp_2m")))
    assert [r.prompt for r in sr.requests()[:3]] == ["a lighthouse at dusk, oil painting",
                                                      "a lighthouse at dawn, oil painting",
                                                      "a lighthouse at noon, oil painting"]  # fmt: skip
    assert [r.sampler for r in sr.requests()] == ["euler"] * 3 + ["dpmpp_2m"] * 3
    assert [Axis("scheduler", ("sgm_uniform",)).label("sgm_uniform"), Axis("shift", (3.0,)).label(3.0)] == [
        "SGM Uniform", "shift 3"]  # fmt: skip
    with pytest.raises(ValueError, match="does not occur in the prompt"):
        XYPlot(BASE, Axis("prompt", ("castle", "tower"))).requests()
    with pytest.raises(ValueError, match="unknown sampler"):
        Axis("sampler", ("ddim",))
    with pytest.raises(ValueError, match="unknown axis"):
        Axis("lora", (1,))


def test_the_sheet_has_every_image_in_its_cell_and_labels(tmp_path):
    plot = XYPlot(BASE, Axis("cfg", (3.5, 5.0)), Axis("seed", (10, 11, 12)))
    colours = {(c, r): (40 + 100 * c, 60 + 60 * r, 200) for c in range(2) for r in range(3)}
    images = {k: np.full((64, 64, 3), v, np.uint8) for k, v in colours.items()}
    images.pop((1, 2))  # a cell that failed stays empty
    cell = 128
    sheet = plot.sheet(images, cell_size=cell)
    pix = np.asarray(sheet)
    # Locate cell (0, 0) by its colour, then check every other cell at its offset in the grid.
    ys, xs = np.nonzero(np.all(pix == colours[(0, 0)], axis=-1))
    top, left = ys.min(), xs.min()
    assert (ys.max() - top + 1, xs.max() - left + 1) == (cell, cell)
    pitch_x = np.nonzero(np.all(pix[top] == colours[(1, 0)], axis=-1))[0].min() - left
    pitch_y = np.nonzero(np.all(pix[:, left] == colours[(0, 1)], axis=-1))[0].min() - top
    for (c, r), colour in colours.items():
        centre = pix[top + r * pitch_y + cell // 2, left + c * pitch_x + cell // 2]
        assert tuple(centre) == (colour if (c, r) in images else (48, 48, 54))
    # Labels: ink above each column and left of each row, none in the empty corner.
    background = np.array([24, 24, 27])
    ink = np.any(pix != background, axis=-1)
    for c in range(2):
        assert ink[top - cell // 4 : top - 2, left + c * pitch_x : left + c * pitch_x + cell].any()
    for r in range(3):
        assert ink[top + r * pitch_y + cell // 2 - 8 : top + r * pitch_y + cell // 2 + 8, : left - 4].any()
    params_by_cell = {(c.column, c.row): params(seed=c.request.seed, cfg=c.request.cfg) for c in plot.cells()}
    path = plot.save(tmp_path / "xy.png", images, params_by_cell, cell_size=cell)
    assert read_png_text(path)["parameters"] == infotext_of(
        params_by_cell[(0, 0)]
    )  # the first cell's, as copied
    meta = json.loads(read_png_text(path)[XY_KEY])
    assert meta["x"] == {"kind": "cfg", "values": [3.5, 5.0]} and len(meta["cells"]) == 6
    assert [(m["column"], m["row"], m["parameters"]["seed"], m["parameters"]["cfg"]) for m in meta["cells"]][:3] == [
        (0, 0, 10, 3.5), (1, 0, 10, 5.0), (0, 1, 11, 3.5)]  # fmt: skip
    with Image.open(path) as im:
        assert im.size == sheet.size


def test_compare_labels_show_only_what_differs():
    seeds = [params(seed=s) for s in (1234, 99, 7)]
    assert differing_labels(seeds) == ["seed 1234", "seed 99", "seed 7"]
    mixed = [params(cfg=4.5, steps=28), params(cfg=3.5, steps=28), params(cfg=3.5, steps=40)]
    assert differing_labels(mixed) == ["CFG 4.5 · 28 steps", "CFG 3.5 · 28 steps", "CFG 3.5 · 40 steps"]
    prompts = [params(prompt="a red fox in snow"), params(prompt="a grey fox in snow")]
    assert differing_labels(prompts) == ["“red”", "“grey”"]
    assert differing_fields([params(), params()]) == [] and differing_labels([params(), params()]) == ["", ""]
    other = [params(sampler="euler", use_t5=False), params()]
    assert differing_labels(other) == ["Euler · no T5", "DPM++ 2M · T5"]


def test_difference_heatmap():
    from app.gallery.difference import difference_heatmap

    a = np.zeros((8, 8, 3), np.uint8)
    heat, stats = difference_heatmap(a, a)
    assert (heat == 0).all() and stats.mean == 0 and stats.changed == 0
    b = a.copy()
    b[2:4, 2:4] = 255
    heat, stats = difference_heatmap(a, b)
    assert tuple(heat[3, 3]) == (252, 250, 170) and tuple(heat[0, 0]) == (0, 0, 0)
    assert stats.changed == pytest.approx(4 / 64) and stats.mean == pytest.approx(4 / 64)


def test_a_lora_strength_axis_sweeps_the_first_or_the_named_lora():
    from dataclasses import replace
    from pathlib import Path

    from app.inference.api.lora import LoraSpec

    clay, ink = LoraSpec(Path("/l/clay.safetensors"), 0.8), LoraSpec(Path("/l/ink.safetensors"), 0.6, 0.3)
    base = replace(BASE, loras=(clay, ink))
    first = Axis.parse("lora_strength", "0, 0.5, 1.25")
    assert (first.values, first.lora) == ((0.0, 0.5, 1.25), "")
    plot = XYPlot(base, first, Axis.parse("lora_strength", " ink : -1, 2"))
    strengths = [tuple((s.name, s.strength, s.te_strength) for s in r.loras) for r in plot.requests()]
    assert strengths == [(("clay", c, None), ("ink", i, 0.3)) for i in (-1.0, 2.0) for c in (0.0, 0.5, 1.25)]
    assert [first.label(v) for v in first.values] == ["LoRA 0", "LoRA 0.5", "LoRA 1.25"]
    assert plot.y.label(-1.0) == "ink -1"
    assert base.loras == (clay, ink)  # the base request is left as it was
    with pytest.raises(ValueError, match="this job uses no LoRA"):
        XYPlot(BASE, first).requests()
    with pytest.raises(ValueError, match=r"“wax” is not one of this job's LoRAs \(clay, ink\)"):
        XYPlot(base, Axis.parse("lora_strength", "wax: 1")).requests()
    with pytest.raises(ValueError, match="between -100 and 100"):
        Axis.parse("lora_strength", "0.5, 80, 800")
