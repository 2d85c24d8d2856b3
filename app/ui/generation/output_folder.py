"""The output folder the user chose (File ▸ Choose Output Folder…, remembered) or `--output-dir` (fixed)."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings

from app.metadata.file_names import OutputTarget
from app.ui.gallery.paths import default_output_dir

log = logging.getLogger(__name__)


class OutputFolder:
    """`--output-dir` writes into that folder itself; the chosen root gets a dated subfolder per day."""

    def __init__(self, settings: QSettings, fixed: Path | None = None) -> None:
        self._settings = settings
        self.fixed = fixed

    def root(self) -> Path:
        if self.fixed is not None:
            return self.fixed
        return Path(str(self._settings.value("output/root") or default_output_dir()))

    def target(self) -> OutputTarget:
        return OutputTarget(self.root(), dated=self.fixed is None)

    def choose(self, folder: Path) -> None:
        """The user's choice wins over `--output-dir` from now on, and is remembered."""
        self._settings.setValue("output/root", str(folder))
        self.fixed = None
