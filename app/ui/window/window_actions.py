"""Every action of the main window with its shortcut, the menus that carry them, and their commands by menu."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenuBar

from app.ui.window.edit_menu import EditCommands
from app.ui.window.file_menu import FileCommands
from app.ui.window.generate_menu import GenerateCommands
from app.ui.window.help_menu import HelpCommands

log = logging.getLogger(__name__)


@dataclass
class WindowActions:
    locate: QAction
    download_models: QAction
    choose_output: QAction
    open_output: QAction
    save_image_as: QAction
    copy_image: QAction
    quit: QAction
    undo: QAction
    redo: QAction
    copy_parameters: QAction
    reuse_seed: QAction
    random_seed: QAction
    edit_styles: QAction
    focus_prompt: QAction
    fit: QAction
    actual_size: QAction
    zoom_in: QAction
    zoom_out: QAction
    generate: QAction
    cancel: QAction
    skip_image: QAction
    compare_seeds: QAction
    xy_plot: QAction
    clear_queue: QAction
    getting_models: QAction
    shortcuts: QAction
    open_logs: QAction
    about: QAction

    def all(self) -> list[QAction]:
        return [value for value in vars(self).values() if isinstance(value, QAction)]


@dataclass(frozen=True)
class MenuCommands:
    """The commands behind each menu (`view` is plain functions: it keeps no state)."""

    file: FileCommands
    edit: EditCommands
    view: dict[str, Callable[[], object]]
    generate: GenerateCommands
    help: HelpCommands

    def handlers(self) -> dict[str, Callable[[], object]]:
        """Every action's slot by action name, for `build_actions`."""
        groups = (self.file.handlers(), self.edit.handlers(), self.view, self.generate.handlers(),
                  self.help.handlers())  # fmt: skip
        merged: dict[str, Callable[[], object]] = {}
        for group in groups:
            if merged.keys() & group.keys():
                raise ValueError(f"two menus handle {sorted(merged.keys() & group.keys())}")
            merged.update(group)
        return merged


def _action(
    window: QMainWindow,
    text: str,
    slot: Callable[[], object],
    shortcut: QKeySequence | str | QKeySequence.StandardKey | list | None = None,
    tip: str = "",
) -> QAction:
    action = QAction(text, window)
    if isinstance(shortcut, list):
        action.setShortcuts([QKeySequence(s) for s in shortcut])
    elif shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(tip)
    action.triggered.connect(lambda _checked=False: slot())
    window.addAction(action)  # shortcuts work even while the menu bar is hidden
    return action


def build_actions(window: QMainWindow, handlers: dict[str, Callable[[], object]]) -> WindowActions:
    """`handlers` maps each action name to its slot."""
    K = QKeySequence
    std = QKeySequence.StandardKey
    h = handlers
    actions = WindowActions(
        locate=_action(
            window,
            "&Locate Model Folder…",
            h["locate"],
            "Ctrl+O",
            "Point to a folder with an SD3.5 model set",
        ),
        download_models=_action(
            window,
            "&Download Models…",
            h["download_models"],
            None,
            "Download an SD3.5 model set from Hugging Face",
        ),
        choose_output=_action(
            window, "Choose &Output Folder…", h["choose_output"], None, "Where new images are saved"
        ),
        open_output=_action(
            window, "Open Output &Folder", h["open_output"], "Ctrl+Shift+O", "Show today's images"
        ),
        save_image_as=_action(
            window, "&Save Image As…", h["save_image_as"], std.Save, "Save the shown image elsewhere"
        ),
        copy_image=_action(window, "&Copy Image", h["copy_image"], "Ctrl+Shift+C", "Copy the shown image"),
        quit=_action(window, "&Quit", h["quit"], "Ctrl+Q", "Cancel the running job and quit"),
        undo=_action(window, "&Undo", h["undo"], std.Undo),
        redo=_action(window, "&Redo", h["redo"], std.Redo),
        copy_parameters=_action(
            window,
            "Copy &Parameters",
            h["copy_parameters"],
            "Ctrl+Shift+P",
            "Copy the shown image's generation parameters",
        ),
        reuse_seed=_action(
            window, "Reuse &Last Seed", h["reuse_seed"], "Ctrl+R", "Put the last job's seed back"
        ),
        random_seed=_action(window, "Random Seed &Each Time", h["random_seed"], "Ctrl+Shift+R"),
        edit_styles=_action(
            window,
            "Edit &Style Presets…",
            h["edit_styles"],
            None,
            "Open the style presets file in your text editor",
        ),
        focus_prompt=_action(window, "Focus &Prompt", h["focus_prompt"], "Ctrl+L"),
        fit=_action(window, "&Fit to Window", h["fit"], "Ctrl+0"),
        actual_size=_action(window, "&Actual Size (100 %)", h["actual_size"], "Ctrl+1"),
        zoom_in=_action(window, "Zoom &In", h["zoom_in"], [K(std.ZoomIn), K("Ctrl+=")]),
        zoom_out=_action(window, "Zoom &Out", h["zoom_out"], std.ZoomOut),
        generate=_action(
            window,
            "&Generate",
            h["generate"],
            ["Ctrl+Return", "Ctrl+Enter"],
            "Generate (queues another job while one runs)",
        ),
        cancel=_action(window, "&Cancel", h["cancel"], "Esc", "Stop the running job within one step"),
        skip_image=_action(
            window,
            "&Skip Current Image",
            h["skip_image"],
            "Shift+Esc",
            "Stop only the image being made; the job's other images go on",
        ),
        compare_seeds=_action(
            window,
            "Compare &Seeds…",
            h["compare_seeds"],
            ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"],
            "Make the Images count of seeds (at least 2) as one job and watch them side by side",
        ),
        xy_plot=_action(
            window,
            "&X/Y Plot…",
            h["xy_plot"],
            None,
            "Vary two settings over a grid of images and save it as one labelled picture",
        ),
        clear_queue=_action(
            window, "Clear &Queue", h["clear_queue"], "Ctrl+Shift+Backspace", "Remove every waiting job"
        ),
        getting_models=_action(
            window,
            "&Getting Models…",
            h["getting_models"],
            None,
            "Where to download SD3.5 and how to point the studio at it",
        ),
        shortcuts=_action(window, "&Keyboard Shortcuts", h["shortcuts"], "F1"),
        open_logs=_action(window, "Open &Log Folder", h["open_logs"]),
        about=_action(window, "&About SD3.5 Studio", h["about"]),
    )
    actions.random_seed.setCheckable(True)
    actions.quit.setMenuRole(QAction.MenuRole.QuitRole)
    actions.about.setMenuRole(QAction.MenuRole.AboutRole)
    return actions


def build_menus(menu_bar: QMenuBar, a: WindowActions, view_toggles: list[QAction]) -> None:
    file = menu_bar.addMenu("&File")
    for action in (
        a.locate,
        a.download_models,
        None,
        a.choose_output,
        a.open_output,
        None,
        a.save_image_as,
        a.copy_image,
        None,
        a.quit,
    ):
        file.addSeparator() if action is None else file.addAction(action)
    edit = menu_bar.addMenu("&Edit")
    for action in (a.undo, a.redo, None, a.copy_parameters, a.reuse_seed, a.random_seed, None, a.edit_styles):
        edit.addSeparator() if action is None else edit.addAction(action)
    view = menu_bar.addMenu("&View")
    for action in (a.fit, a.actual_size, a.zoom_in, a.zoom_out, None, a.focus_prompt, None, *view_toggles):
        view.addSeparator() if action is None else view.addAction(action)
    generate = menu_bar.addMenu("&Generate")
    for action in (a.generate, a.cancel, a.skip_image, None, a.compare_seeds, a.xy_plot, None, a.clear_queue):
        generate.addSeparator() if action is None else generate.addAction(action)
    help_menu = menu_bar.addMenu("&Help")
    for action in (a.getting_models, a.shortcuts, a.open_logs, None, a.about):
        help_menu.addSeparator() if action is None else help_menu.addAction(action)


def shortcut_table(actions: WindowActions) -> list[tuple[str, str]]:
    """(action, shortcut) rows for the Keyboard Shortcuts dialog."""
    rows = []
    for action in actions.all():
        keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())
        if keys:
            rows.append((action.text().replace("&", ""), keys))
    return rows
