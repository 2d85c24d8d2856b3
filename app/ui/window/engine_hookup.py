"""ComfyUI servers as the window's engine: Settings ▸ Engines, the servers' model sets in the model picker, what
a chosen server cannot run, and the engine in the status bar.

Every network call runs on this hookup's executor ("sd35-io-engines"), never on the UI thread; results come back
through a queued signal. A server that does not answer is checked again with a back-off (2 s doubling to 60 s),
and the status bar says so ("gpu-box · offline — retrying"). The model sets a server listed stay in the picker
while it is away (a job then fails with the connection's sentence and the window keeps checking).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QSizePolicy, QWidget

from app.inference.api.errors import FailureKind, InvalidRequestError
from app.remote.capabilities import ServerInfo
from app.remote.engine_list import EngineList
from app.remote.job import model_stem, refuse_what_is_not_sent, variant_of
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

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 2.0, 60.0  # seconds between checks of a server that does not answer
THIS_MACHINE = "This machine"


def remote_model_sets(engines: EngineList, infos: dict[str, ServerInfo]) -> list[ModelSetInfo]:
    """One picker entry per SD3.5 checkpoint the enabled servers list, with the servers that have it in priority
    order (several: the job's seeds are spread over them)."""
    by_checkpoint: dict[str, list[str]] = {}
    for entry in engines.enabled():
        info = infos.get(entry.url)
        for checkpoint in info.sd35_checkpoints if info else ():
            by_checkpoint.setdefault(checkpoint, []).append(entry.url)
    sets = []
    for checkpoint, urls in by_checkpoint.items():
        names = [engines.label_for(u) for u in urls]
        server = names[0] + (f" +{len(names) - 1}" if len(names) > 1 else "")
        partial = all(e is not None and e.partial_text_encoders for e in map(engines.find, urls))
        missing = []
        if any(infos[u].encoder("clip_l") is None for u in urls):
            missing.append("CLIP-L")
        if any(infos[u].encoder("clip_g") is None for u in urls) and not partial:
            missing.append("CLIP-G")
        has_t5 = all(infos[u].encoder("t5") is not None for u in urls)
        sets.append(ModelSetInfo(Path(checkpoint), variant_of(checkpoint, None), model_stem(checkpoint),
                                 has_t5=has_t5, missing=tuple(missing), engine=tuple(urls), server=server))  # fmt: skip
    return sets


def unavailable_options(info: ModelSetInfo, infos: dict[str, ServerInfo], label) -> dict[str, str]:
    """Form switches the servers of `info` cannot run: field -> one sentence (the disabled control's tooltip)."""
    out: dict[str, str] = {}
    for url in info.engine:
        server = infos.get(url)
        if server is None:
            continue
        name = label(url)
        if "SkipLayerGuidanceSD3" not in server.nodes:
            out.setdefault(
                "slg_enabled", f"{name} has no SkipLayerGuidanceSD3 node: skip-layer guidance is off."
            )
        window = ("ConditioningZeroOut", "ConditioningSetTimestepRange", "ConditioningCombine")
        if any(n not in server.nodes for n in window):
            out.setdefault("negative_window", f"{name} lacks the nodes of the negative-prompt window.")
        if server.encoder("t5") is None:
            out.setdefault(
                "use_t5", f"{name} has no T5-XXL text encoder (t5xxl*.safetensors in models/clip)."
            )
    return out


# A value of each request part app.remote.job.refuse_what_is_not_sent may refuse, to ask it about that part alone.
_PROBES: dict[str, object] = {"loras": (object(),), "controlnets": (object(),), "mask_image": object(),
                              "outpaint": (1, 0, 0, 0), "hires_scale": 2.0}  # fmt: skip


def not_sent(part: str) -> str:
    """Why a remote engine cannot take `part` of a request yet; "" once app.remote sends it (asked, not assumed:
    another change may teach app.remote to send LoRAs, ControlNets or masks)."""
    probe = SimpleNamespace(
        mask_image=None, outpaint=(0, 0, 0, 0), hires_scale=None, loras=(), controlnets=()
    )
    setattr(probe, part, _PROBES[part])
    try:
        refuse_what_is_not_sent(probe)  # type: ignore[arg-type]
    except InvalidRequestError as exc:
        return str(exc)[:1].upper() + str(exc)[1:] + "."
    except Exception:  # a newer check that looks deeper: the job's own check will say it
        return ""
    return ""


class EngineHookup(QObject):
    checked = Signal(str, object)  # url, ConnectionReport (emitted on an executor thread: queued)
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
        self._notifier = notifier
        self.engines = engines if engines is not None else EngineList()
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sd35-io-engines")
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
        self._relist()
        self._update_label()

    # ------------------------------------------------------------------------------------------ picker
    def _relist(self) -> None:
        sets = remote_model_sets(self.engines, self.infos)
        prefer = None
        if self._wanted is not None:
            engine, checkpoint = self._wanted
            first = engine.split(",")[0]
            match = next((s for s in sets if s.path.as_posix() == checkpoint and first in s.engine), None)
            if match is not None:
                prefer, self._wanted = match.key, None
        self._picker.set_remote(sets, prefer)
        self.servers_listed.emit()

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
        label.setText(
            f"Device: {text} ({name}{' +' + str(len(info.engine) - 1) if len(info.engine) > 1 else ''})"
        )
        label.setToolTip(device.name if device else "")

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
        self._dialog.open()
        self._dialog.raise_()
        return self._dialog

    def close(self) -> None:
        self._closed = True
        for timer in self._retry.values():
            timer.stop()
        self._retry.clear()
        if self._dialog is not None:
            self._dialog.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
