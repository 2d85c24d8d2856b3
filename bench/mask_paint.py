"""Mask painting latency on a 2048² input: one stroke segment (the dabs of a mouse move, the tint brought up to
date where they changed, and the canvas frame that shows it) against the same canvas area drawn without a
mask, timed in turns in the same run (the canvas repaints only the area a segment changed). Goal: a segment
renders within 16 ms (one frame at 60 Hz).

Run with QT_QPA_PLATFORM=offscreen on a machine without a display.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

SIDE = 2048
VIEW = (1280, 900)  # the canvas widget's size: a 2048² picture fitted into it
SEGMENT_PX = 24  # the distance a pointer moves between two mouse events at a brisk stroke


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def widget_area(canvas, area):
    """The widget rectangle `canvas.update_image_area(area)` would repaint."""
    asked = []
    original = canvas.update
    canvas.update = lambda *rect: asked.append(rect[0] if rect else canvas.rect())
    try:
        canvas.update_image_area(area)
    finally:
        canvas.update = original
    return asked[-1]


def run(segments: int = 200, sizes: tuple[int, ...] = (32, 128, 512)) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QPointF, QRect, QRectF, QSize
    from PySide6.QtGui import QImage, QRegion
    from PySide6.QtWidgets import QApplication

    from app.ui.canvas.canvas import CanvasView
    from app.ui.canvas.mask_document import MaskDocument
    from app.ui.canvas.mask_overlay import MaskOverlay

    app = QApplication.instance() or QApplication([])
    picture = QImage(SIDE, SIDE, QImage.Format.Format_RGB32)
    picture.fill(0x406080)
    canvas = CanvasView()
    canvas.resize(*VIEW)
    canvas.set_image(picture)
    frame = QImage(canvas.size(), QImage.Format.Format_ARGB32_Premultiplied)

    def render(area: QRect | None = None) -> None:
        """The frame the screen would get (paintEvent into an image), of `area` only when given (what the
        canvas asks to repaint after a stroke segment)."""
        if area is None:
            canvas.render(frame)
        elif not area.isEmpty():
            canvas.render(frame, area.topLeft(), QRegion(area))

    render()
    results: dict[str, object] = {"side": SIDE, "view": list(VIEW), "segment_px": SEGMENT_PX}
    for size in sizes:
        document = MaskDocument(QSize(SIDE, SIDE))
        document.brush.size = size
        dirty: list[QRectF | None] = []
        overlay = MaskOverlay(document, dirty.append)
        x, y = 200.0, 200.0
        plain, painted, model_only, dabbed = [], [], [], []
        document.begin_stroke(QPointF(x, y))
        for i in range(segments):
            canvas.set_mask_overlay(None)
            x = 200 + (x - 200 + SEGMENT_PX) % (SIDE - 400)
            y = 200 + (i * 7) % (SIDE - 400)
            canvas.set_mask_overlay(overlay)
            dirty.clear()
            started = time.perf_counter()
            document.stroke_to(QPointF(x, y))
            overlay.tint()
            model_only.append((time.perf_counter() - started) * 1000)
            area = widget_area(canvas, dirty[-1]) if dirty else QRect()  # a big brush: no dab due yet
            dabbed.append(bool(dirty))
            started = time.perf_counter()
            render(area)
            painted.append(model_only[-1] + (time.perf_counter() - started) * 1000)
            canvas.set_mask_overlay(None)
            started = time.perf_counter()
            render(area)  # the same area without a mask: the baseline
            plain.append((time.perf_counter() - started) * 1000)
        document.end_stroke()
        with_dabs = [t for t, d in zip(painted, dabbed, strict=True) if d]
        results[f"brush_{size}"] = {
            "segment_median_ms": round(statistics.median(painted), 2),
            "segment_p95_ms": round(_percentile(painted, 0.95), 2),
            "dabs_and_tint_median_ms": round(statistics.median(model_only), 2),
            "same_area_without_mask_median_ms": round(statistics.median(plain), 2),
            "segments_with_dabs": len(with_dabs),
            "segment_with_dabs_median_ms": round(statistics.median(with_dabs), 2),
            "segment_with_dabs_max_ms": round(max(with_dabs), 2),
            "ratio_to_plain_frame": round(
                statistics.median(painted) / max(1e-6, statistics.median(plain)), 2
            ),
        }
    del app
    return results


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--segments", type=int, default=200)
    args = p.parse_args(argv)
    result = run(args.segments)
    for key, value in result.items():
        print(f"   {key}: {value}")
    from bench.common import write_result

    write_result("mask_paint", result)
    return result


if __name__ == "__main__":
    main()
