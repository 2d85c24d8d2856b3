"""Prompt editors: multi-line text with undo/redo, weight-syntax highlighting and a live token counter."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from app.ui.form.prompt_syntax import Span, SpanKind, lora_tag_spans, scan_weight_syntax
from app.ui.form.token_counter import TokenCountView
from app.ui.window.theme import ACCENT, COOL, ERROR, WARM

log = logging.getLogger(__name__)


class WeightSyntaxHighlighter(QSyntaxHighlighter):
    """Colours `(word:1.3)` groups: parentheses in the accent colour, the weight as a number, emphasised words
    warm and de-emphasised ones cool; a parenthesis without a partner is underlined in red."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self._text: str | None = None
        self._spans: list[Span] = []
        self._paren = _format(ACCENT, bold=True)
        self._weight = _format(QColor("#8fd18f"))
        self._escape = _format(QColor("#8a8d95"))
        self._lora = _format(QColor("#c792ea"), bold=True)
        self._lora.setBackground(QColor(199, 146, 234, 40))
        self._lora.setToolTip(
            "A LoRA tag: adds this LoRA at this strength; the tag itself is not sent as text."
        )
        self._unbalanced = _format(ERROR, bold=True)
        self._unbalanced.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
        self._unbalanced.setUnderlineColor(ERROR)
        self._unbalanced.setToolTip(
            "This parenthesis has no partner; it will be read as a literal character."
        )

    def spans(self) -> list[Span]:
        text = self.document().toPlainText()
        if text != self._text:
            # LoRA tags last: their colour wins over a weight group around them
            self._spans, self._text = scan_weight_syntax(text) + lora_tag_spans(text), text
        return self._spans

    def highlightBlock(self, text: str) -> None:
        begin = self.currentBlock().position()
        end = begin + len(text)
        for span in self.spans():
            if span.start + span.length <= begin or span.start >= end:
                continue
            start = max(span.start, begin) - begin
            length = min(span.start + span.length, end) - begin - start
            self.setFormat(start, length, self._format_for(span))

    def _format_for(self, span: Span) -> QTextCharFormat:
        if span.kind is SpanKind.PAREN:
            return self._paren
        if span.kind is SpanKind.WEIGHT:
            return self._weight
        if span.kind is SpanKind.ESCAPE:
            return self._escape
        if span.kind is SpanKind.UNBALANCED:
            return self._unbalanced
        if span.kind is SpanKind.LORA:
            return self._lora
        if span.weight > 1.0:
            return _format(WARM, bold=span.weight >= 1.3)
        if span.weight < 1.0:
            return _format(COOL, italic=True)
        return QTextCharFormat()


def _format(color: QColor, *, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setForeground(color)
    if bold:
        fmt.setFontWeight(QFont.Weight.Bold)
    fmt.setFontItalic(italic)
    return fmt


class PromptEditor(QWidget):
    """A titled prompt editor with its token counter and, when inactive, a line saying why."""

    text_changed = Signal(str)

    def __init__(self, title: str, placeholder: str, tooltip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        header = QHBoxLayout()
        header.setSpacing(6)
        self.title = QLabel(title, self)
        self.title.setObjectName("sectionLabel")
        self.counter = QLabel("", self)
        self.counter.setObjectName("tokenCounter")
        self.counter.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        header.addWidget(self.title)
        header.addStretch(1)
        header.addWidget(self.counter)
        layout.addLayout(header)

        self.edit = QPlainTextEdit(self)
        self.edit.setPlaceholderText(placeholder)
        self.edit.setToolTip(tooltip)
        self.edit.setTabChangesFocus(
            True
        )  # Tab moves on to the next control: the window stays keyboard-driven
        self.title.setBuddy(self.edit)
        self.highlighter = WeightSyntaxHighlighter(self.edit.document())
        layout.addWidget(self.edit, 1)

        self.notice = QLabel("", self)
        self.notice.setObjectName("warningLabel")
        self.notice.setWordWrap(True)
        self.notice.hide()
        layout.addWidget(self.notice)
        self.edit.textChanged.connect(self._on_edit_text_changed)

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        if text != self.text():
            self.edit.setPlainText(text)

    def set_active(self, active: bool, reason: str = "") -> None:
        """An inactive editor is greyed out and says why (e.g. the negative prompt at CFG 1)."""
        self.edit.setEnabled(active)
        self.title.setEnabled(active)
        self.notice.setText(reason)
        self.notice.setVisible(not active and bool(reason))

    def is_active(self) -> bool:
        return self.edit.isEnabled()

    def show_count(self, view: TokenCountView) -> None:
        self.counter.setText(view.text)
        self.counter.setToolTip(view.tooltip)
        if self.counter.property("spill") != view.spills:
            self.counter.setProperty("spill", view.spills)
            self.counter.style().unpolish(self.counter)
            self.counter.style().polish(self.counter)

    def _on_edit_text_changed(self) -> None:
        self.text_changed.emit(self.text())
