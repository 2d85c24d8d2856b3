"""The window's side of the LoRA panel and the ControlNet section: folder scans and the control-map preview run on
the I/O thread (headers and preprocessing use torch; the UI thread never imports it), the LoRA folder setting,
and the canvas image as a control image."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QImage
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

from app.inference.api.control import ControlPreprocess
from app.ui.canvas.shown_image import ShownImage
from app.ui.form.addons import LoraCatalog, discover_controlnets, discover_loras
from app.ui.form.control_images import write_scratch_image
from app.ui.form.control_unit import ControlUnit
from app.ui.form.form_state import GenerationFormState
from app.ui.form.generation_panel import GenerationPanel
from app.ui.form.lora_panel import THUMB
from app.ui.notify import Notifier
from app.ui.window.settings_store import load_bool, load_json, save_json

log = logging.getLogger(__name__)

LORA_FOLDERS_KEY = "loras/folders"
CONTROLNET_FOLDERS_KEY = "controlnets/folders"
# the control map overlay's switch and opacity, kept between sessions
OVERLAY_KEY = "view/control_map_overlay"
OVERLAY_OPACITY_KEY = "view/control_map_opacity"
MAP_DEBOUNCE_MS = 150
USE_AS_CONTROL = "Use as Control Image"


def lora_scan(folders: list[Path], defaults: bool) -> tuple[LoraCatalog, dict[Path, QImage]]:
    """On the I/O thread: the scan and the list's thumbnails (QImage may be made off the UI thread)."""
    catalog = discover_loras(folders, defaults)
    thumbs = {}
    for info in catalog.entries:
        if info.preview is not None:
            image = QImage(str(info.preview))
            if not image.isNull():
                thumbs[info.path] = image.scaled(
                    THUMB,
                    THUMB,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
    return catalog, thumbs


def control_map_image(image: Path, size: tuple[int, int], preprocess: ControlPreprocess) -> QImage:
    """On the I/O thread: the map the ControlNet is shown, at the generation size, as a QImage."""
    import numpy as np  # numpy and torch are not imported before the window has painted

    from app.inference.control.encoding import control_map  # torch: never on the UI thread

    pixels = control_map(image, size, preprocess.validated())  # (1, 3, H, W) in [0, 1]
    array = (pixels[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).contiguous().numpy()
    array = np.ascontiguousarray(array)
    h, w, _ = array.shape
    return QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # own the pixels


class AddonHookup(QObject):
    def __init__(
        self,
        parent: QWidget,
        panel: GenerationPanel,
        state: GenerationFormState,
        executor: Executor,
        settings: QSettings,
        shown: ShownImage,
        notifier: Notifier,
        *,
        search_defaults: bool = True,
        share_lora_folders: Callable[[tuple[Path, ...]], None] = lambda _folders: None,
    ) -> None:
        super().__init__(parent)
        self.share_lora_folders = share_lora_folders  # recall looks for an image's LoRAs there by name
        # told the usable ControlNet files after each scan (recall matches an image's ControlNet names to them)
        self.controlnet_listeners: list[Callable[[tuple[Path, ...]], None]] = []
        self._parent, self._panel, self._state, self._executor = parent, panel, state, executor
        self._settings, self._shown, self._notifier = settings, shown, notifier
        self._defaults = search_defaults
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        # unit -> (image, size, preprocess) waiting for the debounce; the serial of each unit's newest request
        self._map_requests: dict[ControlUnit, tuple[Path, tuple[int, int], ControlPreprocess]] = {}
        self._map_serials: dict[ControlUnit, int] = {}
        self.map_timer = QTimer(self)
        self.map_timer.setSingleShot(True)
        self.map_timer.setInterval(MAP_DEBOUNCE_MS)
        self.map_timer.timeout.connect(self._on_map_timer)
        panel.loras.folders_requested.connect(self.add_lora_folder)
        panel.loras.rescan_requested.connect(self.scan)
        panel.controlnet.folders_requested.connect(self.add_controlnet_folder)
        panel.controlnet.map_wanted.connect(self._on_map_wanted)
        panel.controlnet.canvas_image_requested.connect(self.use_canvas_image)
        panel.controlnet.said.connect(notifier.status)
        # View ▸ Control Map on Canvas: the same switch as the section's "Map on canvas"
        check = panel.controlnet.overlay_check
        self.overlay_action = QAction("Control Map on Canvas", self)
        self.overlay_action.setCheckable(True)
        self.overlay_action.setToolTip("Draw the active ControlNet's preprocessed map over the canvas")
        self.overlay_action.toggled.connect(check.setChecked)
        check.toggled.connect(self.overlay_action.setChecked)
        panel.controlnet.overlay_changed.connect(self._show_overlay)
        self._restore_overlay()
        self.canvas_menu: QMenu | None = None  # the canvas picture's menu while open (tests click in it)
        shown.canvas.menu_requested.connect(self._on_canvas_menu_requested)

    def lora_folders(self) -> list[Path]:
        return self._folders(LORA_FOLDERS_KEY)

    def controlnet_folders(self) -> list[Path]:
        return self._folders(CONTROLNET_FOLDERS_KEY)

    def _folders(self, key: str) -> list[Path]:
        saved = load_json(self._settings, key, [])
        return [Path(p) for p in saved if isinstance(p, str)] if isinstance(saved, list) else []

    def add_lora_folder(self, folder: Path | None = None) -> None:
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self._parent, "Choose a folder of LoRA files")
            if not chosen:
                return
            folder = Path(chosen)
        folders = [str(folder), *(str(p) for p in self.lora_folders() if p != folder)]
        save_json(self._settings, LORA_FOLDERS_KEY, folders[:20])
        self.scan()

    def add_controlnet_folder(self, folder: Path | None = None) -> None:
        """ "Add folder…" in the ControlNet section: the folder is searched from now on (first) and the list is
        read again."""
        if folder is None:
            chosen = QFileDialog.getExistingDirectory(self._parent, "Choose a folder of ControlNet files")
            if not chosen:
                return
            folder = Path(chosen)
        folders = [str(folder), *(str(p) for p in self.controlnet_folders() if p != folder)]
        save_json(self._settings, CONTROLNET_FOLDERS_KEY, folders[:20])
        self.scan()

    def add_controlnet_files(self, files: tuple[Path, ...]) -> None:
        """ControlNets a download just wrote: their folders are searched from now on (the user may have saved
        them outside the default places) and the list is scanned again, so they can be chosen at once."""
        added = [str(folder) for folder in dict.fromkeys(Path(f).parent for f in files)]
        folders = [*added, *(str(p) for p in self.controlnet_folders() if str(p) not in added)]
        save_json(self._settings, CONTROLNET_FOLDERS_KEY, folders[:20])
        self.scan()

    def scan(self) -> None:
        """Look for LoRAs and ControlNets (again): headers only, on the I/O thread."""
        self._spawn(self._scan())

    async def _scan(self) -> None:
        try:
            await self._scan_folders()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a scan reports unreadable files itself; this is the unexpected rest
            log.exception("LoRA / ControlNet scan failed")
            if not self._closed:
                self._state.set_lora_catalog(LoraCatalog(scanned=True))
                self._notifier.status(f"Could not look through the LoRA and ControlNet folders: {exc}")

    async def _scan_folders(self) -> None:
        loop = asyncio.get_running_loop()
        catalog, thumbs = await loop.run_in_executor(
            self._executor, lora_scan, self.lora_folders(), self._defaults
        )
        if self._closed:
            return
        self._panel.loras.thumbnails = thumbs
        self._state.set_lora_catalog(catalog)
        folders = dict.fromkeys([*self.lora_folders(), *(e.path.parent for e in catalog.entries)])
        self.share_lora_folders(tuple(folders))
        controlnets = await loop.run_in_executor(
            self._executor, discover_controlnets, self.controlnet_folders(), self._defaults
        )
        if not self._closed:
            self._panel.controlnet.set_files(controlnets)
            usable = tuple(c.path for c in controlnets if c.error is None)
            for listener in self.controlnet_listeners:
                listener(usable)

    def _on_map_wanted(
        self, unit: ControlUnit, image: Path, size: tuple[int, int], preprocess: ControlPreprocess
    ) -> None:
        self._map_requests[unit] = (image, size, preprocess)
        self._map_serials[unit] = self._map_serials.get(unit, 0) + 1
        self.map_timer.start()

    def _on_map_timer(self) -> None:
        requests, self._map_requests = self._map_requests, {}
        for unit, request in requests.items():
            self._spawn(self._compute_map(unit, request, self._map_serials[unit]))

    async def _compute_map(
        self, unit: ControlUnit, request: tuple[Path, tuple[int, int], ControlPreprocess], serial: int
    ) -> None:
        loop = asyncio.get_running_loop()
        section = self._panel.controlnet
        try:
            qimage = await loop.run_in_executor(self._executor, control_map_image, *request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an unreadable image or a bad threshold: said on the map, never a traceback
            if not self._closed and self._map_serials.get(unit) == serial:
                section.show_map(unit, None, str(exc))
            return
        if not self._closed and self._map_serials.get(unit) == serial:
            section.show_map(unit, qimage)

    def _restore_overlay(self) -> None:
        """The overlay switch and opacity as the last session left them (a bad saved value: the default)."""
        section = self._panel.controlnet
        section.overlay_check.setChecked(load_bool(self._settings, OVERLAY_KEY, False))
        try:
            opacity = int(self._settings.value(OVERLAY_OPACITY_KEY, section.overlay_slider.value()))
        except (TypeError, ValueError):
            return
        section.overlay_slider.setValue(opacity)  # the slider keeps it in its range

    def save_settings(self) -> None:
        section = self._panel.controlnet
        self._settings.setValue(OVERLAY_KEY, section.overlay_check.isChecked())
        self._settings.setValue(OVERLAY_OPACITY_KEY, section.overlay_slider.value())

    def _show_overlay(self) -> None:
        image, opacity = self._panel.controlnet.overlay()
        self._shown.canvas.set_control_map(image, opacity)

    def _on_canvas_menu_requested(self, pos) -> None:
        if self.canvas_menu is not None:
            self.canvas_menu.close()
        menu = self.canvas_menu = QMenu(self._parent)
        menu.addAction(USE_AS_CONTROL, lambda: self.use_canvas_image(None)).setToolTip(
            "The picture on the canvas becomes the active ControlNet's control image"
        )
        menu.popup(pos)

    def use_canvas_image(self, unit: ControlUnit | None = None) -> None:
        """The canvas's picture as a control image: its file when it has one, else a scratch PNG (kept next to
        the output when a job uses it)."""
        target = unit.set_image if unit is not None else self._panel.controlnet.use_image
        file = self._shown.shown_file()
        if file is not None:
            target(file)
            return
        image = self._shown.image()
        if image is None or image.isNull():
            self._notifier.info("Nothing on the canvas yet: generate or open an image first.")
            return
        try:
            path = write_scratch_image(image)
        except OSError as exc:
            self._notifier.error(f"Could not keep the canvas image as a control image: {exc}.")
            return
        target(path)

    def use_control_file(self, path: Path) -> None:
        """ "Use as Control Image" on a gallery picture."""
        self._panel.controlnet.use_image(Path(path))

    def _spawn(self, coro) -> None:
        if self._closed:
            coro.close()
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        if not self._closed:
            self.save_settings()
            self._settings.sync()
        self._closed = True
        self.map_timer.stop()
        for task in list(self._tasks):
            task.cancel()
