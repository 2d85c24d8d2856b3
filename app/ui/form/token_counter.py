"""Live token counts for the prompt editors, computed off the UI thread.

The tokenizers come from the selected model set's folder (`tokenizer/`, `tokenizer_3/`); loading them imports
transformers (seconds, no torch), so loading and counting run in a one-thread executor, awaited by a coroutine
on the qasync loop. Keystrokes are debounced; only the newest text of each editor is counted.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

log = logging.getLogger(__name__)

CLIP_CONTENT_TOKENS = 75  # a 77-token CLIP window minus its start and end tokens
T5_TRAINED_TOKENS = 256  # SD3.5's T5 saw 77 and then 256 tokens in training (model card)
DEBOUNCE_MS = 180
NO_MODEL_TEXT = "Tokens: select a model to count"


@dataclass(frozen=True, slots=True)
class TokenCountView:
    """What the counter label shows."""

    text: str
    spills: bool = False
    tooltip: str = ""


def describe_count(clip_tokens: int, clip_windows: int, t5_tokens: int, use_t5: bool) -> TokenCountView:
    """The counter text for one prompt: CLIP tokens against the 75-token window, T5 tokens against 256."""
    parts = [f"CLIP {clip_tokens}/{CLIP_CONTENT_TOKENS}"]
    notes: list[str] = []
    spills = False
    if clip_windows > 1:
        spills = True
        parts[0] += f" · {clip_windows} windows"
        notes.append(
            f"The text fills {clip_windows} CLIP windows of {CLIP_CONTENT_TOKENS} tokens. Each window is encoded "
            "on its own, so words past the first window have a weaker, less coherent effect. Put the important "
            "words first or shorten the prompt."
        )
    if use_t5:
        parts.append(f"T5 {t5_tokens}")
        if t5_tokens > T5_TRAINED_TOKENS:
            spills = True
            parts[-1] += f"/{T5_TRAINED_TOKENS}"
            notes.append(
                f"T5 was trained on up to {T5_TRAINED_TOKENS} tokens; text beyond that is followed less reliably."
            )
    else:
        parts.append("T5 off")
    base = "Tokens per text encoder. CLIP-L and CLIP-G read the text in windows of 75 tokens; T5-XXL reads it whole."
    return TokenCountView("  ·  ".join(parts), spills, "\n\n".join([base, *notes]))


def _load_tokenizer(folder: Path, use_t5: bool) -> Any:
    from app.inference.text.tokenization import (
        SD3Tokenizer,  # transformers: slow import, never on the UI thread
    )

    return SD3Tokenizer.from_folder(folder, t5=use_t5)


class TokenCounter(QObject):
    counted = Signal(str, object)  # editor key, TokenCountView

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sd35-tokens")
        self._folder: Path | None = None
        self._use_t5 = True
        self._idle_text = NO_MODEL_TEXT  # what the label says when there is no tokenizer folder
        self._tokenizer: asyncio.Future[Any] | None = None
        # Loaded tokenizers by (folder, T5): switching back to a model set reuses its tokenizers.
        self._loaded: dict[tuple[Path, bool], asyncio.Future[Any]] = {}
        self._texts: dict[str, str] = {}
        self._timers: dict[str, QTimer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ready = False

    def set_source(self, folder: Path | None, use_t5: bool, idle_text: str = NO_MODEL_TEXT) -> None:
        """Count with the tokenizers of the model set in `folder` (None: no counting possible; the label then
        says `idle_text`)."""
        if (folder, use_t5, idle_text) == (self._folder, self._use_t5, self._idle_text):
            return
        self._folder, self._use_t5, self._idle_text = folder, use_t5, idle_text
        self._tokenizer = None if folder is None else self._loaded.get((folder, use_t5))
        for key in self._texts:
            self._schedule(key)

    def set_ready(self) -> None:
        """Counting may start: the engine has imported transformers on its thread (see worker.load_engine_backend;
        two threads resolving transformers' lazy names at once can fail)."""
        self._ready = True
        for key in self._texts:
            self._schedule(key)

    def request(self, key: str, text: str) -> None:
        self._texts[key] = text
        self._schedule(key)

    def is_loading(self) -> bool:
        """Whether tokenizers are being loaded on the counting thread (seconds: transformers' tokenizers)."""
        return any(not loading.done() for loading in self._loaded.values())

    def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.stop()
        for task in list(self._tasks):
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _schedule(self, key: str) -> None:
        if self._closed:
            return
        timer = self._timers.get(key)
        if timer is None:
            timer = self._timers[key] = QTimer(self)
            timer.setSingleShot(True)
            timer.setInterval(DEBOUNCE_MS)
            timer.timeout.connect(lambda key=key: self._start(key))
        timer.start()

    def _start(self, key: str) -> None:
        if self._closed or not self._ready:
            return  # counted once ready
        task = asyncio.ensure_future(self._count(key, self._texts[key]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _count(self, key: str, text: str) -> None:
        folder, use_t5 = self._folder, self._use_t5
        if folder is None:
            self.counted.emit(key, TokenCountView(self._idle_text, tooltip=""))
            return
        loop = asyncio.get_running_loop()
        try:
            if self._tokenizer is None:
                self._tokenizer = loop.run_in_executor(self._executor, _load_tokenizer, folder, use_t5)
                self._loaded[(folder, use_t5)] = self._tokenizer
            tokenizer = await self._tokenizer
            count = await loop.run_in_executor(self._executor, tokenizer.count, text)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken tokenizer folder must not break typing
            self._loaded.pop((folder, use_t5), None)  # tried again when the set is chosen again
            log.warning("token counting unavailable for %s: %s", folder, exc)
            self.counted.emit(key, TokenCountView("Tokens: unavailable", tooltip=str(exc)))
            return
        if self._closed or text != self._texts.get(key) or (folder, use_t5) != (self._folder, self._use_t5):
            return  # stale: a newer count is on its way
        self.counted.emit(key, describe_count(count.clip_tokens, count.clip_windows, count.t5_tokens, use_t5))
