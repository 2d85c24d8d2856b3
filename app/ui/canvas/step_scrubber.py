"""Scrubbing through the step frames of the image on the canvas: a slider under the canvas, "Step 12 / 28" ...
"Final".

`ScrubState` (plain Python) knows which picture each slider position shows and decodes frames on demand;
`StepScrubber` only moves the slider and hands the picture to the canvas. The scrubber belongs to the image the
canvas shows: whenever anything else puts a picture on the canvas (a live preview, another image, a grid) the
scrubber lets go of its frames and hides. It is also hidden while a job is generating (the live previews show
the steps then) and while another page covers the canvas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QSignalBlocker, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSlider, QWidget

from app.gallery.step_frames import StepFrames, StepFramesError, decode_frame
from app.ui.canvas.canvas import CanvasView
from app.ui.canvas.image_arrays import array_to_qimage

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


class ScrubState:
    """Slider positions 0 .. n-1 show the n step frames, oldest first; position n shows the final image."""

    def __init__(self, frames: StepFrames, decode: Callable[[bytes], np.ndarray] = decode_frame) -> None:
        self.frames = frames
        self._decode = decode
        self._decoded: dict[int, np.ndarray] = {}

    @property
    def final_position(self) -> int:
        return len(self.frames.steps)

    def is_final(self, position: int) -> bool:
        return position >= self.final_position

    def label(self, position: int) -> str:
        if self.is_final(position):
            return "Final"
        return f"Step {self.frames.steps[max(0, position)]} / {self.frames.total_steps}"

    def pixels(self, position: int) -> np.ndarray | None:
        """The frame at `position`, (h, w, 3) uint8, decoded once; None at the final position, or when the
        frame does not decode (the final image stands in)."""
        if self.is_final(position):
            return None
        position = max(0, position)
        if position not in self._decoded:
            try:
                self._decoded[position] = self._decode(self.frames.frames[position])
            except StepFramesError as exc:
                log.warning("step frame %d cannot be shown: %s", position, exc)
                return None
        return self._decoded[position]


class StepScrubber(QFrame):
    """Under the canvas: a slider through the step frames of the image on the canvas."""

    def __init__(self, canvas: CanvasView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("stepScrubber")
        self.canvas = canvas
        self.state: ScrubState | None = None
        self._final: QImage | None = None
        self._generating = False
        self._applying = False  # the canvas change is ours: keep the frames
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 10, 4)
        layout.setSpacing(10)
        title = QLabel("Steps", self)
        title.setObjectName("hintLabel")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("stepSlider")
        self.slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.slider.setPageStep(4)
        self.slider.setToolTip(
            "How the image developed: drag to see the preview of each sampling step; the right end is the "
            "final image. With the slider focused, the arrow keys step one frame."
        )
        self.label = QLabel("Final", self)
        self.label.setMinimumWidth(self.label.fontMetrics().horizontalAdvance("Step 888 / 888") + 4)
        layout.addWidget(title)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.label)
        self.slider.valueChanged.connect(self._on_slider_value_changed)
        canvas.image_changed.connect(self._on_canvas_image_changed)
        canvas.installEventFilter(self)
        self.hide()

    def show_frames(self, frames: StepFrames | None, final: QImage | None) -> None:
        """Offer `frames` for `final`, the image the canvas shows now; None: nothing to scrub."""
        if frames is None or final is None or final.isNull():
            self.state, self._final = None, None
        else:
            self.state, self._final = ScrubState(frames), final
            end = self.state.final_position
            with QSignalBlocker(self.slider):
                self.slider.setRange(0, end)
                self.slider.setValue(end)
            self.label.setText(self.state.label(end))
        self._update_visibility()

    def scrubbed_image(self) -> QImage | None:
        """The finished image whose step frame the canvas shows now, or None when it shows no step frame."""
        return self._final if self.state is not None and self.canvas.is_preview() else None

    def set_generating(self, generating: bool) -> None:
        """While a job runs the live previews show the steps: back to the final image, and out of the way."""
        self._generating = generating
        if generating and self.state is not None:
            self.slider.setValue(self.state.final_position)
        self._update_visibility()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.canvas and event.type() in (QEvent.Type.Show, QEvent.Type.Hide):
            self._update_visibility()  # another page of the central stack covers the canvas, or left it
        return super().eventFilter(watched, event)

    def _update_visibility(self) -> None:
        self.setVisible(self.state is not None and not self._generating and not self.canvas.isHidden())

    def _on_slider_value_changed(self, position: int) -> None:
        state, final = self.state, self._final
        if state is None or final is None:
            return
        self.label.setText(state.label(position))
        pixels = state.pixels(position)
        self._applying = True
        try:
            if pixels is None:
                self.canvas.set_image(final)
            else:
                self.canvas.set_image(
                    array_to_qimage(pixels),
                    preview=True,
                    logical_size=final.size(),
                    caption=state.label(position),
                )
        finally:
            self._applying = False

    def _on_canvas_image_changed(self) -> None:
        if not self._applying and self.state is not None:
            self.state, self._final = None, None
            self._update_visibility()
