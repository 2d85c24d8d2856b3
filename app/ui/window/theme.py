"""The dark Fusion theme, the stylesheet and icons, loaded from `app/resources` through importlib.resources."""

from __future__ import annotations

import logging
from functools import cache
from importlib import resources
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

ACCENT = QColor("#5b8def")
WARM = QColor("#f0b45a")
COOL = QColor("#7fb3e8")
ERROR = QColor("#ef6b6b")


def dark_palette() -> QPalette:
    p = QPalette()
    window, base, text = QColor("#202124"), QColor("#18191b"), QColor("#e3e4e8")
    disabled_text = QColor("#74777f")
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, QColor("#25262a"))
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor("#2b2d31"))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor("#6f727a"))
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor("#2c2e33"))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.BrightText, QColor("#ff6b6b"))
    p.setColor(QPalette.ColorRole.Link, ACCENT)
    p.setColor(QPalette.ColorRole.Highlight, QColor("#3d6fd1"))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    p.setColor(QPalette.ColorRole.Light, QColor("#3a3c42"))
    p.setColor(QPalette.ColorRole.Midlight, QColor("#33353a"))
    p.setColor(QPalette.ColorRole.Mid, QColor("#2a2c30"))
    p.setColor(QPalette.ColorRole.Dark, QColor("#151618"))
    p.setColor(QPalette.ColorRole.Shadow, QColor("#0b0b0c"))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled_text)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Button, QColor("#26272b"))
    return p


def load_stylesheet(name: str = "dark.qss") -> str:
    """The stylesheet, with `@ICONS@` replaced by the icons folder (stylesheet images need a file path)."""
    try:
        package = resources.files("app.resources")
        text = package.joinpath("styles", name).read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError) as exc:
        log.error("stylesheet %s not found (%s); using the plain palette", name, exc)
        return ""
    return text.replace("@ICONS@", Path(str(package.joinpath("icons"))).as_posix())


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    app.setStyleSheet(load_stylesheet())


@cache
def icon(name: str) -> QIcon:
    """An icon from `app/resources/icons/<name>.svg`; an empty icon (logged) when missing."""
    try:
        data = resources.files("app.resources").joinpath("icons", f"{name}.svg").read_bytes()
    except (OSError, ModuleNotFoundError):
        log.error("icon %s.svg not found", name)
        return QIcon()
    from PySide6.QtSvg import QSvgRenderer  # rendered directly: no image-format plugin involved

    renderer = QSvgRenderer(QByteArray(data))
    if not renderer.isValid():
        log.error("icon %s.svg is not a valid SVG", name)
        return QIcon()
    result = QIcon()
    for side in (16, 32, 64):  # sharp on normal and high-DPI screens
        image = QImage(side, side, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        result.addPixmap(QPixmap.fromImage(image))
    return result
