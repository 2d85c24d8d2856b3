"""PySide6 6.12.0 on Python 3.11 drops a reference to True on every Signal.emit (and to None on many void
calls), which aborts the interpreter after a few thousand calls. pyproject pins < 6.12; this guards the pin."""

import sys

from PySide6.QtCore import QCoreApplication, QObject, Signal
from PySide6.QtGui import QImage, QPainter


class _Emitter(QObject):
    fired = Signal(int)


def test_signals_and_painting_keep_singleton_refcounts(qapp):
    assert QCoreApplication.instance() is not None
    emitter = _Emitter()
    emitter.fired.connect(lambda value: None)
    image = QImage(8, 8, QImage.Format.Format_RGB32)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(2000):
        emitter.fired.emit(i)
        painter = QPainter(image)
        painter.save()
        painter.restore()
        painter.end()
    assert abs(sys.getrefcount(True) - true_before) < 50
    assert abs(sys.getrefcount(None) - none_before) < 50
