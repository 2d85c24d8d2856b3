"""Gallery of 10,000 images: time to first paint, the largest UI stall while scrolling through it, and the
database (and thumbnail cache) bytes per image. Goals (issue 6): < 1 s to first paint, <= 50 ms stall.

The gallery is built once: 200 distinct PNGs carrying all four metadata chunks, hard-linked to 10,000 paths
(each path is its own image to the gallery: its own record and its own thumbnail), records inserted in
batches. Runs offscreen; the numbers include Qt's software painting.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def build(root: Path, count: int) -> tuple[Path, Path]:
    import numpy as np

    from app.gallery.db import GalleryDB
    from app.inference.api.request import GenerationRequest
    from app.metadata.image_file import write_image
    from app.metadata.params import ImageParams

    data, out = root / "data", root / "out"
    prompts = ["a red fox in fresh snow, golden hour, 35mm photo", "an old lighthouse on a cliff, stormy sky",
               "portrait of a cyberpunk samurai in neon rain, cinematic", "a cozy reading nook with a cat"]  # fmt: skip
    rng = np.random.default_rng(0)
    sources = []
    (out / "src").mkdir(parents=True)
    for i in range(200):
        request = GenerationRequest(prompt=prompts[i % 4], negative="blurry, lowres").resolved("large")
        p = ImageParams.from_request(request, 1000 + i, variant="large", model_name="sd3.5_large",
                                     model_hash="0123456789", app_version="0.1.0")  # fmt: skip
        pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8).repeat(48, 0).repeat(48, 1)  # 384 px
        path = out / "src" / f"{i:03d}.png"
        write_image(path, pixels, p)
        sources.append((path, p))
    db = GalleryDB.open(data)
    start = time.time() - count * 20
    rows = []
    for i in range(count):
        src, p = sources[i % len(sources)]
        path = out / f"{i // 500:02d}" / f"{i:05d}-{p.seed}.png"
        path.parent.mkdir(exist_ok=True)
        os.link(src, path)
        rows.append((path, p.with_seed(10_000 + i), start + i * 20, f"job{i // 6}", i % 6, "sd35-studio"))
    for n in range(0, count, 1000):
        db.add_images(rows[n : n + 1000])
    db._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return data, out


def _guard_none_refcount() -> None:
    """PySide6 6.12 on Python 3.11 drops a reference to None on void calls (QPainter.setPen, ...) and to True on
    `Signal.emit`; a long scroll would abort with "none_dealloc". The app's entry point needs the same guard
    (see tests/conftest.py)."""
    import ctypes
    import sys

    if sys.version_info < (3, 12):
        for singleton in (None, True, False):
            ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40


def measure(data: Path, out: Path) -> dict[str, float]:
    from PySide6.QtCore import QElapsedTimer, QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from app.metadata.file_names import OutputTarget
    from app.ui.gallery.panel import GalleryPanel

    _guard_none_refcount()
    app = QApplication.instance() or QApplication([])

    class PaintWatch(QObject):
        painted = False

        def eventFilter(self, obj: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                PaintWatch.painted = True
            return False

    clock = QElapsedTimer()
    clock.start()
    panel = GalleryPanel(data, OutputTarget(out))
    watch = PaintWatch()
    panel.view.viewport().installEventFilter(watch)
    panel.resize(1280, 860)
    panel.show()
    while not PaintWatch.painted:
        app.processEvents()
    app.processEvents()
    first_paint = clock.elapsed() / 1000
    images = panel.model.image_count

    def visible_thumbnails_loaded() -> bool:
        view, model = panel.view, panel.model
        for row in range(model.rowCount()):
            index = model.index(row)
            if not view.visualRect(index).intersects(view.viewport().rect()):
                if view.visualRect(index).top() > view.viewport().height():
                    break
                continue
            if model.image_id(row) is not None and model._pixmaps.get(model.image_id(row)) is None:
                return False
        return True

    while not visible_thumbnails_loaded() and clock.elapsed() < 60_000:
        app.processEvents()
        time.sleep(0.002)
    thumbnails_shown = clock.elapsed() / 1000

    # Scroll like a trackpad fling: 600 px every 16 ms through the whole list; record every gap between
    # timer ticks (a gap is what the user sees as a stall: painting, thumbnails arriving, records fetched).
    bar = panel.view.verticalScrollBar()
    gaps: list[float] = []
    tick = QElapsedTimer()
    tick.start()
    timer = QTimer(interval=16)

    def step() -> None:
        gaps.append(tick.restart())
        if bar.value() >= bar.maximum():
            timer.stop()
            return
        bar.setValue(bar.value() + 600)

    timer.timeout.connect(step)
    timer.start()
    while timer.isActive():
        app.processEvents()
        time.sleep(0.001)
    scroll_seconds = sum(gaps) / 1000
    gaps = gaps[1:]
    panel.shutdown()
    db_bytes = sum(p.stat().st_size for p in data.glob("gallery.sqlite3*"))
    thumbs = list((data / "thumbnails").rglob("*.jpg"))
    return {
        "images": images,
        "first_paint_s": round(first_paint, 3),
        "visible_thumbnails_s": round(thumbnails_shown, 3),
        "scroll_ticks": len(gaps),
        "scroll_s": round(scroll_seconds, 2),
        "largest_stall_ms": round(max(gaps) - 16, 1) if gaps else 0.0,
        "p99_tick_ms": round(sorted(gaps)[int(len(gaps) * 0.99)], 1) if gaps else 0.0,
        "db_bytes_per_image": round(db_bytes / max(1, images)),
        "thumbnails_made_while_scrolling": len(thumbs),
        "thumbnail_bytes_each": round(sum(p.stat().st_size for p in thumbs) / max(1, len(thumbs))),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=10_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sd35-gallery-bench-") as tmp:
        started = time.perf_counter()
        data, out = build(Path(tmp), args.images)
        built = time.perf_counter() - started
        result = measure(data, out)
        result["build_s"] = round(built, 1)
        result["reopen"] = measure(data, out)  # second start: thumbnails cached, database warm
    for key, value in result.items():
        print(f"   {key}: {value}")
    from bench.common import write_result

    write_result("gallery", result)
    return result


if __name__ == "__main__":
    main()
