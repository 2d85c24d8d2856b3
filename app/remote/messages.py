"""ComfyUI's WebSocket messages, parsed from untrusted bytes into small typed values.

Text frames are JSON `{type, data}` (status, execution_start, execution_cached, executing, progress, executed,
execution_success, execution_error, execution_interrupted, feature_flags, ...). Binary frames start with a
big-endian uint32 event type:
  1 PREVIEW_IMAGE                 uint32 image type (1 JPEG, 2 PNG), then the image bytes
  4 PREVIEW_IMAGE_WITH_METADATA   uint32 JSON length, UTF-8 JSON {node_id, prompt_id, image_type, ...}, image bytes
  3 TEXT (progress text of a node) and anything else: ignored
Type 4 is sent instead of 1 once a client announced `supports_preview_metadata` as its first message; it names
the prompt, so a preview of another client's job is never shown as ours."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from app.remote.errors import ProtocolError
from app.remote.limits import MAX_JSON_BYTES, parse_json

PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}
_MAX_METADATA_BYTES = 64 * 1024

FEATURE_FLAGS = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})


@dataclass(frozen=True, slots=True)
class Message:
    type: str
    data: dict

    def get(self, key: str, kind: type | tuple[type, ...] = str, default: object = None):
        """A field of `data` if it has the expected type, else `default`: fields are never trusted blindly."""
        value = self.data.get(key)
        if isinstance(value, bool) and kind is not bool:  # True is an int to isinstance
            return default
        return value if isinstance(value, kind) else default


@dataclass(frozen=True, slots=True)
class Preview:
    image: bytes  # encoded (JPEG or PNG); decoded later, with limits, only if someone shows it
    mime: str
    prompt_id: str | None = None  # only from event 4
    node_id: str | None = None


def parse_text(raw: str | bytes) -> Message:
    """A JSON text frame; ProtocolError when it is not `{type: str, data: object}` within the bounds."""
    value = parse_json(raw, "WebSocket message", MAX_JSON_BYTES)
    if not (isinstance(value, dict) and isinstance(value.get("type"), str)):
        raise ProtocolError("the server sent a WebSocket message without a type")
    data = value.get("data")
    return Message(value["type"], data if isinstance(data, dict) else {})


def parse_binary(raw: bytes) -> Preview | None:
    """A binary frame: a Preview for events 1 and 4, None for events we do not use; ProtocolError if malformed."""
    if len(raw) < 4:
        raise ProtocolError("the server sent a binary WebSocket frame shorter than its header")
    (event,) = struct.unpack_from(">I", raw, 0)
    if event == PREVIEW_IMAGE:
        if len(raw) < 8:
            raise ProtocolError("the server sent a preview frame without an image type")
        (kind,) = struct.unpack_from(">I", raw, 4)
        if kind not in _IMAGE_TYPES:
            raise ProtocolError(f"the server sent a preview of unknown image type {kind}")
        return Preview(bytes(raw[8:]), _IMAGE_TYPES[kind])
    if event == PREVIEW_IMAGE_WITH_METADATA:
        if len(raw) < 8:
            raise ProtocolError("the server sent a preview frame without its metadata length")
        (length,) = struct.unpack_from(">I", raw, 4)
        if length > min(_MAX_METADATA_BYTES, len(raw) - 8):
            raise ProtocolError("the server sent a preview frame with an impossible metadata length")
        meta = parse_json(bytes(raw[8 : 8 + length]), "preview metadata", _MAX_METADATA_BYTES)
        if not isinstance(meta, dict):
            raise ProtocolError("the server sent preview metadata that is not an object")
        mime = meta.get("image_type") if meta.get("image_type") in _IMAGE_TYPES.values() else "image/jpeg"

        def text(key: str) -> str | None:
            v = meta.get(key)
            return str(v) if isinstance(v, str | int) and not isinstance(v, bool) else None

        return Preview(bytes(raw[8 + length :]), mime, text("prompt_id"), text("node_id"))
    return None
