"""Where the gallery keeps things: its data folder (database, thumbnails) and the default output folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths

from app.metadata.file_names import APP_FOLDER


def default_data_dir() -> Path:
    """The app's data folder (honours XDG_DATA_HOME on Linux); set the application name before calling."""
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation))


def default_output_dir() -> Path:
    """`<Pictures>/SD3.5 Studio` (QStandardPaths, so XDG user dirs and the test mode are honoured)."""
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    return Path(pictures or Path.home()) / APP_FOLDER
