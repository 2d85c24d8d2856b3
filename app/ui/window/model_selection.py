"""What choosing a model set changes in the form: the variant's defaults, T5 when the set has none, the hint
under the picker, and the tokenizers the prompt's token counter reads."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject

from app.ui.form.form_state import GenerationFormState
from app.ui.form.generation_panel import GenerationPanel
from app.ui.form.model_library import ModelSetInfo
from app.ui.form.model_picker import ModelPickerController
from app.ui.form.prompt_syntax import without_lora_tags
from app.ui.form.token_counter import NO_MODEL_TEXT, TokenCounter

log = logging.getLogger(__name__)

REMOTE_NOT_COUNTED_TEXT = "Tokens: not counted for a server's model"


def local_tokenizer_set(sets: list[ModelSetInfo], use_t5: bool) -> ModelSetInfo | None:
    """A usable set on this machine whose tokenizers can count for a server's set (with T5 when T5 is on)."""
    return next((s for s in sets if not s.is_remote and s.usable and (s.has_t5 or not use_t5)), None)


class ModelSelection:
    def __init__(
        self,
        parent: QObject,
        picker: ModelPickerController,
        state: GenerationFormState,
        panel: GenerationPanel,
        on_changed: Callable[[], None],
    ) -> None:
        self._picker, self._state, self._panel, self._on_changed = picker, state, panel, on_changed
        self.token_counter = TokenCounter(parent)
        self.token_counter.counted.connect(self._on_token_counter_counted)
        # `<lora:…>` tags are taken out of the prompt before encoding: they count no tokens
        panel.prompt.text_changed.connect(
            lambda text: self.token_counter.request("prompt", without_lora_tags(text))
        )
        panel.negative.text_changed.connect(
            lambda text: self.token_counter.request("negative", without_lora_tags(text))
        )
        picker.selection_changed.connect(self.on_picker_selection_changed)

    def on_picker_selection_changed(self, info: ModelSetInfo | None, hint: str) -> None:
        state = self._state
        if info is not None and info.variant is not None:
            state.select_model(info.variant, info.max_side, info.depth)
            if self._picker.discovered and not info.has_t5 and state.values.use_t5:
                state.update(use_t5=False)
        self._panel.model_hint.setText(hint)
        self._panel.model_hint.setVisible(bool(hint))
        self.update_token_source()
        self._on_changed()

    def update_token_source(self) -> None:
        info = self._picker.selected
        use_t5 = self._state.values.use_t5
        idle_text = NO_MODEL_TEXT
        if info is not None and info.is_remote:
            # A server's model set: its tokenizers are not on this machine, but every SD3.5 variant has the
            # same ones, so a local set's count is the server's count.
            info, idle_text = local_tokenizer_set(self._picker.sets, use_t5), REMOTE_NOT_COUNTED_TEXT
        folder = (
            None if info is None else (info.path if info.path.suffix != ".safetensors" else info.path.parent)
        )
        self.token_counter.set_source(folder, use_t5, idle_text)
        for key, editor in (("prompt", self._panel.prompt), ("negative", self._panel.negative)):
            self.token_counter.request(key, without_lora_tags(editor.text()))

    def close(self) -> None:
        self.token_counter.close()

    def _on_token_counter_counted(self, key: str, view: object) -> None:
        editor = self._panel.prompt if key == "prompt" else self._panel.negative
        editor.show_count(view)  # type: ignore[arg-type]
