"""The zoom and pan of one image shown in a widget, as plain arithmetic (no Qt), so it can be tested alone.

The state is the compare tiles' own vocabulary: `zoom` (1.0 = one image pixel per screen pixel) and `centre`,
the image point at the middle of the view as a fraction of the image size. Like a QGraphicsView, an image
smaller than the view sits in the middle, and a larger one can be panned only until its edge meets the view's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIN_ZOOM, MAX_ZOOM = 0.02, 32.0  # as the compare tiles


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float


class ZoomPan:
    def __init__(self, image_width: float, image_height: float) -> None:
        self.image_width, self.image_height = max(1.0, image_width), max(1.0, image_height)
        self.view_width, self.view_height = 1.0, 1.0
        self.zoom = 1.0
        self.centre_x, self.centre_y = 0.5, 0.5
        self.fitted = True  # keep fitting while the view is resized, until the user zooms or pans

    # -- state ---------------------------------------------------------------------------------------------

    def fit_zoom(self) -> float:
        return min(self.view_width / self.image_width, self.view_height / self.image_height)

    def fit(self) -> None:
        self.zoom = min(MAX_ZOOM, max(MIN_ZOOM, self.fit_zoom()))
        self.centre_x = self.centre_y = 0.5
        self.fitted = True

    def set_view_size(self, width: float, height: float) -> None:
        self.view_width, self.view_height = max(1.0, width), max(1.0, height)
        if self.fitted:
            self.fit()
        else:
            self._clamp()

    def set_view(self, zoom: float, centre_x: float, centre_y: float) -> None:
        """Show this zoom and centre (from another view), within the limits."""
        self.zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        self.centre_x, self.centre_y = centre_x, centre_y
        self.fitted = False
        self._clamp()

    @property
    def pannable(self) -> bool:
        """Whether the image is larger than the view in some direction (else a drag has nothing to move)."""
        return (
            self.image_width * self.zoom > self.view_width + 0.5
            or self.image_height * self.zoom > self.view_height + 0.5
        )

    # -- mapping -------------------------------------------------------------------------------------------

    def image_rect(self) -> Rect:
        """Where the whole image lies in view coordinates."""
        width, height = self.image_width * self.zoom, self.image_height * self.zoom
        return Rect(
            self.view_width / 2 - self.centre_x * width,
            self.view_height / 2 - self.centre_y * height,
            width,
            height,
        )

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        """The image point (as fractions of its size, not clamped) under the view point (x, y)."""
        r = self.image_rect()
        return (x - r.x) / r.width, (y - r.y) / r.height

    # -- gestures ------------------------------------------------------------------------------------------

    def zoom_about(self, factor: float, x: float, y: float) -> None:
        """Zoom by `factor`, keeping the image point under the view point (x, y) where it is."""
        u, v = self.to_image(x, y)
        self.zoom = min(MAX_ZOOM, max(MIN_ZOOM, self.zoom * factor))
        width, height = self.image_width * self.zoom, self.image_height * self.zoom
        # the image point u must stay at x: left = x - u * width, and left = view/2 - centre * width
        self.centre_x = (self.view_width / 2 - (x - u * width)) / width
        self.centre_y = (self.view_height / 2 - (y - v * height)) / height
        self.fitted = False
        self._clamp()

    def set_zoom(self, zoom: float) -> None:
        """Zoom about the middle of the view."""
        self.zoom_about(zoom / self.zoom, self.view_width / 2, self.view_height / 2)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) view pixels, as a drag does."""
        self.centre_x -= dx / (self.image_width * self.zoom)
        self.centre_y -= dy / (self.image_height * self.zoom)
        self.fitted = False
        self._clamp()

    def _clamp(self) -> None:
        self.centre_x = _clamp_axis(self.centre_x, self.image_width * self.zoom, self.view_width)
        self.centre_y = _clamp_axis(self.centre_y, self.image_height * self.zoom, self.view_height)


def _clamp_axis(centre: float, shown: float, view: float) -> float:
    """Centred when the image is smaller than the view; else no gap between its edge and the view's."""
    if shown <= view:
        return 0.5
    margin = view / 2 / shown
    return min(1.0 - margin, max(margin, centre))
