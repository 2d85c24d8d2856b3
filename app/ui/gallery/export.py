"""The export dialog: where a set of images goes (folder or .zip) and in which format, remembered between uses.

PNG originals are copied byte for byte, so every metadata chunk survives; JPEG and WebP copies are smaller and
carry the parameters in EXIF UserComment, where A1111, Civitai and our own import read them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.gallery.export import DEFAULT_QUALITY, FORMATS
from app.ui.window.settings_store import load_json, save_json

log = logging.getLogger(__name__)

SETTINGS_KEY = "gallery/export"
QUALITY_RANGE = (40, 100)  # below 40 the artefacts spoil any image worth sharing
FORMAT_LABELS = {
    "original": ("PNG originals", "Byte-identical copies: every metadata chunk kept"),
    "jpeg": ("JPEG", "Smaller; parameters in EXIF, as A1111 and Civitai read them"),
    "webp": ("WebP", "Smallest; parameters in EXIF, as A1111 and Civitai read them"),
}


@dataclass(frozen=True, slots=True)
class ExportChoice:
    fmt: str = "original"  # one of app.gallery.export.FORMATS
    quality: int = DEFAULT_QUALITY  # JPEG/WebP only, within QUALITY_RANGE
    as_zip: bool = False
    destination: str = ""  # a folder, or a .zip path when as_zip

    def target(self) -> Path:
        """The destination as the exporter wants it: a zip export always ends in .zip."""
        path = Path(self.destination).expanduser()
        return path.with_name(f"{path.name}.zip") if self.as_zip and path.suffix.lower() != ".zip" else path


def default_choice() -> ExportChoice:
    return ExportChoice(destination=str(Path.home() / "SD3.5 export"))


def load_export_choice(settings: QSettings) -> ExportChoice:
    """The choice made last time; anything missing or invalid falls back to the default."""
    data = load_json(settings, SETTINGS_KEY, {})
    choice = default_choice()
    if not isinstance(data, dict):
        return choice
    fmt = data.get("fmt") if data.get("fmt") in FORMATS else choice.fmt
    quality = data.get("quality")
    low, high = QUALITY_RANGE
    quality = min(high, max(low, quality)) if isinstance(quality, int) else choice.quality
    destination = data.get("destination") if isinstance(data.get("destination"), str) else ""
    return ExportChoice(fmt, quality, bool(data.get("as_zip")), destination or choice.destination)


def save_export_choice(settings: QSettings, choice: ExportChoice) -> None:
    save_json(settings, SETTINGS_KEY, asdict(choice))


class ExportDialog(QDialog):
    def __init__(self, count: int, initial: ExportChoice, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Export {count} image{'s' if count != 1 else ''}")
        self.setMinimumWidth(480)
        self._formats = QButtonGroup(self)
        format_box = QVBoxLayout()
        format_box.setSpacing(2)
        self.format_buttons: dict[str, QRadioButton] = {}
        for n, fmt in enumerate(FORMATS):
            title, detail = FORMAT_LABELS[fmt]
            button = QRadioButton(title)
            button.setToolTip(detail)
            note = QLabel(detail)
            note.setEnabled(False)  # the palette's muted text colour
            note.setWordWrap(True)
            note.setContentsMargins(22, 0, 0, 4)
            self._formats.addButton(button, n)
            self.format_buttons[fmt] = button
            format_box.addWidget(button)
            format_box.addWidget(note)
        self.quality_slider = QSlider(Qt.Orientation.Horizontal)
        self.quality = QSpinBox()
        for widget in (self.quality_slider, self.quality):
            widget.setRange(*QUALITY_RANGE)
        self.quality.setToolTip(
            "Higher keeps more detail and makes larger files; 90–95 is hard to tell apart"
        )
        self.quality_slider.valueChanged.connect(self.quality.setValue)
        self.quality.valueChanged.connect(self.quality_slider.setValue)
        quality_row = QHBoxLayout()
        quality_row.addWidget(self.quality_slider, 1)
        quality_row.addWidget(self.quality)
        self.folder_button = QRadioButton("Folder")
        self.zip_button = QRadioButton("Zip archive")
        self._kinds = QButtonGroup(self)
        self._kinds.addButton(self.folder_button)
        self._kinds.addButton(self.zip_button)
        kind_row = QHBoxLayout()
        kind_row.addWidget(self.folder_button)
        kind_row.addWidget(self.zip_button)
        kind_row.addStretch(1)
        self.destination = QLineEdit()
        self.destination.setMinimumWidth(280)
        self.browse_button = QPushButton("Browse…")
        destination_row = QHBoxLayout()
        destination_row.addWidget(self.destination, 1)
        destination_row.addWidget(self.browse_button)
        extras = QLabel("A labelled contact sheet and a manifest.json go with the images.")
        extras.setEnabled(False)
        extras.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        form = QFormLayout()
        form.addRow("Format", format_box)
        form.addRow("Quality", quality_row)
        form.addRow("Save as", kind_row)
        form.addRow("To", destination_row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(extras)
        layout.addWidget(self.buttons)
        self._set_choice(initial)
        self._formats.idToggled.connect(self._on_formats_id_toggled)
        self.destination.textChanged.connect(self._update_ok)
        self.browse_button.clicked.connect(self._on_browse_button_clicked)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self._on_formats_id_toggled()

    def _set_choice(self, choice: ExportChoice) -> None:
        self.format_buttons[choice.fmt].setChecked(True)
        self.quality.setValue(choice.quality)
        (self.zip_button if choice.as_zip else self.folder_button).setChecked(True)
        self.destination.setText(choice.destination)

    def choice(self) -> ExportChoice:
        fmt = next(f for f, b in self.format_buttons.items() if b.isChecked())
        return ExportChoice(
            fmt, self.quality.value(), self.zip_button.isChecked(), self.destination.text().strip()
        )

    def _on_formats_id_toggled(self, *_args: object) -> None:
        lossy = not self.format_buttons["original"].isChecked()
        self.quality.setEnabled(lossy)
        self.quality_slider.setEnabled(lossy)
        self._update_ok()

    def _update_ok(self) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(bool(self.destination.text().strip()))

    def _on_browse_button_clicked(self) -> None:
        choice = self.choice()
        if choice.as_zip:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export to a zip archive", str(choice.target()), "Zip archive (*.zip)"
            )
        else:
            path = QFileDialog.getExistingDirectory(
                self, "Export to a folder", str(Path(choice.destination).parent)
            )
        if path:
            self.destination.setText(str(replace(choice, destination=path).target()))
