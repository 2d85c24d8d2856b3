"""Form → job: the one place Generate, Compare Seeds and the X/Y plot turn the current settings into jobs.

`request()` snapshots the form (telling the user what is missing instead), `job()` wraps a request with the
selected model, the engine options, the output folder and a fresh job id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from itertools import count

from app.inference.api.request import GenerationRequest
from app.ui.form.control_images import keep_control_images
from app.ui.form.form_state import GenerationFormState
from app.ui.form.model_picker import ModelPickerController
from app.ui.form.presets import StylePreset
from app.ui.generation.jobs import EngineOptions, QueuedJob
from app.ui.generation.output_folder import OutputFolder
from app.ui.notify import Notifier

log = logging.getLogger(__name__)


class JobFactory:
    def __init__(
        self,
        state: GenerationFormState,
        picker: ModelPickerController,
        styles: Callable[[], Mapping[str, StylePreset]],
        output: OutputFolder,
        notifier: Notifier,
        *,
        locate: Callable[[], None],
        focus_prompt: Callable[[], None],
    ) -> None:
        self._state, self._picker, self._styles, self._output = state, picker, styles, output
        self._notifier, self._locate, self._focus_prompt = notifier, locate, focus_prompt
        self._job_ids = count(1)

    def can_build(self) -> bool:
        return self._picker.selected is not None

    def models_read(self) -> bool:
        """False while the chosen model's header is still being read: the form shows guessed defaults (size,
        steps) until then, so a request built now would not be what the fields will show."""
        return self._picker.discovered

    def request(self, *, record: bool = True) -> GenerationRequest | None:
        """The request for the current settings, or None after telling the user what is missing. `record` False
        (a dialog that only looks at it) leaves the seed field and the last seed as they are."""
        if self._picker.selected is not None and not self._picker.discovered:  # --model, header not read yet
            self._notifier.info("Still reading the model files; try again in a moment.")
            return None
        if self._picker.selected is None:
            self._notifier.info(
                "Choose a model first: pick one above, or use Locate… to point to its folder.",
                action=("Locate…", self._locate),
            )
            return None
        try:
            request = self._state.build_request(self._styles(), record=record)
        except ValueError as exc:
            self._notifier.info(str(exc))
            self._focus_prompt()
            return None
        return self._keep_control_images(request) if request.controlnets else request

    def _keep_control_images(self, request: GenerationRequest) -> GenerationRequest | None:
        """Pasted / canvas control images are copied into the output folder, so the image's metadata points
        to a file that stays; the form uses the copies from now on."""
        try:
            kept = keep_control_images(request.controlnets, self._output.root())
        except OSError as exc:
            self._notifier.error(f"Could not keep the control image in the output folder: {exc}.")
            return None
        if [s.image for s in kept] == [s.image for s in request.controlnets]:
            return request
        self._state.set_controlnets(kept)
        return replace(request, controlnets=kept)

    def job(self, request: GenerationRequest) -> QueuedJob:
        """A job for `request` with the selected model (check `request()` first: a model must be selected)."""
        model = self._picker.selected
        if model is None:
            raise RuntimeError("JobFactory.job needs a selected model (call request() first)")
        v = self._state.values
        style = self._styles().get(v.style)
        return QueuedJob(
            job_id=next(self._job_ids),
            request=request,
            model_path=model.path,
            variant=model.variant if self._picker.discovered else None,
            model_label=model.label.split(" — ")[0],
            options=EngineOptions(
                v.device, v.precision, v.preview, v.preview_every, v.memory_plan, model.engine
            ),
            output=self._output.target(),
            style_label=style.label if style else "None",
        )
