"""What the gallery does to files and the desktop: clipboard, system trash (with undo), file manager."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QFile, QMimeData, QProcess, QStandardPaths, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage

from app.gallery.db import ImageRecord
from app.metadata.a1111 import infotext_of

log = logging.getLogger(__name__)


class TrashError(OSError):
    """The file could not be moved to the trash; the message says why."""


def copy_image(record: ImageRecord) -> bool:
    image = QImage(str(record.path))
    if image.isNull():
        return False
    mime = QMimeData()
    mime.setImageData(image)
    mime.setUrls([QUrl.fromLocalFile(str(record.path))])
    QGuiApplication.clipboard().setMimeData(mime)
    return True


def parameters_text(record: ImageRecord) -> str:
    """The A1111 infotext (what other tools paste): ours rebuilt from our JSON, imported ones as stored."""
    p = record.params
    if record.source == "sd35-studio" and p.steps is not None:
        return infotext_of(p)
    return p.prompt + (f"\nNegative prompt: {p.negative}" if p.negative else "")


def copy_parameters(record: ImageRecord) -> str:
    text = parameters_text(record)
    QGuiApplication.clipboard().setText(text)
    return text


def move_to_trash(path: Path) -> str:
    """Move a file to the system trash; returns where it went (for undo)."""
    if sys.platform.startswith("linux"):
        # Qt puts the trash in $XDG_DATA_HOME but will not create that folder itself.
        data_home = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
        if data_home:
            Path(data_home).mkdir(mode=0o700, parents=True, exist_ok=True)
    file = QFile(str(path))
    if not file.moveToTrash():  # on success the QFile's name is the file's new path in the trash
        raise TrashError(
            f"{path.name} could not be moved to the trash (no trash on this drive, or no permission)"
        )
    return file.fileName()


def restore_from_trash(trashed: str, original: Path) -> None:
    """Undo `move_to_trash`: move the file back and drop its freedesktop trash record where there is one."""
    if original.exists():
        raise TrashError(f"cannot restore {original.name}: a file with that name exists again")
    original.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(trashed, original)
    trash_file = Path(trashed)
    if trash_file.parent.name == "files":  # XDG trash: <trash>/files/<name> + <trash>/info/<name>.trashinfo
        (trash_file.parent.parent / "info" / f"{trash_file.name}.trashinfo").unlink(missing_ok=True)


def reveal_in_file_manager(path: Path) -> None:
    """Show the file selected in the file manager where the platform allows, else open its folder."""
    if sys.platform == "darwin":
        QProcess.startDetached("open", ["-R", str(path)])
    elif sys.platform == "win32":
        QProcess.startDetached("explorer", [f"/select,{path}"])
    elif shutil.which("dbus-send") and path.exists():
        uri = QUrl.fromLocalFile(str(path)).toString()
        args = [
            "--session",
            "--dest=org.freedesktop.FileManager1",
            "--type=method_call",
            "/org/freedesktop/FileManager1",
            "org.freedesktop.FileManager1.ShowItems",
            f"array:string:{uri}",
            "string:",
        ]
        started = QProcess.startDetached("dbus-send", args)
        if not (started[0] if isinstance(started, tuple) else started):
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent)))
    else:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent)))
