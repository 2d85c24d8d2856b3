"""Quitting with work in progress asks first: the running job and the queued ones would be lost.

Finished images are already saved by the time the window hears of them, so quitting loses only unfinished work;
the question says exactly how much.
"""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QMessageBox, QWidget

from app.ui.generation.controller import GenerationController

log = logging.getLogger(__name__)


def unfinished_work(controller: GenerationController) -> str:
    """'1 running and 2 queued jobs' (empty when nothing would be lost)."""
    running = 1 if controller.current_job is not None else 0
    queued = len(controller.pending())
    parts = []
    if running:
        parts.append("1 running")
    if queued:
        parts.append(f"{queued} queued")
    if not parts:
        return ""
    last = queued or running  # the noun follows the last count: "1 running and 2 queued jobs"
    return " and ".join(parts) + (" job" if last == 1 else " jobs")


def confirm_quit(parent: QWidget, controller: GenerationController) -> bool:
    """True when nothing would be lost, or the user chose Quit."""
    work = unfinished_work(controller)
    if not work:
        return True
    box = QMessageBox(
        QMessageBox.Icon.Question, "Quit SD3.5 Studio", f"Quit and cancel {work}?", parent=parent
    )
    box.setObjectName("quitQuestion")
    box.setInformativeText("Finished images are saved; the unfinished ones are lost.")
    quit_button = box.addButton("Quit", QMessageBox.ButtonRole.DestructiveRole)
    quit_button.setObjectName("quitButton")
    cancel = box.addButton("Cancel", QMessageBox.ButtonRole.RejectRole)
    cancel.setObjectName("keepWorkingButton")
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    box.exec()
    quitting = box.clickedButton() is quit_button
    log.info("quit with %s: %s", work, "confirmed" if quitting else "cancelled")
    return quitting
