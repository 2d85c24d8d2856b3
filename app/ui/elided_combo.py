"""A combo box for long user names (model sets, server labels): its closed face elides the current text in the
middle — so both a file name's start and a server's suffix stay readable — and it never widens its parent."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QComboBox, QStyle, QStyleOptionComboBox, QStylePainter, QWidget

log = logging.getLogger(__name__)

MIN_CHARACTERS = 12  # the width the combo asks for, whatever its items say


class ElidedComboBox(QComboBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Qt would size the combo to its longest item: a long model name would widen the settings dock.
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(MIN_CHARACTERS)

    def shown_text(self) -> str:
        """The current text as the closed combo draws it: elided in the middle to the edit field's width."""
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        return self._elided(option)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        option.currentText = self._elided(option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

    def _elided(self, option: QStyleOptionComboBox) -> str:
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxEditField, self
        )
        width = field.width() - (option.iconSize.width() + 4 if not option.currentIcon.isNull() else 0) - 2
        return self.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideMiddle, max(0, width))
