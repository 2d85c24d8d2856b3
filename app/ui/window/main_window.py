"""The main window: lays out the panels, wires the controller's signals to the views, and persists itself.

The work is elsewhere: values in `GenerationFormState`, jobs from `JobFactory` run by `GenerationController`,
models in `ModelPickerController` and `model_library`; the menus' commands live in one module per menu
(`file_menu`, `edit_menu`, `view_menu`, `generate_menu`, `help_menu`), each given only the parts it uses;
messages go through the `WindowNotifier`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QImage, QKeySequence, QPaintEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.inference.api.errors import FailureKind
from app.ui.canvas.canvas import CanvasView, JobProgressBar
from app.ui.canvas.shown_image import ShownImage
from app.ui.canvas.step_scrubber import StepScrubber
from app.ui.elided_label import ElidedLabel
from app.ui.form.form_state import GenerationFormState
from app.ui.form.generation_panel import GenerationPanel
from app.ui.form.model_library import ModelSetInfo, inspect_path, scan
from app.ui.form.model_picker import ModelPickerController
from app.ui.form.presets import load_style_presets
from app.ui.gallery.hookup import GalleryHookup
from app.ui.generation.controller import GenerationController
from app.ui.generation.job_factory import JobFactory
from app.ui.generation.jobs import ImageResult, JobOutcome, JobStatus, QueuedJob, StepInfo
from app.ui.generation.output_folder import OutputFolder
from app.ui.generation.worker import EngineBackend, load_engine_backend
from app.ui.refine.image_sources import DropChoice, paste_input, use_shown
from app.ui.refine.refine_bar import RefineBar
from app.ui.refine.refine_controller import RefineController
from app.ui.refine.refine_settings import RefineSettings
from app.ui.tools.context import ToolContext
from app.ui.tools.seed_compare import SeedComparePage
from app.ui.window.addon_hookup import AddonHookup
from app.ui.window.banner import MessageBanner
from app.ui.window.edit_menu import EditCommands, StylePresetsFile
from app.ui.window.engine_hookup import EngineHookup
from app.ui.window.file_drop import ImageDropFilter
from app.ui.window.file_menu import FileCommands, ModelFinder
from app.ui.window.first_run import FirstRunPanel
from app.ui.window.generate_menu import GenerateCommands
from app.ui.window.help_menu import HelpCommands
from app.ui.window.memory_label import memory_label
from app.ui.window.model_selection import ModelSelection
from app.ui.window.notifier import WindowNotifier
from app.ui.window.quit_guard import confirm_quit
from app.ui.window.settings_store import (
    load_bool,
    load_json,
    open_settings,
    save_json,
    user_data_folder,
    user_style_presets_file,
)
from app.ui.window.side_panels import QueuePanel, RecentStrip
from app.ui.window.stale_messages import StaleMessages
from app.ui.window.theme import icon
from app.ui.window.tooltips import tooltip
from app.ui.window.view_menu import view_handlers
from app.ui.window.window_actions import MenuCommands, build_actions, build_menus, shortcut_table

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    first_painted = Signal()
    models_discovered = Signal()

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        output_dir: Path | None = None,
        backend_loader: Callable[[], EngineBackend] = load_engine_backend,
        search_default_locations: bool = True,
        shutdown_timeout_s: float = 2.0,
    ) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("SD3.5 Studio")
        self.setWindowIcon(icon("app"))
        self.settings = open_settings()
        self.state = GenerationFormState.from_dict(load_json(self.settings, "form/state", None))
        self.styles = load_style_presets(user_style_presets_file())
        self.controller = GenerationController(backend_loader, self)
        self.io_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sd35-io")
        self.model_arg = Path(model_path) if model_path is not None else None
        self.output = OutputFolder(self.settings, Path(output_dir) if output_dir is not None else None)
        self._search_defaults = search_default_locations
        self._shutdown_timeout_s = shutdown_timeout_s
        self._painted = False
        self._closed = False
        self._startup_task: asyncio.Task[None] | None = None
        self.closed_cleanly = True
        self._quit_confirmed = False
        self._last_saved: Path | None = None  # the newest saved image (Show in folder) and its job
        self._last_saved_job = 0
        self._loaded_plan = ""  # the memory plan the engine reported for the loaded models

        self._build_central()
        self._build_docks()
        self._build_status_bar()
        self._build_parts()
        self._connect()  # before the tools: on each finished image the window shows it, then the tools react
        self._build_tools()
        self._restore_layout()
        self.actions.random_seed.setChecked(self.state.values.random_seed)

        first = self.model_arg or _as_path(self.settings.value("models/selected"))
        if first is not None:
            self.selection.on_picker_selection_changed(self.picker.show_pending(first), "Reading the model…")
        self.panel.prompt.edit.setFocus(Qt.FocusReason.OtherFocusReason)
        self._update_buttons()

    # ------------------------------------------------------------------------------------------ parts

    def _build_parts(self) -> None:
        """The window's working parts, each handed only the collaborators it uses."""
        self.notifier = WindowNotifier(self.banner, self.statusBar())
        self.shown = ShownImage(self.canvas, self.scrubber, self.stack)
        self.models = ModelFinder(
            self, self.picker, self.first_run, self.shown, self.notifier,
            validate=self.validate_path, remember=self.remember_path,
        )  # fmt: skip
        self.styles_file = StylePresetsFile(self.panel, self.notifier)
        self.jobs = JobFactory(
            self.state, self.picker, self.styles_file.current, self.output, self.notifier,
            locate=self.models.locate, focus_prompt=self.panel.prompt.edit.setFocus,
        )  # fmt: skip
        self.selection = ModelSelection(self, self.picker, self.state, self.panel, self._update_buttons)
        self.stale_messages = StaleMessages(self.banner, self.canvas, self.picker, self.state)
        self.addons = AddonHookup(
            self, self.panel, self.state, self.io_executor, self.settings, self.shown, self.notifier,
            search_defaults=self._search_defaults, share_lora_folders=self._share_lora_folders,
        )  # fmt: skip
        self.token_counter = self.selection.token_counter
        self.models.controlnet_listeners.append(self.addons.add_controlnet_files)  # downloads list at once

    def _build_tools(self) -> None:
        """The gallery, the multi-image tools, and the menus' commands that reach them."""
        self.gallery = GalleryHookup(
            lambda widget: self.add_side_panel("Gallery", "galleryDock", widget),
            self.controller, self.picker, self.state, self.shown, self.notifier, output_root=self.output.root,
        )  # fmt: skip
        self.gallery.trashed_listeners.append(self.recent.remove_paths)
        # An image dropped anywhere on the window (the prompt editors included) asks: reuse its settings, or
        # refine it (one without settings becomes the input image at once).
        self.drop_choice = DropChoice(self, self.refine, self.gallery.recall_dropped_file)
        self.gallery.input_listeners.append(self.refine.use_file)
        self.gallery.control_listeners.append(self.addons.use_control_file)
        self.addons.controlnet_listeners.append(self.gallery.share_controlnet_files)  # recall: names → files
        self.gallery.upscale_listeners.append(self.refine.prepare_upscale)
        self.refine.show_last_result = self._show_last_result
        self.image_drops = ImageDropFilter(self.drop_choice.dropped, self)
        self.image_drops.watch([self, self.panel.prompt.edit, self.panel.negative.edit])
        self.tools = ToolContext(self.controller, self.jobs, self.io_executor, self.notifier, self.shown)
        self.seed_compare = SeedComparePage(self.tools, self.gallery)
        self.commands = MenuCommands(
            file=FileCommands(
                self, self.models, self.output, self.shown, self.notifier, self.request_quit, self.io_executor
            ),
            edit=EditCommands(self.panel, self.state, self.shown, self.styles_file),
            view=view_handlers(self.canvas, self.panel.prompt.edit.setFocus),
            generate=GenerateCommands(self, self.tools, self.progress, self.seed_compare),
            help=HelpCommands(self, self.models.getting_models, lambda: shortcut_table(self.actions)),
        )
        self.actions = build_actions(self, self.commands.handlers())
        toggles = [*(d.toggleViewAction() for d in self.docks), self.addons.overlay_action]
        build_menus(self.menuBar(), self.actions, toggles)
        self._add_refine_actions()
        self.engine_hookup = EngineHookup(
            self, self.picker, self.state, self.panel, self.controller, self.notifier
        )
        self.models_discovered.connect(self.engine_hookup.models_discovered)
        self.seed_compare.server_name = self.engine_hookup.engines.label_for  # tiles name the server
        generate = self.commands.generate
        self.generate_button.clicked.connect(generate.generate)
        self.cancel_button.clicked.connect(generate.cancel)
        self.queue_panel.clear_requested.connect(generate.clear_queue)

    # ------------------------------------------------------------------------------------------ layout

    def _build_central(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.banner = MessageBanner(central)
        banner_box = QHBoxLayout()
        banner_box.setContentsMargins(10, 8, 10, 0)
        banner_box.addWidget(self.banner)
        layout.addLayout(banner_box)
        self.stack = QStackedWidget(central)
        self.canvas = CanvasView(self.stack)
        self.refine = RefineController(
            self.state, self.canvas, user_data_folder, lambda text: self.notifier.status(text)
        )
        self.refine_bar = RefineBar(
            self.refine,
            lambda: use_shown(self.refine, self.shown, self.notifier.status),
            self.paste_input,
            lambda: self.gallery.compare_with_source(self.shown.result),
            central,
        )
        layout.addWidget(self.refine_bar)
        self.first_run = FirstRunPanel(self.validate_path, self.stack)
        self.stack.addWidget(self.canvas)
        self.stack.addWidget(self.first_run)
        layout.addWidget(self.stack, 1)
        self.scrubber = StepScrubber(self.canvas, central)
        layout.addWidget(self.scrubber)
        self.progress = JobProgressBar(central)
        layout.addWidget(self.progress)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        self.panel = GenerationPanel(self.state, self.styles)
        self.panel.advanced.set_expanded(load_bool(self.settings, "ui/advanced_expanded", False))
        self.refine_settings = RefineSettings(self.state)
        form = QWidget()  # the refine numbers (in a refine mode), the form, then the hires fix
        form_column = QVBoxLayout(form)
        form_column.setContentsMargins(0, 0, 0, 0)
        form_column.setSpacing(0)
        form_column.addWidget(self.refine_settings)
        form_column.addWidget(self.panel)
        form_column.addWidget(self.refine_settings.hires_box)
        form_column.addStretch(1)
        self.settings_scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(form)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        settings_box = QWidget()
        box = QVBoxLayout(settings_box)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(scroll, 1)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(12, 8, 12, 10)
        self.generate_button = QPushButton("Generate", settings_box)
        self.generate_button.setObjectName("generateButton")
        self.generate_button.setToolTip(tooltip("generate"))
        self.cancel_button = QPushButton("Cancel", settings_box)
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setToolTip(tooltip("cancel"))
        self.queued_label = QLabel(
            "", settings_box
        )  # "2 queued": the queue tab may be hidden behind the gallery
        self.queued_label.setObjectName("queuedLabel")
        self.queued_label.setToolTip("Jobs waiting in the queue (View ▸ Queue)")
        buttons.addWidget(self.generate_button, 1)
        buttons.addWidget(self.queued_label)
        buttons.addWidget(self.cancel_button)
        box.addLayout(buttons)
        settings_box.setMinimumWidth(380)

        self.queue_panel = QueuePanel(self.controller.queue)
        self.recent = RecentStrip()
        self.picker = ModelPickerController(self.panel.model_combo, self)
        self.settings_dock = self._dock(
            "Settings", "settingsDock", settings_box, Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self.queue_dock = self._dock(
            "Queue", "queueDock", self.queue_panel, Qt.DockWidgetArea.RightDockWidgetArea
        )
        self.recent_dock = self._dock(
            "Recent", "recentDock", self.recent, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.docks = [self.settings_dock, self.queue_dock, self.recent_dock]
        # The side panels run the full height; the recent strip sits under the canvas only.
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        return dock

    def add_side_panel(self, title: str, object_name: str, widget: QWidget) -> QDockWidget:
        """Where the gallery (and later panels) go: a dock tabbed with the queue; persisted with the layout."""
        dock = self._dock(title, object_name, widget, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.queue_dock, dock)
        self.docks.append(dock)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.device_label = QLabel("Device: detecting…")
        self.model_label = ElidedLabel("Model: not loaded")  # model names can be long: elided
        self.model_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.model_label.setMinimumWidth(120)
        self.model_label.setMaximumWidth(360)
        self.memory_label = QLabel("")
        self.last_job_label = QLabel("Last job: –")
        for label in (self.device_label, self.model_label, self.memory_label, self.last_job_label):
            label.setContentsMargins(8, 0, 8, 0)
            bar.addPermanentWidget(label)
        self._update_memory_label()

    def _connect(self) -> None:
        c = self.controller
        c.step_completed.connect(self._on_controller_step_completed)
        c.image_finished.connect(self._on_controller_image_finished)
        c.job_started.connect(self._on_controller_job_started)
        c.job_ended.connect(self._on_controller_job_ended)
        c.busy_changed.connect(lambda _busy: self._update_buttons())
        c.busy_changed.connect(self.scrubber.set_generating)
        c.queue_changed.connect(self._update_buttons)
        c.model_loading.connect(lambda _j, name, i, n: self.progress.show_busy(f"Loading {name} ({i}/{n})…"))
        c.prompt_encoding.connect(
            lambda _j, which, i, n: self.progress.show_busy(f"Encoding {which} {i}/{n}…")
        )
        c.model_loaded.connect(self._on_controller_model_loaded)
        c.device_described.connect(lambda text: self.device_label.setText(f"Device: {text}"))
        c.engine_prepared.connect(self.token_counter.set_ready)
        self.panel.locate_button.clicked.connect(self.models.locate)
        self.first_run.back_requested.connect(self.shown.show_canvas)
        self.queue_panel.remove_requested.connect(c.remove_pending)
        self.recent.result_activated.connect(self.shown.show_result)
        self.canvas.zoom_changed.connect(self.progress.show_zoom)
        self.progress.reveal_button.clicked.connect(self._on_reveal_button_clicked)
        self.state.listeners.append(self._on_state_changed)

    # ------------------------------------------------------------------------------------------ start-up

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            QTimer.singleShot(0, self._start_up)

    def _start_up(self) -> None:
        if self._default_dock_sizes:  # first run: only a laid-out window can size its docks
            self.resizeDocks([self.settings_dock, self.queue_dock], [420, 240], Qt.Orientation.Horizontal)
            self.resizeDocks([self.recent_dock], [134], Qt.Orientation.Vertical)
        self.first_painted.emit()
        if not self._closed:
            QTimer.singleShot(0, self.gallery.attach)
            self._startup_task = asyncio.ensure_future(self._discover())

    async def _discover(self) -> None:
        """Find the model sets (headers only, on the I/O thread) and choose one; first-run panel if none."""
        loop = asyncio.get_running_loop()
        selected = _as_path(self.settings.value("models/selected"))
        paths = [p for p in [self.model_arg, selected, *self.remembered_paths()] if p is not None]
        found = await loop.run_in_executor(self.io_executor, scan, paths, self._search_defaults)
        self.picker.set_sets(found, self.model_arg or selected, insist=self.model_arg is not None)
        if self.picker.selected is not None and self.picker.selected.path == self.model_arg:
            self.remember_path(self.model_arg)
        self.first_run.set_has_models(self.picker.has_usable())
        if not self.picker.has_usable():
            given = next((i for i in found if i.path == self.model_arg), None)
            if given is not None:
                self.first_run.set_path(given.path, f"✗ {given.problem()}")
            self.stack.setCurrentWidget(self.first_run)
        self.addons.scan()  # LoRAs and ControlNets: after the models, on the same I/O thread
        self.controller.prepare_engine(self.state.values.device)
        self.commands.generate.models_read()  # a Generate pressed while reading starts now
        self.models_discovered.emit()

    def _share_lora_folders(self, folders: tuple[Path, ...]) -> None:
        """The LoRA scan's folders for recall (the gallery opens at start-up, before the scan ends)."""
        if self.gallery.panel is not None:
            self.gallery.panel.loaded.lora_folders = folders

    async def validate_path(self, path: Path) -> ModelSetInfo:
        return await asyncio.get_running_loop().run_in_executor(self.io_executor, inspect_path, path)

    def remembered_paths(self) -> list[Path]:
        saved = load_json(self.settings, "models/paths", [])
        return [Path(p) for p in saved if isinstance(p, str)] if isinstance(saved, list) else []

    def remember_path(self, path: Path) -> None:
        paths = [str(path), *(str(p) for p in self.remembered_paths() if p != path)]
        save_json(self.settings, "models/paths", paths[:20])

    # ------------------------------------------------------------------------------------------ job events

    def _on_controller_job_started(self, job: QueuedJob) -> None:
        self.queue_panel.show_running(job)
        self.progress.show_busy("Starting…")
        self._update_buttons()

    def _on_controller_step_completed(self, info: StepInfo) -> None:
        job = self.controller.current_job
        if info.preview is not None and job is not None:
            size = QSize(job.request.width, job.request.height)
            if job.request.init_image is not None and not info.preview.isNull():
                # A refine job's canvas is the input's size (plus outpainting): keep the preview's own shape.
                size = QSize(
                    job.request.width, round(job.request.width * info.preview.height() / info.preview.width())
                )
            self.canvas.set_image(info.preview, preview=True, logical_size=size)
        self.progress.show_step(info.step, info.steps, info.its, info.eta, info.image_index + 1, info.images)

    def _on_controller_image_finished(self, result: ImageResult) -> None:
        if result.path is not None:
            self._last_saved, self._last_saved_job = result.path, result.job_id
        self.show_result(result, result.image)
        self.recent.add(result)
        if result.save_error:
            choose = ("Choose folder…", self.commands.file.choose_output)
            self.notifier.error(result.save_error, action=choose)

    def _on_controller_job_ended(self, job: QueuedJob, outcome: JobOutcome) -> None:
        self.queue_panel.show_running(None)
        self._update_buttons()
        images = f"{outcome.images} image{'s' if outcome.images != 1 else ''}"
        saved = self._last_saved if self._last_saved_job == job.job_id else None
        if outcome.status is JobStatus.FINISHED:
            last = "last " if outcome.images > 1 else ""
            where = f" · {last}saved {saved.name}" if saved else ""
            self.progress.show_message(
                f"Done: {images} in {outcome.seconds:.1f} s{where}", reveal=saved is not None
            )
            self.last_job_label.setText(f"Last job: {outcome.seconds:.1f} s")
        elif outcome.status is JobStatus.CANCELLED:
            self.progress.show_message(f"Cancelled after {outcome.seconds:.1f} s — {images} kept")
        else:
            self.progress.show_message("Failed")
            action = {
                FailureKind.MODEL: ("Locate…", self.models.locate),
                FailureKind.MEMORY: ("Memory settings…", self.show_memory_settings),
            }.get(outcome.kind)
            message = outcome.message[:1].upper() + outcome.message[1:]
            self.notifier.error(f"The job failed — {message}", action=action)
        shown = self.shown.result
        if self.canvas.is_preview() and shown is not None:
            self.shown.show_result(shown, shown.image)  # never leave a stale preview up

    def _on_reveal_button_clicked(self) -> None:
        if self._last_saved is not None:
            from app.ui.gallery.actions import reveal_in_file_manager

            reveal_in_file_manager(self._last_saved)

    def _add_refine_actions(self) -> None:
        """Edit ▸ Open / Paste Input Image (Ctrl+Shift+V): the input of the refine modes."""
        edit = next(a.menu() for a in self.menuBar().actions() if a.text() == "&Edit")
        edit.addSeparator()
        self.open_input_action = edit.addAction("&Open Input Image…", self.refine_bar.open_file)
        self.paste_input_action = edit.addAction("&Paste as Input Image", self.paste_input)
        self.paste_input_action.setShortcut(QKeySequence("Ctrl+Shift+V"))
        self.paste_input_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)

    def _show_last_result(self) -> None:
        result = self.shown.result
        if result is not None:
            self.shown.show_result(result, result.image)
        else:
            self.canvas.set_image(None)

    def paste_input(self) -> None:
        """Ctrl+Shift+V: the clipboard's picture becomes the input image."""
        paste_input(self.refine, self.notifier.status)

    def show_result(self, result: ImageResult, image: QImage) -> None:
        self.shown.show_result(result, image)

    @property
    def shown_result(self) -> ImageResult | None:
        return self.shown.result

    @property
    def output_arg(self) -> Path | None:
        """`--output-dir`, until the user chooses another folder."""
        return self.output.fixed

    def show_memory_settings(self) -> None:
        """Open the Advanced section at the memory plan (after an out-of-memory failure)."""
        self.settings_dock.show()
        self.panel.advanced.set_expanded(True)
        self.settings_scroll.ensureWidgetVisible(self.panel.advanced.precision_combo)
        self.panel.advanced.memory_combo.setFocus()

    # ------------------------------------------------------------------------------------------ state

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if changed & {"memory_plan", "device", "precision"}:
            self._update_memory_label()
        if "use_t5" in changed:
            self.selection.update_token_source()
        if "random_seed" in changed:
            self.actions.random_seed.setChecked(self.state.values.random_seed)

    def _on_controller_model_loaded(self, _job_id: int, name: str, seconds: float, plan: str) -> None:
        self.model_label.setText(f"Model: {name} (loaded in {seconds:.1f} s)")
        self._loaded_plan = plan
        self._update_memory_label()

    def _update_memory_label(self) -> None:
        """The plan the engine chose for the loaded models; the chosen setting until models are loaded."""
        text, tip = memory_label(self.panel.advanced.memory_combo.currentText(), self._loaded_plan)
        self.memory_label.setText(text)
        self.memory_label.setToolTip(tip)

    def _update_buttons(self) -> None:
        busy = self.controller.is_busy
        self.generate_button.setText("Add to queue" if busy else "Generate")
        queued = len(self.controller.pending())
        self.queued_label.setText(f"{queued} queued" if queued else "")
        self.queued_label.setVisible(bool(queued))
        self.generate_button.setEnabled(self.jobs.can_build())
        self.cancel_button.setEnabled(self.controller.current_job is not None)
        self.actions.cancel.setEnabled(True)  # Esc always reachable; does nothing when idle

    # ------------------------------------------------------------------------------------------ persistence

    def _restore_layout(self) -> None:
        geometry, layout = self.settings.value("window/geometry"), self.settings.value("window/state")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1440, 900)
        # Never larger than the screen (a geometry saved on a bigger monitor, or the default on a small one);
        # Qt's restore keeps the window on screen but not its size.
        room = self.screen().availableGeometry()
        if self.width() > room.width() or self.height() > room.height():
            self.resize(min(self.width(), room.width()), min(self.height(), room.height()))
        self._default_dock_sizes = layout is None or not self.restoreState(layout)

    def save_settings(self) -> None:
        save_json(self.settings, "form/state", self.state.to_dict())
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("ui/advanced_expanded", self.panel.advanced.is_expanded())
        if self.picker.selected is not None and not self.picker.selected.is_remote:  # a server's: form state
            self.settings.setValue("models/selected", str(self.picker.selected.path))
        self.settings.sync()

    def request_quit(self) -> None:
        """File ▸ Quit (Ctrl+Q): asks first when a running or queued job would be lost."""
        if confirm_quit(self, self.controller):
            self._quit_confirmed = True
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        # The window's close button asks too; a programmatic close (tests, the session ending) does not.
        asked = self._quit_confirmed or not event.spontaneous()
        if not self._closed and not asked and not confirm_quit(self, self.controller):
            event.ignore()
            return
        if not self._closed:
            self._closed = True
            self.save_settings()
            self.selection.close()
            self.stale_messages.close()
            self.addons.close()
            self.engine_hookup.close()
            self.models.close()
            self.first_run.close_tasks()
            if self._startup_task is not None:
                self._startup_task.cancel()
            self.closed_cleanly = self.controller.shutdown(self._shutdown_timeout_s)
            self.io_executor.shutdown(wait=False, cancel_futures=True)
            self.panel.detach()
            self.refine_bar.detach()
            self.refine_settings.detach()
            self.refine.close()
            self.gallery.shutdown()
            if self._on_state_changed in self.state.listeners:
                self.state.listeners.remove(self._on_state_changed)
        event.accept()


def _as_path(value: object) -> Path | None:
    return Path(str(value)) if value else None
