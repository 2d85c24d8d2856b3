"""Screenshots of the studio window for the docs, made offscreen with tiny random-weight model sets.

    python scripts/screenshots.py [--out screenshots] [--size 256] [--steps 10]

Writes: 1-empty.png (a model found, nothing typed), 2-prompt.png (prompt with weights, style, token counts),
3-running.png (live preview mid-job, a second job queued), 4-finished.png (final image, recent strip),
5-turbo.png (Large Turbo: CFG 1, negative prompt inactive; Advanced open), 6-first-run.png (no model found),
7-error.png (a job that failed, with its message). The images are noise: the tiny models have random
weights; layout, wording and states are what these pictures are for. Settings and data go to a temporary
folder, never the user's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("screenshots")


async def _wait(predicate, timeout: float = 300.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("the window did not reach the expected state")
        await asyncio.sleep(0.05)


async def _take(window, out: Path, name: str) -> None:
    await asyncio.sleep(0.3)  # let debounced counters and repaints settle
    path = out / f"{name}.png"
    window.grab().save(str(path))
    log.info("wrote %s", path)


async def _shoot(args: argparse.Namespace, models: Path, out: Path) -> None:
    from app.ui.window.main_window import MainWindow
    from app.ui.window.settings_store import open_settings

    medium, turbo = models / "sd3.5-medium-tiny", models / "sd3.5-large-turbo-tiny"
    window = MainWindow(model_path=medium, output_dir=out / "images", search_default_locations=False)
    window.remember_path(turbo)
    window.resize(1440, 900)
    window.show()
    await _wait(lambda: window.picker.discovered and "detecting" not in window.device_label.text())
    await _take(window, out, "1-empty")

    window.panel.prompt.set_text(
        "a lighthouse on a cliff at dawn, (dramatic clouds:1.3), ((crashing waves)), (fog:0.8), oil painting"
    )
    window.panel.negative.set_text("blurry, low quality, watermark")
    window.state.update(
        style="cinematic", width=args.size, height=args.size, steps=args.steps, count=2, preview="linear"
    )
    try:
        await _wait(lambda: "CLIP" in window.panel.prompt.counter.text(), timeout=60)
    except TimeoutError:
        log.error("counter: %r %r", window.panel.prompt.counter.text(), window.panel.prompt.counter.toolTip())
        raise
    await _take(window, out, "2-prompt")

    steps_seen: list[int] = []
    window.controller.step_completed.connect(lambda info: steps_seen.append(info.step))
    window.commands.generate.generate()
    window.state.update(style="watercolour")
    window.commands.generate.generate()  # a second job waits in the queue
    await _wait(lambda: len(steps_seen) >= max(2, args.steps // 2))
    await _take(window, out, "3-running")
    window.controller.remove_pending(window.controller.pending()[0].job_id)
    await _wait(lambda: not window.controller.is_busy)
    await _take(window, out, "4-finished")

    index = next(
        i
        for i in range(window.panel.model_combo.count())
        if window.panel.model_combo.itemData(i) == str(turbo)
    )
    window.panel.model_combo.setCurrentIndex(index)
    window.panel.advanced.set_expanded(True)
    await asyncio.sleep(0.2)
    window.settings_scroll.ensureWidgetVisible(window.panel.advanced.precision_combo)
    await _take(window, out, "5-turbo")

    # What a failed job looks like (the message is the engine's own out-of-memory advice).
    from app.ui.generation.jobs import JobOutcome, JobStatus

    job = window.commands.generate.generate()
    await _wait(lambda: not window.controller.is_busy)
    advice = (
        "out of memory: lower the image size or the number of images, run without T5, "
        "or choose a lower precision (bfloat16) or a memory-saving plan"
    )
    window.controller.job_ended.emit(
        job, JobOutcome(job.job_id, JobStatus.FAILED, message=advice, kind="memory")
    )
    await _take(window, out, "7-error")
    window.close()

    open_settings().clear()  # a first start: no remembered model, no saved values
    empty = MainWindow(output_dir=out / "images", search_default_locations=False)
    empty.resize(1440, 900)
    empty.show()
    await _wait(lambda: empty.picker.discovered)
    await _take(empty, out, "6-first-run")
    empty.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="folder for the PNGs")
    parser.add_argument("--size", type=int, default=256, help="image side (the tiny sets allow up to 512)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="sd35-screenshots-") as tmp:
        home = Path(tmp)
        os.environ["XDG_DATA_HOME"] = str(home / "data")
        os.environ["HF_HUB_CACHE"] = str(home / "hf")
        import qasync
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        from app.ui.window.settings_store import APPLICATION, ORGANIZATION
        from app.ui.window.theme import apply_dark_theme
        from tests.factory.snapshot import write_snapshot

        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home / "config"))
        QApplication.setOrganizationName(ORGANIZATION)
        QApplication.setApplicationName(APPLICATION)
        app = QApplication([])
        app.setQuitOnLastWindowClosed(False)
        apply_dark_theme(app)
        models = home / "models"
        write_snapshot(models / "sd3.5-medium-tiny", "medium")
        write_snapshot(models / "sd3.5-large-turbo-tiny", "large-turbo")
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            loop.run_until_complete(_shoot(args, models, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
