"""QImage ⇄ NumPy pixels, both ways copying, so neither side keeps the other's buffer alive.

numpy is imported inside the functions: the window starts without it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QImage

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


def array_to_qimage(pixels: Any) -> QImage:
    """(H, W, 3) uint8 RGB pixels -> a QImage that owns a copy of them (safe after the array is gone)."""
    import numpy as np

    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def qimage_to_array(image: QImage) -> np.ndarray:
    """H×W×3 uint8 RGB pixels of any QImage (copied; the row padding of the QImage is dropped)."""
    import numpy as np

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    buffer = np.frombuffer(rgb.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return buffer[:, : w * 3].reshape(h, w, 3).copy()
