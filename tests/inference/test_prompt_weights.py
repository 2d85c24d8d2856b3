"""Prompt weight syntax (SD35_MODEL.md §3.3 step 1, §3.4)."""

from __future__ import annotations

import pytest

from app.inference.text.prompt_weights import parse_parentheses, parse_prompt_weights


def test_plain_text_is_one_segment_of_weight_one() -> None:
    assert parse_prompt_weights("a photo of a cat") == [("a photo of a cat", 1.0)]


def test_empty_prompt_has_no_segments() -> None:
    assert parse_prompt_weights("") == []


def test_explicit_weight_removes_the_syntax() -> None:
    assert parse_prompt_weights("a (red:1.3) cat") == [("a ", 1.0), ("red", 1.3), (" cat", 1.0)]


@pytest.mark.parametrize(
    ("prompt", "weight"),
    [
        ("(cat)", 1.0 * 1.1),
        ("((cat))", 1.0 * 1.1 * 1.1),  # multiplied step by step, as the reference does (1.2100000000000002)
        ("(((cat)))", 1.0 * 1.1 * 1.1 * 1.1),
        ("(cat:1.5)", 1.5),
        ("((cat:0.5))", 0.5),  # an explicit value replaces the nesting factor
        ("(cat:2)", 2.0),
        ("(cat: 1.25)", 1.25),  # anything Python's float() accepts
    ],
)
def test_nesting_and_explicit_weights(prompt: str, weight: float) -> None:
    assert parse_prompt_weights(prompt) == [("cat", weight)]


def test_nested_groups_multiply_inside_an_explicit_weight() -> None:
    assert parse_prompt_weights("((a:2) b) c") == [("a", 2.0), (" b", 1.1), (" c", 1.0)]
    assert parse_prompt_weights("(a (b) c)") == [("a ", 1.1), ("b", 1.1 * 1.1), (" c", 1.1)]


def test_colon_without_a_number_is_text() -> None:
    assert parse_prompt_weights("(cat:big)") == [("cat:big", 1.1)]
    assert parse_prompt_weights("(:1.5)") == [(":1.5", 1.1)]  # a leading ":" is not a weight
    assert parse_prompt_weights("(a:b:0.7)") == [("a:b", 0.7)]  # the last ":" counts


def test_escaped_parentheses_are_literal_text() -> None:
    assert parse_prompt_weights(r"a \(cat\)") == [("a (cat)", 1.0)]
    assert parse_prompt_weights(r"(a \(b\):1.2)") == [("a (b)", 1.2)]


def test_unbalanced_parentheses_never_raise_and_keep_the_text() -> None:
    assert parse_prompt_weights("(a:1.5") == [("(a:1.5", 1.0)]
    assert parse_prompt_weights(")a(") == [(")a(", 1.0)]
    assert parse_prompt_weights("a) (b)") == [("a) (b)", 1.0)]  # level -1 swallows the later group


def test_parse_parentheses_splits_top_level_groups() -> None:
    assert parse_parentheses("x (a (b)) y (c)") == ["x ", "(a (b))", " y ", "(c)"]
    assert parse_parentheses("()") == ["()"]
    assert parse_prompt_weights("a () b") == [("a ", 1.0), (" b", 1.0)]
