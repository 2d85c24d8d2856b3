"""What the download dialog shows for a plan, without a screen: rows, totals, token lines, progress positions."""

from __future__ import annotations

from app.downloads.catalog import VARIANT_SOURCES
from app.downloads.layout import partial_path
from app.downloads.plan import build_plan
from app.downloads.progress import DownloadProgress, Phase
from app.ui.downloads.plan_view import (
    ALREADY_HERE,
    NO_TOKEN_HINT,
    PROGRESS_STEPS,
    STORED_TOKEN_HINT,
    file_rows,
    licence_text,
    progress_position,
    sentence,
    start_position,
    token_texts,
    total_text,
)


def test_rows_put_the_model_first_and_fold_the_tokenizers(tmp_path):
    plan = build_plan("medium", "fp8", tmp_path)
    rows = file_rows(plan)
    assert [r.what for r in rows] == [
        "model",
        *["text encoder"] * 3,
        "preview decoder",
        "tokenizers",
    ]
    assert rows[0].file == "sd3.5_medium.safetensors" and rows[0].size.startswith("≈ ")
    group = rows[-1]
    tokenizers = [f.local_path for f in plan.files if f.remote.role == "tokenizer"]
    assert group.file == f"{len(tokenizers)} small files"
    assert sorted(c.file for c in group.children) == sorted(tokenizers)
    assert all(c.what == "" and not c.children for c in group.children)
    shown = [r.file for r in rows[:-1]] + [c.file for c in group.children]
    assert sorted(shown) == sorted(f.local_path for f in plan.files)


def test_files_on_disk_are_marked_and_counted_in_the_total(tmp_path):
    empty = build_plan("medium", "fp16", tmp_path)
    assert total_text(empty).startswith("Total: about ") and "already here" not in total_text(empty)
    assert start_position(empty) == 0

    (tmp_path / "text_encoders").mkdir()
    (tmp_path / "text_encoders" / "clip_l.safetensors").write_bytes(b"x" * 1000)
    partial = partial_path(tmp_path, "sd3.5_medium.safetensors", "ab" * 32)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"y" * 5000)
    plan = build_plan("medium", "fp16", tmp_path)
    by_file = {r.file: r for r in file_rows(plan)}
    assert by_file["text_encoders/clip_l.safetensors"].on_disk == ALREADY_HERE
    assert by_file["text_encoders/clip_l.safetensors"].size == "1.00 kB"  # the real size, no "≈"
    assert by_file["sd3.5_medium.safetensors"].on_disk == "5.00 kB so far"
    assert "6.00 kB already here" in total_text(plan)
    assert 0 <= start_position(plan) < PROGRESS_STEPS


def test_the_tokenizer_group_is_already_here_only_when_all_its_files_are(tmp_path):
    plan = build_plan("medium", "fp16", tmp_path)
    tokenizers = [f.local_path for f in plan.files if f.remote.role == "tokenizer"]
    for name in tokenizers[:-1]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"t")
    assert file_rows(build_plan("medium", "fp16", tmp_path))[-1].on_disk == ""
    (tmp_path / tokenizers[-1]).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / tokenizers[-1]).write_bytes(b"t")
    group = file_rows(build_plan("medium", "fp16", tmp_path))[-1]
    assert group.on_disk == ALREADY_HERE and group.size == f"{len(tokenizers)} B"


def test_token_licence_progress_and_error_wording():
    assert token_texts(stored=True) == ("a token is stored", STORED_TOKEN_HINT)
    assert token_texts(stored=False) == ("hf_…", NO_TOKEN_HINT)
    source = VARIANT_SOURCES["large"]
    assert source.label in licence_text(source) and f'href="{source.page_url}"' in licence_text(source)

    unknown = _progress(done=0, total=0)
    half = _progress(done=50, total=100)
    assert progress_position(unknown) is None and progress_position(half) == PROGRESS_STEPS // 2

    assert sentence("cannot reach Hugging Face") == "Cannot reach Hugging Face."
    assert sentence("  Stopped!  ") == "Stopped!"
    assert sentence("") == "The download failed."


def _progress(done: int, total: int) -> DownloadProgress:
    return DownloadProgress(Phase.DOWNLOADING, 1, 1, "x", done, total, done, total, 0.0, None)
