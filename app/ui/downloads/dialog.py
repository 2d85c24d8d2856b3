"""Download from Hugging Face…: choose a variant and T5 precision (and, for Large, the official ControlNets), see
the files, sizes and destination, download.

The plan is built offline (`build_plan`); nothing touches the network until the user presses Download. The
download runs on a Python worker thread (`download_worker`); its progress, result and errors come back to the UI
thread through queued signals, and Cancel only sets a `threading.Event`. What the widgets show is worked out in
`download_plan_view`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.downloads.catalog import CONTROLNET_TYPES, CONTROLNET_VARIANTS, TOKEN_SETTINGS_URL, VARIANT_SOURCES
from app.downloads.downloader import DownloadResult
from app.downloads.errors import AccessDeniedError, DownloadError
from app.downloads.hub import current_token
from app.downloads.layout import default_models_dir
from app.downloads.plan import DownloadPlan, build_plan
from app.downloads.progress import DownloadProgress, describe
from app.ui.downloads.plan_view import (
    CHOOSE_A_CONTROLNET,
    CONTROLNETS_ONLY_TEXT,
    CONTROLNETS_ONLY_TIP,
    PROGRESS_STEPS,
    RESUME_TEXT,
    T5_LABELS,
    FileRow,
    controlnet_choice_text,
    file_rows,
    licence_text,
    progress_position,
    ready_text,
    sentence,
    start_position,
    token_texts,
    total_text,
)
from app.ui.downloads.worker import DownloadSignals, start_download

log = logging.getLogger(__name__)

RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


class DownloadDialog(QDialog):
    model_downloaded = Signal(object)  # Path: the folder of a model set that passed the model library's check
    # tuple[Path, ...]: the ControlNet files now in place (for the window's ControlNet list to rescan)
    controlnets_downloaded = Signal(object)

    def __init__(self, parent: QWidget | None = None, variant: str = "medium") -> None:
        super().__init__(parent)
        self.setWindowTitle("Download from Hugging Face")
        self.setMinimumWidth(640)
        self._save_in = default_models_dir()
        self._plan: DownloadPlan | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._close_when_stopped = False
        self._signals = DownloadSignals(self)
        self._signals.progressed.connect(self._on_worker_progressed)
        self._signals.status_changed.connect(self._on_worker_status_changed)
        self._signals.succeeded.connect(self._on_worker_succeeded)
        self._signals.failed.connect(self._on_worker_failed)
        self._signals.cancelled.connect(self._on_worker_cancelled)
        self._build()
        self.set_variant(variant)

    # ------------------------------------------------------------------------------------------ layout

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        intro = QLabel(
            "Everything the studio needs for one model goes into one folder. A download that stops "
            "part-way is picked up where it left off next time.",
            self,
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)

        form = QFormLayout()
        self.variant_combo = QComboBox(self)
        for variant, source in VARIANT_SOURCES.items():
            self.variant_combo.addItem(source.label, variant)
        self.t5_combo = QComboBox(self)
        for t5, label in T5_LABELS.items():
            self.t5_combo.addItem(label, t5)
        form.addRow("Model:", self.variant_combo)
        form.addRow("T5 text encoder:", self.t5_combo)
        # The official ControlNets are optional extras of a Large set; with the set already here they come alone.
        self.controlnet_boxes: dict[str, QCheckBox] = {}
        self.controlnet_choices = QWidget(self)
        choices = QVBoxLayout(self.controlnet_choices)
        choices.setContentsMargins(0, 0, 0, 0)
        choices.setSpacing(2)
        for kind in CONTROLNET_TYPES:
            box = QCheckBox(controlnet_choice_text(kind), self.controlnet_choices)
            box.toggled.connect(lambda _on: self.refresh_plan())
            choices.addWidget(box)
            self.controlnet_boxes[kind] = box
        # For a Large set the user has elsewhere (the Hugging Face cache, ComfyUI): the ControlNets alone.
        self.controlnets_only_check = QCheckBox(CONTROLNETS_ONLY_TEXT, self.controlnet_choices)
        self.controlnets_only_check.setToolTip(CONTROLNETS_ONLY_TIP)
        self.controlnets_only_check.toggled.connect(lambda _on: self.refresh_plan())
        choices.addWidget(self.controlnets_only_check)
        form.addRow("ControlNets:", self.controlnet_choices)
        self._form = form
        layout.addLayout(form)

        self.files_tree = QTreeWidget(self)
        self.files_tree.setHeaderLabels(["What", "File", "Size", "On this computer"])
        self.files_tree.setMinimumHeight(130)
        self.files_tree.setMaximumHeight(210)  # nine rows; the tokenizers unfold into a scrolled list
        header = self.files_tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.files_tree, 1)
        self.total_label = QLabel(self)
        layout.addWidget(self.total_label)

        dest_row = QHBoxLayout()
        self.destination_label = QLabel(self)
        self.destination_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.destination_label.setWordWrap(True)
        self.change_button = QPushButton("Change…", self)
        dest_row.addWidget(self.destination_label, 1)
        dest_row.addWidget(self.change_button)
        layout.addLayout(dest_row)

        self.licence_label = QLabel(self)
        self.licence_label.setWordWrap(True)
        self.licence_label.setOpenExternalLinks(True)
        self.licence_label.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.licence_label)

        token_row = QHBoxLayout()
        self.token_edit = QLineEdit(self)
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setClearButtonEnabled(True)
        token_link = QLabel(f'<a href="{TOKEN_SETTINGS_URL}">Create a token…</a>', self)
        token_link.setOpenExternalLinks(True)
        token_row.addWidget(QLabel("Access token:", self))
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(token_link)
        layout.addLayout(token_row)
        self.token_hint = QLabel(self)
        self.token_hint.setObjectName("hintLabel")
        layout.addWidget(self.token_hint)

        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.hide()
        layout.addWidget(self.progress_bar)
        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label.hide()
        layout.addWidget(self.status_label)

        buttons = QHBoxLayout()
        self.licence_button = QPushButton("Open licence page", self)
        self.licence_button.hide()
        self.close_button = QPushButton("Close", self)
        self.download_button = QPushButton("Download", self)
        self.download_button.setDefault(True)
        buttons.addWidget(self.licence_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        buttons.addWidget(self.download_button)
        layout.addLayout(buttons)

        self.variant_combo.currentIndexChanged.connect(lambda _i: self.refresh_plan())
        self.t5_combo.currentIndexChanged.connect(lambda _i: self.refresh_plan())
        self.change_button.clicked.connect(self._on_change_button_clicked)
        self.download_button.clicked.connect(self._on_download_button_clicked)
        self.close_button.clicked.connect(self._on_close_button_clicked)
        self.licence_button.clicked.connect(self._on_licence_button_clicked)

    # ------------------------------------------------------------------------------------------ the plan

    def set_variant(self, variant: str) -> None:
        if self.is_running():
            return
        index = self.variant_combo.findData(variant)
        if index >= 0:
            self.variant_combo.setCurrentIndex(index)
        self.refresh_plan()

    def set_save_in(self, folder: Path) -> None:
        """The folder the model set's own folder is created in (the default: the studio's models folder)."""
        self._save_in = folder
        self.refresh_plan()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def chosen_controlnets(self) -> tuple[str, ...]:
        """The ticked ControlNets, for a variant they work with (none for Medium)."""
        if self.variant_combo.currentData() not in CONTROLNET_VARIANTS:
            return ()
        return tuple(kind for kind, box in self.controlnet_boxes.items() if box.isChecked())

    def controlnets_only(self) -> bool:
        return (
            self.variant_combo.currentData() in CONTROLNET_VARIANTS
            and self.controlnets_only_check.isChecked()
        )

    def refresh_plan(self) -> DownloadPlan | None:
        """Rebuild the plan from the choices and what is on disk (no network access); None when "only the
        ControlNets" is ticked without any ControlNet (nothing to download)."""
        variant, t5 = self.variant_combo.currentData(), self.t5_combo.currentData()
        source = VARIANT_SOURCES[variant]
        self._form.setRowVisible(self.controlnet_choices, variant in CONTROLNET_VARIANTS)
        controlnets, only = self.chosen_controlnets(), self.controlnets_only()
        self.t5_combo.setEnabled(not only and not self.is_running())
        self.files_tree.clear()
        dest = self._save_in / source.folder_name
        self._plan = plan = None if only and not controlnets else build_plan(
            variant, t5, dest, controlnets, model_set=not only
        )  # fmt: skip
        self.download_button.setEnabled(plan is not None and not self.is_running())
        self.destination_label.setText(f"Destination: {dest}")
        if plan is None:
            self.total_label.setText(CHOOSE_A_CONTROLNET)
        else:
            for row in file_rows(plan):
                _add_row(self.files_tree, row)
            self.total_label.setText(total_text(plan))
        self.licence_label.setText(licence_text(source, controlnets=bool(controlnets), model=not only))
        placeholder, hint = token_texts(stored=current_token() is not None)
        self.token_edit.setPlaceholderText(placeholder)
        self.token_hint.setText(hint)
        self.licence_button.setProperty("url", source.page_url)
        return plan

    # ------------------------------------------------------------------------------------------ running

    def _on_download_button_clicked(self) -> None:
        if self.is_running():
            return
        plan = self.refresh_plan()
        if plan is None:
            return
        self._cancel = threading.Event()
        self.progress_bar.setValue(start_position(plan))
        self._set_running(True)
        what = plan.source.label if plan.has_model_set else "the ControlNets"
        self._show_status(f"Starting the download of {what}…")
        self._thread = start_download(plan, self.token_edit.text().strip(), self._cancel, self._signals)

    def cancel(self) -> None:
        if self.is_running():
            self._cancel.set()
            self.close_button.setEnabled(False)
            self._show_status("Cancelling…")

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """For the window closing: cancel and wait briefly for the worker thread."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _set_running(self, running: bool) -> None:
        for widget in (
            self.variant_combo,
            self.t5_combo,
            self.controlnet_choices,
            self.change_button,
            self.token_edit,
            self.download_button,
        ):
            widget.setEnabled(not running)
        self.download_button.setEnabled(not running and self._plan is not None)
        self.t5_combo.setEnabled(not running and not self.controlnets_only())
        self.close_button.setText("Cancel" if running else "Close")
        self.close_button.setEnabled(True)
        self.progress_bar.setVisible(running or self.progress_bar.value() > 0)
        if running:
            self.licence_button.hide()

    def _finish(self) -> None:
        typed = self.token_edit.text().strip()
        if typed and typed == current_token():
            self.token_edit.clear()  # stored now: the field goes back to "a token is stored"
        if self._thread is not None:
            self._thread.join(1.0)  # it has emitted its last signal and is returning
            self._thread = None
        self._set_running(False)
        if self._close_when_stopped:
            self._close_when_stopped = False
            super().reject()

    def _show_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #ef6b6b;" if error else "")
        self.status_label.setText(text)
        self.status_label.show()

    def _on_worker_progressed(self, progress: DownloadProgress) -> None:
        position = progress_position(progress)
        if position is not None:
            self.progress_bar.setValue(position)
        if not self._cancel.is_set():
            self._show_status(describe(progress))

    def _on_worker_status_changed(self, text: str) -> None:
        self._show_status(text)

    def _on_worker_succeeded(self, result: DownloadResult) -> None:
        self.progress_bar.setValue(PROGRESS_STEPS)
        plan = result.plan
        label = plan.source.label if plan.has_model_set else ""
        self._show_status(ready_text(label, result.destination, plan.controlnets))
        self._finish()
        if plan.has_model_set:
            self.model_downloaded.emit(result.destination)
        if plan.controlnets:
            self.controlnets_downloaded.emit(
                tuple(result.destination / f.local_path for f in plan.files if f.remote.role == "controlnet")
            )
        self.accept()

    def _on_worker_failed(self, error: DownloadError) -> None:
        self._finish()
        self.refresh_plan()  # the files and the stored-token line as they are now
        self._show_status(sentence(str(error)), error=True)
        if isinstance(error, AccessDeniedError):
            self.licence_button.setProperty("url", error.page_url)
            self.licence_button.show()

    def _on_worker_cancelled(self) -> None:
        self._show_status(RESUME_TEXT)
        self._finish()
        self.refresh_plan()

    # ------------------------------------------------------------------------------------------ buttons

    def _on_change_button_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save models in", str(self._save_in))
        if folder:
            self.set_save_in(Path(folder))

    def _on_close_button_clicked(self) -> None:
        if self.is_running():
            self.cancel()
        else:
            self.reject()

    def _on_licence_button_clicked(self) -> None:
        QDesktopServices.openUrl(QUrl(str(self.licence_button.property("url"))))

    def reject(self) -> None:
        """Escape or the title bar's close: a running download is cancelled first, then the dialog closes."""
        if self.is_running():
            self._close_when_stopped = True
            self.cancel()
            return
        super().reject()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.is_running():
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self.is_running():
            self.refresh_plan()  # files may have arrived or gone since it was last open


def _add_row(parent: QTreeWidget | QTreeWidgetItem, row: FileRow) -> None:
    item = QTreeWidgetItem(parent, [row.what, row.file, row.size, row.on_disk])
    item.setTextAlignment(2, RIGHT)
    for child in row.children:
        _add_row(item, child)
