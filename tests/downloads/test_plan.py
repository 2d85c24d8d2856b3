"""Plans, sizes, progress wording and checksums: plain Python, no network, no server."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.downloads.catalog import T5_CHOICES, model_set_files
from app.downloads.layout import PARTIAL_DIR, default_models_dir, partial_path
from app.downloads.plan import build_plan, default_destination
from app.downloads.progress import DownloadProgress, Phase, RateMeter, describe, format_bytes, format_duration


@pytest.mark.parametrize(
    ("variant", "checkpoint", "repo"),
    [
        ("large", "sd3.5_large.safetensors", "stabilityai/stable-diffusion-3.5-large"),
        ("large-turbo", "sd3.5_large_turbo.safetensors", "stabilityai/stable-diffusion-3.5-large-turbo"),
        ("medium", "sd3.5_medium.safetensors", "stabilityai/stable-diffusion-3.5-medium"),
    ],
)
def test_each_variant_lists_the_files_locate_model_set_reads_checkpoint_last(variant, checkpoint, repo):
    files = model_set_files(variant, "fp16")
    names = [f.local_path for f in files]
    assert names[-1] == checkpoint and files[-1].repo_id == repo
    for needed in (
        "text_encoders/clip_l.safetensors",
        "text_encoders/clip_g.safetensors",
        "tokenizer/vocab.json",
        "tokenizer_2/merges.txt",
        "tokenizer_3/spiece.model",
        "vae_approx/taesd3_decoder.safetensors",
    ):
        assert needed in names
    assert next(f for f in files if f.local_path.startswith("vae_approx")).repo_id == "madebyollin/taesd3"
    assert len(set(names)) == len(names)


def test_t5_choice_picks_one_file_and_changes_the_total():
    fp16 = build_plan("large", "fp16", "/nowhere")
    fp8 = build_plan("large", "fp8", "/nowhere")
    assert [f.local_path for f in fp8.files if "t5xxl" in f.local_path] == [
        "text_encoders/" + T5_CHOICES["fp8"]
    ]
    assert fp16.total_bytes - fp8.total_bytes == 9_790_000_000 - 4_890_000_000
    assert format_bytes(fp16.total_bytes) == "27.9 GB" and format_bytes(fp8.total_bytes) == "23.0 GB"
    assert not fp16.sizes_exact


def test_unknown_variant_or_t5_is_a_clear_error():
    with pytest.raises(ValueError, match="choose from large, large-turbo, medium"):
        build_plan("xl")
    with pytest.raises(ValueError, match="choose from fp16, fp8"):
        build_plan("medium", "int4")


def test_plan_sees_complete_and_partial_files_on_disk(tmp_path):
    (tmp_path / "text_encoders").mkdir()
    (tmp_path / "text_encoders" / "clip_l.safetensors").write_bytes(b"x" * 1000)
    partial = partial_path(tmp_path, "sd3.5_medium.safetensors", "ab" * 32)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"y" * 5000)

    plan = build_plan("medium", "fp16", tmp_path)
    by_name = {f.local_path: f for f in plan.files}
    clip_l = by_name["text_encoders/clip_l.safetensors"]
    assert clip_l.complete and clip_l.size == 1000 and clip_l.remaining == 0
    checkpoint = by_name["sd3.5_medium.safetensors"]
    assert not checkpoint.complete and checkpoint.present_bytes == 5000
    assert checkpoint.remaining == checkpoint.size - 5000
    assert plan.present_bytes == 6000
    assert plan.remaining_bytes == plan.total_bytes - 6000
    assert partial.parent.name == PARTIAL_DIR


def test_default_destination_is_per_variant_in_the_users_data_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_models_dir() == tmp_path / "sd35-studio" / "models"
    assert (
        default_destination("large-turbo")
        == tmp_path / "sd35-studio" / "models" / "stable-diffusion-3.5-large-turbo"
    )


def test_rate_meter_reports_speed_over_a_sliding_window_and_eta():
    now = [0.0]
    meter = RateMeter(window_s=4.0, clock=lambda: now[0])
    assert meter.speed() == 0 and meter.eta(100) is None
    for _ in range(10):  # 10 MB/s for 10 s
        now[0] += 1.0
        meter.add(10_000_000)
    assert meter.speed() == pytest.approx(10_000_000, rel=0.01)
    assert meter.eta(50_000_000) == pytest.approx(5.0, rel=0.01)
    for _ in range(6):  # then 1 MB/s: the window forgets the fast part within seconds
        now[0] += 1.0
        meter.add(1_000_000)
    assert meter.speed() == pytest.approx(1_000_000, rel=0.01)
    now[0] += 30.0  # a stall shows as a falling speed even with no new bytes
    assert meter.speed() < 200_000


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (246_000_000, "246 MB"),
        (1_390_000_000, "1.39 GB"),
        (16_500_000_000, "16.5 GB"),
    ],
)
def test_sizes_are_worded_like_the_hub(n, text):
    assert format_bytes(n) == text


def test_progress_line_has_file_bytes_speed_and_eta():
    p = DownloadProgress(Phase.DOWNLOADING, 3, 17, "text_encoders/t5xxl_fp16.safetensors", 10, 20,
                         2_000_000_000, 16_500_000_000, 50_000_000, 290.0)  # fmt: skip
    line = describe(p)
    assert line == "[3/17] text_encoders/t5xxl_fp16.safetensors  2.00 GB / 16.5 GB  50.0 MB/s  ETA 4m50s"
    assert format_duration(3 * 3600 + 125) == "3h02m" and format_duration(None) == "--"
    verifying = DownloadProgress(Phase.VERIFYING, 17, 17, "sd3.5_large.safetensors", 3_200_000_000,
                                 16_500_000_000, 16_500_000_000, 16_500_000_000, 0.0, None)  # fmt: skip
    assert describe(verifying) == "verifying sd3.5_large.safetensors  3.20 GB / 16.5 GB"


def test_checksums_follow_the_etag_kind(tmp_path):
    from app.downloads.errors import DownloadCancelled
    from app.downloads.transfer import expected_digest, file_digest

    data = b"hello world\n" * 1000
    path = tmp_path / "f"
    path.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert expected_digest(sha256.upper()) == ("sha256", sha256)
    assert expected_digest(git_sha1) == ("git-sha1", git_sha1)
    assert expected_digest("W/abc") is None
    assert file_digest(path, "sha256", None) == sha256
    assert file_digest(path, "git-sha1", None) == git_sha1
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(DownloadCancelled):
        file_digest(path, "sha256", cancel)


def test_downloads_package_imports_neither_qt_nor_torch():
    code = (
        "import sys, pkgutil, importlib, app.downloads as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'app.downloads.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted({'torch', 'PySide6'} & set(sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
