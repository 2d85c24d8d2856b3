"""ComfyUI servers as the window's engine: Settings ▸ Engines, the servers' model sets in the model picker, what
a chosen server cannot run, and the engine in the status bar.

Every network call runs on a daemon thread ("sd35-io-engines", app.ui.window.engine_watch), never on the UI
thread, and a quit never waits for one; results come back through a queued signal. While idle, the chosen set's
servers get a cheap `/system_stats` heartbeat every 30 s, so one that went away shows offline without a job, and
every 150 s each online server's lists are read again, so a model file copied onto it appears in the picker. A
server that does not answer is checked again with a back-off (2 s doubling to 60 s), and the status bar says so
("gpu-box · offline — retrying"). The model sets a server listed stay in the picker
while it is away (a job then fails with the connection's sentence and the window keeps checking).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QSizePolicy, QWidget

from app.inference.api.errors import FailureKind
from app.remote.capabilities import ServerInfo
from app.remote.engine_list import EngineList
from app.remote.report import ConnectionReport, check_server
from app.ui.elided_label import ElidedLabel
from app.ui.engines.dialog import EnginesDialog, relay_report
from app.ui.form.form_state import GenerationFormState
from app.ui.form.generation_panel import GenerationPanel
from app.ui.form.model_library import ModelSetInfo
from app.ui.form.model_picker import ModelPickerController
from app.ui.generation.controller import GenerationController
from app.ui.generation.jobs import JobOutcome, QueuedJob, StepInfo
from app.ui.notify import Notifier
from app.ui.window import engine_watch
from app.ui.window.engine_sets import not_sent, remembered_offline, remote_model_sets, unavailable_options

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 2.0, 60.0  # seconds between checks of a server that does not answer
THIS_MACHINE = "This machine"


class EngineHookup(QObject):
    checked = Signal(str, object)  # url, ConnectionReport (emitted on an executor thread: queued)
    pinged = Signal(str, str)  # url, why it did not answer the heartbeat ("" when it did)
    servers_listed = Signal()  # the picker's remote entries were (re)listed

    def __init__(
        self,
        window: QMainWindow,
        picker: ModelPickerController,
        state: GenerationFormState,
        panel: GenerationPanel,
        controller: GenerationController,
        notifier: Notifier,
        engines: EngineList | None = None,
    ) -> None:
        super().__init__(window)
        self._window, self._picker, self._state, self._panel = window, picker, state, panel
        self._notifier, self._controller = notifier, controller
        self.engines = engines if engines is not None else EngineList()
        self.executor = engine_watch.DaemonRunner("sd35-io-engines")
        self.infos: dict[str, ServerInfo] = {}  # the last answer of each server (kept while it is away)
        self.reports: dict[str, ConnectionReport] = {}  # the latest check of each server
        self._checking: set[str] = set()
        self._retry: dict[str, QTimer] = {}
        self._backoff: dict[str, float] = {}
        self._closed = False
        self._dialog: EnginesDialog | None = None
        self._tips: dict[QWidget, str] = {}
        v = state.values
        self._wanted = (
            (v.engine, v.remote_model) if v.engine and v.remote_model else None
        )  # restore once listed
        self._remembered = self._wanted  # listed as offline until its servers answer
        self._job_previews: dict[int, list[int]] = {}  # remote job id -> [steps, previews]
        self._told_no_previews: set[tuple[str, ...]] = set()

        self.label = ElidedLabel(f"Engine: {THIS_MACHINE}")
        self.label.setObjectName("engineLabel")
        self.label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.label.setMinimumWidth(190)  # room for "name · offline"; elides before it crowds the others out
        self.label.setMaximumWidth(320)
        self.label.setContentsMargins(8, 0, 8, 0)
        window.statusBar().insertPermanentWidget(0, self.label)
        self.action = QAction("E&ngines (ComfyUI Servers)…", window)
        self.action.setStatusTip("Run jobs on ComfyUI servers: add, order and test them")
        self.action.triggered.connect(lambda _checked=False: self.open_dialog())
        window.addAction(self.action)
        edit = next((a.menu() for a in window.menuBar().actions() if a.text() == "&Edit"), None)
        if edit is not None:
            edit.addAction(self.action)

        self._local_device = ""  # the device label's text for this machine, while a server's set is chosen
        self._device_label = getattr(window, "device_label", None)
        controller.device_described.connect(self._on_device_described)
        self.checked.connect(self._on_checked)
        self.pinged.connect(self._on_pinged)
        self._heartbeat = QTimer(self)
        self._heartbeat.setInterval(int(engine_watch.HEARTBEAT_S * 1000))
        self._heartbeat.timeout.connect(self._beat)
        self._heartbeat.start()
        self._relist_timer = QTimer(self)  # files copied onto a server while idle join the picker
        self._relist_timer.setInterval(int(engine_watch.RELIST_S * 1000))
        self._relist_timer.timeout.connect(self._reread)
        self._relist_timer.start()
        picker.selection_changed.connect(self._on_picker_selection_changed)
        panel.model_combo.activated.connect(self._on_user_picked)  # the user's own choice, not a restore
        controller.job_started.connect(self._on_job_started)
        controller.step_completed.connect(self._on_step)
        controller.job_ended.connect(self._on_job_ended)
        QTimer.singleShot(0, self.refresh)

    # ------------------------------------------------------------------------------------------ checks
    def refresh(self) -> None:
        """Check every enabled server (off the UI thread) and re-list the picker's remote entries."""
        if self._closed:
            return
        enabled = {e.url for e in self.engines.enabled()}
        for url in list(self._retry):
            if url not in enabled:
                self._retry.pop(url).stop()
        for url in enabled:
            self.check(url)
        self._relist()

    def check(self, url: str) -> None:
        if self._closed or url in self._checking:
            return
        self._checking.add(url)
        future = self.executor.submit(check_server, url, self.engines.headers_for(url))
        future.add_done_callback(relay_report(self, "checked", url))
        self._update_label()

    def _on_checked(self, url: str, report: ConnectionReport) -> None:
        self._checking.discard(url)
        if self._closed:
            return
        before = self.reports.get(url)
        lists_before = self._lists()
        self.reports[url] = report
        if report.info is not None:
            self.infos[url] = report.info
            self._backoff.pop(url, None)
            if url in self._retry:
                self._retry.pop(url).stop()
        elif self.engines.find(url) is not None and self.engines.find(url).enabled:  # type: ignore[union-attr]
            delay = self._backoff.get(url, RETRY_FIRST)
            self._backoff[url] = min(delay * 2, RETRY_MAX)
            timer = self._retry.get(url)
            if timer is None:
                timer = self._retry[url] = QTimer(self)
                timer.setSingleShot(True)
                timer.timeout.connect(lambda u=url: self.check(u))
            timer.start(int(delay * 1000))
            log.info("%s is offline (%s); checking again in %.0f s", url, report.error, delay)
        online_still = before is not None and before.reachable and report.info is not None
        if not online_still or self._lists() != lists_before:
            self._relist()  # a re-read that lists the same sets leaves the picker (and the user's choice) alone
        self._update_label()

    def _lists(self) -> tuple[list[ModelSetInfo], dict[str, str]]:
        """What the servers' lists decide: the picker's server sets and what the chosen set cannot run."""
        chosen = self._picker.selected
        remote = chosen is not None and chosen.is_remote
        reasons = unavailable_options(chosen, self.infos, self.engines.label_for) if remote else {}  # type: ignore[arg-type]
        return remote_model_sets(self.engines, self.infos), reasons

    def _reread(self) -> None:
        """Re-read the lists of every online server no job is using (those offline are being retried anyway)."""
        job = self._controller.current_job
        busy = set(job.options.engine or ()) if job is not None else set()
        for entry in self.engines.enabled():
            report = self.reports.get(entry.url)
            if report is not None and report.reachable and entry.url not in busy:
                self.check(entry.url)

    def _beat(self) -> None:
        """The heartbeat: ping the chosen set's servers that are thought online (the others are being retried)."""
        info = self._picker.selected
        if self._closed or info is None or not info.is_remote or self._controller.current_job is not None:
            return  # a running job notices a lost server itself (and a busy server may answer slowly)
        for url in info.engine:
            report = self.reports.get(url)
            if url in self._checking or report is None or not report.reachable:
                continue
            self._checking.add(url)
            future = self.executor.submit(engine_watch.ping, url, self.engines.headers_for(url))
            future.add_done_callback(relay_report(self, "pinged", url))

    def _on_pinged(self, url: str, error: str) -> None:
        self._checking.discard(url)
        if error and not self._closed:  # it went away while idle: say so and retry with the back-off
            self._on_checked(url, ConnectionReport(url, None, 0.0, error))

    # ------------------------------------------------------------------------------------------ picker
    def _relist(self) -> None:
        sets = remote_model_sets(self.engines, self.infos)
        sets += self._remembered_offline(sets)
        prefer = None
        if self._wanted is not None:
            engine, checkpoint = self._wanted
            first = engine.split(",")[0]
            match = next((s for s in sets if s.path.as_posix() == checkpoint and first in s.engine), None)
            if match is not None:
                prefer = match.key
                if self._picker.discovered:  # chosen now (else once this machine's sets are listed)
                    self._wanted = None
        self._picker.set_remote(sets, prefer)
        self.servers_listed.emit()

    def _remembered_offline(self, sets: list[ModelSetInfo]) -> list[ModelSetInfo]:
        """The remembered server set as an offline entry until its servers answer (then the servers decide)."""
        if self._remembered is None:
            return []
        waiting, entries = remembered_offline(
            self._remembered,
            self.engines,
            self.infos,
            sets,
            {u for u, r in self.reports.items() if not r.reachable},
        )
        if not waiting:  # removed or disabled, or answered: the servers' own listing decides from now on
            self._remembered = None
        return entries

    def _on_user_picked(self, _index: int) -> None:
        """The user chose a set: a remembered server set that answers later no longer takes its place."""
        self._wanted = None

    def models_discovered(self) -> None:
        """This machine's sets are listed: a remembered server set found meanwhile can now be chosen."""
        self._relist()

    def _on_picker_selection_changed(self, info: ModelSetInfo | None, _hint: str) -> None:
        remote = info is not None and info.is_remote
        if remote or self._picker.discovered:
            self._state.update(
                engine=",".join(info.engine) if remote else "",  # type: ignore[union-attr]
                remote_model=info.path.as_posix() if remote else "",  # type: ignore[union-attr]
            )
        if self._wanted is not None and remote:
            self._wanted = None
        reasons = unavailable_options(info, self.infos, self.engines.label_for) if remote else {}  # type: ignore[arg-type]
        hires_why = not_sent("hires_scale") if remote else ""
        self._state.set_unavailable({**reasons, **({"hires_enabled": hires_why} if hires_why else {})})
        for widget, part in self._limited_parts():
            why = not_sent(part) if remote else ""
            if widget not in self._tips:
                self._tips[widget] = widget.toolTip()  # its own tooltip, back when this machine is chosen
            widget.setEnabled(not why)
            widget.setToolTip(why or self._tips[widget])
        self._update_label()

    def _limited_parts(self) -> list[tuple[QWidget, str]]:
        """The window's controls for request parts a server may not take yet, with the part's name."""
        parts: list[tuple[QWidget, str]] = [
            (self._panel.loras, "loras"),
            (self._panel.controlnet, "controlnets"),
        ]
        bar, refine = (
            getattr(self._window, "refine_bar", None),
            getattr(self._window, "refine_settings", None),
        )
        if bar is not None:
            parts += [(bar.mode_buttons["inpaint"], "mask_image"), (bar.mode_buttons["outpaint"], "outpaint")]
        if refine is not None:
            parts.append((refine.hires_check, "hires_scale"))
        return parts

    # ------------------------------------------------------------------------------------------ status
    def _update_label(self) -> None:
        info = self._picker.selected
        self._show_device(info)
        if info is None or not info.is_remote:
            self.label.setText(f"Engine: {THIS_MACHINE}")
            self.label.setToolTip("Jobs run on this machine (Edit ▸ Engines… to add ComfyUI servers)")
            return
        names = ", ".join(self.engines.label_for(u) for u in info.engine)
        reports = [self.reports.get(u) for u in info.engine]
        online = sum(1 for r in reports if r is not None and r.reachable)
        if any(u in self._checking for u in info.engine) and online < len(info.engine):
            state = "connecting…" if all(r is None for r in reports) else "offline — retrying"
        elif online == len(info.engine):
            state = "online"
        elif online == 0:
            state = "offline — retrying"
        else:
            state = f"{online} of {len(info.engine)} online"
        self.label.setText(f"Engine: {names} · {state}")
        errors = [f"{self.engines.label_for(u)}: {r.error}" for u, r in zip(info.engine, reports, strict=True)
                  if r is not None and not r.reachable]  # fmt: skip
        self.label.setToolTip("\n".join([", ".join(info.engine), *errors]))

    def _on_device_described(self, text: str) -> None:
        self._local_device = f"Device: {text}"
        self._update_label()

    def _show_device(self, info: ModelSetInfo | None) -> None:
        """The device label names the server's device while its set is chosen; this machine's otherwise."""
        label = self._device_label
        if label is None:
            return
        if info is None or not info.is_remote:
            if self._local_device:
                label.setText(self._local_device)
            return
        server = self.infos.get(info.engine[0])
        device = server.devices[0] if server is not None and server.devices else None
        name = self.engines.label_for(info.engine[0])
        text = f"{device.type.upper()} · {device.vram_total / 2**30:.0f} GB" if device else "unknown device"
        whole = f"Device: {text} ({name}{' +' + str(len(info.engine) - 1) if len(info.engine) > 1 else ''})"
        label.setText(whole)
        label.setToolTip(f"{whole}\n{device.name}" if device else whole)  # whole: the label may be elided

    def _on_step(self, step: StepInfo) -> None:
        seen = self._job_previews.get(step.job_id)
        if seen is not None:
            seen[0] += 1
            seen[1] += step.preview is not None

    def _on_job_started(self, job: QueuedJob) -> None:
        if job.options.engine and job.options.preview != "off":
            self._job_previews[job.job_id] = [0, 0]

    def _on_job_ended(self, job: QueuedJob, outcome: JobOutcome) -> None:
        seen = self._job_previews.pop(job.job_id, None)
        engine = job.options.engine
        if seen is not None and seen[0] and not seen[1] and engine not in self._told_no_previews:
            self._told_no_previews.add(engine)  # said once
            names = ", ".join(self.engines.label_for(u) for u in engine)
            self._notifier.info(f"{names} sends no previews (started without --preview-method?): showing "
                                "progress only.")  # fmt: skip
        if engine and outcome.kind is FailureKind.CONNECTION:
            for url in engine:  # it dropped out: say so in the status bar and keep checking
                self.reports[url] = ConnectionReport(url, None, 0.0, outcome.message)
                self.check(url)
            self._update_label()

    # ------------------------------------------------------------------------------------------ dialog
    def open_dialog(self) -> EnginesDialog:
        if self._dialog is None:
            self._dialog = EnginesDialog(self.engines, self.executor, self._window)
            self._dialog.servers_changed.connect(self.refresh)
            self._dialog.tested.connect(self._on_checked)
            self._dialog.connection_changed.connect(self._on_connection_changed)
        self._dialog.open()
        self._dialog.raise_()
        return self._dialog

    def _on_connection_changed(self, url: str) -> None:
        """The next job on `url` opens a new session with the new token or CA file; its capabilities are read
        with it."""
        self._controller.reopen_remote(url)
        self.check(url)

    def close(self) -> None:
        self._closed = True
        self._heartbeat.stop()
        self._relist_timer.stop()
        for timer in self._retry.values():
            timer.stop()
        self._retry.clear()
        if self._dialog is not None:
            self._dialog.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
