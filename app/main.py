"""The window's entry point: QApplication, logging, theme, the qasync event loop and the main window.

`sd35-studio [--model PATH] [--output-dir DIR]` lands here (app.cli.main). Nothing in this module imports torch: the
window paints first, and the engine is imported later on the inference thread.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ui.window.main_window import MainWindow

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"


def configure_logging(folder: Path | None, verbose: bool = False) -> Path | None:
    """A rotating log file in `folder` plus warnings on stderr; uncaught exceptions (any thread) go to the log.

    Returns the log file's path, or None when the folder cannot be written.
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("sd35-studio: %(levelname)s: %(message)s"))
    root.addHandler(console)
    path = None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "sd35-studio.log"
            file_handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
            )
            file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
            root.addHandler(file_handler)
        except OSError as exc:
            log.warning("cannot write logs to %s: %s", folder, exc)
            path = None

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        log.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not None and args.exc_value is not None:
            log.critical(
                "uncaught exception in thread %s",
                getattr(args.thread, "name", "?"),
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    return path


def run_app(
    model: Path | None = None,
    output_dir: Path | None = None,
    argv: list[str] | None = None,
    on_window: Callable[[MainWindow], None] | None = None,
) -> int:
    """Open the studio window and run until it closes; returns the process exit code.

    `on_window` is called with the window right after it is shown (benchmarks and the screenshot script).
    """
    import qasync  # after PySide6, so qasync binds to it
    from PySide6.QtWidgets import QApplication

    from app.ui.window.main_window import MainWindow
    from app.ui.window.settings_store import APPLICATION, DESKTOP_ID, ORGANIZATION, log_folder
    from app.ui.window.theme import apply_dark_theme

    QApplication.setOrganizationName(ORGANIZATION)
    QApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setDesktopFileName(DESKTOP_ID)
    log_file = configure_logging(log_folder(), verbose=bool(os.environ.get("SD35_STUDIO_DEBUG")))
    log.info("SD3.5 Studio starting; log file %s", log_file)
    apply_dark_theme(app)

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = MainWindow(model_path=model, output_dir=output_dir)
    window.show()
    if on_window is not None:
        on_window(window)
    with loop:
        code = loop.run_forever()
    if not window.closed_cleanly:
        # A step of a large model on a slow device outlived the bounded wait. Finished images are already on
        # disk (each is written as soon as it exists); never terminate a thread mid-computation: end the process.
        log.warning("exiting while the inference thread finishes its step")
        logging.shutdown()
        os._exit(int(code or 0))
    return int(code or 0)
