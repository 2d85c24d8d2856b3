"""Settings ▸ Engines: the ComfyUI servers the window may run jobs on.

A list in priority order (the first enabled server is tried first; a tick enables a server), Add with an address,
a name and an optional token (stored by `EngineList` in the keyring or a 0600 file, never shown again), Remove,
Up/Down, Set token… / Clear token for the selected server (stored the same way; the window reopens the server's
session so the next job sends the new token), and Test connection. A test runs on the engines' executor thread,
never on the UI thread; its report comes back through a queued signal and reads like `sd35-studio engines test`
(app.remote.report)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.remote.engine_list import EngineList
from app.remote.report import ConnectionReport, check_server
from app.remote.tls import CLEAR_TOKEN_WARNING, token_in_clear
from app.ui.elided_label import ElidedLabel

log = logging.getLogger(__name__)

_TLS_TITLES = {  # TlsFailure.kind: what the title says instead of "is not reachable"
    "untrusted": "certificate not trusted",
    "wrong_name": "certificate not valid for this address",
    "no_tls": "does not speak TLS",
    "failed": "TLS connection failed",
}
URL_ROLE = Qt.ItemDataRole.UserRole


class _Relay(QObject):
    """Carries a finished test from the executor thread to the UI thread (a queued connection)."""

    report = Signal(str, object)  # url, ConnectionReport


def relay_report(relay: QObject, signal_name: str, url: str) -> Callable[[Future], None]:
    """A done-callback that emits the future's report on `relay` (dropped when the dialog is gone)."""

    def done(future: Future) -> None:
        if future.cancelled():
            return
        try:
            getattr(relay, signal_name).emit(url, future.result())
        except RuntimeError:  # the dialog (and its relay) was closed and deleted meanwhile
            log.debug("a connection test of %s ended after its dialog closed", url)

    return done


class EnginesDialog(QDialog):
    servers_changed = Signal()  # added, removed, reordered, enabled or disabled
    tested = Signal(str, object)  # url, ConnectionReport: the window's status bar learns from tests too
    connection_changed = Signal(str)  # url: its token or CA file was set or cleared (open sessions reconnect)

    def __init__(self, engines: EngineList, executor: Executor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("enginesDialog")
        self.setWindowTitle("Engines — ComfyUI servers")
        self.engines, self._executor = engines, executor
        self._testing: set[str] = set()
        self._reports: dict[str, ConnectionReport] = {}
        self._relay = _Relay(self)
        self._relay.report.connect(self._on_report)

        intro = QLabel(
            "Jobs run on this machine unless you choose a model set of a server in the model picker. "
            "Servers higher in the list are tried first.",
            self,
        )
        intro.setWordWrap(True)
        self.server_list = QListWidget(self)
        self.server_list.setObjectName("serverList")
        self.server_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.server_list.setMinimumHeight(110)
        self.up_button = QPushButton("Up", self)
        self.down_button = QPushButton("Down", self)
        self.remove_button = QPushButton("Remove", self)
        self.test_button = QPushButton("Test connection", self)
        self.test_button.setObjectName("testButton")
        self.set_token_button = QPushButton("Set token…", self)
        self.set_token_button.setToolTip("Give the selected server a new token (sent as a Bearer token)")
        self.clear_token_button = QPushButton("Clear token", self)
        self.clear_token_button.setToolTip("Forget the selected server's token")
        self.ca_button = QPushButton("CA file…", self)
        self.ca_button.setObjectName("caButton")
        self.ca_button.setToolTip(
            "Trust the selected https:// server through the PEM file of the certificate authority that signed its "
            "certificate (added to this computer's trusted certificates, for this server only)"
        )
        self.clear_ca_button = QPushButton("Clear CA file", self)
        self.clear_ca_button.setToolTip("Trust the selected server through this computer's certificates only")
        self.token_dialog: QInputDialog | None = None  # the open Set token… prompt
        side = QVBoxLayout()
        buttons_ = (self.test_button, self.up_button, self.down_button, self.remove_button,
                    self.set_token_button, self.clear_token_button, self.ca_button, self.clear_ca_button)  # fmt: skip
        for button in buttons_:
            side.addWidget(button)
        side.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(self.server_list, 1)
        top.addLayout(side)
        self.partial_check = QCheckBox(
            "Accept this server without CLIP-G (weaker prompts; the image says so)", self
        )
        self.partial_check.setObjectName("partialCheck")
        self.partial_check.setToolTip(
            "A server with CLIP-L but no CLIP-G file runs SD3.5 with CLIP-L alone; each image's ComfyUI graph "
            "records it. Off: such a server is refused."
        )

        self.url_edit = QLineEdit(self)
        self.url_edit.setObjectName("urlEdit")
        self.url_edit.setPlaceholderText("http://gpu-box:8188 or https://host:port")
        self.name_edit = QLineEdit(self)
        self.name_edit.setObjectName("nameEdit")
        self.name_edit.setPlaceholderText("optional, e.g. gpu-box")
        self.token_edit = QLineEdit(self)
        self.token_edit.setObjectName("tokenEdit")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("optional, for cloud machines (sent as a Bearer token)")
        self.add_button = QPushButton("Add", self)
        self.add_button.setObjectName("addButton")
        form = QFormLayout()
        form.addRow("Address", self.url_edit)
        form.addRow("Name", self.name_edit)
        form.addRow("Token", self.token_edit)
        add_row = QHBoxLayout()
        self.add_problem = ElidedLabel("", self)  # why an address was refused: one sentence
        self.add_problem.setObjectName("addProblem")
        add_row.addWidget(self.add_problem, 1)
        add_row.addWidget(self.add_button)
        form.addRow(add_row)

        self.report_title = ElidedLabel("Select a server and press Test connection.", self)
        self.report_title.setObjectName("reportTitle")
        self.token_warning = QLabel(
            "", self
        )  # a token sent over plain http to another machine: said, not blocked
        self.token_warning.setObjectName("tokenWarning")
        self.token_warning.setWordWrap(True)
        self.token_warning.setVisible(False)
        self.report_view = QPlainTextEdit(self)
        self.report_view.setObjectName("reportView")
        self.report_view.setReadOnly(True)
        self.report_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.report_view.setMinimumHeight(150)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(top)
        layout.addWidget(self.partial_check)
        layout.addLayout(form)
        layout.addWidget(self.report_title)
        layout.addWidget(self.token_warning)
        layout.addWidget(self.report_view, 1)
        layout.addWidget(buttons)
        self.resize(560, 560)

        self.add_button.clicked.connect(self.add_server)
        self.url_edit.returnPressed.connect(self.add_server)
        self.remove_button.clicked.connect(self.remove_selected)
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        self.test_button.clicked.connect(self.test_selected)
        self.set_token_button.clicked.connect(self.ask_token)
        self.ca_button.clicked.connect(self.choose_ca_file)
        self.clear_ca_button.clicked.connect(lambda: self._store_ca_file(self.selected_url(), ""))
        self.clear_token_button.clicked.connect(lambda: self._store_token(self.selected_url(), ""))
        self.server_list.currentItemChanged.connect(lambda *_: self._show_selected())
        self.server_list.itemChanged.connect(self._on_item_changed)
        self.partial_check.toggled.connect(self._on_partial_check_toggled)
        self._fill()

    # ------------------------------------------------------------------------------------------ list
    def selected_url(self) -> str | None:
        item = self.server_list.currentItem()
        return None if item is None else str(item.data(URL_ROLE))

    def _fill(self, select: str | None = None) -> None:
        self.server_list.blockSignals(True)
        self.server_list.clear()
        for entry in self.engines.entries:
            token = " · token" if self.engines.has_token(entry.url) else ""
            token += " · CA file" if entry.ca_file else ""
            text = f"{entry.label} — {entry.url}{token}" if entry.name else f"{entry.url}{token}"
            item = QListWidgetItem(text, self.server_list)
            item.setData(URL_ROLE, entry.url)
            item.setToolTip(f"{entry.url}\nCA file: {entry.ca_file}" if entry.ca_file else entry.url)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if entry.enabled else Qt.CheckState.Unchecked)
            if entry.url == select:
                self.server_list.setCurrentItem(item)
        if self.server_list.currentItem() is None and self.server_list.count():
            self.server_list.setCurrentRow(0)
        self.server_list.blockSignals(False)
        self._show_selected()

    def _update_buttons(self) -> None:
        row, count = self.server_list.currentRow(), self.server_list.count()
        url = self.selected_url()
        self.remove_button.setEnabled(row >= 0)
        self.up_button.setEnabled(row > 0)
        self.down_button.setEnabled(0 <= row < count - 1)
        self.test_button.setEnabled(url is not None and url not in self._testing)
        self.set_token_button.setEnabled(url is not None)
        self.ca_button.setEnabled(url is not None)
        self.clear_token_button.setEnabled(url is not None and self.engines.has_token(url))
        entry = None if url is None else self.engines.find(url)
        self.clear_ca_button.setEnabled(entry is not None and bool(entry.ca_file))
        self.partial_check.blockSignals(True)
        self.partial_check.setChecked(entry is not None and entry.partial_text_encoders)
        self.partial_check.blockSignals(False)
        self.partial_check.setEnabled(entry is not None)

    def _on_partial_check_toggled(self, checked: bool) -> None:
        url = self.selected_url()
        entry = None if url is None else self.engines.find(url)
        if entry is not None and entry.partial_text_encoders != checked:
            self.engines.update(entry.url, partial_text_encoders=checked)
            self.servers_changed.emit()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        enabled = item.checkState() == Qt.CheckState.Checked
        self.engines.update(str(item.data(URL_ROLE)), enabled=enabled)
        self.servers_changed.emit()

    def add_server(self) -> None:
        try:
            entry = self.engines.add(self.url_edit.text(), self.name_edit.text(), self.token_edit.text())
        except (ValueError, OSError) as exc:
            self.add_problem.setText(str(exc)[:1].upper() + str(exc)[1:])
            return
        self.add_problem.setText("")
        for edit in (self.url_edit, self.name_edit, self.token_edit):
            edit.clear()
        self._fill(select=entry.url)
        self.servers_changed.emit()

    def remove_selected(self) -> None:
        url = self.selected_url()
        if url is not None:
            self.engines.remove(url)
            self._reports.pop(url, None)
            self._fill()
            self.servers_changed.emit()

    def move_selected(self, delta: int) -> None:
        url = self.selected_url()
        if url is not None:
            self.engines.move(url, delta)
            self._fill(select=url)
            self.servers_changed.emit()

    # ------------------------------------------------------------------------------------------ token
    def ask_token(self) -> QInputDialog | None:
        """Set token…: a password field for the selected server's new token (never shown: the old one stays
        unread)."""
        url = self.selected_url()
        if url is None:
            return None
        prompt = QInputDialog(self)
        prompt.setObjectName("tokenPrompt")
        prompt.setWindowTitle("Set token")
        prompt.setLabelText(f"New token for {self.engines.label_for(url)} (sent as a Bearer token):")
        prompt.setTextEchoMode(QLineEdit.EchoMode.Password)
        prompt.textValueSelected.connect(lambda text, u=url: self._store_token(u, text))
        prompt.finished.connect(prompt.deleteLater)
        self.token_dialog = prompt
        prompt.open()
        return prompt

    def _store_token(self, url: str | None, token: str) -> None:
        if url is None:
            return
        try:
            self.engines.set_token(url, token)
        except (ValueError, OSError) as exc:  # a token that cannot travel in a header; a locked keyring
            self.add_problem.setText(str(exc)[:1].upper() + str(exc)[1:])
            return
        self.add_problem.setText("")
        self._reports.pop(url, None)
        self._fill(select=url)
        self.connection_changed.emit(url)

    # ------------------------------------------------------------------------------------------ CA file
    def choose_ca_file(self) -> None:
        """CA file…: the PEM file this server's certificate is trusted through (cancel keeps the old one)."""
        url = self.selected_url()
        if url is None:
            return
        entry = self.engines.find(url)
        path, _ = QFileDialog.getOpenFileName(
            self,
            f"CA file for {self.engines.label_for(url)}",
            entry.ca_file if entry is not None else "",
            "PEM certificates (*.pem *.crt *.cer);;All files (*)",
        )
        if path:
            self._store_ca_file(url, path)

    def _store_ca_file(self, url: str | None, path: str) -> None:
        if url is None:
            return
        try:
            self.engines.set_ca_file(url, path)
        except (ValueError, OSError) as exc:
            self.add_problem.setText(str(exc)[:1].upper() + str(exc)[1:])
            return
        self.add_problem.setText("")
        self._reports.pop(url, None)
        self._fill(select=url)
        self.servers_changed.emit()
        self.connection_changed.emit(url)  # a session already open on it still trusts the old CA set

    # ------------------------------------------------------------------------------------------ test
    def test_selected(self) -> None:
        """Start a connection test on the executor; the UI stays live and shows the report when it comes."""
        url = self.selected_url()
        if url is None or url in self._testing:
            return
        self._testing.add(url)
        self._reports.pop(url, None)
        future = self._executor.submit(check_server, url, self.engines.headers_for(url))
        future.add_done_callback(relay_report(self._relay, "report", url))
        self._show_selected()

    def _on_report(self, url: str, report: ConnectionReport) -> None:
        self._testing.discard(url)
        self._reports[url] = report
        self.tested.emit(url, report)
        self._show_selected()

    def _show_token_warning(self, url: str | None) -> None:
        """Shown while the selected server has a token that crosses the network unencrypted (one line, in the
        dialog; the token is still sent)."""
        clear = url is not None and self.engines.has_token(url) and token_in_clear(url)
        name = self.engines.label_for(url) if url is not None else ""
        self.token_warning.setText(f"⚠ {name}: {CLEAR_TOKEN_WARNING}" if clear else "")
        self.token_warning.setVisible(clear)

    def _show_selected(self) -> None:
        self._update_buttons()
        url = self.selected_url()
        self._show_token_warning(url)
        if url is None:
            self.report_title.setText("Add a ComfyUI server: its address, and a token if it needs one.")
            self.report_view.setPlainText("")
            return
        name = self.engines.label_for(url)
        report = self._reports.get(url)
        if url in self._testing:
            self.report_title.setText(f"Testing {name}…")
            self.report_view.setPlainText("")
        elif report is None:
            self.report_title.setText(f"{name}: press Test connection to see what it can run.")
            self.report_view.setPlainText("")
        elif report.reachable:
            info = report.info
            sd35 = len(info.sd35_checkpoints) if info else 0
            self.report_title.setText(
                f"✓ {name} is reachable — {sd35} SD3.5 checkpoint{'s' if sd35 != 1 else ''}"
            )
            self.report_view.setPlainText("\n".join(report.lines()))
        else:
            problem = _TLS_TITLES.get(report.tls_problem)
            self.report_title.setText(f"✗ {name}: {problem}" if problem else f"✗ {name} is not reachable")
            self.report_view.setPlainText("\n".join(report.lines()))
