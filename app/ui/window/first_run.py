"""The first-run panel: shown instead of the canvas when no usable model set is found.

It explains the three variants (download size, memory, licence), where to get them, and validates a folder the
user picks, live, through an async validator (header reads run off the UI thread).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.ui.form.model_library import HF_REPOS, ModelSetInfo

log = logging.getLogger(__name__)

TEXT_ENCODERS_GB = 11.4  # CLIP-L 0.25 + CLIP-G 1.39 + T5-XXL fp16 9.8 (fp8 T5: 4.9)
VARIANT_CARDS = (
    (
        "large",
        "SD3.5 Large",
        "The best quality and prompt following. 8 billion parameters.",
        "about 16.5 GB, plus 11.4 GB of text encoders",
        "a GPU with 24 GB (about 18 GB with the text encoders offloaded); on the CPU, 32 GB of RAM and minutes "
        "per image",
    ),
    (
        "large-turbo",
        "SD3.5 Large Turbo",
        "Large distilled to 4 steps: drafts in seconds, a little less detail.",
        "about 16.5 GB, plus the same text encoders",
        "the same as Large",
    ),
    (
        "medium",
        "SD3.5 Medium",
        "2.5 billion parameters: faster and lighter, good from 0.25 to 2 megapixels.",
        "about 5.1 GB, plus the same text encoders",
        "a GPU with about 10 GB; on the CPU, 16 GB of RAM",
    ),
)
DEBOUNCE_MS = 300
CARD_ROW_MIN_WIDTH = 760  # three cards side by side need about this much; narrower, they stack
NOT_FOUND_TEXT = (
    "No Stable Diffusion 3.5 model was found on this computer. Choose a variant and download it from Hugging "
    "Face, or point the studio at a folder you already have."
)
MORE_TEXT = "Add another SD3.5 variant: download it from Hugging Face, or point the studio at its folder."


class FirstRunPanel(QScrollArea):
    model_chosen = Signal(object)  # ModelSetInfo, validated
    download_requested = Signal(str)  # variant
    back_requested = Signal()

    def __init__(
        self, validator: Callable[[Path], Awaitable[ModelSetInfo]], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("firstRunPanel")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self._validator = validator
        self._valid: ModelSetInfo | None = None
        self._task: asyncio.Task[None] | None = None
        body = QWidget(self)
        body.setObjectName("firstRunPanel")
        self.setWidget(body)
        outer = QVBoxLayout(body)
        outer.setContentsMargins(40, 32, 40, 32)
        outer.setSpacing(16)

        title = QLabel("Welcome to SD3.5 Studio", body)
        title.setObjectName("firstRunTitle")
        self.intro = intro = QLabel(NOT_FOUND_TEXT, body)
        intro.setWordWrap(True)
        title_row = QHBoxLayout()
        title_row.addWidget(title, 1)
        self.back_button = QPushButton("Back to the canvas", body)
        self.back_button.hide()
        self.back_button.clicked.connect(self.back_requested)
        title_row.addWidget(self.back_button)
        outer.addLayout(title_row)
        outer.addWidget(intro)

        # The cards sit side by side when there is room and stack when the docks leave a narrow centre.
        self._cards_layout = QGridLayout()
        self._cards_layout.setSpacing(12)
        self._cards: list[QFrame] = []
        self._card_columns = 0
        for variant, name, pitch, download, memory in VARIANT_CARDS:
            card = self._card(body, variant, name, pitch, download, memory)
            download_button = QPushButton(f"Download {name}…", card)
            download_button.clicked.connect(lambda _checked=False, v=variant: self.download_requested.emit(v))
            card.layout().addWidget(download_button)
            self._cards.append(card)
        self._arrange_cards(len(self._cards))
        outer.addLayout(self._cards_layout)

        licence = QLabel(
            "<b>Licence.</b> The models are gated: sign in to Hugging Face, open the model's page and accept the "
            "Stability AI Community License (free for individuals and organisations with less than US$1M annual "
            "revenue). <b>Download…</b> fetches everything a variant needs into one folder and picks up where it "
            "left off if it is interrupted; you will need a Hugging Face access token.",
            body,
        )
        licence.setWordWrap(True)
        licence.setTextFormat(Qt.TextFormat.RichText)
        outer.addWidget(licence)

        locate_row = QHBoxLayout()
        self.path_edit = QLineEdit(body)
        self.path_edit.setPlaceholderText("Folder of a downloaded model set, or its sd3.5_*.safetensors file")
        self.path_edit.setClearButtonEnabled(True)
        self.browse_button = QPushButton("Locate folder…", body)
        self.use_button = QPushButton("Use this model", body)
        self.use_button.setEnabled(False)
        locate_row.addWidget(self.path_edit, 1)
        locate_row.addWidget(self.browse_button)
        locate_row.addWidget(self.use_button)
        outer.addLayout(locate_row)
        self.status = QLabel("", body)
        self.status.setWordWrap(True)
        self.status.setObjectName("hintLabel")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.status)
        outer.addStretch(1)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._validate_now)
        self.path_edit.textChanged.connect(self._on_path_edit_text_changed)
        self.browse_button.clicked.connect(self._on_browse_button_clicked)
        self.use_button.clicked.connect(self._on_use_button_clicked)

    def _arrange_cards(self, columns: int) -> None:
        if columns == self._card_columns:
            return
        self._card_columns = columns
        for card in self._cards:
            self._cards_layout.removeWidget(card)
        for n, card in enumerate(self._cards):
            self._cards_layout.addWidget(card, n // columns, n % columns)
        for column in range(len(self._cards)):
            self._cards_layout.setColumnStretch(column, 1 if column < columns else 0)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._arrange_cards(len(self._cards) if self.viewport().width() >= CARD_ROW_MIN_WIDTH else 1)

    @staticmethod
    def _card(parent: QWidget, variant: str, name: str, pitch: str, download: str, memory: str) -> QFrame:
        card = QFrame(parent)
        card.setObjectName("variantCard")
        layout = QVBoxLayout(card)
        layout.setContentsMargins(14, 12, 14, 12)
        layout.setSpacing(6)
        heading = QLabel(name, card)
        heading.setObjectName("variantCardTitle")
        layout.addWidget(heading)
        url = f"https://huggingface.co/{HF_REPOS[variant]}"
        text = QLabel(
            f"{pitch}<br><br><b>Download:</b> {download}.<br><b>Memory:</b> {memory}.<br><br>"
            f'<a href="{url}">{HF_REPOS[variant]}</a>',
            card,
        )
        text.setWordWrap(True)
        text.setTextFormat(Qt.TextFormat.RichText)
        text.setOpenExternalLinks(True)
        text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(text, 1)
        return card

    # ------------------------------------------------------------------------------------------ validation

    def set_has_models(self, has_models: bool) -> None:
        self.back_button.setVisible(has_models)
        self.intro.setText(MORE_TEXT if has_models else NOT_FOUND_TEXT)

    def set_path(self, path: Path, message: str = "") -> None:
        self.path_edit.setText(str(path))
        if message:
            self.status.setText(message)

    def close_tasks(self) -> None:
        self._debounce.stop()
        if self._task is not None:
            self._task.cancel()

    def _on_path_edit_text_changed(self, _text: str) -> None:
        self._valid = None
        self.use_button.setEnabled(False)
        self.status.setText("Checking…" if self.path_edit.text().strip() else "")
        self._debounce.start()

    def _on_browse_button_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Locate an SD3.5 model folder", self.path_edit.text())
        if folder:
            self.path_edit.setText(folder)

    def _on_use_button_clicked(self) -> None:
        if self._valid is not None:
            self.model_chosen.emit(self._valid)

    def _validate_now(self) -> None:
        text = self.path_edit.text().strip()
        if not text:
            return
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.ensure_future(self._validate(Path(text)))

    async def _validate(self, path: Path) -> None:
        info = await self._validator(path)
        if self.path_edit.text().strip() != str(path):
            return  # the user typed on meanwhile
        if info.usable:
            self._valid = info
            problem = info.problem()
            self.status.setText(f"✓ Found {info.label}." + (f" {problem}" if problem else ""))
            self.use_button.setEnabled(True)
        else:
            self.status.setText(f"✗ {info.problem()}")
