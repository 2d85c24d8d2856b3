"""Style and size presets (data files) and the weight-syntax scanner behind the highlighter."""

import json

import pytest

from app.inference.text.prompt_weights import parse_prompt_weights
from app.ui.form.presets import ASPECT_SIZES_1MP, aspect_of, aspect_size, load_style_presets
from app.ui.form.prompt_syntax import SpanKind, scan_weight_syntax

REQUIRED_STYLES = {
    "none",
    "photographic",
    "cinematic",
    "3d-render",
    "digital-painting",
    "oil-painting",
    "watercolour",
    "line-art",
    "anime",
    "pixel-art",
}


def test_packaged_style_presets_cover_the_issue_list_and_wrap_the_prompt():
    presets = {p.id: p for p in load_style_presets()}
    assert presets.keys() >= REQUIRED_STYLES
    assert presets["none"].is_none and presets["none"].apply("a cat", "dog") == ("a cat", "dog")
    for preset in presets.values():
        prompt, negative = preset.apply("a cat", "")
        assert "a cat" in prompt
        if not preset.is_none:
            assert prompt != "a cat" and negative


def test_edited_presets_file_is_used_and_a_broken_one_is_ignored(tmp_path):
    edited = tmp_path / "styles.json"
    edited.write_text(
        json.dumps({"presets": [{"id": "mine", "label": "Mine", "prompt": "{prompt}, in blue"}]})
    )
    presets = load_style_presets(edited)
    assert [p.id for p in presets] == ["none", "mine"]
    assert presets[1].apply("sky", "") == ("sky, in blue", "")
    edited.write_text("{not json")
    assert {p.id for p in load_style_presets(edited)} >= REQUIRED_STYLES


@pytest.mark.parametrize("aspect", list(ASPECT_SIZES_1MP))
def test_aspect_presets_are_multiples_of_64_near_one_megapixel(aspect):
    w, h = aspect_size(aspect, 3072)
    assert w % 64 == 0 and h % 64 == 0
    assert 0.8e6 < w * h < 1.15e6
    a, b = map(int, aspect.split(":"))
    assert abs(w / h - a / b) / (a / b) < 0.12
    assert aspect_of(w, h, 3072) == aspect
    small = aspect_size(aspect, 512)
    assert max(small) <= 512


@pytest.mark.parametrize(
    "text",
    [
        "a (red:1.3) cat",
        "((very)) nice (dog) here",
        "(a (b:0.5) c)",
        "x \\(literal\\) (y:1.2) z",
        "plain text",
        "(outer (inner) :1.5)",
        "(weight:abc) stays 1.1",
    ],
)
def test_highlighted_weights_match_the_engine_parser(text):
    spans = scan_weight_syntax(text)
    shown = {}
    for span in spans:
        if span.kind is SpanKind.TEXT:
            for word in text[span.start : span.start + span.length].split():
                shown[word] = round(span.weight, 6)
    for segment, weight in parse_prompt_weights(text):
        for word in segment.split():
            if weight != 1.0:
                assert shown.get(word) == round(weight, 6), (word, spans)
            else:
                assert word not in shown


def test_unbalanced_parentheses_and_escapes_are_marked():
    spans = scan_weight_syntax("a (b c \\( d) e)")
    kinds = [(s.start, s.kind) for s in spans if s.kind in (SpanKind.UNBALANCED, SpanKind.ESCAPE)]
    assert (14, SpanKind.UNBALANCED) in kinds and (7, SpanKind.ESCAPE) in kinds
    weights = [s for s in spans if s.kind is SpanKind.WEIGHT]
    assert not weights
    (weight,) = [s for s in scan_weight_syntax("(cat:1.4)") if s.kind is SpanKind.WEIGHT]
    assert (weight.start, weight.length, weight.weight) == (4, 4, 1.4)
