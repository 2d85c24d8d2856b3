"""Step frames: recording (downscale, compression, even thinning, bounds), the animated WebP file, the gallery
table and its migration from schema 3, deletion with the record, and damaged files read as 'no frames'."""

from __future__ import annotations

import io
import itertools
import os
import sqlite3
import time

import numpy as np
import pytest
from PIL import Image

from app.gallery.db import DB_NAME, GalleryDB
from app.gallery.frame_recorder import FrameRecorder, JobFrameRecorder
from app.gallery.schema import MIGRATIONS, SCHEMA_VERSION, _split
from app.gallery.step_frames import (
    StepFrames,
    StepFramesError,
    _chunk,
    _vp8_of,
    decode_frame,
    pack_animation,
    unpack_animation,
)
from app.gallery.store import load_step_frames, remove_orphan_step_frames, save_step_frames
from tests.gallery.helpers import params


def preview(step: int, width: int = 512, height: int = 384) -> np.ndarray:
    """A preview that differs per step: a horizontal ramp plus a per-step level, with some texture."""
    rng = np.random.default_rng(step)
    ramp = np.linspace(0, 120, width)[None, :, None]
    pixels = ramp + (step * 37) % 100 + rng.normal(0, 6, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def record(steps: int, max_frames: int = 40, every: int = 1, **size) -> StepFrames:
    recorder = FrameRecorder(max_frames)
    for step in range(every, steps + 1, every):
        recorder.add(step, steps, preview(step, **size))
    frames = recorder.finish()
    assert frames is not None
    return frames


@pytest.fixture
def db(tmp_path):
    gallery = GalleryDB.open(tmp_path / "data")
    yield gallery
    gallery.close()


# -- recording -----------------------------------------------------------------------------------------------


def test_frames_are_downscaled_to_256_px_and_compressed():
    frames = record(6)
    assert frames.steps == (1, 2, 3, 4, 5, 6) and frames.total_steps == 6
    first = decode_frame(frames.frames[0])
    assert first.shape == (192, 256, 3)  # 512x384 -> long side 256, aspect kept
    assert all(f[:4] == b"RIFF" and f[8:12] == b"WEBP" for f in frames.frames)
    assert max(len(f) for f in frames.frames) < 256 * 192 * 3 / 10  # lossy WebP, not raw pixels
    # Lossy but faithful: the frame is the preview, scaled.
    expected = np.asarray(
        Image.fromarray(preview(1)).resize((256, 192), Image.Resampling.BILINEAR), np.float32
    )
    assert np.abs(first.astype(np.float32) - expected).mean() < 8


def test_small_previews_keep_their_size_and_odd_shapes_round():
    assert decode_frame(record(2, width=64, height=64).frames[0]).shape == (64, 64, 3)
    assert decode_frame(record(2, width=500, height=100).frames[0]).shape == (51, 256, 3)


def test_long_jobs_are_thinned_evenly_bounded_and_keep_the_last_preview():
    recorder = FrameRecorder(max_frames=8)
    for step in range(1, 101):
        recorder.add(step, 100, preview(step, 64, 48))
        assert recorder.frame_count <= 9  # bounded at every moment, not only at the end
    frames = recorder.finish()
    assert frames is not None
    assert frames.steps[-1] == 100  # the last preview always stays
    kept = frames.steps[:-1]
    gaps = {b - a for a, b in itertools.pairwise(kept)}
    assert len(gaps) == 1 and 4 <= len(kept) <= 8  # one stride: evenly spread over the job
    assert kept[0] == 1


def test_a_job_within_the_bound_keeps_every_preview_and_sparse_previews_keep_their_steps():
    assert record(28).steps == tuple(range(1, 29))
    assert record(28, every=4).steps == (4, 8, 12, 16, 20, 24, 28)


def test_the_job_recorder_keeps_images_apart_and_survives_a_bad_preview(caplog):
    job = JobFrameRecorder()
    for step in (1, 2, 3):  # a batch: the two images' steps interleave
        job.add(0, step, 3, preview(step, 64, 64))
        job.add(1, step, 3, preview(step + 10, 64, 64))
    job.add(2, 1, 3, np.zeros((8, 8), np.uint8))  # not (h, w, 3): that image records nothing
    job.add(2, 2, 3, preview(2, 64, 64))
    a, b = job.finish(0), job.finish(1)
    assert a is not None and b is not None and a.steps == b.steps == (1, 2, 3)
    assert a.frames != b.frames
    assert job.finish(2) is None and "not recorded" in caplog.text
    assert job.finish(0) is None  # finished images are let go
    job.add(3, 1, 3, preview(1, 64, 64))
    job.discard(3)  # a cancelled image
    assert job.finish(3) is None


# -- the file ------------------------------------------------------------------------------------------------


def test_the_file_is_an_animated_webp_holding_the_very_same_frames():
    frames = record(5)
    data = pack_animation(frames.frames)
    assert unpack_animation(data) == list(frames.frames)  # no re-encoding: exact bytes back
    with Image.open(io.BytesIO(data)) as animation:  # and any WebP reader plays it
        assert animation.is_animated and animation.n_frames == 5 and animation.size == (256, 192)
        for i, still in enumerate(frames.frames):
            animation.seek(i)
            assert np.array_equal(np.asarray(animation.convert("RGB")), decode_frame(still))
    assert len(data) < frames.nbytes + 40 * len(frames.frames)  # container overhead only


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[: len(d) // 2],  # truncated
        lambda d: b"GIF89a" + d[6:],  # not a WebP
        lambda d: d[:12] + b"VP8X" + (10).to_bytes(4, "little") + bytes(10),  # no frames
        lambda d: d.replace(b"\x9d\x01\x2a", b"\x00\x00\x00"),  # a frame's bitstream is not VP8
    ],
)
def test_damaged_files_raise_a_step_frames_error(damage):
    data = pack_animation(record(3, width=64, height=64).frames)
    with pytest.raises(StepFramesError):
        unpack_animation(damage(data))


def test_frames_of_different_sizes_do_not_pack():
    small, large = record(1, width=64, height=64).frames[0], record(1, width=128, height=64).frames[0]
    with pytest.raises(StepFramesError, match="share one size"):
        pack_animation([small, large])


# -- the gallery ---------------------------------------------------------------------------------------------


def test_round_trip_through_the_gallery(db, tmp_path):
    rec = db.add_image(tmp_path / "a.png", params())
    frames = record(28)
    size = save_step_frames(db, rec.id, frames)
    path = tmp_path / "data" / "step_frames" / f"{rec.id}.webp"
    assert path.is_file() and path.stat().st_size == size
    entry = db.step_frames(rec.id)
    assert (
        entry is not None and entry.path == path and entry.steps == frames.steps and entry.total_steps == 28
    )
    assert load_step_frames(db, rec.id) == frames
    other = db.add_image(tmp_path / "b.png", params())
    assert load_step_frames(db, other.id) is None  # an image without frames


def test_frames_of_an_image_deleted_meanwhile_are_not_kept(db, tmp_path):
    rec = db.add_image(tmp_path / "a.png", params())
    db.remove([rec.id])
    assert save_step_frames(db, rec.id, record(2, width=64, height=64)) == 0
    assert not any((tmp_path / "data" / "step_frames").iterdir())


def test_removing_a_record_removes_its_frames(db, tmp_path):
    a, b = (db.add_image(tmp_path / n, params()) for n in ("a.png", "b.png"))
    for rec in (a, b):
        save_step_frames(db, rec.id, record(3, width=64, height=64))
    folder = tmp_path / "data" / "step_frames"
    db.remove([a.id])
    assert sorted(p.name for p in folder.iterdir()) == [f"{b.id}.webp"]
    assert db.step_frames(a.id) is None and db.step_frames(b.id) is not None


def test_a_trashed_image_keeps_its_frames_until_the_purge_on_next_open(tmp_path):
    db = GalleryDB.open(tmp_path)
    rec = db.add_image(tmp_path / "a.png", params())
    save_step_frames(db, rec.id, record(3, width=64, height=64))
    sidecar = tmp_path / "step_frames" / f"{rec.id}.webp"
    db.mark_trashed(rec.id, "/trash/a.png")
    assert sidecar.is_file()  # undo is still possible
    db.close()
    db = GalleryDB.open(tmp_path)
    assert not sidecar.exists() and db.step_frames(rec.id) is None
    db.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda path, db, rid: path.unlink(),
        lambda path, db, rid: path.write_bytes(b"not a webp at all"),
        lambda path, db, rid: path.write_bytes(path.read_bytes()[:300]),
        lambda path, db, rid: db.set_step_frames(rid, path.name, [1, 2], 3),  # row and file disagree
        lambda path, db, rid: db._write("UPDATE step_frames SET steps = '{oops' WHERE image_id = ?", (rid,)),
    ],
)
def test_missing_or_damaged_frames_load_as_none(db, tmp_path, damage, caplog):
    rec = db.add_image(tmp_path / "a.png", params())
    save_step_frames(db, rec.id, record(3, width=64, height=64))
    damage(tmp_path / "data" / "step_frames" / f"{rec.id}.webp", db, rec.id)
    assert load_step_frames(db, rec.id) is None


def test_corrupt_pixels_inside_a_sound_container_load_as_none(db, tmp_path):
    rec = db.add_image(tmp_path / "a.png", params())
    frames = record(2, width=64, height=64)
    body = b"WEBP" + _chunk(b"VP8 ", _vp8_of(frames.frames[0])[:20])  # a well-formed file, a cut bitstream
    broken = b"RIFF" + len(body).to_bytes(4, "little") + body
    save_step_frames(db, rec.id, StepFrames(frames.steps, 2, (broken, frames.frames[1])))
    assert load_step_frames(db, rec.id) is None


def test_orphaned_files_of_a_crash_are_swept_but_fresh_ones_and_known_ones_stay(db, tmp_path):
    rec = db.add_image(tmp_path / "a.png", params())
    save_step_frames(db, rec.id, record(2, width=64, height=64))
    folder = tmp_path / "data" / "step_frames"
    old, fresh = folder / "999.webp", folder / "1000.webp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    os.utime(folder / f"{rec.id}.webp", (past, past))
    assert remove_orphan_step_frames(db) == 1
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{rec.id}.webp", "1000.webp"])


def _v3_database(folder):
    """A database exactly as schema 3 left it (the released migrations 1-3), with one image."""
    conn = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:3], 1):
        for statement in _split(script):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.execute(
        "INSERT INTO images (path, created, prompt, seed, params) VALUES (?,?,?,?,?)",
        ("/img/old.png", 10.0, "an old image", 5, params(prompt="an old image", seed=5).to_json()),
    )
    conn.close()


def test_migration_from_schema_3(tmp_path):
    _v3_database(tmp_path)
    db = GalleryDB.open(tmp_path)
    assert not db.read_only
    (old,) = db.get([1])
    assert old.params.prompt == "an old image"
    assert db.step_frames(old.id) is None  # images from before keep working, without frames
    frames = record(2, width=64, height=64)
    save_step_frames(db, old.id, frames)
    assert load_step_frames(db, old.id) == frames
    db.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert (
        conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
    )  # later schemas keep step_frames
    columns = [r[1] for r in conn.execute("PRAGMA table_info(step_frames)")]
    assert columns == ["image_id", "file", "steps", "total_steps"]
    conn.close()
