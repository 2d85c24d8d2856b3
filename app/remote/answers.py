"""Reading a ComfyUI server's answers about a job: its outputs in /history, the queue, errors, and previews,
field by field with type checks (a wrong type counts as absent); text cut to a sentence's length."""

from __future__ import annotations

import logging

from app.remote.errors import ProtocolError
from app.remote.limits import MAX_PREVIEW_SIDE, decode_image
from app.remote.messages import Preview

log = logging.getLogger(__name__)

MAX_ERROR_TEXT = 300


def preview_pixels(preview: Preview | None):
    if preview is None:
        return None
    try:
        pixels = decode_image(preview.image, "preview", max_side=MAX_PREVIEW_SIDE)
    except ProtocolError as exc:  # a bad preview costs the preview, never the image
        log.info("preview dropped: %s", exc)
        return None
    if max(pixels.shape[:2]) > 512:  # the StepUpdate contract: long side <= 512
        from PIL import Image

        im = Image.fromarray(pixels)
        im.thumbnail((512, 512))
        import numpy as np

        pixels = np.asarray(im)
    return pixels


def output_images(entry: dict) -> list[dict[str, str]]:
    """[{filename, subfolder, type}] of the entry's outputs, strings only (they become /view query values)."""
    outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
    refs = []
    for output in outputs.values():
        images = output.get("images") if isinstance(output, dict) else None
        for ref in images if isinstance(images, list) else []:
            if isinstance(ref, dict) and isinstance(ref.get("filename"), str):
                refs.append(
                    {k: ref[k] for k in ("filename", "subfolder", "type") if isinstance(ref.get(k), str)}
                )
    return refs


def queued_ids(state: object) -> set[str]:
    """Prompt ids in /queue's queue_running and queue_pending ([number, prompt_id, ...] entries)."""
    ids: set[str] = set()
    if isinstance(state, dict):
        for key in ("queue_running", "queue_pending"):
            for item in state.get(key) if isinstance(state.get(key), list) else []:
                if isinstance(item, list) and len(item) > 1 and isinstance(item[1], str):
                    ids.add(item[1])
    return ids


def history_error(status: dict) -> str:
    for entry in status.get("messages") if isinstance(status.get("messages"), list) else []:
        if (
            isinstance(entry, list)
            and len(entry) == 2
            and entry[0] == "execution_error"
            and isinstance(entry[1], dict)
        ):
            text = entry[1].get("exception_message")
            if isinstance(text, str):
                return f"the server failed: {text.strip()[:MAX_ERROR_TEXT]}"
    return "the server failed to make this image"


def rejection(answer: object) -> str:
    """One line from /prompt's 400 answer: the first node error, else the prompt error."""
    if isinstance(answer, dict):
        node_errors = answer.get("node_errors")
        if isinstance(node_errors, dict):
            for node_id, entry in node_errors.items():
                errors = entry.get("errors") if isinstance(entry, dict) else None
                if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                    e = errors[0]
                    return f"node {node_id}: {e.get('message', '')}: {e.get('details', '')}"[:MAX_ERROR_TEXT]
        error = answer.get("error")
        if isinstance(error, dict):
            return f"{error.get('message', '')} {error.get('details', '')}".strip()[:MAX_ERROR_TEXT]
    return "it gave no reason"
