"""Persistence through QSettings: one INI file per user, namespaced keys, JSON for structured values.

Application metadata is set in `app.main` before the first QSettings use; tests point the INI folder at a
temporary directory (`QSettings.setPath`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

log = logging.getLogger(__name__)

ORGANIZATION = "SD3.5 Studio"
APPLICATION = "SD3.5 Studio"
DESKTOP_ID = "io.github.sd35studio.SD35Studio"
SCHEMA_VERSION = 1


def open_settings() -> QSettings:
    settings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)
    settings.setFallbacksEnabled(False)
    if settings.value("schema_version") is None:
        settings.setValue("schema_version", SCHEMA_VERSION)
    return settings


def load_json(settings: QSettings, key: str, default: object) -> object:
    raw = settings.value(key)
    if raw is None:
        return default
    try:
        return json.loads(str(raw))
    except ValueError:
        log.warning("setting %s is not valid JSON; using the default", key)
        return default


def save_json(settings: QSettings, key: str, value: object) -> None:
    settings.setValue(key, json.dumps(value, ensure_ascii=False))


def load_bool(settings: QSettings, key: str, default: bool) -> bool:
    raw = settings.value(key)
    if raw is None:
        return default
    return str(raw).lower() in ("1", "true", "yes")


def user_data_folder() -> Path:
    """The app's data folder (logs, edited presets); XDG_DATA_HOME and Qt's test mode are honoured."""
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(location) if location else Path.home() / ".local" / "share" / APPLICATION


def log_folder() -> Path:
    return user_data_folder() / "logs"


def user_style_presets_file() -> Path:
    return user_data_folder() / "style_presets.json"
