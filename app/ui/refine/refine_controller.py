"""The refine modes' working state next to the form: the input image, its mask, and what the canvas shows.

The form state holds the mode, the input image's path and the numbers; this object holds what is not a form
value: the input picture itself, the painted mask (a `MaskDocument` of the input's size, written to a PNG in the
data folder when a job is built), and the canvas view of the input (the mask layer in Inpaint mode, the
extended canvas in Outpaint mode). Widgets call it; it never builds widgets.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPen

from app.ui.canvas.canvas import CanvasView
from app.ui.canvas.mask_document import MaskDocument
from app.ui.canvas.mask_overlay import MaskOverlay
from app.ui.form.form_fields import OUTPAINT_FIELDS
from app.ui.form.form_state import GenerationFormState
from app.ui.form.presets import aspect_of

log = logging.getLogger(__name__)

MODE_LABELS = {
    "generate": "Generate",
    "img2img": "Image to image",
    "inpaint": "Inpaint",
    "outpaint": "Outpaint",
}
UPSCALE_SCALE, UPSCALE_DENOISE = 1.5, 0.35  # the hires fix's habit: x1.5, details redrawn, layout kept
NEW_AREA = QColor(70, 74, 82)  # the outpaint area on the canvas: what the model will fill


class RefineController:
    """`data_folder()` is where pasted inputs and masks are written (the app's data folder)."""

    def __init__(
        self, state: GenerationFormState, canvas: CanvasView, data_folder: Callable[[], Path],
        notify: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.state, self.canvas, self._data_folder, self._notify = state, canvas, data_folder, notify
        self.input: QImage | None = None
        self.mask: MaskDocument | None = None
        self.overlay: MaskOverlay | None = None
        self._shown: QImage | None = None  # the picture this object put on the canvas
        self.listeners: list[Callable[[], None]] = []  # told when the input or the mask's undo state changes
        # Back in Generate mode the input leaves the canvas: the window puts its last result back (or nothing).
        self.show_last_result: Callable[[], None] = lambda: canvas.set_image(None)
        state.mask_writer = self.write_mask
        state.listeners.append(self._on_state_changed)
        canvas.image_changed.connect(self._on_canvas_image_changed)
        if state.values.init_image:  # restored from the last session: back on the canvas in a refine mode
            self._load_input(Path(state.values.init_image), quiet=True)
            if self.mode != "generate":
                self.show_input()

    def close(self) -> None:
        if self._on_state_changed in self.state.listeners:
            self.state.listeners.remove(self._on_state_changed)
        self.state.mask_writer = None

    # ------------------------------------------------------------------------------------------ input image

    @property
    def mode(self) -> str:
        return self.state.values.refine_mode

    def set_mode(self, mode: str) -> None:
        self.state.update(refine_mode=mode)

    def use_file(self, path: Path) -> bool:
        """Make the image file at `path` the input (Image to image unless a refine mode is on already)."""
        reader = QImageReader(str(path))
        if not reader.canRead():
            self._notify(f"{Path(path).name} is not an image that can be opened.")
            return False
        changes: dict[str, object] = {"init_image": str(path)}
        if self.mode == "generate":
            changes["refine_mode"] = "img2img"
        if str(path) == self.state.values.init_image:
            self._load_input(Path(path))  # the same file again: it may have changed on disk
        self.state.update(**changes)
        self._notify(f"Input image: {Path(path).name}")
        return self.input is not None

    def use_image(self, image: QImage, name: str = "pasted") -> bool:
        """A picture without a file (the clipboard, an unsaved canvas image): written to the data folder first,
        named by its content so pasting the same picture twice reuses one file."""
        if image.isNull():
            self._notify("There is no picture to use as the input image.")
            return False
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        digest = hashlib.sha256(bytes(data.data())).hexdigest()[:16]
        path = self._data_folder() / "refine" / "inputs" / f"{name}-{digest}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(bytes(data.data()))
        except OSError as exc:
            self._notify(f"Cannot keep the pasted image in {path.parent} ({exc.strerror or exc}).")
            return False
        return self.use_file(path)

    def prepare_upscale(
        self, path: Path, scale: float = UPSCALE_SCALE, denoise: float = UPSCALE_DENOISE
    ) -> bool:
        """'Upscale' on an image: it becomes the input of an image-to-image job at `scale` times its size (the
        engine enlarges it with Lanczos before encoding) that redraws details at a low denoise. Generate runs it."""
        if not self.use_file(path) or self.input is None:
            return False
        size = self.input.size()
        self.state.update(refine_mode="img2img", denoise=denoise, width=round(size.width() * scale),
                          height=round(size.height() * scale))  # fmt: skip
        v = self.state.values
        self._notify(f"Upscale ×{scale:g} of {Path(path).name}: {v.width}×{v.height} at denoise {denoise:g}; "
                     "press Generate")  # fmt: skip
        return True

    def _load_input(self, path: Path, quiet: bool = False) -> None:
        image = QImage(str(path))
        if image.isNull():
            self.input, self.mask = None, None
            self._set_overlay(None)
            if not quiet:
                self._notify(f"Cannot open the input image {path.name}.")
            return
        self.input = image
        if self.mask is None or self.mask.size() != image.size():
            self.mask = MaskDocument(image.size())
            self.mask.listeners.append(lambda _area: self._tell())
            self._set_overlay(MaskOverlay(self.mask, self.canvas.update_image_area))
        if not quiet:
            self._follow_input_size(image.size())
        self._tell()

    def _follow_input_size(self, size: QSize) -> None:
        """Image to image works at the input's size: the size fields follow it (snapped as they always are)."""
        self.state.update(aspect=aspect_of(size.width(), size.height(), self.state.max_side),
                          width=size.width(), height=size.height())  # fmt: skip

    # ------------------------------------------------------------------------------------------ mask

    def write_mask(self) -> Path:
        """The painted mask as a grey PNG in the data folder (form_state calls this when building an Inpaint
        job); raises ValueError with a sentence when there is nothing to send."""
        if self.mask is None:
            raise ValueError("Inpaint: choose an input image first.")
        if self.mask.is_empty():
            raise ValueError("Inpaint: paint over the part to regenerate first (the brush on the canvas).")
        path = self._data_folder() / "refine" / "masks" / f"mask-{uuid.uuid4().hex[:12]}.png"
        try:
            return self.mask.save(path)
        except OSError as exc:
            raise ValueError(f"Inpaint: cannot write the mask ({exc}).") from None

    def load_mask(self, path: Path) -> None:
        if self.mask is None:
            return
        problem = (
            self.mask.load(path) if Path(path).is_file() else f"The mask {Path(path).name} no longer exists."
        )
        if problem:
            self._notify(problem)

    # ------------------------------------------------------------------------------------------ canvas

    def show_input(self) -> None:
        """Put the input on the canvas as the mode wants it: with the mask layer (Inpaint), on the extended
        canvas (Outpaint), or as it is."""
        if self.input is None:
            return
        picture = self.extended_input() if self.mode == "outpaint" else self.input
        self._shown = picture
        name = Path(self.state.values.init_image).name
        hint = {"inpaint": " — paint what to regenerate", "outpaint": " — grey: the new area"}.get(
            self.mode, ""
        )
        self.canvas.set_image(picture, caption=f"Input · {name}{hint}")
        if self.overlay is not None:
            self.overlay.active = self.mode == "inpaint"
        self.canvas.set_mask_overlay(self.overlay)

    def shows_input(self) -> bool:
        return self._shown is not None and self.canvas.image() is self._shown

    def extended_input(self) -> QImage:
        """The input on a canvas grown by the outpaint sides, the new area grey and outlined."""
        assert self.input is not None
        left, top, right, bottom = (getattr(self.state.values, f) for f in OUTPAINT_FIELDS)
        w, h = self.input.width(), self.input.height()
        out = QImage(w + left + right, h + top + bottom, QImage.Format.Format_RGB32)
        out.fill(NEW_AREA)
        painter = QPainter(out)
        painter.drawImage(left, top, self.input)
        pen = QPen(QColor(255, 255, 255, 200))
        pen.setWidth(max(2, min(w, h) // 256))
        pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawRect(QRect(left, top, w - 1, h - 1))
        painter.end()
        return out

    def _set_overlay(self, overlay: MaskOverlay | None) -> None:
        if self.overlay is not None and self.overlay is not overlay:
            self.overlay.detach()
        self.overlay = overlay
        if self.canvas.mask_overlay is not None and self.canvas.mask_overlay is not overlay:
            self.canvas.set_mask_overlay(None)

    def _on_canvas_image_changed(self) -> None:
        # Another picture (a preview, a result, a gallery image) took the canvas: the brush rests.
        if not self.shows_input() and self.canvas.mask_overlay is not None:
            self.canvas.mask_overlay.active = False
            self.canvas.set_mask_overlay(self.canvas.mask_overlay)

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        v = self.state.values
        if "init_image" in changed:
            if v.init_image:
                self._load_input(Path(v.init_image))
            else:
                self.input = None
                self._tell()
        if "recalled_mask" in changed and self.state.recalled_mask is not None:
            self.load_mask(self.state.recalled_mask)
        shown_changes = {"init_image", "refine_mode", *OUTPAINT_FIELDS}
        if changed & shown_changes:
            if v.refine_mode == "generate":
                if self.canvas.mask_overlay is not None:
                    self.canvas.set_mask_overlay(None)
                if self.shows_input():
                    self.show_last_result()
            elif self.input is not None:
                self.show_input()
            self._tell()

    def _tell(self) -> None:
        for listener in list(self.listeners):
            listener()
