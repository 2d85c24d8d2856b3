"""What the gallery knows about the loaded model set, turned into image metadata and reproduction checks.

Qt-free apart from living in the UI package: `image_params` blocks on the model's hash (seconds for a big
file, once per file thanks to the cache), so it is called from pool or worker threads, never the UI thread.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from app.gallery.model_files import ModelFileInfo, ModelHasher
from app.metadata.params import ImageParams
from app.metadata.recall import CurrentSetup

if TYPE_CHECKING:
    from app.inference.api.request import GenerationRequest

log = logging.getLogger(__name__)


class LoadedModel:
    def __init__(self, hasher: ModelHasher) -> None:
        self.hasher = hasher
        self._lock = threading.Lock()
        self.checkpoint: Path | None = None
        self.variant: str | None = None
        self.t5_available = True
        self.lora_folders: tuple[
            Path, ...
        ] = ()  # where recall looks for an image's LoRAs by name (the LoRA scan's)
        self.controlnet_files: tuple[Path, ...] = ()  # the ControlNets found here (recall matches names)

    def set(self, checkpoint: Path | None, variant: str | None, t5_available: bool) -> None:
        with self._lock:
            self.checkpoint = Path(checkpoint) if checkpoint is not None else None
            self.variant, self.t5_available = variant, t5_available
        if self.checkpoint is not None and self.checkpoint.is_file():
            self.hasher.info(self.checkpoint)  # start hashing now, long before the first image needs it

    def _info(self, wait: bool) -> ModelFileInfo | None:
        checkpoint = self.checkpoint
        if checkpoint is None or not checkpoint.is_file():
            return None
        future = self.hasher.info(checkpoint)
        if not wait and not future.done():
            return None
        try:
            return future.result()
        except OSError as exc:
            log.warning("cannot hash %s: %s", checkpoint, exc)
            return None

    def setup(self) -> CurrentSetup:
        """For reproduction warnings; never waits (the hash is left out while it is being computed)."""
        info = self._info(wait=False)
        name = self.checkpoint.stem if self.checkpoint is not None else None
        hash_, fp8 = (info.short_hash, info.fp8) if info else (None, False)
        return CurrentSetup(
            name, hash_, self.variant, fp8, self.t5_available, self.lora_folders, self.controlnet_files
        )

    def image_params(self, request: GenerationRequest, seed: int) -> ImageParams:
        """The full metadata of one finished image of `request` (resolved) made with the loaded model."""
        from app import __version__

        info = self._info(wait=True)
        return ImageParams.from_request(
            request, seed, variant=self.variant, model_name=self.checkpoint.stem if self.checkpoint else None,
            model_hash=info.short_hash if info else None, fp8=info.fp8 if info else False, app_version=__version__,
        )  # fmt: skip
